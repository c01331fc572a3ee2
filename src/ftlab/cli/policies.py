"""``ftlab policies``: the kernel versions the model has, from the registry alone.

Every policy of :data:`ftlab.model.policies.registry.POLICIES`, in registry order (variants
included and marked): its kernel, what sets it apart, the version package
it is built on, the upstream changes composed onto that package's base (id, title, the releases
that carry it), the mutations that change anything under it, the upstream versions whose rules it
has (what makes it the nearest policy of an unknown build), and the exact kernel builds it stands
for -- validated on the real kernel, or by reading only -- with where each claim comes from.

Plain text: one block per policy. JSON (``--json``), format 1::

    {"format": 1, "command": "policies", "default": POLICY,
     "policies": [{"name": POLICY, "kernel": str, "description": str, "package": str,
                   "variant": bool, "default": bool, "kernel_series": str | null,
                   "versions": [str, str] | null,
                   "changes": [{"id": str, "title": str, "releases": [str]}],
                   "mutations": [str],
                   "builds": [{"release": str, "version": str, "validated": bool, "how": str}]}]}
"""

from __future__ import annotations

import argparse
from typing import Any

from ..model.policies.registry import CHANGES, DEFAULT_POLICY, MUTATIONS, POLICIES, mutation_applies
from ._base import Output, Subcommand, add_json_option, json_document


def _configure_policies(p: argparse.ArgumentParser) -> None:
    add_json_option(p)


def policies_document() -> list[dict[str, Any]]:
    """One entry per registered policy, in registry order (see the module docstring)."""
    out = []
    for name, info in POLICIES.items():
        out.append({
            "name": name, "kernel": info.kernel, "description": info.description, "package": info.package,
            "variant": info.variant, "default": name == DEFAULT_POLICY, "kernel_series": info.kernel_series,
            "versions": list(info.versions) if info.versions is not None else None,
            "changes": [{"id": c, "title": CHANGES[c].title, "releases": list(CHANGES[c].releases)}
                        for c in info.changes],
            "mutations": [m for m in MUTATIONS if mutation_applies(m, name)],
            "builds": [{"release": b.release, "version": b.version, "validated": b.validated, "how": b.how}
                       for b in info.builds],
        })
    return out


def _text(policies: list[dict[str, Any]]) -> str:
    out = []
    for p in policies:
        marks = [m for m, on in (("default", p["default"]), ("variant", p["variant"])) if on]
        out.append(f"{p['name']}{' (' + ', '.join(marks) + ')' if marks else ''}: {p['kernel']}")
        out.append(f"  {p['description']}")
        line = f"  package {p['package']}"
        if p["versions"]:
            line += f"; the nearest policy of other builds of upstream {p['versions'][0]} to {p['versions'][1]}"
        out.append(line)
        if p["changes"]:
            out.append("  changes onto the package's base:")
            out.extend(f"    {c['id']} {c['title']} ({', '.join(c['releases'])})" for c in p["changes"])
        else:
            out.append("  changes onto the package's base: none")
        out.append(f"  mutations: {', '.join(p['mutations']) or 'none'}")
        if p["builds"]:
            out.append("  kernel builds it stands for:")
            for b in p["builds"]:
                state = "validated" if b["validated"] else "read, not run"
                out.append(f"    {b['release']} (Debian {b['version']}): {state}: {b['how']}")
        else:
            out.append("  kernel builds it stands for: none (preflight uses it only with --policy)")
    return "\n".join(out) + "\n"


def cmd_policies(args: argparse.Namespace) -> Output:
    """``ftlab policies``: every registered policy, its changes, mutations and kernel builds."""
    policies = policies_document()
    if args.json:
        return Output(json_document("policies", default=DEFAULT_POLICY, policies=policies))
    return Output(_text(policies))


SUBCOMMANDS = (
    Subcommand("policies", "list the policies (kernel versions) the model has: their changes, mutations and the "
               "kernel builds each was validated on", configure=_configure_policies, run=cmd_policies),
)
