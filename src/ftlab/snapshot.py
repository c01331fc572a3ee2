#!/usr/bin/env python3
"""``ftlab snapshot``: record a machine's ftrace state in one JSON file, for ``ftlab preflight``.

Run it on the machine itself, as root (Linux >= 5.15). STANDARD LIBRARY ONLY, no ftlab import at
module level: the file may be copied alone and run as ``python3 snapshot.py --out x.json``.

What it reads (every item is recorded even when it cannot be read: then its entry holds
``"error"`` -- e.g. ``"EACCES: Permission denied"`` or ``"ENOENT: ..."`` -- instead of the data;
it never stops on a missing file or permission):

* ``uname`` (release, machine, version) and /proc/modules (load order: newest first). ``release``
  is ``uname -r`` and ``version`` is ``uname -v`` (``#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+1
  (2026-07-05)``): together the exact kernel build, from which preflight chooses its policy (a
  snapshot without ``version``, from an older snapshot.py, names no build);
* the tracefs directory (/sys/kernel/tracing, else /sys/kernel/debug/tracing): enabled_functions,
  available_filter_functions, current_tracer, set_ftrace_filter, set_ftrace_notrace;
* /sys/kernel/livepatch/<patch>/{enabled,transition,replace?} and its objects
  (``<object>/patched``) and functions (``<object>/<function>,<sympos>/``);
* /sys/kernel/debug/kprobes/list when present;
* BPF tracing links and their programs: ``bpftool link show --json`` and ``bpftool prog show
  --json`` when bpftool exists, else the ``bpf_link`` / ``bpf-prog`` file descriptors found in
  /proc/*/fdinfo (link id, program id, attach type, target BTF id), with program names through
  bpf(BPF_PROG_GET_FD_BY_ID) + bpf(BPF_OBJ_GET_INFO_BY_FD) where the syscall allows it. Link
  targets are named from the ``bpf_trampoline_<key>`` lines of enabled_functions (key & 0x7fffffff
  is the target's BTF id), else from /sys/kernel/btf/vmlinux.

Format (``"format": 1``)::

    {"format": 1, "kind": "ftlab-snapshot", "taken_at": "ISO-8601 UTC", "tool": "snapshot.py",
     "uname": {"release": uname -r, "machine": uname -m, "version": uname -v},
     "tracing_dir": str | null,
     "files": {"enabled_functions" | "current_tracer" | "set_ftrace_filter" | "set_ftrace_notrace"
               | "kprobes_list" | "proc_modules": {"path": str, "text": str} | {"path", "error"}},
     "available_filter_functions": {"path", "encoding": "gzip+base64", "data": str, "lines": int,
                                    "sha256": hex of the plain text} | {"path", "error"},
     "livepatch": {"path", "patches": [{"name", "enabled": int|null, "transition": int|null,
                   "replace": int|null, "objects": [{"name", "patched": int|null,
                   "funcs": [{"name", "sympos"}]}]}]} | {"path", "error"},
     "modules": [name, ...]            # /proc/modules order (newest first) or [] if unreadable
     "bpf": {"source": "bpftool" | "fdinfo" | "none", "errors": [str],
             "links": [{"id", "prog_id", "prog_name": str|null, "attach_type": int|null,
                        "kind": "fentry"|"fexit"|"fmod_ret"|other|null, "target_obj_id",
                        "target_btf_id", "target": str|null, "owner_pids": [int]}],
                                       # target: the function, "module:function" for a module's
             "progs": {"<id>": {"name", "type", "tag"}}},
     "errors": [str]}                  # everything that could not be read, one line each

available_filter_functions (about 38,000 lines, ~1 MB) is stored gzip-compressed and base64
encoded (about 200 kB); ``lines`` and ``sha256`` let the reader check it.
"""

from __future__ import annotations

import base64
import errno as _errno
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time

FORMAT = 1
TRACING_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
LIVEPATCH = "/sys/kernel/livepatch"
KPROBES_LIST = "/sys/kernel/debug/kprobes/list"
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"

#: enum bpf_attach_type (include/uapi/linux/bpf.h) values of tracing programs.
ATTACH_KINDS = {24: "fentry", 25: "fexit", 26: "fmod_ret", 27: "lsm_mac", 28: "trace_iter",
                33: "freplace", 47: "lsm_cgroup"}
_KIND_NAMES = {"trace_fentry": "fentry", "trace_fexit": "fexit", "modify_return": "fmod_ret",
               "fentry": "fentry", "fexit": "fexit", "fmod_ret": "fmod_ret"}
#: bpf(2) syscall numbers by machine.
SYS_BPF = {"x86_64": 321, "aarch64": 280, "s390x": 351, "ppc64le": 361, "ppc64": 361, "riscv64": 280}


def _err(e: OSError) -> str:
    name = _errno.errorcode.get(e.errno or 0, "EIO")
    return f"{name}: {e.strerror or e}"


def read_entry(path: str, errors: list[str]) -> dict:
    """``{"path", "text"}`` or ``{"path", "error"}`` (the error is also appended to ``errors``)."""
    try:
        with open(path, "rb", buffering=0) as f:
            chunks = []
            while True:
                b = f.read(1 << 16)
                if not b:
                    break
                chunks.append(b)
        return {"path": path, "text": b"".join(chunks).decode(errors="replace")}
    except OSError as e:
        errors.append(f"{path}: {_err(e)}")
        return {"path": path, "error": _err(e)}


def _small_int(path: str) -> int | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return int(f.read().decode().strip())
    except (OSError, ValueError):
        return None


def find_tracing_dir() -> str | None:
    for d in TRACING_DIRS:
        if os.path.exists(os.path.join(d, "enabled_functions")) or os.path.exists(os.path.join(d, "current_tracer")):
            return d
    return None


def read_livepatch(errors: list[str]) -> dict:
    if not os.path.isdir(LIVEPATCH):
        errors.append(f"{LIVEPATCH}: ENOENT: no livepatch support (or sysfs not mounted)")
        return {"path": LIVEPATCH, "error": "ENOENT: No such file or directory"}
    try:
        names = sorted(os.listdir(LIVEPATCH))
    except OSError as e:
        errors.append(f"{LIVEPATCH}: {_err(e)}")
        return {"path": LIVEPATCH, "error": _err(e)}
    patches = []
    for name in names:
        base = os.path.join(LIVEPATCH, name)
        objects = []
        try:
            entries = sorted(os.listdir(base))
        except OSError as e:
            errors.append(f"{base}: {_err(e)}")
            entries = []
        for obj in entries:
            od = os.path.join(base, obj)
            if not os.path.isdir(od):
                continue
            funcs = []
            try:
                for fn in sorted(os.listdir(od)):
                    if os.path.isdir(os.path.join(od, fn)):
                        fname, _, pos = fn.rpartition(",")
                        if not fname:
                            fname, pos = fn, "0"
                        funcs.append({"name": fname, "sympos": int(pos) if pos.isdigit() else 0})
            except OSError as e:
                errors.append(f"{od}: {_err(e)}")
            objects.append({"name": obj, "patched": _small_int(os.path.join(od, "patched")), "funcs": funcs})
        patches.append({"name": name, "enabled": _small_int(os.path.join(base, "enabled")),
                        "transition": _small_int(os.path.join(base, "transition")),
                        "replace": _small_int(os.path.join(base, "replace")), "objects": objects})
    return {"path": LIVEPATCH, "patches": patches}


def read_aff(tdir: str | None, errors: list[str]) -> dict:
    path = os.path.join(tdir or TRACING_DIRS[0], "available_filter_functions")
    ent = read_entry(path, errors)
    if "error" in ent:
        return ent
    text = ent["text"]
    return {"path": path, "encoding": "gzip+base64",
            "data": base64.b64encode(gzip.compress(text.encode(), compresslevel=6, mtime=0)).decode("ascii"),
            "lines": text.count("\n"), "sha256": hashlib.sha256(text.encode()).hexdigest()}


# ---------------------------------------------------------------------------------------------
# BPF
# ---------------------------------------------------------------------------------------------
def _bpftool(errors: list[str]) -> tuple[list, list] | None:
    tool = shutil.which("bpftool")
    if tool is None:
        return None
    out = []
    for what in ("link", "prog"):
        try:
            r = subprocess.run([tool, what, "show", "--json"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"bpftool {what} show: {e}")
            return None
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()[:200]
            errors.append(f"bpftool {what} show: exit {r.returncode}: {err}")
            return None
        try:
            out.append(json.loads(r.stdout.decode() or "[]"))
        except ValueError as e:
            errors.append(f"bpftool {what} show: not JSON: {e}")
            return None
    return out[0], out[1]


def _fdinfo(path: str) -> dict[str, str]:
    out = {}
    try:
        with open(path, "rb", buffering=0) as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _scan_fdinfo(errors: list[str]) -> tuple[dict[int, dict], dict[int, dict]]:
    """Tracing links and programs held open by any process: from /proc/<pid>/fd + fdinfo."""
    links: dict[int, dict] = {}
    progs: dict[int, dict] = {}
    denied = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError as e:
        errors.append(f"/proc: {_err(e)}")
        return links, progs
    for pid in pids:
        fddir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fddir)
        except OSError:
            denied += 1
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fddir}/{fd}")
            except OSError:
                continue
            if target == "anon_inode:bpf_link":
                info = _fdinfo(f"/proc/{pid}/fdinfo/{fd}")
                if info.get("link_type") != "tracing" or "link_id" not in info:
                    continue
                lid = int(info["link_id"])
                ent = links.setdefault(lid, {
                    "id": lid, "prog_id": int(info.get("prog_id", "0") or 0),
                    "attach_type": int(info["attach_type"]) if info.get("attach_type", "").isdigit() else None,
                    "target_obj_id": int(info["target_obj_id"]) if info.get("target_obj_id", "").isdigit() else None,
                    "target_btf_id": int(info["target_btf_id"]) if info.get("target_btf_id", "").isdigit() else None,
                    "owner_pids": []})
                ent["owner_pids"].append(int(pid))
            elif target == "anon_inode:bpf-prog":
                info = _fdinfo(f"/proc/{pid}/fdinfo/{fd}")
                if "prog_id" in info:
                    progs.setdefault(int(info["prog_id"]), {"name": None, "type": info.get("prog_type"),
                                                            "tag": info.get("prog_tag")})
    if denied and os.geteuid() != 0:
        errors.append(f"/proc/*/fd: {denied} process(es) not readable (not root): BPF links may be missing")
    return links, progs


def _obj_info(get_fd_cmd: int, obj_id: int) -> bytes | None:
    """bpf(get_fd_cmd, id) + bpf(BPF_OBJ_GET_INFO_BY_FD): the object's info struct (256 bytes)."""
    try:
        import ctypes
    except ImportError:  # pragma: no cover
        return None
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        attr = ctypes.create_string_buffer(struct.pack("<I", obj_id) + bytes(124), 128)
        fd = libc.syscall(nr, get_fd_cmd, attr, 128)
        if fd < 0:
            return None
        try:
            info = ctypes.create_string_buffer(256)
            attr2 = ctypes.create_string_buffer(
                struct.pack("<IIQ", fd, 256, ctypes.addressof(info)) + bytes(112), 128)
            if libc.syscall(nr, 15, attr2, 128) < 0:  # BPF_OBJ_GET_INFO_BY_FD
                return None
            return info.raw
        finally:
            os.close(fd)
    except (OSError, AttributeError, ValueError):
        return None


def _prog_name(prog_id: int) -> str | None:
    """The program's name (struct bpf_prog_info.name) via BPF_PROG_GET_FD_BY_ID."""
    raw = _obj_info(13, prog_id)
    return (raw[64:80].split(b"\0", 1)[0].decode(errors="replace") or None) if raw else None


def _link_target(link_id: int) -> tuple[int, int, int] | None:
    """(attach_type, target_obj_id, target_btf_id) of a tracing link via BPF_LINK_GET_FD_BY_ID
    (struct bpf_link_info: type, id, prog_id, then the union at offset 16; BPF_LINK_TYPE_TRACING = 2)."""
    raw = _obj_info(30, link_id)
    if raw is None or struct.unpack_from("<I", raw, 0)[0] != 2:
        return None
    return struct.unpack_from("<III", raw, 16)


def _btf_names(ids: set[int], errors: list[str]) -> dict[int, str]:
    """Names of BTF FUNC ids of vmlinux (walks the type section up to the largest wanted id)."""
    out: dict[int, str] = {}
    if not ids:
        return out
    try:
        with open(BTF_VMLINUX, "rb") as f:
            data = f.read()
    except OSError as e:
        errors.append(f"{BTF_VMLINUX}: {_err(e)}")
        return out
    fixed = {1: 4, 3: 12, 14: 4, 17: 4}
    per_vlen = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    try:
        magic, _v, _f, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != 0xEB9F:
            errors.append(f"{BTF_VMLINUX}: not BTF")
            return out
        type_off, type_len, str_off, _ = struct.unpack_from("<IIII", data, 8)
        pos, end, strings = hdr_len + type_off, hdr_len + type_off + type_len, hdr_len + str_off
        tid, top = 0, max(ids)
        while pos < end and tid < top:
            tid += 1
            name_off, info, _st = struct.unpack_from("<III", data, pos)
            pos += 12
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if tid in ids and kind == 12:
                s = strings + name_off
                out[tid] = data[s:data.index(b"\0", s)].decode()
            pos += fixed.get(kind, 0) + per_vlen.get(kind, 0) * vlen
    except (struct.error, ValueError) as e:
        errors.append(f"{BTF_VMLINUX}: cannot parse: {e}")
    return out


def _tramp_targets(enabled_text: str | None) -> dict[tuple[int, int], str]:
    """(BTF object id, BTF id) -> function (``module:function`` for a module's), from the
    ``direct-->bpf_trampoline_<key>`` lines of enabled_functions (key = obj_id << 32 | 1 << 31 | id)."""
    out: dict[tuple[int, int], str] = {}
    if not enabled_text:
        return out
    current = None
    for line in enabled_text.splitlines():
        if not line.startswith("\t") and line.strip():
            head = line.split(" (", 1)[0].split()
            current = head[0]
            if len(head) > 1 and head[1].startswith("[") and head[1].endswith("]"):
                current = f"{head[1][1:-1]}:{head[0]}"
        elif "direct-->bpf_trampoline_" in line and current:
            key = line.split("direct-->bpf_trampoline_", 1)[1].split("+", 1)[0].split("_", 1)[0]
            if key.isdigit():
                out[(int(key) >> 32, int(key) & 0x7FFFFFFF)] = current
    return out


def read_bpf(enabled_text: str | None, errors: list[str], use_bpftool: bool = True) -> dict:
    links: list[dict] = []
    progs: dict[str, dict] = {}
    source = "none"
    bt = _bpftool(errors) if use_bpftool else None
    if bt is not None:
        source = "bpftool"
        blinks, bprogs = bt
        for p in bprogs if isinstance(bprogs, list) else []:
            if isinstance(p, dict) and "id" in p:
                progs[str(p["id"])] = {"name": p.get("name"), "type": p.get("type"), "tag": p.get("tag")}
        for ln in blinks if isinstance(blinks, list) else []:
            if not isinstance(ln, dict) or ln.get("type") != "tracing":
                continue
            at = ln.get("attach_type")
            kind = _KIND_NAMES.get(str(at)) if not isinstance(at, int) else ATTACH_KINDS.get(at)
            links.append({"id": ln.get("id"), "prog_id": ln.get("prog_id"),
                          "attach_type": at if isinstance(at, int) else None, "kind": kind,
                          "target_obj_id": ln.get("target_obj_id"), "target_btf_id": ln.get("target_btf_id"),
                          "owner_pids": [p.get("pid") for p in ln.get("pids", []) if isinstance(p, dict)]})
    else:
        if os.path.isdir("/proc"):
            source = "fdinfo"
            flinks, fprogs = _scan_fdinfo(errors)
            for pid_, p in fprogs.items():
                progs[str(pid_)] = p
            for ln in flinks.values():
                ln["kind"] = ATTACH_KINDS.get(ln["attach_type"]) if ln["attach_type"] is not None else None
                links.append(ln)
    # program names and link targets (6.1's fdinfo has no target: ask bpf(2) for the link's info)
    by_btf = _tramp_targets(enabled_text)
    for ln in links:
        if ln.get("target_btf_id") is None and ln.get("id"):
            t = _link_target(int(ln["id"]))
            if t is not None:
                at, ln["target_obj_id"], ln["target_btf_id"] = t
                if ln.get("attach_type") is None:
                    ln["attach_type"], ln["kind"] = at, ATTACH_KINDS.get(at)
        pid_ = ln.get("prog_id")
        p = progs.get(str(pid_))
        if p is None and pid_:
            p = progs[str(pid_)] = {"name": None, "type": None, "tag": None}
        if p is not None and not p.get("name") and pid_:
            p["name"] = _prog_name(int(pid_))
        ln["prog_name"] = p.get("name") if p else None
        ln["target"] = (by_btf.get((ln.get("target_obj_id") or 1, ln["target_btf_id"]))
                        if ln.get("target_btf_id") else None)
    missing = {ln["target_btf_id"] for ln in links
               if ln["target"] is None and ln.get("target_btf_id") and ln.get("target_obj_id") in (1, None)}
    if missing:
        names = _btf_names(missing, errors)
        for ln in links:
            if ln["target"] is None:
                ln["target"] = names.get(ln.get("target_btf_id"))
    links.sort(key=lambda x: (x.get("id") or 0))
    return {"source": source, "links": links, "progs": progs}


# ---------------------------------------------------------------------------------------------
# The whole snapshot
# ---------------------------------------------------------------------------------------------
def take_snapshot(use_bpftool: bool = True) -> dict:
    """The snapshot document (see the module docstring)."""
    errors: list[str] = []
    u = os.uname()
    tdir = find_tracing_dir()
    if tdir is None:
        errors.append("tracefs: neither /sys/kernel/tracing nor /sys/kernel/debug/tracing is mounted/readable")
    files: dict[str, dict] = {}
    for key in ("enabled_functions", "current_tracer", "set_ftrace_filter", "set_ftrace_notrace"):
        files[key] = read_entry(os.path.join(tdir or TRACING_DIRS[0], key), errors)
    if os.path.exists(KPROBES_LIST) or os.path.isdir(os.path.dirname(KPROBES_LIST)):
        files["kprobes_list"] = read_entry(KPROBES_LIST, errors)
    else:
        files["kprobes_list"] = {"path": KPROBES_LIST, "error": "ENOENT: debugfs not mounted"}
        errors.append(f"{KPROBES_LIST}: ENOENT: debugfs not mounted")
    files["proc_modules"] = read_entry("/proc/modules", errors)
    modules = [ln.split()[0] for ln in files["proc_modules"].get("text", "").splitlines() if ln.strip()]
    doc = {
        "format": FORMAT, "kind": "ftlab-snapshot", "tool": "snapshot.py",
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "uname": {"release": u.release, "machine": u.machine, "version": u.version},
        "euid": os.geteuid(),
        "tracing_dir": tdir,
        "files": files,
        "available_filter_functions": read_aff(tdir, errors),
        "livepatch": read_livepatch(errors),
        "modules": modules,
        "bpf": read_bpf(files["enabled_functions"].get("text"), errors, use_bpftool),
    }
    doc["errors"] = errors
    return doc


def write_snapshot(doc: dict, out: str | None) -> None:
    text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    if out is None or out == "-":
        sys.stdout.write(text)
        return
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="snapshot.py",
                                description="record this machine's ftrace state for ftlab preflight")
    p.add_argument("--out", metavar="FILE", help="write the JSON here (default: stdout)")
    p.add_argument("--no-bpftool", action="store_true", help="do not run bpftool; read /proc/*/fdinfo")
    args = p.parse_args(argv)
    try:
        doc = take_snapshot(use_bpftool=not args.no_bpftool)
        write_snapshot(doc, args.out)
    except OSError as e:
        sys.stderr.write(f"ftlab: snapshot: {args.out or 'stdout'}: {_err(e)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("ftlab: snapshot: interrupted\n")
        return 130
    if args.out and args.out != "-":
        sys.stderr.write(f"snapshot: {args.out}: kernel {doc['uname']['release']}, "
                         f"{len(doc['errors'])} item(s) not readable\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
