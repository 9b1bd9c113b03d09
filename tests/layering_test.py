#!/usr/bin/env python3
"""Which code may include which: the libraries' layering, checked.

Every library exports the source root as its include path, so the compiler
alone would let any file include any header. This test holds the line the
CMake targets draw: a file may include only headers of the libraries its
own library links (see each folder's CMakeLists.txt). It fails naming the
file, the line and the header that crosses a line.

    tests/layering_test.py [SOURCE_ROOT]
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)

# Library -> the headers its files may include (folders end in "/").
# psforge_worker is the cluster worker: the optimizer and the in-memory
# embedding table it applies in-process for ps-train's LocalParameterClient
# (library psforge_optimizer), nothing of the servers' stores or of
# the coordinator, so ps-worker links no RocksDB.
LAYERS = {
    "common": ["common/"],
    "paramserver": ["common/", "paramserver/"],
    "coordinator": ["common/", "coordinator/"],
    "worker": ["common/", "worker/", "paramserver/optimizer.h", "paramserver/embedding_table.h"],
    "local_training": ["common/", "worker/", "paramserver/", "coordinator/"],
    "tools": ["common/", "worker/", "paramserver/", "coordinator/", "tools/"],
}


def local_training_files():
    """psforge_local_training's sources and ps-train's, read from
    worker/CMakeLists.txt, with the headers of the same names."""
    cmake = (ROOT / "worker" / "CMakeLists.txt").read_text()
    files = set()
    for command, target in (("add_library", "psforge_local_training"), ("add_executable", "ps-train")):
        m = re.search(rf"{command}\({re.escape(target)}\s([^)]*)\)", cmake)
        if not m:
            sys.exit(f"worker/CMakeLists.txt: no {command}({target} ...)")
        for source in m.group(1).split():
            files |= {f"worker/{source}", f"worker/{source[:-3]}.h"}
    return files


LOCAL_TRAINING = local_training_files()

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(rel: str):
    if rel.endswith("_test.cc") or "/testdata/" in rel:
        return None  # tests link what they test and more
    if rel in LOCAL_TRAINING:
        return "local_training"
    top = rel.split("/", 1)[0]
    return top if top in LAYERS else None


def main() -> int:
    problems = []
    checked = 0
    for path in sorted(ROOT.glob("*/**/*")):
        if path.suffix not in (".h", ".cc") or "build" in path.relative_to(ROOT).parts[0]:
            continue
        rel = path.relative_to(ROOT).as_posix()
        layer = layer_of(rel)
        if layer is None:
            continue
        checked += 1
        allowed = LAYERS[layer]
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or "/" not in m.group(1):
                continue  # generated or same-folder includes without a path
            header = m.group(1)
            if not any(header == a or (a.endswith("/") and header.startswith(a)) for a in allowed):
                problems.append(f"{rel}:{number}: includes {header}, which {layer}'s library does not link "
                                f"(it may include {', '.join(allowed)})")
    if checked < 50:
        problems.append(f"only {checked} source files found under {ROOT}: is that the source root?")
    for p in problems:
        print(p)
    print(f"{checked} files checked, {len(problems)} crossing{'s' if len(problems) != 1 else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
