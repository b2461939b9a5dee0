"""Check that the package version, the CHANGELOG and (on a release) the tag agree.

Usage: ``python scripts/release_check.py [--tag vX.Y.Z] [--root DIR]``

The version is written once, in pyproject.toml (``X.Y.Z``, Semantic Versioning). The
CHANGELOG's first section is that version: ``## [X.Y.Z] - Unreleased`` while it is being
prepared, ``## [X.Y.Z] - YYYY-MM-DD`` once released; older sections are dated and come in
descending order, and each has its link at the bottom. With ``--tag`` (what the release
workflow passes on a tag), the tag must be ``v`` + the version and its section dated.
Prints one line per problem and exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and build bring tomli along on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
SECTION = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>.+))?$", re.MULTILINE)
UNRELEASED = "Unreleased"


@dataclass(frozen=True)
class Section:
    version: str
    date: str | None  # YYYY-MM-DD, UNRELEASED, or None when the heading has none


def package_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def sections(changelog: str) -> list[Section]:
    return [Section(m["version"], m["date"]) for m in SECTION.finditer(changelog)]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _is_date(text: str | None) -> bool:
    try:
        datetime.date.fromisoformat(text or "")
    except ValueError:
        return False
    return True


def _order_and_links(found: list[Section], changelog: str) -> list[str]:
    wrong = [
        f"CHANGELOG.md: [{section.version}] needs an X.Y.Z version and a date"
        for section in found[1:]
        if not VERSION.fullmatch(section.version) or not _is_date(section.date)
    ]
    numbered = [s.version for s in found if VERSION.fullmatch(s.version)]
    if numbered != sorted(numbered, key=_key, reverse=True) or len(set(numbered)) < len(numbered):
        wrong.append(f"CHANGELOG.md: sections not in descending order: {numbered}")
    wrong.extend(
        f"CHANGELOG.md: no link '[{section.version}]: https://...' at the end"
        for section in found
        if not re.search(rf"^\[{re.escape(section.version)}\]: https://", changelog, re.M)
    )
    return wrong


def problems(root: Path, tag: str | None) -> list[str]:
    version = package_version(root)
    if not VERSION.fullmatch(version):
        return [f"pyproject.toml: version {version!r} is not X.Y.Z"]
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    found = sections(changelog)
    if not found:
        return ["CHANGELOG.md has no '## [X.Y.Z] - ...' section"]
    wrong: list[str] = []
    first = found[0]
    if first.version != version:
        wrong.append(
            f"CHANGELOG.md: the first section is [{first.version}], the package is {version}"
        )
    if first.date != UNRELEASED and not _is_date(first.date):
        wrong.append(f"CHANGELOG.md: [{first.version}] needs '- {UNRELEASED}' or '- YYYY-MM-DD'")
    wrong.extend(_order_and_links(found, changelog))
    if tag is not None:
        if tag != f"v{version}":
            wrong.append(f"tag {tag} is not v{version}, the version in pyproject.toml")
        if not _is_date(first.date):
            wrong.append(f"CHANGELOG.md: [{first.version}] is not dated, so not released")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tag", help="the release tag, e.g. v0.2.0")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder")
    args = parser.parse_args()
    found = problems(args.root, args.tag)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        return 1
    print(f"version {package_version(args.root)}: pyproject.toml and CHANGELOG.md agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
