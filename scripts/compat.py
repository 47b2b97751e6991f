"""``make compat``: the conformance tests against a matrix of transformers releases.

Each transformers version gets its own virtual environment (``.venv-compat/transformers-V``)
holding that transformers and the packages it resolves. Everything else (torch, torchvision,
qwen-vl-utils, the video decoders, pytest, vlprep itself) comes from the pinned test venv
through a ``.pth`` file appended *after* the compat venv's own site-packages, so the compat
venv's transformers always wins and a multi-GB torch is installed once. The packages both
venvs share are held to ``constraints.txt``; transformers' own dependencies
(``huggingface_hub``, ``tokenizers``, ...) float to whatever that release accepts, and the
versions resolved are printed with the table.

Prints a table version x test file -> pass/fail and, with ``--out``, writes it into that
Markdown file between the ``compat:begin`` / ``compat:end`` markers. Exits 1 if any cell
failed. Standard library only; run it with the test venv's Python.

    python scripts/compat.py --versions "5.3.0 5.14.1 5.24.0 5.25.0" --out docs/compatibility.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VERSIONS = "5.3.0 5.9.0 5.14.1 5.24.0 5.25.0"
DEFAULT_TESTS = (
    "tests/test_compat.py",
    "tests/test_inputs.py",
    "tests/test_image_conformance.py",
    "tests/test_video.py",
    "tests/test_positions.py",
    "tests/test_runner.py",
)
# Left to float with the transformers release under test (its own requirements).
FLOATING = {
    "transformers",
    "huggingface-hub",
    "huggingface_hub",
    "tokenizers",
    "hf-xet",
    "safetensors",
    "typer",
    "kernels",
}
BEGIN, END = "<!-- compat:begin -->", "<!-- compat:end -->"


def _name(line: str) -> str:
    return re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def _shared_constraints(work: Path) -> Path:
    """constraints.txt without the packages that follow the transformers release."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    floating = {n.replace("_", "-") for n in FLOATING}
    kept = [
        ln for ln in lines if ln.strip() and not ln.startswith("#") and _name(ln) not in floating
    ]
    path = work / "constraints-shared.txt"
    path.write_text("\n".join(kept) + "\n")
    return path


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


def ensure_venv(version: str, work: Path, base_site: str) -> Path:
    venv = work / f"transformers-{version}"
    ready = venv / ".ready"
    stamp = f"{version}\n{(REPO / 'constraints.txt').read_text()}"
    if ready.is_file() and ready.read_text() == stamp:
        return venv
    if not (venv / "bin" / "python").exists():
        done = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        if done.returncode:
            raise SystemExit(f"venv for {version} failed:\n{done.stderr}")
    python = str(venv / "bin" / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    # Appended after the venv's own site-packages: the compat transformers shadows the base.
    Path(site.stdout.strip(), "_vlprep_base.pth").write_text(
        f"import site; site.addsitedir({base_site!r})\n"
    )
    # pip from the base venv, installing into this venv's site-packages.
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(_shared_constraints(work)),
            f"transformers[kernels]=={version}",
        ]
    )
    if done.returncode:
        raise SystemExit(f"pip install transformers=={version} failed:\n{done.stderr[-4000:]}")
    ready.write_text(stamp)
    return venv


def resolved(venv: Path) -> str:
    code = (
        "import importlib.metadata as m\n"
        "for n in ('transformers', 'huggingface_hub', 'tokenizers', 'torch', 'qwen-vl-utils'):\n"
        "    print(f'{n}=={m.version(n)}')\n"
    )
    return " ".join(_run([str(venv / "bin" / "python"), "-c", code]).stdout.split())


Counts = tuple[int, int, int, int]  # passed, failed, skipped, xfailed (strict: expected)


def run_tests(venv: Path, tests: list[str]) -> tuple[dict[str, Counts], str]:
    """Per test file: (passed, failed, skipped, xfailed)."""
    junit = venv / "junit.xml"
    junit.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *tests,
        ],
        cwd=REPO,
        env=env,
    )
    counts: dict[str, list[int]] = {t: [0, 0, 0, 0] for t in tests}
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            module = case.get("classname", "").split(".")
            path = next((t for t in tests if Path(t).stem in module), None)
            if path is None:
                continue
            skipped = case.find("skipped")
            if case.find("failure") is not None or case.find("error") is not None:
                counts[path][1] += 1
            elif skipped is not None and skipped.get("type") == "pytest.xfail":
                counts[path][3] += 1
            elif skipped is not None:
                counts[path][2] += 1
            else:
                counts[path][0] += 1
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    if done.returncode not in (0, 1):  # collection/usage errors: mark every file failed
        for t in tests:
            if sum(counts[t]) == 0:
                counts[t][1] = 1
    return {t: (c[0], c[1], c[2], c[3]) for t, c in counts.items()}, tail


def cell(passed: int, failed: int, skipped: int, xfailed: int) -> str:
    if failed:
        return f"**FAIL** ({failed} of {passed + failed + xfailed})"
    text = f"pass ({passed})"
    if xfailed:
        text += f", {xfailed} xfailed"
    return text + (f", {skipped} skipped" if skipped else "")


def table(results: dict[str, dict[str, Counts]], envs: dict[str, str], tests: list[str]) -> str:
    head = "| transformers | " + " | ".join(f"`{Path(t).name}`" for t in tests) + " |"
    rule = "|---" * (len(tests) + 1) + "|"
    rows = [f"| {v} | " + " | ".join(cell(*results[v][t]) for t in tests) + " |" for v in results]
    lines = [head, rule, *rows, "", "Resolved in each venv:", ""]
    lines += [f"- {v}: `{envs[v]}`" for v in results]
    return "\n".join(lines)


def write_out(path: Path, body: str, versions: list[str]) -> None:
    stamp = datetime.date.today().isoformat()
    block = (
        f'{BEGIN}\nMeasured {stamp} with `make compat COMPAT_VERSIONS="{" ".join(versions)}"`'
        f" (Python {sys.version.split()[0]}):\n\n{body}\n{END}"
    )
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--versions",
        default=DEFAULT_VERSIONS,
        help=f"space-separated transformers versions (default {DEFAULT_VERSIONS!r})",
    )
    parser.add_argument("--tests", nargs="*", default=list(DEFAULT_TESTS))
    parser.add_argument("--work", type=Path, default=REPO / ".venv-compat")
    parser.add_argument("--out", type=Path, help="Markdown file to write the table into")
    args = parser.parse_args(argv)
    versions = args.versions.split()
    args.work.mkdir(parents=True, exist_ok=True)
    base_site = sysconfig.get_paths()["purelib"]
    results: dict[str, dict[str, Counts]] = {}
    envs: dict[str, str] = {}
    failed = False
    for version in versions:
        print(f"== transformers {version}", flush=True)
        venv = ensure_venv(version, args.work, base_site)
        envs[version] = resolved(venv)
        results[version], tail = run_tests(venv, args.tests)
        bad = any(c[1] for c in results[version].values())
        failed |= bad
        print(tail if bad else tail.strip().splitlines()[-1], flush=True)
    body = table(results, envs, args.tests)
    print(body)
    if args.out:
        write_out(args.out, body, versions)
        print(f"table written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
