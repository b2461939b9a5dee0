"""hub/extractors/tap-deepconverse.yml validates against Meltano Hub's own schema of extractor
definitions (copied into tests/hub_schema/, see its README), and that check does reject a
definition the Hub would refuse."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

ROOT = Path(__file__).resolve().parent.parent
HUB_SCHEMAS = Path(__file__).resolve().parent / "hub_schema"
DEFINITION = ROOT / "hub" / "extractors" / "tap-deepconverse.yml"


def _retrieve(uri: str) -> Resource:
    """A `$ref` of the Hub's schemas, from the local copies: `common/...` from common/, the
    rest beside extractors.schema.json, as in the Hub's schemas/ folder."""
    for folder in (HUB_SCHEMAS, HUB_SCHEMAS / "plugin_definitions"):
        path = folder / uri
        if path.is_file():
            return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))
    raise NoSuchResource(ref=uri)


@cache
def validator() -> Draft7Validator:
    schema = json.loads(
        (HUB_SCHEMAS / "plugin_definitions" / "extractors.schema.json").read_text(encoding="utf-8")
    )
    Draft7Validator.check_schema(schema)
    return Draft7Validator(
        schema,
        registry=Registry(retrieve=_retrieve),
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )


def problems(definition: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator().iter_errors(definition)
    ]


def definition() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DEFINITION.read_text(encoding="utf-8"))
    return document


def test_the_hub_definition_validates() -> None:
    assert problems(definition()) == []


@pytest.mark.parametrize("field", ["quality", "name", "namespace", "variant"])
def test_a_missing_required_field_is_rejected(field: str) -> None:
    broken = definition()
    del broken[field]
    assert any(f"'{field}' is a required property" in problem for problem in problems(broken))


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("quality",), "platinum"),
        (("maintenance_status",), "maintained"),
        (("capabilities", 0), "incremental"),
        (("settings", 0, "kind"), "secret"),
        (("supported_python_versions", 0), "3.x"),
        (("keywords",), "api"),
        (("settings", 0, "sensitive"), "yes"),
    ],
)
def test_a_value_the_hub_does_not_allow_is_rejected(where: tuple[Any, ...], value: Any) -> None:
    broken = definition()
    node = broken
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    found = problems(broken)
    path = "/".join(str(part) for part in where)
    assert any(problem.startswith(f"{path}:") for problem in found), found


@pytest.mark.parametrize("where", [(), ("settings", 0)])
def test_a_key_the_hub_does_not_know_is_rejected(where: tuple[Any, ...]) -> None:
    broken = copy.deepcopy(definition())
    node = broken
    for key in where:
        node = node[key]
    node["homepage"] = "https://example.com"
    assert any("'homepage' was unexpected" in problem for problem in problems(broken))
