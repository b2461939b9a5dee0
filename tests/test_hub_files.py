"""The files of a Meltano Hub pull request that adds the extractor (under hub/; the README's
Publishing section says where each goes) pass the Hub's own checks: its yamllint rules
(tests/hub_schema/yamllint.yaml, a copy of the Hub's), the names its CI compares, and the form
its tooling writes. A copy that breaks a rule is flagged, so the lint does check something.
(The definition's schema: test_hub_schema.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "hub"
DEFINITION = HUB / "extractors" / "tap-deepconverse.yml"
DEFAULT_VARIANTS = HUB / "default_variants.yml"
MAINTAINERS = HUB / "maintainers.yml"
LOGOS = HUB / "logos"
YAMLLINT_CONFIG = Path(__file__).resolve().parent / "hub_schema" / "yamllint.yaml"
HUB_YAML = (DEFINITION, DEFAULT_VARIANTS, MAINTAINERS)


def yamllint(*paths: Path) -> list[str]:
    """yamllint's findings, one line each, with the Hub's configuration."""
    command = [sys.executable, "-m", "yamllint", "--config-file", str(YAMLLINT_CONFIG)]
    done = subprocess.run(
        [*command, "--format", "parsable", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: errors found
    return done.stdout.splitlines()


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def definition() -> dict[str, Any]:
    document: dict[str, Any] = load(DEFINITION)
    return document


def test_every_yaml_file_for_the_hub_is_in_the_folder() -> None:
    assert sorted(HUB.rglob("*.y*ml")) == sorted(HUB_YAML)


def test_the_hub_files_pass_the_hubs_yamllint() -> None:
    """No error and no warning (the Hub's CI fails on errors only)."""
    assert yamllint(*HUB_YAML) == []


def _move_last_line_first(text: str) -> str:
    *lines, last = text.rstrip("\n").split("\n")
    return "\n".join([last, *lines]) + "\n"


def _swap_first_setting_keys(text: str) -> str:
    lines = text.split("\n")
    start = lines.index("settings:")
    kind = next(i for i in range(start, len(lines)) if lines[i].startswith("  kind:"))
    assert lines[kind + 1].startswith("  label:")
    lines[kind], lines[kind + 1] = lines[kind + 1], lines[kind]
    return "\n".join(lines)


def _indent_capabilities(text: str) -> str:
    head, rest = text.split("capabilities:\n", 1)
    items, tail = rest.split("description:", 1)
    indented = "".join(f"  {line}" for line in items.splitlines(keepends=True))
    return f"{head}capabilities:\n{indented}description:{tail}"


def _with_document_start(text: str) -> str:
    return "---\n" + text


@pytest.mark.parametrize(
    ("change", "rule", "level"),
    [
        (_move_last_line_first, "key-ordering", "error"),
        (_swap_first_setting_keys, "key-ordering", "error"),
        (_indent_capabilities, "indentation", "error"),
        (_with_document_start, "document-start", "warning"),
    ],
)
def test_a_definition_against_the_hubs_rules_is_flagged(
    change: Any, rule: str, level: str, tmp_path: Path
) -> None:
    """Errors fail the Hub's CI; warnings do not, but the test above allows none."""
    text = DEFINITION.read_text(encoding="utf-8")
    changed = change(text)
    assert changed != text
    assert yaml.safe_load(changed) is not None  # still YAML, only against the Hub's rules
    copy = tmp_path / "tap-deepconverse.yml"
    copy.write_text(changed, encoding="utf-8")
    found = yamllint(copy)
    assert any(line.endswith(f"({rule})") and f"[{level}]" in line for line in found), found


def hub_form(document: dict[str, Any]) -> dict[str, Any]:
    """The definition as the Hub's tooling (`hub-utils yamllint fix`) writes it: keys in
    alphabetical order at every level, settings by name, capabilities and each settings
    group in order."""

    def sorted_keys(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: sorted_keys(node[key]) for key in sorted(node)}
        if isinstance(node, list):
            return [sorted_keys(item) for item in node]
        return node

    fixed = dict(document)
    fixed["settings"] = sorted(document["settings"], key=lambda setting: setting["name"])
    fixed["capabilities"] = sorted(document["capabilities"])
    fixed["settings_group_validation"] = [
        sorted(group) for group in document["settings_group_validation"]
    ]
    result: dict[str, Any] = sorted_keys(fixed)
    return result


def test_the_definition_is_in_the_form_the_hubs_tooling_writes() -> None:
    document = definition()
    # json.dumps keeps the order of keys and lists, which is what is compared.
    assert json.dumps(document, indent=1) == json.dumps(hub_form(document), indent=1), (
        "order the keys and the settings of hub/extractors/tap-deepconverse.yml by name"
    )


def test_the_default_variant_entry_names_the_definition() -> None:
    document = definition()
    assert load(DEFAULT_VARIANTS) == {"extractors": {document["name"]: document["variant"]}}


def test_the_maintainer_entry_is_the_one_the_hubs_check_expects() -> None:
    """The Hub keys maintainers by lower-case variant, with the URL of the repository's owner."""
    document = definition()
    maintainers = load(MAINTAINERS)
    assert list(maintainers) == [document["variant"].lower()]
    (entry,) = maintainers.values()
    assert entry["name"] == document["variant"]
    assert entry["url"] == document["repo"].rsplit("/", 1)[0]
    assert entry["label"]
    assert "TODO" not in entry["label"]


def test_the_logo_is_here_where_logo_url_puts_it() -> None:
    """The Hub serves logos from its static/ folder: logo_url /assets/logos/extractors/x.svg
    is the file static/assets/logos/extractors/x.svg there, hub/logos/extractors/x.svg here."""
    logo_url = definition()["logo_url"]
    prefix = "/assets/logos/"
    assert logo_url.startswith(prefix + "extractors/")
    logo = LOGOS / logo_url.removeprefix(prefix)
    assert logo.is_file(), logo
    assert sorted(LOGOS.rglob("*.*")) == [logo]
    root = ET.fromstring(logo.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = (float(part) for part in root.attrib["viewBox"].split()[2:])
    assert width == height  # shown in a square on the Hub's pages
    assert logo.stat().st_size < 10_000
