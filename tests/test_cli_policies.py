"""``ftlab policies``: every policy of the registry, its changes, mutations and kernel builds."""

from __future__ import annotations

import json

import pytest

from ftlab import output_schemas
from ftlab.cli import COMMAND_MODULES, main
from ftlab.cli import policies as policies_cli
from ftlab.model.policies import registry


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["policies", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_module_is_listed() -> None:
    assert policies_cli in COMMAND_MODULES


def test_json_lists_every_policy_as_the_registry_has_it(capsys) -> None:
    code, out, err = _run(capsys, "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    output_schemas.validate(doc)
    assert doc["default"] == registry.DEFAULT_POLICY
    assert [p["name"] for p in doc["policies"]] == registry.policy_names(variants=True)
    for p in doc["policies"]:
        info = registry.POLICIES[p["name"]]
        assert (p["kernel"], p["description"], p["package"], p["variant"]) == (
            info.kernel, info.description, info.package, info.variant)
        assert [c["id"] for c in p["changes"]] == list(info.changes)
        for c in p["changes"]:
            assert (c["title"], c["releases"]) == (registry.CHANGES[c["id"]].title,
                                                   list(registry.CHANGES[c["id"]].releases))
        assert p["mutations"] == [m for m in registry.MUTATIONS if registry.mutation_applies(m, p["name"])]
        assert [(b["release"], b["version"], b["validated"]) for b in p["builds"]] == [
            (b.release, b.version, b.validated) for b in info.builds]
    by = {p["name"]: p for p in doc["policies"]}
    validated = {(p["name"], b["release"], b["version"]) for p in doc["policies"] for b in p["builds"]
                 if b["validated"]}
    assert ("linux-6.1", "6.1.0-57-amd64", "6.1.192-3") in validated
    assert ("linux-6.12", "6.12.95+deb12-amd64", "6.12.95-1~bpo12+1") in validated
    assert by["linux-6.12"]["changes"][0]["id"] in registry.CHANGES


def test_text_names_each_policy_its_changes_and_builds(capsys) -> None:
    code, out, err = _run(capsys)
    assert (code, err) == (0, "")
    for name, info in registry.POLICIES.items():
        assert any(line.startswith(f"{name}") and info.kernel in line for line in out.splitlines()), name
        for c in info.changes:
            assert f"    {c} {registry.CHANGES[c].title}" in out
        for b in info.builds:
            state = "validated" if b.validated else "read, not run"
            assert f"    {b.release} (Debian {b.version}): {state}: {b.how}" in out
    assert f"{registry.DEFAULT_POLICY} (default):" in out
    assert "(variant)" in out


@pytest.mark.parametrize("argv", [["--bogus"], ["extra"]])
def test_bad_arguments_are_one_line(capsys, argv) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("ftlab: policies")
