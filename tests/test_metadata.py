"""The tap's settings and capabilities say the same everywhere they are published.

Sources: the tap itself (``tap-deepconverse --about --format=json``), the Meltano Hub
definition (hub/extractors/tap-deepconverse.yml), the project's meltano.yml and the README's
settings and loader tables. Also: the package builds, and its wheel works on its own. (The
Hub definition is checked against the Hub's own schema in test_hub_schema.py.)
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from singer_sdk.helpers.capabilities import BATCH_CONFIG, FLATTENING_CONFIG, STREAM_MAPS_CONFIG

from tap_deepconverse.streams import STREAM_TYPES
from tests.meltano_project import TAP, readme_loaders

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and build bring tomli along on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

if sys.version_info >= (3, 11):
    from importlib.metadata import packages_distributions
else:  # 3.10's reads only top_level.txt, which wheels built by hatchling lack; the SDK brings
    # the backport along before 3.12.
    from importlib_metadata import packages_distributions

ROOT = Path(__file__).resolve().parent.parent
HUB_FILE = ROOT / "hub" / "extractors" / "tap-deepconverse.yml"
README_START, README_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
# Settings the SDK adds for a capability. The README lists them all; Hub and meltano.yml may
# list some, after the tap's own.
SDK_SETTINGS = frozenset(
    {
        *STREAM_MAPS_CONFIG["properties"],
        *FLATTENING_CONFIG["properties"],
        *BATCH_CONFIG["properties"],
    }
)


@cache
def about() -> dict[str, Any]:
    """What the installed command says about itself."""
    command = Path(sys.executable).parent / "tap-deepconverse"
    done = subprocess.run(
        [str(command), "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def all_settings() -> dict[str, dict[str, Any]]:
    """Every setting --about lists, the SDK's included."""
    properties: dict[str, dict[str, Any]] = about()["settings"]["properties"]
    return properties


def own_settings() -> dict[str, dict[str, Any]]:
    """The tap's own settings, in the order it declares them."""
    return {name: schema for name, schema in all_settings().items() if name not in SDK_SETTINGS}


def published_settings() -> dict[str, dict[str, Any]]:
    """The settings a plugin definition lists, in --about's order, as Meltano Hub's tooling
    lists them: an object setting with properties of its own is listed as parent.child, one
    per property (faker_config.seed), except stream_maps, whose keys are stream names."""
    listed: dict[str, dict[str, Any]] = {}
    for name, schema in all_settings().items():
        children = schema.get("properties")
        if children and name != "stream_maps":
            listed.update({f"{name}.{child}": value for child, value in children.items()})
        else:
            listed[name] = schema
    return listed


@cache
def hub() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(HUB_FILE.read_text(encoding="utf-8"))
    return document


@cache
def meltano_project() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    return document


def meltano_extractor() -> dict[str, Any]:
    extractors: list[dict[str, Any]] = meltano_project()["plugins"]["extractors"]
    (extractor,) = [plugin for plugin in extractors if plugin["name"] == "tap-deepconverse"]
    return extractor


def readme_rows() -> list[dict[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split(README_START, 1)[1].split(README_END, 1)[0]
    lines = [line.strip() for line in table.strip().splitlines() if line.strip()]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:  # past the header and the alignment row
        cells = [cell.strip() for cell in line.strip("|").split("|", len(header) - 1)]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def json_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a value may have, those of its oneOf/anyOf options included."""
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in [*schema.get("oneOf", []), *schema.get("anyOf", [])]:
        if isinstance(option, dict):
            types |= json_types(option)
    return types - {"null"}


def is_secret(schema: dict[str, Any]) -> bool:
    return bool(schema.get("secret") or schema.get("writeOnly"))


def kinds_for(schema: dict[str, Any]) -> set[str]:
    """The Meltano setting kinds that fit a setting's JSON schema."""
    types = json_types(schema)
    if is_secret(schema):
        return {"password"}
    if "array" in types:
        return {"array"}
    if "object" in types:
        return {"object"}
    if types == {"boolean"}:
        return {"boolean"}
    if types == {"integer"}:
        return {"integer"}
    if types <= {"number", "integer"}:
        return {"decimal"}
    if types == {"string"}:
        if schema.get("format") in ("date-time", "date"):
            return {"date_iso8601"}
        return {"options"} if "enum" in schema else {"string", "email", "file"}
    if "string" in types and types <= {"string", "number", "integer", "boolean"}:
        return {"string"}  # a scalar of several types: given as text (faker_config.seed)
    return set()


SOURCES = {
    "Meltano Hub definition": lambda: hub()["settings"],
    "meltano.yml": lambda: meltano_extractor()["settings"],
}


@pytest.fixture(params=sorted(SOURCES))
def published(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(where, settings) of a published plugin definition."""
    return request.param, SOURCES[request.param]()


def test_the_tap_declares_settings_of_its_own() -> None:
    assert len(own_settings()) >= 10
    assert set(about()["settings"]["required"]) <= set(own_settings())


def test_every_setting_about_lists_is_published(
    published: tuple[str, list[dict[str, Any]]],
) -> None:
    where, settings = published
    names = [setting["name"] for setting in settings]
    assert len(set(names)) == len(names), f"{where} lists a setting twice"
    wanted = set(published_settings())
    assert {"faker_config.seed", "flattening_separator"} <= wanted
    assert not wanted - set(names), f"{where} leaves out {sorted(wanted - set(names))}"
    assert not set(names) - wanted, f"{where}: unknown {sorted(set(names) - wanted)}"


def test_meltano_yml_lists_the_settings_in_about_order() -> None:
    """The Hub definition lists them by name, as the Hub's tooling writes it
    (test_hub_files.py)."""
    names = [setting["name"] for setting in meltano_extractor()["settings"]]
    assert names == list(published_settings())


def test_setting_descriptions(published: tuple[str, list[dict[str, Any]]]) -> None:
    where, settings = published
    expected = {name: schema.get("description") for name, schema in published_settings().items()}
    found = {setting["name"]: setting.get("description") for setting in settings}
    wrong = {name: text for name, text in found.items() if text != expected.get(name)}
    assert not wrong, f"{where}: descriptions differ from --about: {wrong}"


def test_setting_kinds_fit_the_json_types(published: tuple[str, list[dict[str, Any]]]) -> None:
    where, settings = published
    schemas = published_settings()
    wrong = {
        setting["name"]: (setting.get("kind"), sorted(kinds_for(schemas[setting["name"]])))
        for setting in settings
        if setting.get("kind") not in kinds_for(schemas[setting["name"]])
    }
    assert not wrong, f"{where}: kind given vs kinds that fit: {wrong}"


def test_sensitive_exactly_for_secrets(published: tuple[str, list[dict[str, Any]]]) -> None:
    where, settings = published
    schemas = published_settings()
    assert any(is_secret(schema) for schema in schemas.values())
    wrong = [
        setting["name"]
        for setting in settings
        if bool(setting.get("sensitive")) != is_secret(schemas[setting["name"]])
    ]
    assert not wrong, f"{where}: 'sensitive' is wrong for {wrong}"


def test_settings_have_labels(published: tuple[str, list[dict[str, Any]]]) -> None:
    where, settings = published
    assert all(setting.get("label") for setting in settings), where
    titles = {name: schema.get("title") for name, schema in published_settings().items()}
    wrong = {
        setting["name"]: (setting["label"], titles[setting["name"]])
        for setting in settings
        if titles.get(setting["name"]) and setting["label"] != titles[setting["name"]]
    }
    assert not wrong, f"{where}: labels differ from the titles --about gives: {wrong}"


def test_required_settings_are_the_validation_group() -> None:
    required = set(about()["settings"]["required"])
    for where, plugin in (("Hub", hub()), ("meltano.yml", meltano_extractor())):
        groups = plugin["settings_group_validation"]
        assert len(groups) == 1, f"{where}: one group, the required settings"
        assert set(groups[0]) == required, where


def test_capabilities_agree() -> None:
    capabilities = set(about()["capabilities"])
    assert set(hub()["capabilities"]) == capabilities
    assert set(meltano_extractor()["capabilities"]) == capabilities


def test_readme_settings_table_agrees() -> None:
    rows = readme_rows()
    schemas = about()["settings"]["properties"]
    own = [row for row in rows if row["Setting"] in own_settings()]
    assert [row["Setting"] for row in own] == list(own_settings())
    for row in own:
        assert row["Description"] == own_settings()[row["Setting"]]["description"], row
    required = {row["Setting"] for row in own if row["Required"] == "True"}
    assert required == set(about()["settings"]["required"])
    # The other rows are the SDK's settings (nested ones as parent.child).
    others = {row["Setting"].split(".", 1)[0] for row in rows if row not in own}
    assert others <= SDK_SETTINGS & set(schemas)


def test_hub_definition_has_what_its_hub_page_shows() -> None:
    """Optional for the Hub's schema, but a plugin page without them is of little use."""
    definition = hub()
    for key in (
        "label",
        "description",
        "pip_url",
        "repo",
        "executable",
        "capabilities",
        "settings",
        "keywords",
        "domain_url",
        "maintenance_status",
        "logo_url",
    ):
        assert definition.get(key), f"the Hub definition has no {key}"
    assert "meltano_sdk" in definition["keywords"]


def test_hub_python_versions_are_the_package_classifiers() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    prefix = "Programming Language :: Python :: "
    classified = [
        c.removeprefix(prefix) for c in project["classifiers"] if c.count("::") == 2 and "." in c
    ]
    assert classified
    assert hub()["supported_python_versions"] == classified


def test_names_agree_with_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (executable,) = project["scripts"]
    extractor = meltano_extractor()
    assert about()["name"] == executable == hub()["name"] == extractor["name"]
    assert hub()["executable"] == extractor["executable"] == executable
    assert hub()["namespace"] == extractor["namespace"] == "tap_deepconverse"
    assert hub()["pip_url"] == project["name"]
    assert hub()["repo"] == project["urls"]["Repository"]
    assert extractor["pip_url"] == "-e ."


def imported_modules() -> set[str]:
    """The top-level modules the package imports, outside the standard library."""
    found: set[str] = set()
    for path in (ROOT / "tap_deepconverse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "tap_deepconverse"}


def _distribution_name(name: str) -> str:
    """A distribution's name as packaging compares them (typing_extensions = typing-extensions)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_the_code_imports_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        _distribution_name(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }
    providers = packages_distributions()
    imported = imported_modules()
    assert {"singer_sdk", "requests", "msgspec", "backoff"} <= imported
    undeclared = {
        module: providers.get(module)
        for module in imported
        if not {_distribution_name(name) for name in providers.get(module, [])} & declared
    }
    assert not undeclared, f"imported, from distributions not declared: {undeclared}"
    assert providers["backoff"] == ["python-backoff"]


def test_meltano_project_selects_every_stream() -> None:
    patterns = meltano_extractor()["select"]
    names = [str(vars(stream_type)["name"]) for stream_type in STREAM_TYPES]
    assert sorted(patterns) == sorted(f"{name}.*" for name in names)


def test_meltano_project_needs_no_hub() -> None:
    """Every plugin is declared in full, with a pinned pip_url, so no Hub lookup happens."""
    project = meltano_project()
    assert "version" not in project
    assert project["send_anonymous_usage_stats"] is False
    assert project.get("project_id")
    for plugins in project["plugins"].values():
        names = {plugin["name"] for plugin in plugins}
        for plugin in plugins:
            if "inherit_from" in plugin:  # it runs from the venv of the plugin it names
                assert plugin["inherit_from"] in names, plugin["name"]
                assert "pip_url" not in plugin, plugin["name"]
                continue
            assert plugin.get("namespace"), plugin["name"]
            assert plugin.get("pip_url"), plugin["name"]
            if plugin["name"] != "tap-deepconverse":
                assert "==" in plugin["pip_url"], plugin["name"]
    (duckdb,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-duckdb"]
    # duckdb>=1.3 makes target-duckdb 0.8.0 drop a row per batch without an error.
    assert "duckdb==1.2.2" in duckdb["pip_url"].split()


def test_readme_loader_table_is_meltano_yml() -> None:
    """Each loader the README lists is declared with its pip_url, variant and executable (the
    Hub name, also where a second variant is declared under another name), and is run with
    an extractor that adds exactly the settings the table gives (no extractor of its own when
    it needs none)."""
    project = meltano_project()
    loaders = {plugin["name"]: plugin for plugin in project["plugins"]["loaders"]}
    extractors = {plugin["name"]: plugin for plugin in project["plugins"]["extractors"]}
    rows = readme_loaders()
    assert sorted(row.plugin for row in rows) == sorted(loaders)
    for row in rows:
        loader = loaders[row.plugin]
        assert loader["pip_url"] == row.pip_url, row.plugin
        assert loader["variant"] == row.variant, row.plugin
        assert loader.get("executable", loader["name"]) == row.name, row.plugin
        assert loader["namespace"] == row.name.replace("-", "_"), row.plugin
        if row.tap_settings:
            plugin = extractors[row.extractor]
            assert plugin["inherit_from"] == TAP, row.plugin
            assert plugin["config"] == row.tap_settings, row.plugin
        else:
            assert row.extractor == TAP, row.plugin
    inherited = {name for name, plugin in extractors.items() if "inherit_from" in plugin}
    assert inherited == {row.extractor for row in rows if row.extractor != TAP}


def test_settings_only_set_where_a_loader_needs_them() -> None:
    """json_as_text stays off for the tap itself, in every environment: target-postgres
    (meltanolabs) keeps JSONB."""
    project = meltano_project()
    assert "json_as_text" not in (meltano_extractor().get("config") or {})
    for environment in project.get("environments", []):
        plugins = (environment.get("config") or {}).get("plugins", {})
        for plugin in plugins.get("extractors", []):
            assert "json_as_text" not in (plugin.get("config") or {}), environment["name"]


# Packaging


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, as `python -m build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    # uv (a dependency of meltano) builds the isolated build env much faster than pip.
    installer = ["--installer=uv"] if importlib.util.find_spec("uv") else []
    done = subprocess.run(
        [sys.executable, "-m", "build", *installer, "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_build_makes_a_wheel_and_an_sdist(dist: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["version"]
    (wheel,) = dist.glob(f"tap_deepconverse-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"tap_deepconverse-{version}.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"tap_deepconverse/py.typed", "tap_deepconverse/simulator/__main__.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {
        "README.md",
        "LICENSE",
        "meltano.yml",
        "CHANGELOG.md",
        "RELEASING.md",
        "pyproject.toml",
    } <= members
    # What the README points to.
    assert {
        "examples/github-actions/deepconverse-daily.yml",
        "hub/extractors/tap-deepconverse.yml",
    } <= members


def test_the_package_passes_twine_check_strict(dist: Path) -> None:
    """What PyPI would refuse or render badly (metadata, the README as its page), offline."""
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_declares_what_the_code_imports(dist: Path) -> None:
    """msgspec and backoff are imported, so declared; backoff's distribution is python-backoff
    (the SDK's), as the original `backoff` would overwrite its module. No development tool."""
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    names = {re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower() for line in requires}
    assert {"singer-sdk", "requests", "msgspec", "python-backoff"} <= names, requires
    assert "backoff" not in names
    assert not names & {"pytest", "ruff", "mypy", "meltano", "duckdb", "yamllint", "twine"}
    assert not any("extra ==" in line for line in requires), "no published extra"
    assert "License-Expression: Apache-2.0" in metadata.splitlines()


def test_wheel_installs_into_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    # --system-site-packages of a venv made from a venv sees the base interpreter's packages,
    # not this venv's: a .pth adds this venv's site-packages, so the dependencies need no
    # download. It adds the folder only, so the editable tap's own .pth stays unread.
    target_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(target_site, "_test_parent_env.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )

    # Away from the source tree, which `python -c` would put first on sys.path.
    where = subprocess.run(
        [str(python), "-c", "import tap_deepconverse; print(tap_deepconverse.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported the tap from {where}, not the wheel"
    done = subprocess.run(
        [str(venv / "bin" / "tap-deepconverse"), "--about"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "tap-deepconverse" in done.stdout
    assert "api_key" in done.stdout
