"""Command-line entry points: ``vlprep-run`` (and ``vlprep-inspect``)."""
