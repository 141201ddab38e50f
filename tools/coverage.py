#!/usr/bin/python3
"""coverage.py — line coverage of some sources from gcov's counts (make coverage).

Usage: coverage.py --build DIR [--min PERCENT] SOURCE...

Each SOURCE (a path relative to the top of the tree, e.g. user/conn.c) must have been compiled
into DIR/SOURCE-without-.c.o with --coverage, and the programs that link it run since (their
counts are in DIR/...gcda). For each SOURCE this runs gcov --json-format --stdout on it and
counts, as gcov's own "Lines executed" does, the lines of SOURCE that have code (every line gcov
reports) and those of them that ran at least once; the lines of headers it includes are not
counted. Prints a table: per file, lines executed / executable lines and the percentage, then the
total of them all. Exit status 1 when the total is below PERCENT (default 0) or gcov fails.
"""

import argparse
import json
import os
import subprocess
import sys


def file_lines(build, src):
    """(executed, executable, note) for one source."""
    stem = os.path.splitext(src)[0]
    gcno = os.path.join(build, stem + ".gcno")
    if not os.path.exists(gcno):
        raise SystemExit(f"coverage: {gcno} is missing: {src} was not compiled with --coverage")
    note = "" if os.path.exists(os.path.join(build, stem + ".gcda")) else "never run (no .gcda)"
    r = subprocess.run(
        ["gcov", "--json-format", "--stdout", "--object-directory", os.path.dirname(gcno), src],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"coverage: gcov failed on {src} (exit {r.returncode}):\n{r.stderr}")
    counts = {}  # line number -> executed at least once
    want = os.path.realpath(src)
    for doc in r.stdout.splitlines():  # one JSON document per line (per .gcda read)
        if not doc.strip():
            continue
        for f in json.loads(doc).get("files", []):
            if os.path.realpath(f["file"]) != want:
                continue
            for ln in f["lines"]:
                n = ln["line_number"]
                counts[n] = counts.get(n, False) or ln["count"] > 0
    return sum(counts.values()), len(counts), note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the tree built with --coverage")
    ap.add_argument("--min", type=float, default=0.0, help="least total percentage")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()

    rows = [(src, *file_lines(args.build, src)) for src in args.sources]
    w = max(len("total"), *(len(r[0]) for r in rows))
    pct = lambda e, n: 100.0 * e / n if n else 0.0  # noqa: E731
    print(f"coverage: lines the unit tests executed ({args.build}, gcov)")
    print(f"  {'file':<{w}}  {'executed':>8} / {'lines':<5}  {'%':>6}")
    for src, e, n, note in rows:
        print(f"  {src:<{w}}  {e:>8} / {n:<5}  {pct(e, n):>6.2f}" + (f"  {note}" if note else ""))
    te, tn = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"  {'total':<{w}}  {te:>8} / {tn:<5}  {pct(te, tn):>6.2f}")
    if te * 100 < args.min * tn or tn == 0:
        print(f"coverage: FAILED: {pct(te, tn):.2f} % of the lines ran, below COVERAGE_MIN "
              f"{args.min:g} %")
        return 1
    print(f"coverage: ok: {pct(te, tn):.2f} % of the lines ran (COVERAGE_MIN {args.min:g} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
