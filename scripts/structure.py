#!/usr/bin/env python3
"""Figures of the workspace's structure, printed for docs/architecture.md.

    scripts/structure.py            crate graph, longest functions, dataset path resolutions
    scripts/structure.py --public   also public items per library (runs `cargo doc --no-deps`)

Reads the sources as text, as xtask/tests/tidy.rs does: functions are found
by their `fn` keyword at the start of a line and measured to the matching
brace; unit tests (`#[cfg(test)] mod tests` at the end of a file) and the
tests/ directories are left out. Public items are the item pages rustdoc
writes for each library (structs, enums, traits, functions, constants, type
aliases, macros, statics), so they count exactly what a user can name.
"""

import os
import re
import subprocess
import sys
from collections import Counter

ROOT = os.environ.get("WORKSPACE_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def members():
    crates = [("xtask", os.path.join(ROOT, "xtask"))]
    for name in sorted(os.listdir(os.path.join(ROOT, "crates"))):
        path = os.path.join(ROOT, "crates", name)
        if os.path.isfile(os.path.join(path, "Cargo.toml")):
            crates.append((name, path))
    return crates


def dependencies(manifest):
    names, in_table = [], False
    for line in open(manifest):
        line = line.strip()
        if line.startswith("["):
            in_table = line == "[dependencies]"
        elif in_table and "=" in line and not line.startswith("#"):
            names.append(line.split("=")[0].strip().removesuffix(".workspace"))
    return names


def sources():
    for _, path in members():
        for dirpath, _, files in os.walk(os.path.join(path, "src")):
            for f in sorted(files):
                if f.endswith(".rs"):
                    full = os.path.join(dirpath, f)
                    text = open(full).read()
                    cut = text.find("#[cfg(test)]\nmod tests")
                    yield os.path.relpath(full, ROOT), text if cut < 0 else text[:cut]


def functions(text):
    fn = re.compile(r"^\s*(?:pub(?:\([a-z]+\))? )?(?:const )?(?:unsafe )?(?:async )?fn (\w+)", re.M)
    for m in fn.finditer(text):
        body = re.compile(r"[{;]").search(text, m.end())
        if not body or text[body.start()] == ";":
            continue
        depth, i = 0, body.start()
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        yield m.group(1), text.count("\n", 0, m.start()) + 1, text.count("\n", body.start(), i) + 1


def main():
    workspace = {name for name, _ in members()}
    print("crate graph (workspace dependencies):")
    for name, path in members():
        deps = [d for d in dependencies(os.path.join(path, "Cargo.toml")) if d in workspace]
        print(f"  {name} -> {', '.join(deps) or '(none)'}")

    print("\nlongest functions (lines, outside tests):")
    found = [(n, f"{path}:{line} fn {name}") for path, text in sources() for name, line, n in functions(text)]
    for n, where in sorted(found, reverse=True)[:10]:
        print(f"  {n:4d}  {where}")
    print(f"  functions over 100 lines: {sum(1 for n, _ in found if n > 100)}")

    owner = ("crates/shards/", "crates/loader/src/format/")
    through = re.compile(
        r"\b(?:DatasetDir::new|split_dir|stats_path|classes_path|manifest_path|dataset_id_path|parts_dir|part_file_path|read_classes)\(")
    by_hand = re.compile(
        r'\.join\((?:"(?:train|val|stats\.h5|classes\.tsv|manifest\.json|dataset\.json|skipped\.tsv|parts)"|(?:STATS|CLASSES|MANIFEST|DATASET_ID|SKIPPED)_FILE)\)'
        r'|"(?:train|val)"')
    for label, pattern in [("resolve a dataset path through the format's functions", through),
                           ("name a dataset file or split by hand (a literal, or a join)", by_hand)]:
        places = Counter()
        for path, text in sources():
            if not path.startswith(owner):
                places[path] += len(pattern.findall(text))
        places = {p: c for p, c in places.items() if c}
        print(f"\nplaces outside the format's owner that {label}: "
              f"{sum(places.values())} in {len(places)} files")
        for p, c in sorted(places.items()):
            print(f"  {c:3d}  {p}")

    if "--public" in sys.argv:
        target = os.path.join(ROOT, "target", "structure-doc")
        libs = [n for n, p in members() if os.path.isfile(os.path.join(p, "src", "lib.rs"))]
        subprocess.run(["cargo", "doc", "--no-deps", "--release", "--quiet", "--target-dir", target]
                       + sum((["-p", n] for n in libs), []), cwd=ROOT, check=True)
        print("\npublic items per library (rustdoc item pages):")
        kinds = re.compile(r"^(struct|enum|trait|fn|constant|type|macro|static)\..+\.html$")
        for name in libs:
            items, modules = 0, 0
            for dirpath, _, files in os.walk(os.path.join(target, "doc", name)):
                # Pages of items re-exported from private modules are only
                # redirects to the page where the item is shown.
                pages = [f for f in files if kinds.match(f)
                         and 'http-equiv="refresh"' not in open(os.path.join(dirpath, f)).read(400)]
                items += len(pages)
                index = os.path.join(dirpath, "index.html")
                if os.path.isfile(index) and 'http-equiv="refresh"' not in open(index).read(400):
                    modules += 1
            print(f"  {name:11s} {items:4d} items in {modules} modules (the crate root included)")


if __name__ == "__main__":
    main()
