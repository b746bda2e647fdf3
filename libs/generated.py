"""Files generated from code and committed (schemas/, infra/k8s/): compare, write, and the
`--check` command line both generators share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def diff(want: dict[str, str], directory: Path, pattern: str, source: str) -> list[str]:
    """Human-readable differences between the files in `directory` and `want` (name → text);
    files matching `pattern` that nothing generates are stale."""
    problems = []
    for name, text in want.items():
        p = directory / name
        if not p.exists():
            problems.append(f"missing: {p}")
        elif p.read_text(encoding="utf-8") != text:
            problems.append(f"differs from {source}: {p}")
    for p in sorted(directory.glob(pattern)):
        if p.name not in want:
            problems.append(f"stale (nothing generates it): {p}")
    return problems


def write(want: dict[str, str], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in want.items():
        p = directory / name
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            written.append(p)
    return written


def main(
    argv: list[str] | None,
    *,
    prog: str,
    doc: str,
    default_dir: Path,
    generate: Callable[[], dict[str, str]],
    check: Callable[[Path], list[str]],
) -> int:
    """`prog [--dir DIR] [--check]`: write the files, or exit 1 when the committed ones differ."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if committed files differ")
    ap.add_argument("--dir", type=Path, default=default_dir)
    args = ap.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print(f"run: {prog}", file=sys.stderr)
            return 1
        print(f"up to date ({len(generate())} files in {args.dir})")
        return 0
    want = generate()
    written = write(want, args.dir)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(want)} files in {args.dir} ({len(written)} changed)")
    return 0
