#!/usr/bin/python3
"""selftest.py — proves that make lint's checks fail on what they are there to catch
(make lint-selftest; make lint runs it too).

Copies user/, include/, tools/lint/ and .clang-format of the tree into a directory under /tmp and
runs that copy's includes.py there, once as it is (the baseline: whatever the tree violates
today) and once per plant, each in a fresh copy:
  1. an upward include: the first module of the lowest layer that has a .c file includes the
     header of the first module of the highest layer that has one;
  2. an unused include: a .c file of the highest layer includes a header of a lower layer that
     it names nothing of (and that defines no struct, so that the layout rule cannot count it);
  3. a cycle of two modules: two modules of one layer, in no cycle and neither including the
     other's header, include each other's ("/* lint: keep */", so only the cycle is new);
  4. "// lint: keep": the include of 2 with that marker, which must then not be reported;
  5. a file of user/ whose module is in no layer, and an entry of layers.txt with no file;
and expects exit status 1 with the planted include's message, which the baseline lacks (4: the
baseline's messages exactly). Then it appends a badly formatted line to a C file of a copy and
expects tools/lint/format.sh (which takes its find fallback there: no git) to fail naming it.
The candidates for each plant are picked from the copy as it is, so the test follows the code.

Usage: selftest.py [--root DIR]. Exit status 0 if every plant was caught, else 1.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the tree
import includes  # noqa: E402

COPY = ("user", "include", "tools/lint", ".clang-format")


def copy_tree(root, dst):
    for p in COPY:
        src, to = os.path.join(root, p), os.path.join(dst, p)
        if os.path.isdir(src):
            shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            os.makedirs(os.path.dirname(to), exist_ok=True)
            shutil.copy2(src, to)


def run_check(tree):
    r = subprocess.run(
        [sys.executable, os.path.join(tree, "tools", "lint", "includes.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return r.returncode, r.stdout


def messages(out):
    """The violation lines of includes.py's output (not its summary lines)."""
    return [x for x in out.splitlines() if x and not x.startswith("includes: ")]


def plant(tree, rel, header, marker=""):
    """Adds #include "header" to tree/rel after its last include (or at its top); its line."""
    path = os.path.join(tree, rel)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    last = max((i for i, x in enumerate(lines) if includes.INCLUDE_RE.match(x)), default=-1)
    lines.insert(last + 1, f'#include "{header}"' + (" " + marker if marker else ""))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return last + 2


def header_of(m, mod):
    return next((f for f in m.files_of[mod] if f.endswith(".h")), None)


def source_of(m, mod):
    return next((f for f in m.files_of[mod] if f.endswith(".c")), None)


def by_layer(m):
    """Modules in layers.txt's order, lowest layer first."""
    return sorted(m.layer, key=lambda x: (m.layer[x], m.listed_at[x]))


def pick_upward(m):
    mods = by_layer(m)
    low = next(x for x in mods if source_of(m, x))
    high = next(x for x in reversed(mods) if header_of(m, x) and m.layer[x] > m.layer[low])
    return low, high


def pick_unused(m):
    mods = by_layer(m)
    for a in reversed(mods):
        src = source_of(m, a)
        if not src or not src.startswith("user/"):
            continue
        idents = m.tree.idents(src)
        have = {i.target for i in m.tree.includes(src)}
        for b in mods:
            h = header_of(m, b)
            if not h or b == a or m.layer[b] >= m.layer[a] or h in have:
                continue
            d = m.tree.decls(h)
            if not d.tags and not d.names & idents:
                return a, b
    raise SystemExit("lint-selftest: no file and header for an unused include")


def pick_cycle(m):
    in_cycle = {x for comp in m.sccs() for x in comp}
    mods = [x for x in by_layer(m) if source_of(m, x) and header_of(m, x) and x not in in_cycle]
    mods = [x for x in mods if source_of(m, x).startswith("user/")]
    for i, a in enumerate(mods):
        for b in mods[i + 1 :]:
            if m.layer[a] == m.layer[b] and not m.reaches(a, b) and not m.reaches(b, a):
                return a, b
    raise SystemExit("lint-selftest: no two modules of one layer for a cycle")


class Result:
    def __init__(self):
        self.failed = 0

    def caught(self, what, ok, out, label="caught"):
        if ok:
            print(f"  {label}: {what}")
        else:
            self.failed += 1
            print(f"  FAILED, expected: {what}; the check printed:")
            print("    " + "\n    ".join(out.splitlines()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(HERE)))
    root = os.path.abspath(ap.parse_args().root)
    work = tempfile.mkdtemp(prefix="ktlsd-lint-selftest.")
    res = Result()
    try:
        base = os.path.join(work, "base")
        copy_tree(root, base)
        m = includes.Model(base, os.path.join(base, "tools", "lint", "layers.txt"))
        rc0, out0 = run_check(base)
        base_msgs = messages(out0)
        print(f"lint-selftest: in a copy under {work}; the check as is: exit {rc0}, "
              f"{len(base_msgs)} lines of violations (the baseline)")

        def fresh(name):
            d = os.path.join(work, name)
            copy_tree(root, d)
            return d

        def new_lines(out):
            return [x for x in messages(out) if x not in base_msgs]

        # 1. upward include.
        low, high = pick_upward(m)
        t, src, hdr = fresh("upward"), source_of(m, low), os.path.basename(header_of(m, high))
        n = plant(t, src, hdr)
        want = (f'{src}:{n}: upward include "{hdr}": module {low} (layer {m.layer[low]}) '
                f"includes module {high} (layer {m.layer[high]})")
        print(f'planted an upward include: {src}:{n}: #include "{hdr}" (module {low}, layer '
              f"{m.layer[low]}, includes {high}, layer {m.layer[high]})")
        rc, out = run_check(t)
        res.caught(want, rc == 1 and want in new_lines(out), out)

        # 2. unused include; 4. the same with // lint: keep.
        a, b = pick_unused(m)
        src, hdr = source_of(m, a), os.path.basename(header_of(m, b))
        t = fresh("unused")
        n = plant(t, src, hdr)
        print(f'planted an unused include: {src}:{n}: #include "{hdr}" ({os.path.basename(src)} '
              f"names none of what {hdr} declares)")
        rc, out = run_check(t)
        want = f'{src}:{n}: unused include "{hdr}": '
        res.caught(want + "...", rc == 1 and any(x.startswith(want) for x in new_lines(out)), out)

        t = fresh("keep")
        n = plant(t, src, hdr, "// lint: keep")
        print(f'planted the same with the marker: {src}:{n}: #include "{hdr}" // lint: keep')
        rc, out = run_check(t)
        ok = rc == rc0 and sorted(messages(out)) == sorted(base_msgs)
        res.caught("the check printed the baseline's messages and no other", ok, out,
                   label="not reported, as it must not be")

        # 3. a cycle of two modules.
        a, b = pick_cycle(m)
        t = fresh("cycle")
        sa, sb = source_of(m, a), source_of(m, b)
        ha, hb = os.path.basename(header_of(m, a)), os.path.basename(header_of(m, b))
        na = plant(t, sa, hb, "/* lint: keep */")
        nb = plant(t, sb, ha, "/* lint: keep */")
        print(f'planted a cycle of two modules of layer {m.layer[a]}: {sa}:{na}: #include "{hb}" '
              f'and {sb}:{nb}: #include "{ha}"')
        rc, out = run_check(t)
        x, y = sorted((a, b))
        want = [
            f"include cycle among 2 modules: {x}, {y}",
            f'  {sa}:{na}: #include "{hb}" ({a} -> {b})',
            f'  {sb}:{nb}: #include "{ha}" ({b} -> {a})',
        ]
        lines = out.splitlines()
        ok = rc == 1 and want[0] in lines
        if ok:
            i = lines.index(want[0])
            block = lines[i + 1 : i + 1 + len(want) - 1]
            ok = sorted(block) == sorted(want[1:])
        res.caught(" / ".join(w.strip() for w in want), ok, out)

        # 5. layers.txt: a module in no layer, and an entry without files.
        t = fresh("layers")
        with open(os.path.join(t, "user", "lint_selftest_new.c"), "w", encoding="utf-8") as f:
            f.write("int lint_selftest_new;\n")
        lt = os.path.join(t, "tools", "lint", "layers.txt")
        with open(lt, encoding="utf-8") as f:
            n = len(f.read().splitlines()) + 1
        with open(lt, "a", encoding="utf-8") as f:
            f.write("0 lint_selftest_gone\n")
        print("planted user/lint_selftest_new.c, in no layer, and the entry "
              f"tools/lint/layers.txt:{n}: 0 lint_selftest_gone, which has no file")
        rc, out = run_check(t)
        want = [
            "user/lint_selftest_new.c: module lint_selftest_new is in no layer of "
            "tools/lint/layers.txt",
            f"tools/lint/layers.txt:{n}: stale entry: module lint_selftest_gone (layer 0) has no "
            "file (user/lint_selftest_gone.c, .h, .S or include/lint_selftest_gone.h)",
        ]
        got = new_lines(out)
        res.caught(" / ".join(want), rc == 1 and all(w in got for w in want), out)

        # 6. format: a line clang-format would write otherwise.
        t = fresh("format")
        src = source_of(m, by_layer(m)[-1]) or "user/main.c"
        with open(os.path.join(t, src), "a", encoding="utf-8") as f:
            f.write("static  int   lint_selftest_badly_formatted ;\n")
        print(f"planted a badly formatted line at the end of {src}")
        r = subprocess.run(
            ["sh", os.path.join(t, "tools", "lint", "format.sh"), t],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        listed = [x.strip() for x in r.stdout.splitlines() if x.startswith("  ")]
        res.caught(f"format.sh lists {src} (and only it)",
                   r.returncode == 1 and listed == [src], r.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if res.failed:
        print(f"lint-selftest: FAILED: {res.failed} plants not caught")
        return 1
    print("lint-selftest: every planted violation was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
