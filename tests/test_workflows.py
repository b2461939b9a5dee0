"""The GitHub configuration: workflows and Dependabot valid against GitHub's schemas (the
SchemaStore copies check-jsonschema ships, so offline), every action pinned by commit, no
credentials left in a checkout, a weekly CI run, a release workflow that publishes only a tag
and only with trusted publishing, and a pre-commit configuration with ruff."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and build bring tomli along on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLE = ROOT / "examples" / "github-actions" / "deepconverse-daily.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
CI = ROOT / ".github" / "workflows" / "ci.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The `on:` of a workflow (YAML 1.1 reads the bare key `on` as true)."""
    found: dict[str, Any] = workflow.get("on", workflow.get(True))
    return found


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses_lines(path: Path) -> list[str]:
    """Each `uses:` value with its comment, as written."""
    return re.findall(r"^\s*(?:- )?uses: (.+?)\s*$", path.read_text(encoding="utf-8"), re.M)


def check_schema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflows_are_the_ones_checked_here() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "release.yml"]


def test_workflows_and_dependabot_are_valid_for_github() -> None:
    done = check_schema("vendor.github-workflows", *WORKFLOWS, EXAMPLE)
    assert done.returncode == 0, done.stdout + done.stderr
    done = check_schema("vendor.dependabot", DEPENDABOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "release.yml"
    text = RELEASE.read_text(encoding="utf-8").replace("runs-on:", "runs_on:", 1)
    broken.write_text(text, encoding="utf-8")
    done = check_schema("vendor.github-workflows", broken)
    assert done.returncode == 1
    assert "runs_on" in done.stdout


@pytest.mark.parametrize("path", [*WORKFLOWS, EXAMPLE], ids=lambda path: path.name)
def test_every_action_is_pinned_by_commit_with_its_tag(path: Path) -> None:
    uses = uses_lines(path)
    assert uses
    assert [use for use in uses if not PINNED.match(use)] == []


def test_an_action_is_pinned_to_one_commit_everywhere() -> None:
    commits: dict[str, set[str]] = {}
    for path in [*WORKFLOWS, EXAMPLE]:
        for use in uses_lines(path):
            action, pin = use.split("@", 1)
            commits.setdefault(action, set()).add(pin)
    assert {action: pins for action, pins in commits.items() if len(pins) > 1} == {}
    assert {"actions/checkout", "pypa/gh-action-pypi-publish"} <= set(commits)


@pytest.mark.parametrize("path", [*WORKFLOWS, EXAMPLE], ids=lambda path: path.name)
def test_checkouts_keep_no_credentials(path: Path) -> None:
    checkouts = [
        step for step in steps(load(path)) if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    assert all(step.get("with", {}).get("persist-credentials") is False for step in checkouts)


def test_ci_runs_every_week_and_on_every_change() -> None:
    on = triggers(load(CI))
    assert {"push", "pull_request", "schedule"} <= set(on)
    (schedule,) = on["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*")
    assert re.fullmatch(r"[0-6]", weekday), "one day a week"
    assert minute.isdigit()
    assert hour.isdigit()


def test_ci_installs_and_runs_what_the_makefile_says() -> None:
    runs = [step.get("run", "") for step in steps(load(CI))]
    assert any(run.startswith("make test") for run in runs)
    assert any(run.startswith("make lint") for run in runs)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q -e . --group dev" in makefile
    assert "'pip>=25.1'" in makefile  # the first pip that reads dependency groups
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "optional-dependencies" not in project["project"], "development tools stay unpublished"
    assert {"dev", "release"} <= set(project["dependency-groups"])


def test_the_release_builds_and_inspects_on_every_change() -> None:
    workflow = load(RELEASE)
    on = triggers(workflow)
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    assert on["push"]["tags"] == ["v*"]
    build = workflow["jobs"]["build"]
    assert "if" not in build
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    for command in (
        "pip install --group release",
        "scripts/release_check.py",
        "python -m build",
        "twine check --strict dist/*",
        "pip install dist/*.whl",
        'tap-deepconverse" --about',
    ):
        assert command in runs, command
    (upload,) = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-")]
    assert upload["with"]["name"] == "dist"


def test_the_release_publishes_a_tag_with_trusted_publishing_only() -> None:
    workflow = load(RELEASE)
    assert workflow["permissions"] == {"contents": "read"}
    publish = workflow["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert "github.ref_type == 'tag'" in publish["if"]
    assert "github.event_name == 'push'" in publish["if"]
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    others = [job for name, job in workflow["jobs"].items() if name != "publish"]
    assert all("id-token" not in job.get("permissions", {}) for job in others)
    (download, upload) = publish["steps"]
    assert download["uses"].startswith("actions/download-artifact@")
    assert download["with"]["name"] == "dist"
    assert upload["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert "with" not in upload, "no password or token: PyPI trusts the workflow"
    assert "secrets." not in RELEASE.read_text(encoding="utf-8")


def test_dependabot_updates_python_and_actions_weekly_in_groups() -> None:
    updates = {update["package-ecosystem"]: update for update in load(DEPENDABOT)["updates"]}
    assert {"pip", "github-actions"} <= set(updates)
    for update in updates.values():
        assert update["schedule"]["interval"] == "weekly"
        assert update["groups"]


def test_pre_commit_runs_ruff_check_and_format() -> None:
    config = load(ROOT / ".pre-commit-config.yaml")
    (ruff,) = [repo for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit")]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", ruff["rev"])
    assert [hook["id"] for hook in ruff["hooks"]] == ["ruff-check", "ruff-format"]
