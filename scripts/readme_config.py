"""Write the README's environment-variable table from the settings declarations (--check: fail if stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rentscout.ops.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print("README.md configuration table is stale; run `make readme`")
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
