#!/bin/sh
# Run every fuzz target one after another (FUZZ_SECONDS each), logging to $FUZZ_WORK.
# Usage: fuzz/campaign.sh [targets...]   (default: image data_uri url video)
set -u
PY=${FUZZ_PYTHON:-python}
SECONDS_EACH=${FUZZ_SECONDS:-600}
WORK=${FUZZ_WORK:-.fuzz-work}
TARGETS=${*:-image data_uri url video}
for t in $TARGETS; do
    mkdir -p "$WORK/$t" "$WORK/artifacts-$t"
    echo "== $t $(date -u +%FT%TZ) $SECONDS_EACH s" >> "$WORK/campaign.log"
    PYTHONPATH=src:. "$PY" fuzz/run.py "$t" "$WORK/$t" "fuzz/corpus/$t" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2560 \
        -print_final_stats=1 -artifact_prefix="$WORK/artifacts-$t/" \
        > "$WORK/$t.log" 2>&1
    echo "== $t exit $? $(date -u +%FT%TZ)" >> "$WORK/campaign.log"
done
