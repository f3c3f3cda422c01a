"""The code's layout, as docs/ARCHITECTURE.md states it:
  - src/ is folders by concern, and includes go one way only: a folder includes from itself and
    the folders before it in LAYERS, never from one after it;
  - include/ddpm/ holds exactly the installed public headers (cmake/DdpmLibrary.cmake's list),
    and every internal header sits in src/ beside its sources;
  - no source file is over 500 lines.
Exits 1 naming every violation.  python3 tests/layout_check.py [REPOSITORY]
"""
import re
import sys
from pathlib import Path

LAYERS = ["base", "config", "formats", "model", "diffusion", "data", "distributed", "eval",
          "interop", "train", "api", "cli"]
MAX_LINES = 500


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    src = root / "src"
    rank = {name: i for i, name in enumerate(LAYERS)}
    problems = []
    folders = sorted(p.name for p in src.iterdir() if p.is_dir())
    if folders != sorted(LAYERS):
        problems.append(f"src/ holds the folders {folders}, the layers are {sorted(LAYERS)}")
    files = sorted(p for p in src.rglob("*") if p.suffix in (".cpp", ".h"))
    for path in files:
        text = path.read_text()
        name = path.relative_to(root)
        layer = path.relative_to(src).parts[0]
        if layer not in rank:
            problems.append(f"{name}: outside the layer folders")
            continue
        for match in re.finditer(r'#include "(\w+)/[\w/]+\.h"', text):
            target = match.group(1)
            if target in rank and rank[target] > rank[layer]:
                problems.append(f"{name} includes {match.group(0)[10:-1]}: {layer}/ may include "
                                f"only {', '.join(LAYERS[:rank[layer] + 1])}")
        lines = text.count("\n")
        if lines > MAX_LINES:
            problems.append(f"{name}: {lines} lines, over {MAX_LINES}")
    library = (root / "cmake" / "DdpmLibrary.cmake").read_text()
    listed = set(re.findall(r"include/ddpm/(\w+\.h)", library))
    present = {p.name for p in (root / "include" / "ddpm").iterdir()}
    if listed != present:
        problems.append(f"include/ddpm/ holds {sorted(present)}, the installed headers are "
                        f"{sorted(listed)}: internal headers belong in src/, beside their sources")
    for problem in problems:
        print(problem)
    print(f"{len(files)} source files in {len(LAYERS)} layers checked; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
