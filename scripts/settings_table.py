"""Write the README's settings table from ``tap-deepconverse --about --format=markdown``.

Usage: ``python scripts/settings_table.py`` rewrites README.md; ``--check`` only compares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def generated_table() -> str:
    about = subprocess.run(
        [sys.executable, "-m", "tap_deepconverse", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = about.split("## Settings", 1)[1].strip().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def readme_with(table: str, readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    current = README.read_text(encoding="utf-8")
    wanted = readme_with(generated_table(), current)
    if "--check" in sys.argv:
        if wanted != current:
            print("README settings table is stale: run `make docs`.", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
