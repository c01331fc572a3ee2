"""Per-record data shipped next to a kernel's catalogue: its functions' BTF models and where the
records sit in their functions (x86 IBT). A maintenance tool:

    python -m ftlab.oracle.groundtruth GUESTDIR --kernel 6.12     # one boot: copies the guest's files
    python -m ftlab.oracle.recorddata GUESTDIR OUTDIR --kernel 6.12

It writes, for the vmlinux catalogue (``debian-<release>``) and the guest's module records
(``oracle-guest-modules-<series>``), each in the record order of its
``.available_filter_functions.gz`` (which GUESTDIR's copy must equal):

* ``<catalogue>.func_models.gz``: one line per record: the argument count of its function, then
  each argument's size in bytes (``s`` after a struct's), as btf_distill_func_proto makes them from
  the host's copy of the kernel's BTF (the headers' ``vmlinux``, or the image; a module's split BTF
  from its ``.ko``); ``-`` where the function has no BTF FUNC or the kernel refuses its prototype
  (:meth:`ftlab.oracle.btf.BtfTypes.func_model`). A duplicated name takes its first BTF FUNC, the
  one a program names.
* ``<catalogue>.records_at_offset_0.gz``: the indices (0-based, record order) of the records whose
  call site is their symbol itself (available_filter_functions_addrs against /proc/kallsyms in
  the guest); every other record is at symbol + 4, after an ``endbr64``.

Lines starting with ``#`` are comments. :mod:`ftlab.catalogues` reads both files.
"""

from __future__ import annotations

import bisect
import gzip
import os
import sys
from collections import Counter

from ..errors import OracleError
from . import btf as btf_mod


def spell_model(model: tuple[tuple[int, bool], ...] | None) -> str:
    """A func_models line: ``2 8 8``, ``1 16s``, ``0``, or ``-``."""
    if model is None:
        return "-"
    return " ".join([str(len(model))] + [f"{size}{'s' if struct else ''}" for size, struct in model])


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror} (run python -m ftlab.oracle.groundtruth first)") from None


def record_offsets(addrs: list[str], kallsyms: list[str]) -> list[int]:
    """Per line of available_filter_functions_addrs: its address minus the address of the nearest
    kallsyms text symbol at or below it (the record's own function, or an alias at its place)."""
    syms = []
    for line in kallsyms:
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            syms.append(int(parts[0], 16))
    syms.sort()
    out = []
    for line in addrs:
        ip = int(line.split()[0], 16)
        i = bisect.bisect_right(syms, ip) - 1
        if i < 0:
            raise OracleError(f"no kallsyms symbol below record {line!r}")
        out.append(ip - syms[i])
    return out


def _write_gz(path: str, header: str, lines: list[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzip.compress(("".join(f"# {h}\n" for h in header.splitlines())
                               + "".join(ln + "\n" for ln in lines)).encode(), compresslevel=9, mtime=0))
    os.replace(tmp, path)


def run(guest_dir: str, out_dir: str, kernel: str = "6.12") -> dict[str, object]:
    """Write the four files into ``out_dir``; returns counts."""
    from . import install

    info = install.kernel_info(series=kernel)
    aff = _read(os.path.join(guest_dir, "available_filter_functions"))
    addrs = _read(os.path.join(guest_dir, "available_filter_functions_addrs"))
    if [ln.split(None, 1)[1] for ln in addrs] != aff:
        raise OracleError("available_filter_functions_addrs does not list available_filter_functions' records")
    offsets = record_offsets(addrs, _read(os.path.join(guest_dir, "kallsyms")))
    if set(offsets) - {0, 4}:
        raise OracleError(f"records at offsets other than 0 and 4: {sorted(set(offsets) - {0, 4})}")
    base = btf_mod.BtfTypes(btf_mod.vmlinux_btf(info.vmlinuz, os.path.join(info.kbuild_dir, "vmlinux")))
    from .kernels import module_bytes

    split = {m: btf_mod.BtfTypes(btf_mod.elf_section(module_bytes(p), ".BTF"), base)
             for m, p in info.guest_modules()}
    vml = [i for i, ln in enumerate(aff) if not ln.endswith("]")]
    mods = [i for i, ln in enumerate(aff) if ln.endswith("]")]
    if vml != list(range(len(vml))):
        raise OracleError("module records before vmlinux ones")
    os.makedirs(out_dir, exist_ok=True)
    counts: dict[str, object] = {}
    for name, idx in ((f"debian-{info.version}", vml), (f"oracle-guest-modules-{kernel}", mods)):
        models = []
        for i in idx:
            fn, _, mod = aff[i].partition(" [")
            types = split.get(mod[:-1]) if mod else base
            if mod and types is None:
                raise OracleError(f"no BTF for module {mod[:-1]} (not one the guest loads)")
            assert types is not None
            models.append(spell_model(types.func_model(fn)))
        at0 = [str(j) for j, i in enumerate(idx) if offsets[i] == 0]
        _write_gz(os.path.join(out_dir, f"{name}.func_models.gz"),
                  f"{name}: per record of its available_filter_functions, in order: the BTF model of its function\n"
                  "(btf_distill_func_proto): the argument count, then each argument's size (s: a struct); -: none",
                  models)
        _write_gz(os.path.join(out_dir, f"{name}.records_at_offset_0.gz"),
                  f"{name}: the records (0-based, in order) whose call site is the symbol itself;\n"
                  "every other record is at symbol + 4 (after an endbr64)", at0)
        counts[name] = {"records": len(idx), "at_offset_0": len(at0),
                        "nargs": dict(sorted(Counter(m.split()[0] for m in models).items()))}
    return counts


def main(argv: list[str]) -> int:  # pragma: no cover - a maintenance script
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m ftlab.oracle.recorddata")
    p.add_argument("guest_dir", help="the output folder of python -m ftlab.oracle.groundtruth")
    p.add_argument("out")
    p.add_argument("--kernel", default="6.12")
    args = p.parse_args(argv)
    sys.stderr.write(json.dumps(run(args.guest_dir, args.out, args.kernel), indent=1) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
