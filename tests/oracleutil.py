"""Shared by the tests that boot the oracle's real guest (marker ``oracle``)."""

from __future__ import annotations

import pytest

from ftlab.errors import OracleError
from ftlab.oracle import install


def ready_kernel() -> install.KernelInfo:
    """Install what the oracle needs (nothing when all is there); FAIL, never skip, when it cannot."""
    try:
        return install.ensure()
    except OracleError as e:
        pytest.fail(f"oracle setup failed: {e}")
