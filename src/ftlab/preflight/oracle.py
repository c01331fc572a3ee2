"""Snapshots of real guests: run scenarios in the oracle's QEMU guest and take ``snapshot.py`` there.

Used to make the committed test data (tests/data/snapshots/, ``python -m ftlab.preflight.oracle
OUTDIR SCENARIO...``; ``--kernel 6.12`` for the 6.12 guest's, tests/data/snapshots/6.12/) and by
the end-to-end preflight test. It reuses the oracle
(:func:`ftlab.oracle.runner.run`) through its ``post_plan`` hook: after step ``at`` of a scenario
(default: after its last step, before the agent cleans up) an agent step ``snapshot`` runs
src/ftlab/snapshot.py in the guest (the host tree is the guest's root over 9p) and writes the JSON
into the run's output directory. With ``wait=True`` the guest then waits until the host writes
``<snapshot>.go`` into the same directory, so the host can answer from the snapshot *before* the
guest performs the next steps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

SNAPSHOT_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "snapshot.py")


def snapshot_hook(points: dict[int, tuple[int | None, str, bool]], out_dir: str,
                  wait_s: float = 90.0) -> Callable[[list[Any]], None]:
    """A ``post_plan`` hook: ``points`` maps scenario index -> (after step, file name, wait)."""
    out_dir = os.path.abspath(out_dir)

    def hook(planned: list[Any]) -> None:
        for n, (at, name, wait) in points.items():
            p = planned[n]
            pos = len(p.steps) if at is None else at
            path = os.path.join(out_dir, name)
            st = {"op": "snapshot", "action": f"snapshot -> {name}", "script": SNAPSHOT_PY, "path": path}
            if wait:
                st.update(wait_for=path + ".go", wait_s=wait_s)
            p.steps.insert(pos, st)

    return hook


def capture(paths: list[str], out_dir: str, progress: Callable[[str], None] | None = None,
            kernel: str = "6.1") -> dict[str, Any]:
    """Run each scenario file in one guest and snapshot the state after its last step.

    Writes ``<out_dir>/<scenario basename>.snapshot.json``; returns the oracle results document.
    """
    from ..bundled import resolve_items
    from ..oracle import runner

    items = resolve_items(paths)
    points = {i: (None, os.path.basename(p).rsplit(".", 1)[0] + ".snapshot.json", False)
              for i, p in enumerate(paths)}
    return runner.run(items, out_dir, progress=progress, post_plan=snapshot_hook(points, out_dir), kernel=kernel)


def main(argv: list[str]) -> int:  # pragma: no cover - a maintenance script
    kernel = "6.1"
    if len(argv) >= 2 and argv[0] == "--kernel":
        kernel, argv = argv[1], argv[2:]
    if len(argv) < 2:
        sys.stderr.write("usage: python -m ftlab.preflight.oracle [--kernel 6.1|6.12] OUTDIR SCENARIO.yaml...\n")
        return 2
    doc = capture(argv[1:], argv[0], progress=lambda s: sys.stderr.write(s + "\n"), kernel=kernel)
    bad = [s for s in doc["scenarios"] if s["status"] != "clean"]
    for s in doc["scenarios"]:
        sys.stderr.write(f"{s['id']}: {s['status']} {s['problems']}\n")
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
