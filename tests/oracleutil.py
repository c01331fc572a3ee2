"""Shared by the tests that boot the oracle's real guest (marker ``oracle``)."""

from __future__ import annotations

import pytest

from ftlab.errors import OracleError
from ftlab.oracle import install


def ready_kernel(series: str = install.SERIES) -> install.KernelInfo:
    """Install what the oracle needs for kernel ``series`` (nothing when all is there); FAIL, never
    skip, when it cannot."""
    try:
        return install.ensure(series=series)
    except OracleError as e:
        pytest.fail(f"oracle setup failed: {e}")


def guest_items(tmp_path, name: str, scenario: str, series: str = install.SERIES) -> tuple[list, object]:
    """``scenario`` (YAML text) written to ``tmp_path/name.yaml`` and resolved as oracle items,
    after :func:`ready_kernel` (of kernel ``series``); and an empty ``tmp_path/out`` for the run."""
    ready_kernel(series)
    from ftlab.bundled import resolve_items

    src = tmp_path / f"{name}.yaml"
    src.write_text(scenario)
    out = tmp_path / "out"
    out.mkdir()
    return resolve_items([str(src)]), out
