"""``ftlab oracle run``: replay scenarios on the real kernel, in as few guests as possible.

Order of work: make sure the tools are there (:func:`ftlab.oracle.install.ensure`, which installs
nothing when all is present), read the guest kernel's BTF, plan every scenario (a scenario the
oracle cannot replay is refused before anything is built), build every module in one kbuild run,
build (or reuse) the initramfs, then boot.

One guest runs the scenarios in order. The agent stops after a scenario that leaves the kernel
dirty (something could not be undone, a WARN/BUG/Oops fired, ftrace died); a guest that hangs
(no agent line for ``stall_s``) or dies is killed and reaped. Either way the runner boots a fresh
guest for the scenarios not yet run. A guest that fails before its first scenario ends the run
with an :class:`~ftlab.errors.OracleError` (the same failure would repeat).

Results: ``<out>/results.json`` (see :func:`run`) plus, per scenario, the agent's JSON-lines file
and, per boot, the console log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import OracleError
from ..scenario.schema import Scenario
from . import btf as btf_mod
from . import initramfs, install, kernels, modgen, qemu
from .plan import PlannedScenario, btf_subset, plan_scenario

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")
RESULTS_FORMAT = 1


def cache_dir(version: str) -> str:
    """Where built modules, the initramfs and the BTF table of kernel ``version`` are kept."""
    base = os.environ.get("FTLAB_ORACLE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ftlab", "oracle")
    return os.path.join(base, version)


@dataclass(frozen=True)
class Item:
    """A scenario to replay: the parsed file, its line map and a source name."""

    scenario: Scenario
    lines: dict
    source: str


@contextlib.contextmanager
def cache_lock(cdir: str) -> Iterator[None]:
    """Serialise builds in one cache directory (concurrent runs share it)."""
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:] or "scenario"


def _read_results(path: str) -> tuple[list[dict], dict | None, list[str] | None]:
    steps: list[dict] = []
    summary = None
    before = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if "summary" in rec:
                    summary = rec["summary"]
                elif "touched_before" in rec:
                    before = rec["touched_before"]
                else:
                    steps.append(rec)
    except OSError:
        pass
    return steps, summary, before


def _write_json(path: str, doc: Any, indent: int | None = None) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=indent)
    os.replace(tmp, path)


def run(items: list[Item], out_dir: str, *, progress: Callable[[str], None] | None = None,
        ready_s: float = 120.0, stall_s: float = 150.0, memory_mb: int = 1024,
        post_plan: Callable[[list[PlannedScenario]], None] | None = None,
        kernel: str = install.SERIES) -> dict[str, Any]:
    """Replay ``items`` on the real kernel of series ``kernel`` (``6.1``, ``6.12``: see
    :mod:`ftlab.oracle.kernels`); write and return the results document.

    ``{"format": 1, "kernel": str, "series": str, "policy": str (the model policy of the
    series), "build_s", "wall_s", "boots": [{"index", "scenarios": [id...],
    "wall_s", "ready_s", "ended", "exit_code", "reason"}], "scenarios": [{"id", "source",
    "status": "clean" | "dirty" | "hung" | "crashed" | "not-run", "boot", "wall_s", "problems",
    "touched", "touched_before": null | [touched_functions record...], "steps": [agent step record...]}]}``

    ``touched_before``: the touched_functions records (6.12; null where the kernel has no such
    file) of the scenario's functions when it began, i.e. what earlier scenarios of the same
    guest left there (a sticky ``M``).

    ``post_plan`` (optional) is called with the planned scenarios before anything is built, and may
    insert agent steps (e.g. ``{"op": "snapshot", ...}``, see the agent's ``snapshot``).
    """
    say = progress or (lambda s: None)
    t0 = time.monotonic()
    spec = kernels.get(kernel)
    info = install.ensure(series=spec.series)
    cdir = cache_dir(info.version)
    with cache_lock(cdir):
        btf = btf_mod.kernel_btf(info.vmlinuz, cdir, dict(info.guest_modules()),
                                 kbuild_vmlinux=os.path.join(info.kbuild_dir, "vmlinux"))
    planned: list[PlannedScenario] = []
    for n, it in enumerate(items, 1):
        planned.append(plan_scenario(it.scenario, it.lines, it.source, btf["funcs"],
                                     sid=f"{n:02d}-{_slug(os.path.basename(it.source).rsplit('.', 1)[0])}",
                                     kernel=spec))
    if post_plan is not None:  # hook: a caller may add agent steps (ftlab preflight's snapshot steps)
        post_plan(planned)
    out_dir = os.path.abspath(out_dir)
    for path in (out_dir, AGENT, cdir):
        if any(ch.isspace() for ch in path):
            raise OracleError(f"path {path!r} has white space (it goes on the guest's kernel command line)")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.endswith((".jsonl", ".console.log")) or (name.startswith("plan-") and name.endswith(".json")) \
                or name == "results.json":
            os.unlink(os.path.join(out_dir, name))
    say(f"kernel {info.version}; building {len({m.name for p in planned for m in p.modules})} module(s)")
    with cache_lock(cdir):
        ko = modgen.build([m for p in planned for m in p.modules], os.path.join(cdir, "modules"), info.kbuild_dir)
        initrd = initramfs.build(info, cdir)
    build_s = time.monotonic() - t0
    specs = [p.spec(ko, f"{p.id}.jsonl") for p in planned]
    status: dict[str, dict[str, Any]] = {s["id"]: {"status": "not-run", "boot": None, "problems": []} for s in specs}
    boots: list[dict[str, Any]] = []
    todo = list(specs)
    while todo:
        nboot = len(boots) + 1
        plan = {"kernel": info.version, "btf": btf_subset(btf, planned), "out": out_dir, "scenarios": todo}
        plan_path = os.path.join(out_dir, f"plan-{nboot}.json")
        _write_json(plan_path, plan)
        say(f"boot {nboot}: {len(todo)} scenario(s)")
        current: dict[str, Any] = {"id": None}

        def on_event(event: str, fields: dict[str, Any], current: dict[str, Any] = current,
                     nboot: int = nboot) -> None:
            if event == "begin":
                current["id"] = fields.get("scenario")
            elif event == "end":
                sid = fields.get("id")
                st = status[sid]
                st.update(status="clean" if fields.get("clean") else "dirty", boot=nboot,
                          problems=fields.get("problems", []), wall_s=fields.get("wall_s"))
                say(f"  {sid}: {st['status']} ({fields.get('steps')} steps, {fields.get('wall_s', 0):.1f} s)"
                    + (f" -- {'; '.join(st['problems'])}" if st["problems"] else ""))
                current["id"] = None

        total_s = 300.0 + 90.0 * len(todo)
        b = qemu.boot(qemu.command(info, initrd, AGENT, plan_path, out_dir, memory_mb), ready_s=ready_s,
                      stall_s=stall_s, total_s=total_s, on_event=on_event)
        with open(os.path.join(out_dir, f"boot-{nboot}.console.log"), "w", encoding="utf-8") as f:
            f.write("\n".join(b.console) + "\n")
        began = [f.get("scenario") for e, f in b.events if e == "begin"]
        boots.append({"index": nboot, "scenarios": began, **b.as_dict()})
        say(f"boot {nboot}: {b.ended} after {b.wall_s:.1f} s (ready after "
            f"{b.ready_s if b.ready_s is None else round(b.ready_s, 1)} s)" + (f": {b.reason}" if b.reason else ""))
        if not began:
            tail = next((ln for ln in reversed(b.console) if ln.strip()), "")
            raise OracleError(f"the guest ran no scenario ({b.ended}: {b.reason or 'see ' + out_dir}); "
                              f"last console line: {tail[:200]!r}")
        if current["id"] is not None:  # the guest ended in the middle of a scenario
            st = status[current["id"]]
            crashed = b.ended == "exit"
            oops = any("Oops" in ln or "BUG:" in ln or "Kernel panic" in ln for ln in b.console)
            st.update(status="crashed" if crashed else "hung", boot=nboot,
                      problems=[b.reason or ("the kernel oopsed" if oops else "the agent died")],
                      oops=oops)
        done = {sid for sid, st in status.items() if st["status"] != "not-run"}
        todo = [s for s in todo if s["id"] not in done]
    scenarios = []
    for s, p in zip(specs, planned):
        steps, summary, before = _read_results(os.path.join(out_dir, s["file"]))
        st = status[s["id"]]
        if st["status"] in ("hung", "crashed") and len(steps) < len(s["steps"]):
            nxt = s["steps"][len(steps)]
            steps.append({"index": len(steps) + 1, "action": nxt["action"],
                          "result": "Oops" if st.get("oops") else ("hung" if st["status"] == "hung" else "crashed"),
                          "enabled": [], "call": None, "view": None, "ftrace_dead": None, "warn": None,
                          "synthetic": True, "notes": st["problems"]})
        scenarios.append({"id": s["id"], "source": p.source, "status": st["status"], "boot": st["boot"],
                          "wall_s": (summary or {}).get("wall_s", st.get("wall_s")), "problems": st["problems"],
                          "touched": s["touched"], "touched_before": before, "steps": steps})
    doc = {"format": RESULTS_FORMAT, "kernel": info.version, "series": spec.series, "policy": spec.policy,
           "build_s": round(build_s, 2), "wall_s": round(time.monotonic() - t0, 2), "boots": boots,
           "scenarios": scenarios}
    _write_json(os.path.join(out_dir, "results.json"), doc, indent=1)
    return doc


def kernel_out_dir(out_dir: str, series: str, several: bool) -> str:
    """Where one kernel's results go: ``out_dir`` itself, or its subfolder ``<series>`` when
    several kernels run (``--kernel all``)."""
    return os.path.join(out_dir, series) if several else out_dir


def run_kernels(items: list[Item], out_dir: str, series: list[str], **kw: Any) -> dict[str, dict[str, Any]]:
    """:func:`run` on each kernel of ``series`` in turn (one after the other, never side by side);
    series -> results document."""
    return {s: run(items, kernel_out_dir(out_dir, s, len(series) > 1), kernel=s, **kw) for s in series}


def load_results(path: str) -> dict[str, Any]:
    """A results document written by :func:`run` (``path`` is the file or its directory)."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise OracleError(f"cannot read oracle results {path}: {e.strerror}") from None
    except ValueError as e:
        raise OracleError(f"oracle results {path} are not JSON: {e}") from None
    if doc.get("format") != RESULTS_FORMAT:
        raise OracleError(f"oracle results {path} have format {doc.get('format')!r}, expected {RESULTS_FORMAT}")
    return doc
