#!/usr/bin/python3
"""The shape of the core, checked: layers only include downwards, no include
cycle between core files, no core (or push/) file over 600 lines, no function
over 80.

    test_layers.py [--root DIR]    (default: the repository this file is in)

The layers, lowest first, are the folders of core/ (see core/meson.build);
main.c sits above them all. The build already refuses an upward include (a
layer's include path holds only itself and the layers below); this check says
which line does it, and also finds cycles inside a layer, which the build
cannot see.
"""

import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

LAYERS = ["base", "net", "http", "ws", "store", "cluster", "session", "app"]
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
_FUNC_START_RE = re.compile(r"^[A-Za-z_][^;{}()]*\b([A-Za-z_]\w*)\s*\([^;]*\)\s*$")


def core_files(root):
    """{relative path: layer} of every .c and .h of core/ (main.c: 'main')."""
    out = {}
    core = os.path.join(root, "core")
    for layer in LAYERS:
        d = os.path.join(core, layer)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith((".c", ".h")):
                out[os.path.join("core", layer, name)] = layer
    if os.path.exists(os.path.join(core, "main.c")):
        out[os.path.join("core", "main.c")] = "main"
    return out


def rank(layer):
    return len(LAYERS) if layer == "main" else LAYERS.index(layer)


def includes(root, path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        text = f.read()
    return [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in _INCLUDE_RE.finditer(text)]


def check_layers(root):
    """Problems: upward includes, unknown headers, and include cycles between
    modules (a module is a .c with its .h)."""
    files = core_files(root)
    by_name = {}
    for path, layer in files.items():
        if path.endswith(".h"):
            by_name.setdefault(os.path.basename(path), []).append((path, layer))
    problems = []
    edges = {}
    for path, layer in files.items():
        module = path[:-2]
        for name, line in includes(root, path):
            if name.startswith("chatd/"):
                continue  # the public header, below everything
            targets = by_name.get(name, [])
            if len(targets) != 1:
                problems.append("%s:%d: includes \"%s\", which is %s" % (
                    path, line, name, "not a core header" if not targets
                    else "ambiguous (%s)" % ", ".join(t for t, _ in targets)))
                continue
            target, tlayer = targets[0]
            if rank(tlayer) > rank(layer):
                problems.append("%s:%d: includes %s of the higher layer %s" % (
                    path, line, target, tlayer))
            if target[:-2] != module:
                edges.setdefault(module, set()).add(target[:-2])
    problems += ["include cycle: " + " -> ".join(c) for c in find_cycles(edges)]
    return problems


def find_cycles(edges):
    """One cycle per strongly connected part of the graph that has one."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(cycle_in(sorted(part), edges))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def cycle_in(part, edges):
    """A path around the cycle through part[0], for the message."""
    members, start = set(part), part[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in edges.get(path[-1], ()) if w in members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return path + [start]
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return path + [nxt[0]] if nxt else path
        path.append(fresh[0])
        seen.add(fresh[0])


def push_files(root):
    """The .c and .h files of push/ (chatd-push): held to the same sizes."""
    d = os.path.join(root, "push")
    names = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return [os.path.join("push", n) for n in names if n.endswith((".c", ".h"))]


def check_sizes(root):
    problems = []
    for path in list(core_files(root)) + push_files(root):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            lines = f.read().split("\n")
        if len(lines) - 1 > MAX_FILE_LINES:
            problems.append("%s: %d lines (at most %d)" % (path, len(lines) - 1, MAX_FILE_LINES))
        if not path.endswith(".c"):
            continue
        for i, line in enumerate(lines[:-1]):
            m = _FUNC_START_RE.match(line)
            if not m or lines[i + 1] != "{":
                continue
            end = next((k for k in range(i + 2, len(lines)) if lines[k] == "}"), None)
            if end is not None and end - i + 1 > MAX_FUNCTION_LINES:
                problems.append("%s:%d: %s() is %d lines (at most %d)" % (
                    path, i + 1, m.group(1), end - i + 1, MAX_FUNCTION_LINES))
    return problems


class LayerTests(unittest.TestCase):
    root = REPO

    def test_no_upward_include_and_no_cycle(self):
        problems = check_layers(self.root)
        self.assertEqual(problems, [], "\n".join(problems))

    def test_files_and_functions_are_small(self):
        problems = check_sizes(self.root)
        self.assertEqual(problems, [], "\n".join(problems))


class PlantedTests(unittest.TestCase):
    """The checks find what is planted in a copy of core/."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chatd-layers-")
        shutil.copytree(os.path.join(REPO, "core"), os.path.join(self.tmp, "core"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def plant(self, path, text):
        with open(os.path.join(self.tmp, path), "a") as f:
            f.write(text)

    def test_planted_cycle_is_found(self):
        # dispatch.h -> deliver.h, and deliver.c already includes dispatch's neighbours;
        # plant the two ends of a cycle inside one layer
        self.plant("core/app/encode.h", '\n#include "deliver.h"\n')
        self.plant("core/app/deliver.h", '\n#include "encode.h"\n')
        problems = check_layers(self.tmp)
        self.assertTrue(any("include cycle" in p and "core/app/encode" in p for p in problems),
                        problems)

    def test_planted_upward_include_is_found(self):
        self.plant("core/base/log.h", '\n#include "session.h"\n')
        problems = check_layers(self.tmp)
        self.assertTrue(any("core/base/log.h" in p and "higher layer session" in p
                            for p in problems), problems)

    def test_planted_long_function_is_found(self):
        body = "\n".join("    x += %d;" % i for i in range(90))
        self.plant("core/base/utf8.c", "\nint planted(int x)\n{\n%s\n    return x;\n}\n" % body)
        problems = check_sizes(self.tmp)
        self.assertTrue(any("planted()" in p for p in problems), problems)


if __name__ == "__main__":
    if "--root" in sys.argv:
        i = sys.argv.index("--root")
        LayerTests.root = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    unittest.main()
