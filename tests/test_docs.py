"""The README: its settings table is the one `--about --format=markdown` prints, and it works
as the PyPI page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_readme_works_as_the_pypi_page() -> None:
    """PyPI shows the README without the repository around it: every link and image is an
    absolute URL, and a user's path (pip, then Meltano) comes before the checkout's."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    assert targets
    assert [target for target in targets if not target.startswith("https://")] == []
    order = [
        text.index(line)
        for line in (
            "pip install tap-deepconverse",
            "meltano add extractor tap-deepconverse",
            "make demo   #",
            "make test   #",
        )
    ]
    assert order == sorted(order)
