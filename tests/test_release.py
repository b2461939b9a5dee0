"""One version everywhere: pyproject.toml, the installed metadata, `tap-deepconverse --version`
and `--about`, the CHANGELOG; and the check the release workflow runs on a tag
(scripts/release_check.py) refuses a tag, a CHANGELOG or a version that do not agree.
(The built sdist and wheel carry it too: test_metadata.py.)"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tap_deepconverse

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and build bring tomli along on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "scripts" / "release_check.py"
TAP = Path(sys.executable).parent / "tap-deepconverse"


def pyproject_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version: str = project["version"]
    return version


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", pyproject_version())


def test_the_installed_tap_says_the_version_of_pyproject() -> None:
    version = pyproject_version()
    assert importlib.metadata.version("tap-deepconverse") == version
    assert tap_deepconverse.__version__ == version
    said = subprocess.run(
        [str(TAP), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert said.startswith(f"tap-deepconverse v{version}, Meltano SDK v"), said
    about = subprocess.run(
        [str(TAP), "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(about)["version"] == version


def test_the_changelog_opens_with_the_version() -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## \[(.+?)\]", changelog, re.MULTILINE)
    assert first is not None
    assert first[1] == pyproject_version()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the check reads."""
    for name in ("pyproject.toml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def released(project: Path) -> str:
    """The copy as on release day: the first section dated. Returns the version."""
    version = pyproject_version()
    changelog = project / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    heading = re.search(rf"^## \[{re.escape(version)}\] - .*$", text, re.MULTILINE)
    assert heading is not None
    edit(changelog, heading[0], f"## [{version}] - 2026-09-01")
    return version


def test_a_tag_is_released_only_with_a_dated_section(project: Path) -> None:
    version = pyproject_version()
    tag = f"v{version}"
    if "Unreleased" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"):
        done = run("--root", str(project), "--tag", tag)
        assert done.returncode == 1
        assert f"[{version}] is not dated" in done.stderr
    released(project)
    done = run("--root", str(project), "--tag", tag)
    assert done.returncode == 0, done.stderr
    assert f"version {version}" in done.stdout


def test_a_tag_of_another_version_is_refused(project: Path) -> None:
    version = released(project)
    done = run("--root", str(project), "--tag", "v99.0.0")
    assert done.returncode == 1
    assert done.stderr.strip() == f"tag v99.0.0 is not v{version}, the version in pyproject.toml"


def test_a_version_bump_without_its_changelog_section_is_refused(project: Path) -> None:
    version = pyproject_version()
    edit(project / "pyproject.toml", f'version = "{version}"', 'version = "99.0.0"')
    done = run("--root", str(project))
    assert done.returncode == 1
    assert f"the first section is [{version}], the package is 99.0.0" in done.stderr


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("## [0.0.1] - 2020-01-01\n", "no link '[0.0.1]: https://...'"),
        ("## [99.0.0] - 2020-01-01\n", "not in descending order"),
        ("## [0.0.1] - Unreleased\n", "[0.0.1] needs an X.Y.Z version and a date"),
    ],
)
def test_an_older_section_out_of_form_is_refused(project: Path, section: str, problem: str) -> None:
    """A section added at the end of the file, after every other."""
    changelog = project / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    links = re.search(r"^\[[^\]]+\]: https://", text, re.MULTILINE)  # they close the file
    assert links is not None
    at = links.start()
    changelog.write_text(f"{text[:at]}{section}\n{text[at:]}", encoding="utf-8")
    done = run("--root", str(project))
    assert done.returncode == 1
    assert problem in done.stderr, done.stderr


def test_a_version_that_is_not_semver_is_refused(project: Path) -> None:
    version = pyproject_version()
    edit(project / "pyproject.toml", f'version = "{version}"', 'version = "1.0"')
    done = run("--root", str(project))
    assert done.returncode == 1
    assert "version '1.0' is not X.Y.Z" in done.stderr
