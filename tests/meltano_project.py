"""A user's own Meltano project, made the way the README's "Add it to an existing Meltano
project" section says: `meltano init`, the extractor added from the Hub definition with its
pip_url pointed at this checkout, the settings set with `meltano config set`, and the loaders
of the README's loader table, each with the tap settings the table says it needs.

Meltano Hub is out of reach offline, so the loaders a user would have added from the Hub are
declared by hand with the pip_url the table gives.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
HUB_DEFINITION = ROOT / "hub" / "extractors" / "tap-deepconverse.yml"
BIN = Path(sys.executable).parent  # not resolved: the venv's folder holds meltano
TAP = "tap-deepconverse"
LOADERS_START, LOADERS_END = "<!-- loaders-table:start -->", "<!-- loaders-table:end -->"
SCHEMA = "deepconverse"  # default_target_schema of the SQL loaders


@dataclass(frozen=True)
class LoaderRow:
    """One row of the README's loader table."""

    name: str  # the loader's name on Meltano Hub, which is also its executable
    variant: str
    plugin: str  # its name in a project: `name`, unless the row gives another
    pip_url: str
    tap_settings: dict[str, Any]  # what to add to tap-deepconverse for this loader
    any_json_type: str | None  # column type of outMsg and userInput, None where untyped
    object_type: str | None  # column type of metadata and _extra

    @property
    def extractor(self) -> str:
        """The extractor to run with this loader: the tap, or one inheriting from it with the
        settings this loader needs."""
        return f"{TAP}--{self.plugin.removeprefix('target-')}" if self.tap_settings else TAP


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _type_named(cell: str) -> str | None:
    """The column type a cell names: its first code span, when the cell starts with one."""
    return _code(cell)[0] if cell.startswith("`") else None


def readme_loaders() -> list[LoaderRow]:
    """The rows of the README's loader table. The Loader cell gives the Hub name, the variant
    and, for a loader that shares its name with another row, the name this repository's
    meltano.yml declares it under (third code span)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split(LOADERS_START, 1)[1].split(LOADERS_END, 1)[0]
    lines = [line.strip() for line in table.strip().splitlines() if line.strip().startswith("|")]
    rows = []
    for line in lines[2:]:  # past the header and the alignment row
        loader, pip_url, settings, any_json, objects = (
            cell.strip() for cell in line.strip("|").split("|")
        )
        name, variant, *renamed = _code(loader)
        added: dict[str, Any] = {}
        for pair in _code(settings):
            added.update(yaml.safe_load(pair))
        rows.append(
            LoaderRow(
                name=name,
                variant=variant,
                plugin=renamed[0] if renamed else name,
                pip_url=_code(pip_url)[0],
                tap_settings=added,
                any_json_type=_type_named(any_json),
                object_type=_type_named(objects),
            )
        )
    return rows


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without settings that would steer Meltano or the plugins."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TAP_DEEPCONVERSE_", "TARGET_", "MELTANO_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    # Plugin venvs are built by uv, which skips bytecode unless asked to compile it.
    env["UV_COMPILE_BYTECODE"] = "1"
    env.update(extra)
    return env


class MeltanoProject:
    """A Meltano project folder and the `meltano` commands run in it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def meltano(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "meltano"), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"meltano {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
        )
        return done

    @property
    def definition(self) -> dict[str, Any]:
        document: dict[str, Any] = yaml.safe_load((self.root / "meltano.yml").read_text())
        return document

    def loader_config(self, plugin: str) -> dict[str, Any]:
        """The config meltano.yml gives a loader."""
        (loader,) = [p for p in self.definition["plugins"]["loaders"] if p["name"] == plugin]
        return dict(loader.get("config") or {})

    def write_definition(self, document: dict[str, Any]) -> None:
        (self.root / "meltano.yml").write_text(yaml.safe_dump(document, sort_keys=False))

    def fresh_copy(self, root: Path) -> MeltanoProject:
        """What a CI job checks out: the project's files, no `.meltano/`."""
        root.mkdir(parents=True)
        shutil.copy(self.root / "meltano.yml", root / "meltano.yml")
        return MeltanoProject(root, self.env)


def build_user_project(
    root: Path, *, api_url: str, start_date: str, loader_config: dict[str, dict[str, Any]]
) -> MeltanoProject:
    """Make and install the project; `loader_config` is each loader's own (connection) config,
    which a user's project has already."""
    root.parent.mkdir(parents=True, exist_ok=True)
    init = MeltanoProject(root.parent, clean_env())
    init.meltano("init", root.name, "--no-usage-stats")
    project = MeltanoProject(root, clean_env())
    project.meltano(
        "add", "--plugin-type", "extractor", TAP, "--from-ref", str(HUB_DEFINITION), "--no-install"
    )
    document = project.definition
    (extractor,) = document["plugins"]["extractors"]
    extractor["pip_url"] = str(ROOT)  # a checkout, as the README says
    document["plugins"]["loaders"] = [
        {
            "name": row.plugin,
            "variant": row.variant,
            "namespace": row.name.replace("-", "_"),
            "executable": row.name,
            "pip_url": row.pip_url,
            "config": loader_config[row.plugin],
        }
        for row in readme_loaders()
    ]
    project.write_definition(document)

    project.meltano("config", "set", TAP, "api_url", api_url)
    project.meltano("config", "set", TAP, "bot_names", '["r3-218210", "support-bot"]')
    project.meltano("config", "set", TAP, "start_date", start_date)
    for row in readme_loaders():
        if row.extractor != TAP:
            project.meltano(
                "add", "--plugin-type", "extractor", row.extractor, "--inherit-from", TAP
            )
            for name, value in row.tap_settings.items():
                project.meltano("config", "set", row.extractor, name, json.dumps(value))
    (root / "output").mkdir(exist_ok=True)  # meltano init makes it; the loaders need it
    project.meltano("install")
    return project
