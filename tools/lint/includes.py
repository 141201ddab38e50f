#!/usr/bin/python3
"""includes.py — the include layers of user/ (make lint; the layers are in tools/lint/layers.txt).

A module is user/X.c, user/X.h and user/X.S with the same stem X (layers.txt may give a module
files of other names: "policy+policy_data.S"), or a header include/X.h (include/ is shared with
the BPF programs and must be in layer 0). layers.txt puts every module in a numbered layer, lower
= more basic. Only the quoted includes of the files of user/ are checked; <...> includes are
ignored, and so are the headers the build generates (GENERATED below). A quoted include resolves
as the compiler's -Iuser -Iinclude does: user/x.h, else include/x.h.

The check fails on:
  a. an upward include: a file of module A includes the header of module B, and B's layer is
     higher than A's;
  b. an include cycle: modules whose files include each other's headers, directly or through
     other headers (a strongly connected component of the graph "a file of A includes a header of
     B", A != B), whatever their layers; each is printed with the include lines that form it;
  c. an unused include: #include "x.h" in a file that uses nothing of x.h. The include is used
     when, after comments and string literals are removed from both,
       1. the file names an identifier that x.h itself declares or defines: a function (declared
          or defined inline), a macro (except the include guard), a typedef, a struct, union or
          enum tag that x.h defines with a body (a forward declaration "struct foo;" does not
          count), an enum constant, or a variable (extern or not); identifiers x.h only gets
          from the headers it includes do not count; or
       2. x.h defines a struct or union whose tag another header the file includes names as
          "struct TAG" or "union TAG" (that header, or one it includes in turn, not counting x.h
          and what the file reaches only through x.h): the file may reach that struct's fields
          through the other header's declarations, e.g. c->w->now_ms with conn.h's struct worker
          *w and worker.h's struct worker (layout use), which no text search can tell apart.
     An include of a header of the file's own module is always used (X.c including X.h, or
     certstore.c including certstore_int.h, which layers.txt gives module certstore). A parser
     of regular expressions, not a compiler: an include it cannot see the use of (a field reached
     through a pointer some function returns) is marked at the end of its line with
     "// lint: keep" or "/* lint: keep */". The marker silences only this check, never a or b;
  d. a file of user/ or include/ whose module is in no layer, a module listed twice, an entry of
     layers.txt with no file (stale), or a quoted include found neither in user/ nor in include/.

Usage: includes.py [--root DIR] [--layers FILE]. Prints each violation as FILE:LINE: ..., then a
summary line with the count of each kind; exits 1 if there is any violation, else 0.
"""

import argparse
import os
import re
import sys

# Headers the build writes under $(B) (bpftool's skeleton and BTF dump), never in the tree.
GENERATED = {"ktlsd.skel.h", "vmlinux.h"}
# Modules come from these directories, with the suffixes a module's files may have.
SRC_DIRS = (("user", (".c", ".h", ".S")), ("include", (".h",)))

KEYWORDS = set(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
    _Imaginary _Noreturn _Static_assert _Thread_local static_assert typeof __typeof__ __inline
    __inline__ __restrict __restrict__ __const __volatile__ __extension__ __attribute__
    __attribute asm __asm __asm__ bool""".split()
)
# Macros that stand for a type (clang-format's TypenameMacros): "STACK_OF(X509) *f(void)" is f.
TYPE_MACROS = {"STACK_OF"}
AGGREGATE = ("struct", "union", "enum")

INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*(["<])([^">]+)[">]')
KEEP_RE = re.compile(r"(//[ \t]*lint:[ \t]*keep|/\*[ \t]*lint:[ \t]*keep[ \t]*\*/)[ \t]*$")
TOKEN_RE = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")
IDENT_RE = re.compile(r"[A-Za-z_]\w*")


def is_ident(t):
    return bool(IDENT_RE.fullmatch(t))


def strip_comments(text, strings=False):
    """text without its comments (each a space; newlines kept, so lines keep their numbers); with
    strings=True also without the contents of string and character literals ("" and '')."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j
        elif c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + c if strings else text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_preprocessor(text):
    """(directives, rest): the logical preprocessor lines of text (continuations joined), and text
    with them blanked."""
    lines = text.split("\n")
    directives, rest = [], []
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("#"):
            d = lines[i]
            rest.append("")
            while d.endswith("\\") and i + 1 < len(lines):
                i += 1
                d = d[:-1] + " " + lines[i]
                rest.append("")
            directives.append(d.strip())
        else:
            rest.append(lines[i])
        i += 1
    return directives, "\n".join(rest)


def match_close(toks, i):
    """Index of the bracket closing the one at toks[i] (or len(toks))."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[toks[i]]]
    j = i + 1
    while j < len(toks) and stack:
        t = toks[j]
        if t in pairs:
            stack.append(pairs[t])
        elif t == stack[-1]:
            stack.pop()
        j += 1
    return j - 1


def drop_attributes(stmt):
    out = []
    i = 0
    while i < len(stmt):
        t = stmt[i]
        if t in ("__attribute__", "__attribute", "asm", "__asm", "__asm__") and (
            i + 1 < len(stmt) and stmt[i + 1] == "("
        ):
            i = match_close(stmt, i + 1) + 1
            continue
        out.append(t)
        i += 1
    return out


def split_top(toks, sep):
    """toks split at each sep outside brackets."""
    parts, cur, depth = [], [], 0
    for t in toks:
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
        if t == sep and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


def function_name(stmt):
    """The name a declaration with a parameter list declares: the identifier before the first
    "(" outside brackets, or NAME in "(*NAME)(...)" (a function pointer)."""
    i = 0
    while i < len(stmt):
        t = stmt[i]
        if t == "(":
            prev = stmt[i - 1] if i else ""
            if prev in TYPE_MACROS:
                i = match_close(stmt, i) + 1
                continue
            if is_ident(prev) and prev not in KEYWORDS:
                return prev
            inner = stmt[i + 1 : match_close(stmt, i)]
            names = [x for x in inner if is_ident(x) and x not in KEYWORDS]
            return names[0] if inner[:1] == ["*"] and names else None
        if t in "[{":
            i = match_close(stmt, i) + 1
            continue
        i += 1
    return None


def declarator_name(part):
    """The identifier a declarator (with its type, for the first of a list) declares, or None for
    a bare type ("struct foo")."""
    toks = split_top(part, "=")[0]
    if "(" in toks:
        return function_name(toks)
    names, i = [], 0
    while i < len(toks):
        if toks[i] == "[":
            i = match_close(toks, i) + 1
            continue
        if toks[i] == ":":  # a bit-field's width
            break
        names.append((i, toks[i]))
        i += 1
    for k in range(len(names) - 1, -1, -1):
        j, t = names[k]
        if is_ident(t) and t not in KEYWORDS and t not in TYPE_MACROS:
            before = names[k - 1][1] if k else ""
            return None if before in AGGREGATE else t
    return None


class Decls:
    def __init__(self):
        self.names = set()  # every identifier the header declares or defines
        self.tags = set()  # struct and union tags it defines with a body


def scan_aggregate_body(kind, body, d):
    """Enum constants of an enum body; tags and constants of aggregates nested in a struct's (C
    puts them in file scope)."""
    if kind == "enum":
        for item in split_top(body, ","):
            if item and is_ident(item[0]):
                d.names.add(item[0])
        return
    i = 0
    while i < len(body):
        if body[i] == "{":
            j = match_close(body, i)
            pre = body[max(0, i - 2) : i]
            if pre[-1:] and pre[-1] in AGGREGATE:
                scan_aggregate_body(pre[-1], body[i + 1 : j], d)
            elif len(pre) == 2 and pre[0] in AGGREGATE and is_ident(pre[1]):
                d.names.add(pre[1])
                if pre[0] != "enum":
                    d.tags.add(pre[1])
                scan_aggregate_body(pre[0], body[i + 1 : j], d)
            i = j + 1
        else:
            i += 1


def finish_statement(stmt, d):
    stmt = drop_attributes(stmt)
    if not stmt:
        return
    typedef = stmt[0] == "typedef"
    head = split_top(stmt, "=")[0]
    if not typedef and "(" in head and "{}" not in head:
        name = function_name(head)
        if name:
            d.names.add(name)
        return
    for part in split_top(stmt, ","):
        name = declarator_name(part)
        if name and name != "typedef":
            d.names.add(name)


def header_decls(text):
    """Decls of a header's text (comments and strings already stripped)."""
    d = Decls()
    directives, body = split_preprocessor(text)
    guard = None
    if len(directives) >= 2:
        m1 = re.fullmatch(r"#\s*ifndef\s+(\w+)", directives[0])
        m2 = re.fullmatch(r"#\s*define\s+(\w+)", directives[1])
        if m1 and m2 and m1.group(1) == m2.group(1):
            guard = m1.group(1)
    for dv in directives:
        m = re.match(r"#\s*define\s+([A-Za-z_]\w*)", dv)
        if m and m.group(1) != guard:
            d.names.add(m.group(1))
    toks = TOKEN_RE.findall(body)
    stmt, i = [], 0
    while i < len(toks):
        t = toks[i]
        if t == "{":
            j = match_close(toks, i)
            pre = stmt[-2:]
            if pre[-1:] and pre[-1] in AGGREGATE:
                scan_aggregate_body(pre[-1], toks[i + 1 : j], d)
                stmt.append("{}")
            elif len(pre) == 2 and pre[0] in AGGREGATE and is_ident(pre[1]):
                d.names.add(pre[1])
                if pre[0] != "enum":
                    d.tags.add(pre[1])
                scan_aggregate_body(pre[0], toks[i + 1 : j], d)
                stmt.append("{}")
            elif pre[-1:] == ["="]:
                stmt.append("{}")
            else:  # a function's body
                name = function_name(drop_attributes(stmt))
                if name:
                    d.names.add(name)
                stmt = []
            i = j + 1
            continue
        if t == ";":
            finish_statement(stmt, d)
            stmt = []
        else:
            stmt.append(t)
        i += 1
    d.names -= KEYWORDS
    return d


class Include:
    def __init__(self, src, line, header, target, keep):
        self.src = src  # path of the including file, relative to the root
        self.line = line
        self.header = header  # as written
        self.target = target  # path it resolves to, or None
        self.keep = keep


class Tree:
    """The files of a tree and what they include."""

    def __init__(self, root):
        self.root = root
        self.files = []  # relative paths of every module file, sorted
        for d, suffixes in SRC_DIRS:
            p = os.path.join(root, d)
            if os.path.isdir(p):
                for f in sorted(os.listdir(p)):
                    if f.endswith(suffixes) and os.path.isfile(os.path.join(p, f)):
                        self.files.append(d + "/" + f)
        self._text = {}
        self._includes = {}

    def raw(self, rel):
        if rel not in self._text:
            with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
                self._text[rel] = f.read()
        return self._text[rel]

    def resolve(self, header):
        for d in ("user", "include"):
            if d + "/" + header in self.files:
                return d + "/" + header
        return None

    def includes(self, rel):
        """The quoted includes of a file (not those in comments)."""
        if rel not in self._includes:
            self._includes[rel] = self._scan_includes(rel)
        return self._includes[rel]

    def _scan_includes(self, rel):
        raw_lines = self.raw(rel).split("\n")
        out = []
        for n, line in enumerate(strip_comments(self.raw(rel)).split("\n"), 1):
            m = INCLUDE_RE.match(line)
            if m and m.group(1) == '"':
                h = m.group(2)
                keep = bool(KEEP_RE.search(raw_lines[n - 1]))
                out.append(Include(rel, n, h, self.resolve(h), keep))
        return out

    def idents(self, rel):
        """Identifiers of a file outside comments, strings and its include lines."""
        text = strip_comments(self.raw(rel), strings=True)
        text = "\n".join("" if INCLUDE_RE.match(x) else x for x in text.split("\n"))
        return set(IDENT_RE.findall(text))

    def decls(self, rel):
        return header_decls(strip_comments(self.raw(rel), strings=True))

    def aggregate_mentions(self, rel):
        text = strip_comments(self.raw(rel), strings=True)
        return set(re.findall(r"\b(?:struct|union)\s+([A-Za-z_]\w*)", text))


def parse_layers(path):
    """[(line, layer, module, [extra files])] and errors, from layers.txt."""
    entries, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if not words[0].isdigit():
                errors.append(f"{n}: expected a layer number first: {line}")
                continue
            for w in words[1:]:
                name, *extra = w.split("+")
                entries.append((n, int(words[0]), name, extra))
    return entries, errors


def reached(tree, headers, skip):
    """The headers of the tree that headers include, directly or through others, themselves
    included, without going through skip."""
    seen, todo = set(), [h for h in headers if h != skip]
    while todo:
        h = todo.pop()
        if h in seen:
            continue
        seen.add(h)
        todo.extend(i.target for i in tree.includes(h) if i.target and i.target != skip)
    return seen


def stem(rel):
    return os.path.splitext(os.path.basename(rel))[0]


class Model:
    """A tree's modules, their layers and the includes between them (d's problems on the way)."""

    def __init__(self, root, layers_path):
        self.tree = tree = Tree(root)
        lp = os.path.relpath(layers_path, root) if layers_path.startswith(root + "/") else layers_path
        self.layers_name = lp
        self.problems = problems = []  # d, and includes that resolve to nothing
        self.layer, self.module_of, self.files_of, self.listed_at = {}, {}, {}, {}
        layer, module_of, files_of, listed_at = self.layer, self.module_of, self.files_of, self.listed_at

        entries, errors = parse_layers(layers_path)
        for e in errors:
            problems.append([f"{lp}:{e}"])
        for n, lay, name, extra in entries:
            if name in layer:
                problems.append(
                    [f"{lp}:{n}: module {name} is listed twice (first at line {listed_at[name]})"]
                )
                continue
            layer[name], listed_at[name] = lay, n
            files = [f for f in tree.files if stem(f) == name]
            for x in extra:
                if "user/" + x in tree.files:
                    files.append("user/" + x)
                else:
                    problems.append([f"{lp}:{n}: stale entry: {name}+{x}: there is no user/{x}"])
            if not files:
                problems.append(
                    [
                        f"{lp}:{n}: stale entry: module {name} (layer {lay}) has no file "
                        f"(user/{name}.c, .h, .S or include/{name}.h)"
                    ]
                )
            if any(f.startswith("include/") for f in files) and lay != 0:
                problems.append([f"{lp}:{n}: module {name} is in include/, which is layer 0"])
            if len({os.path.dirname(f) for f in files if f.endswith(".h")}) > 1:
                problems.append([f"{lp}:{n}: module {name} has a header in both user/ and include/"])
            files_of[name] = files
            for f in files:
                if f in module_of:
                    problems.append([f"{lp}:{n}: {f} is in module {module_of[f]} already"])
                else:
                    module_of[f] = name
        for f in tree.files:
            if f not in module_of:
                problems.append([f"{f}: module {stem(f)} is in no layer of {lp}"])

        # Every quoted include of user/, resolved; the module graph.
        self.checked = [f for f in tree.files if f.startswith("user/")]
        self.incs = []
        for f in self.checked:
            for inc in tree.includes(f):
                if inc.target is None:
                    if os.path.basename(inc.header) not in GENERATED:
                        problems.append(
                            [f'{f}:{inc.line}: "{inc.header}" is neither in user/ nor in include/']
                        )
                    continue
                self.incs.append(inc)
        self.edges = {}  # (A, B) -> [Include], A != B
        for inc in self.incs:
            a, b = module_of.get(inc.src), module_of.get(inc.target)
            if a is not None and b is not None and a != b:
                self.edges.setdefault((a, b), []).append(inc)

    def sccs(self):
        """The strongly connected components of more than one module (Tarjan), sorted."""
        succ = {}
        for a, b in sorted(self.edges):
            succ.setdefault(a, []).append(b)
        index, low, on, stack, out = {}, {}, set(), [], []

        def visit(v):
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in succ.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(10000)
        for v in sorted(succ):
            if v not in index:
                visit(v)
        return sorted(out)

    def reaches(self, a, b):
        """Whether module a includes module b's header, directly or through other modules."""
        seen, todo = set(), [a]
        while todo:
            v = todo.pop()
            if v == b:
                return True
            if v not in seen:
                seen.add(v)
                todo.extend(y for (x, y) in self.edges if x == v)
        return False


def check(root, layers_path):
    """(violations, summary, any unused): each violation a list of lines."""
    m = Model(root, layers_path)
    tree, layer, module_of = m.tree, m.layer, m.module_of
    v_up, v_cycle, v_unused = [], [], []

    # a. upward includes.
    for inc in m.incs:
        a, b = module_of.get(inc.src), module_of.get(inc.target)
        if a is not None and b is not None and layer[b] > layer[a]:
            v_up.append(
                [
                    f'{inc.src}:{inc.line}: upward include "{inc.header}": module {a} '
                    f"(layer {layer[a]}) includes module {b} (layer {layer[b]})"
                ]
            )

    # b. include cycles.
    for comp in m.sccs():
        lines = [f"include cycle among {len(comp)} modules: {', '.join(comp)}"]
        members = set(comp)
        for (a, b), lst in sorted(m.edges.items()):
            if a in members and b in members:
                for inc in lst:
                    lines.append(f'  {inc.src}:{inc.line}: #include "{inc.header}" ({a} -> {b})')
        v_cycle.append(lines)

    # c. unused includes.
    decls = {}
    for f in m.checked:
        f_incs = [i for i in m.incs if i.src == f]
        idents = None
        for inc in f_incs:
            if inc.keep or module_of.get(inc.target, inc.target) == module_of.get(f, f):
                continue
            if inc.target not in decls:
                decls[inc.target] = tree.decls(inc.target)
            d = decls[inc.target]
            if idents is None:
                idents = tree.idents(f)
            if d.names & idents:
                continue
            others = set()
            for h in reached(tree, [o.target for o in f_incs], inc.target):
                others |= tree.aggregate_mentions(h)
            if d.tags & others:
                continue
            v_unused.append(
                [
                    f'{f}:{inc.line}: unused include "{inc.header}": {os.path.basename(f)} names '
                    f"none of the {len(d.names)} identifiers {inc.header} declares"
                ]
            )

    violations = m.problems + v_up + v_cycle + v_unused

    def n(k, what):
        return f"{k} {what}" + ("" if k == 1 else "s")

    counts = (
        f"{n(len(v_up), 'upward include')}, {n(len(v_cycle), 'cycle')}, "
        f"{n(len(v_unused), 'unused include')}, {n(len(m.problems), 'problem')} of "
        f"{m.layers_name}"
    )
    summary = (
        f"includes: {len(layer)} modules in {len(set(layer.values()))} layers, "
        f"{len(m.incs)} includes of user/ checked: " + (counts if violations else "ok")
    )
    return violations, summary, bool(v_unused)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    ap.add_argument("--layers", help="default: ROOT/tools/lint/layers.txt")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    layers = os.path.abspath(args.layers or os.path.join(root, "tools", "lint", "layers.txt"))
    violations, summary, unused = check(root, layers)
    for v in violations:
        print("\n".join(v))
    if unused:
        print('includes: an intentional include that looks unused ends with "// lint: keep"')
    print(summary)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
