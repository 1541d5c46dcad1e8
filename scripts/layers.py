#!/usr/bin/env python3
"""The server crate's layers, checked: no import circle between files, no arrow up a layer.

Reads every file's `crate::` and `super::` paths (outside `#[cfg(test)] mod tests`), resolves
each to the file that declares the module, and fails when files form a circle or a module uses
one of a higher layer (docs/architecture.md draws them). `-v` prints the whole graph.
Relative paths into a module's own children (`mod.rs` naming `exec::ExecOpener`) are not
counted: a module and its children are one unit for layering.
"""
import os, re, sys

# Layer of each top-level module; a module may use its own layer's and lower layers' modules.
LAYERS = {
    "frame": 0, "persist": 0, "jpeg": 0, "mjpeg": 0, "render": 0, "codec": 0, "transform": 0, "pool": 0,
    "name": 0, "url": 0, "principal": 0, "shutdown": 0, "crypto": 0,
    "civil": 0, "overlay": 0,
    "link": 1,
    "source": 2,
    "hub": 3,
    "bus": 4, "bus_off": 4, "record": 4, "motion": 4, "mosaic": 4,
    "http": 5, "auth": 5, "auth_off": 5,
    "server": 6, "tls": 6, "tls_off": 6,
    "cli": 7, "config": 7, "fuzzing": 7, "bin": 7,
}
args = [a for a in sys.argv[1:] if not a.startswith("-")]
root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "crates", "mjpegd", "src")
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split("/")
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            files[tuple(parts)] = p
def module_of(parts):
    # longest prefix that is a file
    for n in range(len(parts), -1, -1):
        if tuple(parts[:n]) in files:
            return tuple(parts[:n])
    return None
edges = {}
path_re = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
group_re = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\}", re.S)
for mod, p in files.items():
    src = open(p).read()
    # drop tests modules and comments crudely
    src = re.sub(r"//[^\n]*", "", src)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", src)
    if cut: src = src[:cut.start()]
    is_dir_mod = p.endswith("mod.rs") or p.endswith("lib.rs")
    here = list(mod) if is_dir_mod else list(mod)
    def resolve(kind, segs):
        if kind == "crate": base = []
        else:
            base = list(mod) if is_dir_mod else list(mod[:-1])
            base = base[:-1] if is_dir_mod else base
            # super from a/b.rs (mod a::b) is a; from a/mod.rs (mod a) is crate
            base = list(mod[:-1])
        while segs and segs[0] == "super":
            base = base[:-1]; segs = segs[1:]
        return module_of(base + segs)
    targets = set()
    for m in group_re.finditer(src):
        segs = [s for s in m.group(2).split("::") if s]
        for item in re.split(r",", m.group(3)):
            item = item.strip().split("::")
            t = resolve(m.group(1), segs + [i.strip("{} ") for i in item if i.strip("{} ")])
            if t is not None: targets.add(t)
    for m in path_re.finditer(src):
        segs = [s for s in m.group(2).split("::") if s]
        t = resolve(m.group(1), segs)
        if t is not None: targets.add(t)
    targets.discard(mod); targets.discard(())
    edges[mod] = targets
name = lambda m: "/".join(m) or "lib"
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def strong(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in edges:
    if v not in idx: strong(v)
cyc = [s for s in sccs if len(s) > 1]
if "-v" in sys.argv:
    for m in sorted(edges): print(name(m), "->", " ".join(sorted(name(t) for t in edges[m])))
for s in cyc:
    print("cycle of %d files: %s" % (len(s), " ".join(sorted(name(m) for m in s))))
    ss = set(s)
    for m in sorted(s):
        print("   ", name(m), "->", " ".join(sorted(name(t) for t in edges[m] if t in ss)))
up = []
for m, ts in sorted(edges.items()):
    if not m:
        continue
    if m[0] not in LAYERS:
        up.append("%s is in no layer: add it to LAYERS in scripts/layers.py" % name(m))
        continue
    for t in sorted(ts):
        if t[0] != m[0] and LAYERS.get(t[0], 99) > LAYERS[m[0]]:
            up.append("upward arrow: %s (layer %d) uses %s (layer %d)" % (name(m), LAYERS[m[0]], name(t), LAYERS.get(t[0], 99)))
for u in up:
    print("layers:", u)
if not cyc and not up:
    print("layers: %d files, no circle, no upward arrow" % len(files))
sys.exit(1 if cyc or up else 0)
