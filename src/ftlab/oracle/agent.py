"""The in-guest agent of the real-kernel oracle: replays planned scenarios on the running kernel.

This file runs *inside* the QEMU guest, as ``chroot /host /usr/bin/python3 -B agent.py PLAN``,
with the host's root filesystem mounted read-only at ``/`` (9p) and the guest's /proc, /sys and
/dev bound over it. It uses only the standard library (ctypes for the system calls that Python
does not wrap) and imports nothing from ftlab, so that it starts fast under TCG.

Theory of operation
-------------------
The plan (JSON, written by :mod:`ftlab.oracle.plan`) lists scenarios, each a list of low-level
steps with every module already built. For each step the agent acts on the kernel the way a user
would and records what the model also produces:

* ``livepatch enable|replace``: ``finit_module`` of the generated live-patch module (its init
  calls klp_enable_patch, so the syscall returns the patch's errno), then wait for
  ``/sys/kernel/livepatch/<module>/transition`` to read 0; ``disable``: write 0 to ``enabled``,
  wait for the transition, ``delete_module`` with retries (the patch drops its module reference
  from a work item, so EAGAIN is normal for a moment);
* ``bpf attach``: ``bpf(BPF_PROG_LOAD)`` of a hand-assembled BPF_PROG_TYPE_TRACING program with
  the target's BTF id (and, for a module's function, an fd of the module's BTF object), then
  ``bpf(BPF_RAW_TRACEPOINT_OPEN)`` for the link; ``detach``: close the
  link. Every program appends ``(program id, value)`` to a shared array map: fentry 0, fexit and
  fmod_ret the return-value slot they see, so a call shows which programs fired in which order;
* ``kprobe add|remove``, ``direct register|unregister``, ``ops register|unregister``: load /
  unload a generated module;
  ``direct modify``: write the module's ``tramp`` parameter (modify_ftrace_direct_multi);
* ``tracer``: the tracefs files, as the model's runner writes them;
* ``read`` (inserted by tools such as :mod:`ftlab.oracle.groundtruth`, never by a scenario):
  files read verbatim (whole, filtered to lines naming given words, or copied out);
* ``call``: the userspace action that reaches the function (a /proc read, getsid or statfs), then
  which body ran (the live patch's marker in the output, or its hit counter), the BPF log, the
  kprobe / direct-trampoline hit counters, and the value the caller saw.

After every step: the enabled_functions records of the scenario's functions (verbatim), the
kernel log lines of the step (/dev/kmsg), WARN / BUG / Oops, the taint mask, and whether ftrace is
dead (the filter files fail with ENODEV). Each step is appended to the scenario's result file at
once, so a guest that hangs or dies keeps what it had done. After a scenario the agent removes
everything it added; if the kernel is not clean afterwards (or ftrace died, or a WARN/BUG/Oops
fired) it stops, and the host boots a fresh guest for the remaining scenarios.

Console protocol: lines ``FTLAB-AGENT <event> <json>`` on stdout (the serial console), read by
:mod:`ftlab.oracle.qemu` to follow progress.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import hashlib
import json
import os
import struct
import sys
import time

TRACING = "/sys/kernel/tracing"
LIVEPATCH = "/sys/kernel/livepatch"

SYS_FINIT_MODULE = 313
SYS_DELETE_MODULE = 176
SYS_BPF = 321

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_LOAD = 5
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_GET_FD_BY_ID = 19
BPF_BTF_GET_NEXT_ID = 23
BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_TRACING = 26
ATTACH_TYPES = {"fentry": 24, "fexit": 25, "fmod_ret": 26}

LOG_SLOTS = 64          # slot 0: the sequence counter; slots 1..62: (prog id, value)
LOG_VALUE_SIZE = 16

MARKER = "ftlab-oracle body="

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def errname(err: int) -> str:
    """A positive errno as the model names it (``EBUSY``); 524 is the kernel-internal ENOTSUPP."""
    if err == 524:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, str(-err))


def emit(event: str, **fields: object) -> None:
    """One console protocol line."""
    sys.stdout.write(f"FTLAB-AGENT {event} {json.dumps(fields, sort_keys=True)}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# System calls
# ---------------------------------------------------------------------------------------------
def finit_module(path: str, params: str = "") -> int:
    """Load a module; 0 or a positive errno."""
    fd = os.open(path, os.O_RDONLY)
    try:
        r = _libc.syscall(SYS_FINIT_MODULE, fd, params.encode(), 0)
        return 0 if r == 0 else ctypes.get_errno()
    finally:
        os.close(fd)


def delete_module(name: str, deadline_s: float = 10.0) -> int:
    """Unload a module, retrying EAGAIN/EBUSY until the deadline; 0 or a positive errno."""
    end = time.monotonic() + deadline_s
    while True:
        r = _libc.syscall(SYS_DELETE_MODULE, name.encode(), os.O_NONBLOCK)
        if r == 0:
            return 0
        err = ctypes.get_errno()
        if err not in (_errno.EAGAIN, _errno.EBUSY) or time.monotonic() > end:
            return err
        time.sleep(0.02)


def bpf(cmd: int, attr: bytearray) -> int:
    """bpf(2): the result (fd or 0) or minus a positive errno."""
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    r = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    return r if r >= 0 else -ctypes.get_errno()


def _addr(b: ctypes.Array) -> int:  # type: ignore[type-arg]
    return ctypes.addressof(b)


class BpfLog:
    """The shared array map the programs append to: slot 0 counts, slots 1.. hold (id, value)."""

    def __init__(self) -> None:
        attr = bytearray(struct.pack("<IIIII", BPF_MAP_TYPE_ARRAY, 4, LOG_VALUE_SIZE, LOG_SLOTS, 0))
        attr += bytes(72 - len(attr))
        fd = bpf(BPF_MAP_CREATE, attr)
        if fd < 0:
            raise OSError(-fd, f"BPF_MAP_CREATE: {errname(-fd)}")
        self.fd = fd

    def _elem(self, cmd: int, key: int, value: ctypes.Array, flags: int = 0) -> int:  # type: ignore[type-arg]
        k = ctypes.c_uint32(key)
        attr = bytearray(struct.pack("<IIQQQ", self.fd, 0, ctypes.addressof(k), _addr(value), flags))
        return bpf(cmd, attr)

    def reset(self) -> None:
        self._elem(BPF_MAP_UPDATE_ELEM, 0, (ctypes.c_char * LOG_VALUE_SIZE)())

    def read(self) -> list[tuple[int, int]]:
        v = (ctypes.c_char * LOG_VALUE_SIZE)()
        if self._elem(BPF_MAP_LOOKUP_ELEM, 0, v) < 0:
            return []
        n = min(struct.unpack_from("<Q", v.raw)[0], LOG_SLOTS - 2)
        out = []
        for i in range(1, n + 1):
            if self._elem(BPF_MAP_LOOKUP_ELEM, i, v) == 0:
                out.append(struct.unpack_from("<QQ", v.raw))
        return out


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _ld_map_fd(dst: int, fd: int) -> bytes:
    return _insn(0x18, dst, 1, 0, fd) + _insn(0, 0, 0, 0, 0)


def tracing_program(map_fd: int, prog_id: int, ret_off: int | None, ret: int) -> bytes:
    """The BPF program every attach loads (hand-assembled).

    ``r7`` = the return-value slot of the context (fexit, fmod_ret) or 0 (fentry);
    ``n = __sync_fetch_and_add(&log[0], 1)``; if ``n + 1 < 63``: ``log[n + 1] = {prog_id, r7}``;
    return ``ret`` (fmod_ret) or 0.
    """
    HOLE = bytes(8)  # a jump, filled in once the target is known
    p = [_insn(0xBF, 6, 1)]                                     # r6 = r1 (ctx)
    if ret_off is None:
        p.append(_insn(0xB7, 7, 0, 0, 0))                       # r7 = 0
    else:
        p.append(_insn(0x79, 7, 6, ret_off))                    # r7 = *(u64 *)(r6 + ret_off)
    p.append(_insn(0x62, 10, 0, -4, 0))                         # *(u32 *)(r10 - 4) = 0
    p.append(_ld_map_fd(1, map_fd))                             # r1 = map
    p.append(_insn(0xBF, 2, 10))                                # r2 = r10
    p.append(_insn(0x07, 2, 0, 0, -4))                          # r2 += -4
    p.append(_insn(0x85, 0, 0, 0, 1))                           # call map_lookup_elem
    tail_a = len(p)
    p.append(HOLE)                                              # if r0 == 0 goto out
    p.append(_insn(0xB7, 1, 0, 0, 1))                           # r1 = 1
    p.append(_insn(0xDB, 0, 1, 0, 0x01))                        # r1 = atomic_fetch_add(*(u64 *)r0, r1)
    p.append(_insn(0x07, 1, 0, 0, 1))                           # r1 += 1
    tail_b = len(p)
    p.append(HOLE)                                              # if r1 > 62 goto out
    p.append(_insn(0x63, 10, 1, -8))                            # *(u32 *)(r10 - 8) = r1
    p.append(_ld_map_fd(1, map_fd))                             # r1 = map
    p.append(_insn(0xBF, 2, 10))                                # r2 = r10
    p.append(_insn(0x07, 2, 0, 0, -8))                          # r2 += -8
    p.append(_insn(0x85, 0, 0, 0, 1))                           # call map_lookup_elem
    tail_c = len(p)
    p.append(HOLE)                                              # if r0 == 0 goto out
    p.append(_insn(0x7A, 0, 0, 0, prog_id))                     # *(u64 *)(r0 + 0) = prog_id
    p.append(_insn(0x7B, 0, 7, 8))                              # *(u64 *)(r0 + 8) = r7
    out = len(p)
    p.append(_insn(0xB7, 0, 0, 0, ret))                         # out: r0 = ret
    p.append(_insn(0x95))                                       # exit

    def slots(a: int, b: int) -> int:  # instruction slots between a and b (ld_imm64 takes two)
        return sum(len(x) // 8 for x in p[a:b])

    p[tail_a] = _insn(0x15, 0, 0, slots(tail_a + 1, out), 0)
    p[tail_b] = _insn(0x25, 1, 0, slots(tail_b + 1, out), LOG_SLOTS - 2)
    p[tail_c] = _insn(0x15, 0, 0, slots(tail_c + 1, out), 0)
    return b"".join(p)


def module_btf_fd(module: str) -> int:
    """An fd of the BTF object of ``module`` (BPF_BTF_GET_NEXT_ID, then each one's name through
    BPF_OBJ_GET_INFO_BY_FD), or minus an errno (ENOENT: no such BTF object)."""
    next_id = 0
    while True:
        attr = bytearray(struct.pack("<II", next_id, 0))
        if bpf(BPF_BTF_GET_NEXT_ID, attr) < 0:
            return -_errno.ENOENT
        next_id = struct.unpack_from("<I", attr, 4)[0]
        fd = bpf(BPF_BTF_GET_FD_BY_ID, bytearray(struct.pack("<I", next_id) + bytes(12)))
        if fd < 0:
            continue
        name = ctypes.create_string_buffer(64)
        info = ctypes.create_string_buffer(32)        # struct bpf_btf_info
        struct.pack_into("<QIIQII", info, 0, 0, 0, 0, _addr(name), len(name), 0)
        attr = bytearray(struct.pack("<IIQ", fd, len(info), _addr(info)))
        if bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0 and name.value.decode(errors="replace") == module:
            return fd
        os.close(fd)


def bpf_prog_load(insns: bytes, kind: str, btf_id: int, name: str, btf_obj_fd: int = 0) -> tuple[int, str]:
    """BPF_PROG_LOAD of a tracing program; (fd or minus errno, verifier log on failure).
    ``btf_obj_fd``: the target's module BTF object (attach_btf_obj_fd), 0 for vmlinux."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = bytearray(144)
    struct.pack_into("<IIQQIIQII", attr, 0, BPF_PROG_TYPE_TRACING, len(insns) // 8, _addr(code),
                     _addr(lic), 1, len(log), _addr(log), 0, 0)
    attr[48:64] = name.encode()[:15].ljust(16, b"\0")
    struct.pack_into("<I", attr, 68, ATTACH_TYPES[kind])
    struct.pack_into("<II", attr, 108, btf_id, btf_obj_fd)
    fd = bpf(BPF_PROG_LOAD, attr)
    return fd, (log.value.decode(errors="replace") if fd < 0 else "")


def bpf_link(prog_fd: int) -> int:
    """BPF_RAW_TRACEPOINT_OPEN with no name: attach a tracing program; link fd or minus errno."""
    attr = bytearray(struct.pack("<QI", 0, prog_fd)) + bytes(4)
    return bpf(BPF_RAW_TRACEPOINT_OPEN, attr)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def read_text(path: str) -> str:
    with open(path, "rb", buffering=0) as f:
        return f.read().decode(errors="replace")


def write_file(path: str, text: str, trunc: bool = True) -> int:
    """open(O_WRONLY|O_TRUNC) + write + close, like ``printf %s text > path``: 0 or a positive errno.

    Writes until every byte is taken, as the shell's echo and printf do: a tracefs filter file
    takes one token per write() (trace_get_user) and answers with the bytes it read. An empty
    ``text`` opens and closes only (which truncates a tracefs filter file).
    """
    flags = os.O_WRONLY | (os.O_TRUNC if trunc else os.O_APPEND)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return e.errno or _errno.EIO
    err = 0
    try:
        data = text.encode()
        while data:
            n = os.write(fd, data)
            if n <= 0:
                break
            data = data[n:]
    except OSError as e:
        err = e.errno or _errno.EIO
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err = err or (e.errno or _errno.EIO)
    return err


class Kmsg:
    """/dev/kmsg from "now": each read returns one record."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == _errno.EPIPE:  # overwritten records: go on from the next one
                    continue
                break
            if not rec:
                break
            head, _, msg = rec.decode(errors="replace").partition(";")
            # continuation lines ("\n KEY=value") carry device metadata only
            out.append(msg.split("\n", 1)[0])
        return out


def enabled_records(text: str, names: set[str] | None) -> list[str]:
    """enabled_functions cut into records (a record's ``\\tdirect-->`` line stays with it)."""
    recs: list[str] = []
    for line in text.splitlines():
        if line.startswith("\t") and recs:
            recs[-1] += "\n" + line
        elif line:
            recs.append(line)
    if names is None:
        return recs
    return [r for r in recs if r.split(" (", 1)[0] in names]


def ftrace_dead() -> bool:
    """ftrace_kill() has run: the filter files refuse to open with ENODEV."""
    try:
        fd = os.open(f"{TRACING}/set_ftrace_notrace", os.O_RDONLY)
    except OSError as e:
        return e.errno == _errno.ENODEV
    os.close(fd)
    return False


def taint() -> int:
    try:
        return int(read_text("/proc/sys/kernel/tainted").strip())
    except (OSError, ValueError):
        return -1


def module_loaded(name: str) -> bool:
    return os.path.isdir(f"/sys/module/{name}")


def module_param(module: str, param: str) -> str | None:
    try:
        return read_text(f"/sys/module/{module}/parameters/{param}").strip()
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# One scenario
# ---------------------------------------------------------------------------------------------
class Scenario:
    """The state the agent keeps while one scenario runs (what it must undo afterwards)."""

    def __init__(self, agent: "Agent", spec: dict) -> None:
        self.agent = agent
        self.spec = spec
        self.touched = set(spec["touched"])
        self.patches: dict[str, dict] = {}      # patch name -> step spec (module, funcs)
        self.replaced_modules: list[str] = []   # modules of patches that a replace retired
        self.progs: dict[tuple, int] = {}       # (name, kind, target, ret) -> prog fd
        self.links: dict[str, tuple[int, tuple]] = {}   # prog name -> (link fd, prog key)
        self.prog_ids: dict[int, tuple[str, str]] = {}  # id -> (name, kind)
        self.kprobes: dict[str, str] = {}       # label -> module
        self.directs: dict[str, str] = {}       # name -> module
        self.opsmods: dict[str, str] = {}       # name -> module (a module's own ftrace_ops)
        self.tracer_used = False
        self.notes: list[str] = []

    # -- live patches ----------------------------------------------------------------------
    def wait_transition(self, module: str, deadline_s: float = 20.0) -> bool:
        """Wait until no patch is in transition; False if the deadline passed."""
        end = time.monotonic() + deadline_s
        path = f"{LIVEPATCH}/{module}/transition"
        while True:
            try:
                if read_text(path).strip() == "0":
                    return True
            except OSError:
                return True  # the patch went away (freed after its transition)
            if time.monotonic() > end:
                self.notes.append(f"transition of {module} still running after {deadline_s:.0f} s")
                return False
            time.sleep(0.02)

    def livepatch_enable(self, st: dict) -> str:
        err = finit_module(st["ko"])
        if err:
            return errname(err)
        self.wait_transition(st["module"])
        if st.get("replace"):
            for name, old in list(self.patches.items()):
                if not os.path.isdir(f"{LIVEPATCH}/{old['module']}"):
                    self.replaced_modules.append(old["module"])
                    del self.patches[name]
        self.patches[st["patch"]] = st
        return "ok"

    def livepatch_disable(self, st: dict) -> str:
        old = self.patches.get(st["patch"])
        if old is None or not os.path.isdir(f"{LIVEPATCH}/{old['module']}"):
            return "ENOENT"
        module = old["module"]
        err = write_file(f"{LIVEPATCH}/{module}/enabled", "0")
        if err:
            return errname(err)
        if self.wait_transition(module):
            rm = delete_module(module)
            if rm:
                self.notes.append(f"rmmod {module}: {errname(rm)}")
            else:
                del self.patches[st["patch"]]
        return "ok"

    def transition(self, st: dict) -> str:
        busy = [d for d in self._livepatch_dirs() if read_text(f"{LIVEPATCH}/{d}/transition").strip() == "1"]
        if not busy:
            return "EINVAL"
        for d in busy:
            self.wait_transition(d)
        return "ok"

    @staticmethod
    def _livepatch_dirs() -> list[str]:
        try:
            return sorted(os.listdir(LIVEPATCH))
        except OSError:
            return []

    # -- BPF ---------------------------------------------------------------------------------
    def bpf_attach(self, st: dict) -> str:
        key = (st["prog"], st["kind"], st["target"], st["ret"])
        fd = self.progs.get(key)
        if fd is None:
            btf = self.agent.btf[st["target"]]
            prog_id = self.agent.next_prog_id()
            ret_off = None if st["kind"] == "fentry" else 8 * btf["nargs"]
            insns = tracing_program(self.agent.log.fd, prog_id, ret_off,
                                    st["ret"] if st["kind"] == "fmod_ret" else 0)
            obj_fd = 0
            if btf.get("module"):
                obj_fd = self.agent.module_btf(btf["module"])
                if obj_fd < 0:
                    return errname(-obj_fd)
            fd, vlog = bpf_prog_load(insns, st["kind"], btf["id"], f"ftlab_{st['kind']}", obj_fd)
            if fd < 0:
                if vlog.strip():
                    self.notes.append(f"verifier ({st['prog']}): " + vlog.strip().splitlines()[-1])
                return errname(-fd)
            self.progs[key] = fd
            self.prog_ids[prog_id] = (st["prog"], st["kind"])
        link = bpf_link(fd)
        if link < 0:
            return errname(-link)
        self.links[st["prog"]] = (link, key)
        return "ok"

    def bpf_detach(self, st: dict) -> str:
        item = self.links.pop(st["prog"], None)
        if item is None:
            return "ENOENT"
        os.close(item[0])
        return "ok"

    # -- kprobes, direct client, tracer --------------------------------------------------------
    def kprobe_add(self, st: dict) -> str:
        if st["label"] in self.kprobes:
            return "EINVAL"
        err = finit_module(st["ko"])
        if err:
            return errname(err)
        self.kprobes[st["label"]] = st["module"]
        return "ok"

    def kprobe_remove(self, st: dict) -> str:
        module = self.kprobes.pop(st["label"], None)
        if module is None:
            return "EINVAL"
        err = delete_module(module)
        if err:
            self.notes.append(f"rmmod {module}: {errname(err)}")
        return "ok"

    def direct_register(self, st: dict) -> str:
        if st["name"] in self.directs:
            return "EEXIST"
        err = finit_module(st["ko"], f"targets={','.join(st['targets'])} tramp={st['tramp']}")
        if err:
            return errname(err)
        self.directs[st["name"]] = st["module"]
        return "ok"

    def direct_modify(self, st: dict) -> str:
        module = self.directs.get(st["name"])
        if module is None:
            return "ENOENT"
        err = write_file(f"/sys/module/{module}/parameters/tramp", st["tramp"])
        return errname(err) if err else "ok"

    def direct_unregister(self, st: dict) -> str:
        module = self.directs.pop(st["name"], None)
        if module is None:
            return "ENOENT"
        err = delete_module(module)
        if err:
            self.notes.append(f"rmmod {module}: {errname(err)}")
        return "ok"

    def ops_register(self, st: dict) -> str:
        if st["name"] in self.opsmods:
            return "EEXIST"
        err = finit_module(st["ko"], f"targets={','.join(st['targets'])}")
        if err:
            return errname(err)
        self.opsmods[st["name"]] = st["module"]
        return "ok"

    def ops_unregister(self, st: dict) -> str:
        module = self.opsmods.pop(st["name"], None)
        if module is None:
            return "ENOENT"
        err = delete_module(module)
        if err:
            self.notes.append(f"rmmod {module}: {errname(err)}")
        return "ok"

    def tracer(self, st: dict) -> str:
        self.tracer_used = True
        if st["tracer"] == "nop":
            err = write_file(f"{TRACING}/current_tracer", "nop")
            return errname(err) if err else "ok"
        for fname, toks in (("set_ftrace_filter", st["filter"]), ("set_ftrace_notrace", st["notrace"])):
            # echo's trailing newline ends the last token, so its error is the write's (without
            # it the kernel parses that token at close, where errors are dropped)
            err = write_file(f"{TRACING}/{fname}", " ".join(toks) + "\n" if toks else "")
            if err:
                return errname(err)
        err = write_file(f"{TRACING}/current_tracer", st["tracer"])
        return errname(err) if err else "ok"

    # -- calls -----------------------------------------------------------------------------------
    def _patch_hits(self) -> dict[tuple[str, str], int]:
        out = {}
        for spec in list(self.patches.values()):
            raw = module_param(spec["module"], "hits") or ""
            for item in raw.split(","):
                func, _, n = item.rpartition(":")  # a module's function is module:name
                if n.isdigit():
                    out[(spec["patch"], func)] = int(n)
        return out

    def _hook_hits(self) -> dict[str, int]:
        out = {}
        for label, module in self.kprobes.items():
            pre, _, post = (module_param(module, "hits") or "0,0").partition(",")
            out[f"kprobe:{label}:pre"] = int(pre or 0)
            out[f"kprobe:{label}:post"] = int(post or 0)
        for name, module in self.directs.items():
            out[f"direct:{name}"] = sum(int(x) for x in (module_param(module, "hits") or "0").split(",") if x)
        for name, module in self.opsmods.items():
            out[f"ops:{name}"] = int(module_param(module, "hits") or 0)
        return out

    def call(self, st: dict) -> dict:
        func = st["func"]
        how = st["how"]
        current = read_text(f"{TRACING}/current_tracer").strip() if self.tracer_used else "nop"
        tracer_on = current in ("function", "function_graph")
        if tracer_on:
            write_file(f"{TRACING}/trace", "")
        hits0 = self._patch_hits()
        hooks0 = self._hook_hits()
        self.agent.log.reset()
        retval = 0
        output = ""
        if how == "getsid":
            try:
                os.getsid(os.getpid())
            except OSError as e:
                retval = -(e.errno or 0)
        elif how == "statfs":
            try:
                os.statvfs("/")
            except OSError as e:
                retval = -(e.errno or 0)
        else:
            try:
                fd = os.open(how, os.O_RDONLY)
                try:
                    output = os.read(fd, 1 << 16).decode(errors="replace")
                finally:
                    os.close(fd)
            except OSError as e:
                retval = -(e.errno or 0)
        fired = self.agent.log.read()
        hits1 = self._patch_hits()
        hooks1 = self._hook_hits()
        # which body ran
        markers = [ln[len(MARKER):].split()[0] for ln in output.splitlines() if ln.startswith(MARKER)]
        counted = sorted(p for (p, f), n in hits1.items() if f == func and n > hits0.get((p, f), 0))
        programs: list[str] = []
        fexit: list[list] = []
        skipped = False
        for prog_id, value in fired:
            name, kind = self.prog_ids.get(prog_id, (f"#{prog_id}", "?"))
            programs.append(name)
            v = struct.unpack("<i", struct.pack("<I", value & 0xFFFFFFFF))[0]
            if kind == "fexit":
                fexit.append([name, v])
        for prog_id, _ in fired:
            name, kind = self.prog_ids.get(prog_id, ("", ""))
            if kind == "fmod_ret":
                key = next(k for k, fd in self.progs.items() if k[0] == name and k[1] == "fmod_ret")
                if key[3] != 0:
                    skipped = True
                    break
        if how not in ("getsid", "statfs"):
            bodies = markers
            evidence = "marker"
        else:
            bodies = counted
            evidence = "counter"
        if bodies:
            body: str | None = "+".join(bodies)
        elif skipped:
            body = None
            evidence = "fmod_ret"
        else:
            body = "original"
        hooks = []
        for key, n in sorted(hooks1.items()):
            hooks += [key] * max(0, n - hooks0.get(key, 0))
        if tracer_on:
            trace = read_text(f"{TRACING}/trace")
            sym = func.rpartition(":")[2]  # the trace names a module's function without its module
            if current == "function":      # "task-pid [cpu] ... ts: sym <-parent"
                hits = sum(1 for ln in trace.splitlines()
                           if not ln.startswith("#") and f" {sym} <-" in f" {ln.split(': ', 1)[-1]}")
            else:                          # function_graph: " cpu)  duration  |  sym() {" or "sym();"
                hits = sum(1 for ln in trace.splitlines()
                           if not ln.startswith("#") and ln.rpartition("|")[2].strip().startswith(f"{sym}()"))
            hooks += ["tracer"] * hits
        return {"function": func, "body": body, "programs": programs, "fexit": fexit, "retval": retval,
                "body_ret": 0 if body not in (None, "original") else None, "hooks": sorted(hooks),
                "evidence": evidence, "markers": markers, "counted": counted}

    # -- views -----------------------------------------------------------------------------------
    def show(self, st: dict) -> str | None:
        view = st["view"]
        if view in ("enabled_functions", "touched_functions"):  # 6.1 has no touched_functions: ENOENT
            return read_text(f"{TRACING}/{view}")
        if view in ("set_ftrace_filter", "set_ftrace_notrace"):
            try:
                return read_text(f"{TRACING}/{view}")
            except OSError as e:
                return f"({errname(e.errno or 0)})\n"
        if view == "livepatch":
            return self.livepatch_view()
        return None

    def livepatch_view(self) -> str:
        by_module = {spec["module"]: name for name, spec in self.patches.items()}
        out = ["/sys/kernel/livepatch/"]
        for d in self._livepatch_dirs():
            name = by_module.get(d, d)
            base = f"/sys/kernel/livepatch/{name}"
            out.append(f"{base}/")
            out.append(f"{base}/enabled: {read_text(f'{LIVEPATCH}/{d}/enabled').strip()}")
            out.append(f"{base}/force")
            out.append(f"{base}/transition: {read_text(f'{LIVEPATCH}/{d}/transition').strip()}")
            for obj in sorted(os.listdir(f"{LIVEPATCH}/{d}")):
                if not os.path.isdir(f"{LIVEPATCH}/{d}/{obj}"):
                    continue
                out.append(f"{base}/{obj}/")
                out.append(f"{base}/{obj}/patched: {read_text(f'{LIVEPATCH}/{d}/{obj}/patched').strip()}")
                for fn in sorted(os.listdir(f"{LIVEPATCH}/{d}/{obj}")):
                    if os.path.isdir(f"{LIVEPATCH}/{d}/{obj}/{fn}"):
                        out.append(f"{base}/{obj}/{fn}/")
        return "".join(line + "\n" for line in out)

    # -- reading files (ground truth for the model) -----------------------------------------------
    def read(self, st: dict) -> dict:
        """Read ``st["files"]``: each ``{"path", "words"?, "to"?}``. ``words``: keep only the lines
        that have one of these words (whitespace-separated; /proc/kallsyms is large); ``to``: copy
        the file there (a path in the output folder) and report its line count instead of its text.
        Returns path -> text (or ``{"to", "lines"}``, or ``{"error"}``)."""
        out: dict = {}
        for spec in st["files"]:
            path = spec["path"]
            try:
                text = read_text(path)
            except OSError as e:
                out[path] = {"error": errname(e.errno or 0)}
                continue
            if spec.get("to"):
                tmp = spec["to"] + ".tmp"
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, spec["to"])
                out[path] = {"to": spec["to"], "lines": text.count("\n")}
                continue
            words = spec.get("words")
            if words:
                want = set(words)
                text = "".join(ln + "\n" for ln in text.splitlines() if want.intersection(ln.split()))
            out[path] = text
        return out

    # -- snapshot (ftlab preflight tests) ---------------------------------------------------------
    def snapshot(self, st: dict) -> str:
        """Run ``st["script"]`` (ftlab's stdlib-only snapshot.py) in-process, write its JSON to
        ``st["path"]`` (BPF links through bpftool if ``st["use_bpftool"]``, else fdinfo); then, if ``st["wait_for"]``
        is set, wait up to ``st["wait_s"]`` for that file
        to appear (the host writes it once it has answered from the snapshot)."""
        import importlib.util
        spec = importlib.util.spec_from_file_location("ftlab_snapshot", st["script"])
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        mod.write_snapshot(mod.take_snapshot(use_bpftool=bool(st.get("use_bpftool"))), st["path"])
        if st.get("wait_for"):
            end = time.monotonic() + float(st.get("wait_s", 60))
            while not os.path.exists(st["wait_for"]):
                if time.monotonic() > end:
                    self.notes.append(f"no {st['wait_for']} from the host after {st.get('wait_s', 60)} s")
                    return "ETIMEDOUT"
                emit("waiting", scenario=self.spec["id"], file=st["wait_for"])
                time.sleep(0.5)
        return "ok"

    # -- cleanup ---------------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Undo everything; return what could not be undone (empty: the kernel is clean)."""
        problems: list[str] = []
        for name in list(self.links):
            os.close(self.links.pop(name)[0])
        for fd in self.progs.values():
            os.close(fd)
        self.progs.clear()
        for label in list(self.kprobes):
            module = self.kprobes.pop(label)
            if delete_module(module):
                problems.append(f"kprobe module {module} stays loaded")
        for name in list(self.directs):
            module = self.directs.pop(name)
            if delete_module(module):
                problems.append(f"direct module {module} stays loaded")
        for name in list(self.opsmods):
            module = self.opsmods.pop(name)
            if delete_module(module):
                problems.append(f"ftrace_ops module {module} stays loaded")
        # live patches: newest first; replace leaves older modules loaded but disabled
        for name in reversed(list(self.patches)):
            module = self.patches[name]["module"]
            if os.path.isdir(f"{LIVEPATCH}/{module}"):
                self.wait_transition(module)
                if read_text(f"{LIVEPATCH}/{module}/enabled").strip() == "1":
                    err = write_file(f"{LIVEPATCH}/{module}/enabled", "0")
                    if err:
                        problems.append(f"cannot disable {module}: {errname(err)}")
                self.wait_transition(module)
            self.replaced_modules.append(module)
        self.patches.clear()
        for module in self.replaced_modules:
            if module_loaded(module) and delete_module(module):
                problems.append(f"live patch module {module} stays loaded")
        self.replaced_modules.clear()
        if self.tracer_used:
            write_file(f"{TRACING}/current_tracer", "nop")
            write_file(f"{TRACING}/set_ftrace_filter", "")
            write_file(f"{TRACING}/set_ftrace_notrace", "")
        if ftrace_dead():
            problems.append("ftrace is dead")
        else:
            left = enabled_records(read_text(f"{TRACING}/enabled_functions"), None)
            if left:
                problems.append(f"{len(left)} record(s) still enabled, first: {left[0]!r}")
        if self._livepatch_dirs():
            problems.append(f"live patches still present: {self._livepatch_dirs()}")
        return problems

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, out_path: str) -> dict:
        agent = self.agent
        t0 = time.monotonic()
        bad_kernel = False
        steps_done = 0
        with open(out_path, "a") as out:
            # what earlier scenarios of this guest left in the records of this one's functions
            # (6.12's touched_functions: a sticky M is history no fresh model state has)
            try:
                before = enabled_records(read_text(f"{TRACING}/touched_functions"), self.touched)
            except OSError:
                before = None
            out.write(json.dumps({"touched_before": before}) + "\n")
            for i, st in enumerate(self.spec["steps"]):
                emit("step", scenario=self.spec["id"], index=i + 1)
                ts = time.monotonic()
                taint0 = taint()
                self.notes = []
                call = view = None
                op = st["op"]
                try:
                    if op == "call":
                        call = self.call(st)
                        result = "ok"
                    elif op == "show":
                        view = self.show(st)
                        result = "ok"
                    elif op == "read":
                        view = self.read(st)
                        result = "ok"
                    else:
                        result = getattr(self, op)(st)
                except OSError as e:
                    result = errname(e.errno or 0)
                    self.notes.append(f"agent: {e}")
                kmsg = agent.kmsg.drain()
                dead = ftrace_dead()
                try:
                    enabled = enabled_records(read_text(f"{TRACING}/enabled_functions"), self.touched)
                except OSError:
                    enabled = []
                warn = any("WARNING:" in ln for ln in kmsg)
                bug = any(ln.startswith("BUG:") or "kernel BUG at" in ln for ln in kmsg)
                oops = any(ln.startswith("Oops") or "general protection fault" in ln for ln in kmsg)
                rec = {"index": i + 1, "action": st["action"], "result": result, "enabled": enabled,
                       "call": call, "view": view, "ftrace_dead": dead, "warn": warn, "bug": bug,
                       "oops": oops, "taint": taint(), "taint_before": taint0, "kmsg": kmsg,
                       "notes": self.notes, "wall_s": round(time.monotonic() - ts, 3)}
                out.write(json.dumps(rec) + "\n")
                out.flush()
                steps_done += 1
                # go on after a WARN or a dead ftrace (the model does); a fresh guest comes after
                bad_kernel |= dead or bug or oops or warn
        ts = time.monotonic()
        problems = self.cleanup()
        kmsg = agent.kmsg.drain()
        if any("WARNING:" in ln or ln.startswith("BUG:") or ln.startswith("Oops") for ln in kmsg):
            problems.append("WARN/BUG/Oops during cleanup")
        if bad_kernel:
            problems.append("WARN/BUG/Oops or dead ftrace during the scenario")
        return {"id": self.spec["id"], "steps": steps_done, "clean": not problems, "problems": problems,
                "cleanup_kmsg": kmsg, "cleanup_s": round(time.monotonic() - ts, 3),
                "wall_s": round(time.monotonic() - t0, 3)}


class Agent:
    """The whole run: BTF ids, the BPF log map, the kernel log, and the scenarios in order."""

    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.btf = plan["btf"]["funcs"]
        self.module_btfs: dict[str, int] = {}
        self.prog_id = 0
        self.log = BpfLog()
        self.kmsg = Kmsg()

    def next_prog_id(self) -> int:
        self.prog_id += 1
        return self.prog_id

    def module_btf(self, module: str) -> int:
        """The fd of ``module``'s BTF object (found once, kept open), or minus an errno."""
        fd = self.module_btfs.get(module)
        if fd is None:
            fd = module_btf_fd(module)
            if fd >= 0:
                self.module_btfs[module] = fd
        return fd

    def run(self) -> int:
        out_dir = self.plan["out"]
        for spec in self.plan["scenarios"]:
            emit("begin", scenario=spec["id"])
            path = os.path.join(out_dir, spec["file"])
            summary = Scenario(self, spec).run(path)
            with open(path, "a") as f:
                f.write(json.dumps({"summary": summary}) + "\n")
            emit("end", **summary)
            if not summary["clean"]:
                emit("dirty", scenario=spec["id"], problems=summary["problems"])
                return 3
        return 0


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    with open(argv[1]) as f:
        plan = json.load(f)
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    uname = os.uname().release
    emit("hello", kernel=uname, btf_ok=digest == plan["btf"]["sha256"], startup_s=round(t0, 3))
    if digest != plan["btf"]["sha256"]:
        emit("fatal", reason=f"BTF of the running kernel {uname} differs from the one parsed on the host")
        return 2
    if uname != plan["kernel"]:
        emit("fatal", reason=f"running kernel {uname}, plan built for {plan['kernel']}")
        return 2
    code = Agent(plan).run()
    emit("done", code=code, wall_s=round(time.monotonic() - t0, 3))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
