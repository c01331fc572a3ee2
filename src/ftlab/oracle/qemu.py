"""One guest boot: QEMU (TCG, one CPU) under deadlines, followed through its console.

QEMU always runs as a child of this process with a hard wall-clock limit, and is killed by its
PID (never by name) when a deadline passes:

* ``ready_s``: /init must report ``FTLAB-INIT ready`` (9p mounted) within this time;
* ``stall_s``: after that, some agent line must appear at least this often (a step that hangs the
  kernel stops them);
* ``total_s``: the whole boot.

The console (serial on stdout) is read line by line in a thread; ``FTLAB-AGENT <event> <json>``
lines become :class:`Boot` events. Nothing is left running: :func:`boot` returns only after QEMU
has exited or been killed and reaped.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import OracleError
from .install import KernelInfo

QEMU = "qemu-system-x86_64"


@dataclass
class Boot:
    """What one boot did: agent events in order, console tail, timings, and how it ended."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    ready_s: float | None = None
    ended: str = "exit"            # exit | timeout-ready | stall | timeout-total | fatal
    exit_code: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 2), "ready_s": None if self.ready_s is None else round(self.ready_s, 2),
                "ended": self.ended, "exit_code": self.exit_code, "reason": self.reason,
                "console_tail": self.console[-40:]}


def python_for_guest() -> str:
    """The host's python3 the guest runs through the read-only root (the system one if present)."""
    if os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    found = shutil.which("python3")
    if not found:
        raise OracleError("no python3 on the host for the guest to run")
    return os.path.realpath(found)


def command(info: KernelInfo, initrd: str, agent: str, plan: str, out_dir: str, memory_mb: int = 1024) -> list[str]:
    """The QEMU command line of a boot."""
    append = " ".join(["console=ttyS0", "panic=-1", "loglevel=3", "quiet",
                       f"ftlab_agent={agent}", f"ftlab_plan={plan}", f"ftlab_out={out_dir}",
                       f"ftlab_python={python_for_guest()}"])
    return [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none", "-no-reboot",
            "-kernel", info.vmlinuz, "-initrd", initrd, "-append", append,
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={out_dir},mount_tag=out,security_model=none"]


def boot(cmd: list[str], ready_s: float = 90.0, stall_s: float = 120.0, total_s: float = 1800.0,
         on_event: Any = None) -> Boot:
    """Run one guest to its end (or kill it at a deadline); see the module docstring."""
    result = Boot()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise OracleError(f"cannot start {cmd[0]}: {e.strerror}") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            lines.put(raw.decode(errors="replace").rstrip("\r\n"))
        lines.put(None)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    last = t0
    try:
        while True:
            now = time.monotonic()
            if result.ready_s is None and now - t0 > ready_s:
                result.ended, result.reason = "timeout-ready", f"the guest was not ready after {ready_s:.0f} s"
                break
            if result.ready_s is not None and now - last > stall_s:
                result.ended, result.reason = "stall", f"no progress from the agent for {stall_s:.0f} s"
                break
            if now - t0 > total_s:
                result.ended, result.reason = "timeout-total", f"the boot exceeded {total_s:.0f} s"
                break
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            result.console.append(line)
            if len(result.console) > 400:
                del result.console[:100]
            if line.startswith("FTLAB-INIT ready"):
                result.ready_s = time.monotonic() - t0
                last = time.monotonic()
            elif line.startswith("FTLAB-INIT fatal"):
                result.ended, result.reason = "fatal", line[len("FTLAB-INIT fatal "):]
            elif line.startswith("FTLAB-AGENT "):
                last = time.monotonic()
                _, event, rest = line.split(" ", 2) if line.count(" ") >= 2 else (line, line[12:], "{}")
                try:
                    fields = json.loads(rest)
                except ValueError:
                    fields = {"raw": rest}
                result.events.append((event, fields))
                if event == "fatal":
                    result.ended, result.reason = "fatal", str(fields.get("reason", ""))
                if on_event is not None:
                    on_event(event, fields)
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        th.join(timeout=5)
        result.exit_code = proc.returncode
        result.wall_s = time.monotonic() - t0
    return result
