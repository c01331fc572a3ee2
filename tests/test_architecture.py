"""The house rules, checked on the source: each test fails when its rule is broken.

* the model imports no shell, does no I/O and registers nothing when imported;
* a policy imports no other policy and no client;
* no shell imports a private name of another package;
* the explorer's engine (the checker, its search strategies, the interleaving search) imports
  nothing of the kernel model;
* the names of policies, changes and mutations are written only in the registry;
* no module imports another in a circle;
* ``ftlab.model`` type-checks under ``mypy --strict`` and the sources pass ``ruff``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftlab.model.policies import registry

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "ftlab"

#: The shells around the model (top-level packages and modules of ftlab).
ENGINE = {"ftlab.explorer.checker", "ftlab.explorer.bfs", "ftlab.explorer.shared_frontier",
          "ftlab.explorer.interleavings"}


def modules() -> dict[str, Path]:
    """Every module of ftlab by dotted name."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str, *, top_level_only: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of module ``name``,
    relative imports resolved; ``top_level_only``: the imports run when the module loads."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    base = name if is_package(name) else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under a module-level if/try (but not TYPE_CHECKING blocks)
        more = []
        for node in tree.body:
            if isinstance(node, (ast.If, ast.Try)) and not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)):
                more.extend(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        nodes = nodes + more
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            out.append((mod, names, node.lineno))
            for n in names:  # ``from package import submodule``
                if f"{mod}.{n}" in MODULES:
                    out.append((f"{mod}.{n}", [], node.lineno))
    return out


def in_type_checking_only(name: str, lineno: int) -> bool:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            if node.lineno <= lineno <= max(getattr(n, "lineno", 0) for n in ast.walk(node)):
                return True
    return False


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def test_the_model_imports_no_shell():
    bad = []
    for name in MODULES:
        if not under(name, "ftlab.model"):
            continue
        for mod, _, line in imports(name):
            if under(mod, "ftlab") and not (under(mod, "ftlab.model") or mod == "ftlab.errors"):
                bad.append(f"{name}:{line} imports {mod}")
    assert bad == []


#: Modules that read or write the world, or bring clocks and randomness (``importlib`` itself is
#: allowed: the policy registry imports the version packages lazily; its resources are not).
IO_MODULES = {"os", "io", "sys", "pathlib", "subprocess", "time", "random", "socket", "shutil", "tempfile",
              "gzip", "json", "logging", "importlib.resources"}


def test_the_model_does_no_io_and_registers_nothing_on_import():
    bad = []
    for name, path in MODULES.items():
        if not under(name, "ftlab.model"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for mod, _, line in imports(name):
            if mod.split(".")[0] in IO_MODULES or mod in IO_MODULES:
                bad.append(f"{name}:{line} imports {mod}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "print",
                                                                                                  "input"):
                bad.append(f"{name}:{node.lineno} calls {node.func.id}()")
        for node in tree.body:  # a call made when the module loads, for its effect (a registration)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                bad.append(f"{name}:{node.lineno} calls something at import")
    assert bad == []


def test_a_policy_imports_no_other_policy_and_no_client():
    versions = {info.package for info in registry.POLICIES.values()}
    bad = []
    for name in MODULES:
        if not under(name, "ftlab.model.policies"):
            continue
        own = name.split(".")[3] if name.count(".") >= 3 else None
        for mod, _, line in imports(name):
            if under(mod, "ftlab.model.clients"):
                bad.append(f"{name}:{line} imports the client {mod}")
            for v in versions:
                if v != own and under(mod, f"ftlab.model.policies.{v}") and own in versions:
                    bad.append(f"{name}:{line} imports the policy {mod}")
            if own not in versions and any(under(mod, f"ftlab.model.policies.{v}") for v in versions) \
                    and name != "ftlab.model.policies":
                bad.append(f"{name}:{line} (shared by the versions) imports the version {mod}")
    assert bad == []


# ---------------------------------------------------------------------------------------------
# the shells
# ---------------------------------------------------------------------------------------------
def top_package(name: str) -> str:
    """The package a module belongs to, for the privacy rule: ``ftlab.<x>`` (``ftlab.model.<x>``
    inside the model)."""
    parts = name.split(".")
    if parts[:2] == ["ftlab", "model"] and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def test_no_module_imports_a_private_name_of_another_package():
    bad = []
    for name in MODULES:
        mine = top_package(name)
        for mod, names, line in imports(name):
            if not under(mod, "ftlab") or top_package(mod) == mine:
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            private_mod = [p for p in mod.split(".") if p.startswith("_") and not p.startswith("__")]
            if private or private_mod:
                bad.append(f"{name}:{line} imports {', '.join(private) or mod} from {mod}")
    assert bad == []


def test_the_explorer_engine_knows_nothing_of_the_kernel():
    bad = []
    for name in ENGINE:
        for mod, _, line in imports(name):
            if under(mod, "ftlab") and mod not in ENGINE and mod != "ftlab.errors":
                bad.append(f"{name}:{line} imports {mod}")
    assert bad == []


def test_no_import_circle_between_modules():
    graph = {name: {mod for mod, _, line in imports(name, top_level_only=True)
                    if mod in MODULES and mod != name and not in_type_checking_only(name, line)}
             for name in MODULES}
    # a package's own submodules are loaded by it: importing the package from a submodule is no circle
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not (is_package(d) and under(name, d))}
    cycles = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    assert cycles == []


# ---------------------------------------------------------------------------------------------
# names from one registry
# ---------------------------------------------------------------------------------------------
def registered_names() -> set[str]:
    return set(registry.POLICIES) | set(registry.CHANGES) | set(registry.MUTATIONS)


def test_policy_change_and_mutation_names_are_written_only_in_the_registry():
    names = registered_names()
    bad = []
    for name, path in MODULES.items():
        if name == "ftlab.model.policies.registry":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and node.value in names:
                bad.append(f"{name}:{node.lineno} writes {node.value!r}")
    assert bad == []


def test_the_registry_rule_would_catch_a_literal(tmp_path):
    # the rule above reads string constants, not docstrings: a literal policy name is found
    tree = ast.parse('"""linux-6.1 in a docstring is fine."""\nx = "linux-6.1"\n')
    consts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert "linux-6.1" in consts and registry.DEFAULT_POLICY in registered_names()


# ---------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------
def _tool(name: str) -> str:
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it is in the test extras)")
    return path


def test_the_model_type_checks_strictly():
    p = subprocess.run([_tool("mypy"), "--strict", "--no-incremental", "src/ftlab/model"], cwd=SRC.parent,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:]


def test_ruff_finds_nothing():
    p = subprocess.run([_tool("ruff"), "check", "src", "tests"], cwd=SRC.parent, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-4000:]
