"""Ground truth for the model from a real guest: the catalogue, record texts, sizes, ENDBR.

A maintenance tool (``python -m ftlab.oracle.groundtruth OUTDIR [--kernel 6.12]``, one or two
boots) that runs the oracle (:func:`ftlab.oracle.runner.run`) on a fixed list of small scenarios
(:data:`FACT_SCENARIOS`: each hook client alone, and the BPF program mixes with and without a
live patch) and, through its ``post_plan`` hook, an agent ``read`` step after every step:
enabled_functions and touched_functions in full, and the lines of /proc/kallsyms and
available_filter_functions_addrs that name the functions the oracle can call. A first scenario
copies whole files out of the guest before anything else runs: available_filter_functions (the
catalogue and the guest's module records), available_filter_functions_addrs, /proc/kallsyms and
/proc/modules.

It writes into OUTDIR: the oracle's own results (``results.json``, per-scenario JSON lines),
the copied files, and ``facts.json``::

    {"kernel", "series", "catalogue": {"lines", "vmlinux": {"lines", "unique", "duplicated_names",
       "invalid"}, "modules": [[module, records]...]},
     "sizes": {symbol: {"kallsyms": size from the next symbol, "printed": [sizes seen in records]}},
     "endbr": {function: {"symbol": addr, "record": addr, "offset": record - symbol}},
     "record_offsets": {offset: count} (every record of the catalogue against its symbol),
     "scenarios": [{"name", "steps": [{"action", "result", "enabled": text, "touched": text,
                    "call": ...}]}]}

and the two catalogue files as the project ships them (gzip, one name per line, record order):
``debian-<release>.available_filter_functions.gz`` (vmlinux only: `` [module]`` lines dropped)
and ``oracle-guest-modules-<series>.available_filter_functions.gz`` (the guest's module records
in load order).
"""

from __future__ import annotations

import bisect
import gzip
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..model.catalogue import INVALID_PREFIX
from .targets import CALLABLE

F = "cmdline_proc_show"
SEC = "security_task_getsid"

#: (name, scenario steps): each hook client alone and the BPF mixes; the order matters for the
#: sticky M column, which only IPMODIFY and DIRECT set: the tracers and the plain kprobe come
#: first, on a function nothing has modified yet, then once more after a live patch.
FACT_SCENARIOS: list[tuple[str, list[str]]] = [
    ("function-tracer", [f"{{tracer: function, filter: [{F}]}}", f"{{call: {F}}}", "{tracer: nop}"]),
    ("function-graph-tracer", [f"{{tracer: function_graph, filter: [{F}]}}", f"{{call: {F}}}", "{tracer: nop}"]),
    ("kprobe", [f"{{kprobe: add, target: {F}}}", f"{{call: {F}}}", f"{{kprobe: remove, target: {F}}}"]),
    ("kprobe-post", [f"{{kprobe: add, target: {F}, post: true}}", f"{{call: {F}}}",
                     f"{{kprobe: remove, target: {F}}}"]),
    ("livepatch", ["{livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}", f"{{call: {F}}}",
                   "{livepatch: disable, patch: p1}"]),
    ("function-tracer-after-modify", [f"{{tracer: function, filter: [{F}]}}", "{tracer: nop}"]),
    ("fentry", [f"{{bpf: attach, prog: fe, kind: fentry, target: {F}}}", f"{{call: {F}}}", "{bpf: detach, prog: fe}"]),
    ("fexit", [f"{{bpf: attach, prog: fx, kind: fexit, target: {F}}}", f"{{call: {F}}}", "{bpf: detach, prog: fx}"]),
    ("fentry-fexit", [f"{{bpf: attach, prog: fe, kind: fentry, target: {F}}}",
                      f"{{bpf: attach, prog: fx, kind: fexit, target: {F}}}", f"{{call: {F}}}",
                      "{bpf: detach, prog: fx}", "{bpf: detach, prog: fe}"]),
    ("fmod_ret", [f"{{bpf: attach, prog: fm, kind: fmod_ret, target: {SEC}, ret: 0}}", f"{{call: {SEC}}}",
                  "{bpf: detach, prog: fm}"]),
    ("livepatch-fentry", [f"{{livepatch: enable, patch: p1, funcs: [{F}]}}",
                          f"{{bpf: attach, prog: fe, kind: fentry, target: {F}}}", f"{{call: {F}}}",
                          "{bpf: detach, prog: fe}", "{livepatch: disable, patch: p1}"]),
    ("livepatch-fexit", [f"{{livepatch: enable, patch: p1, funcs: [{F}]}}",
                         f"{{bpf: attach, prog: fx, kind: fexit, target: {F}}}", f"{{call: {F}}}",
                         "{bpf: detach, prog: fx}", "{livepatch: disable, patch: p1}"]),
    ("livepatch-fmod_ret", [f"{{livepatch: enable, patch: p1, funcs: [{SEC}]}}",
                            f"{{bpf: attach, prog: fm, kind: fmod_ret, target: {SEC}, ret: 0}}",
                            f"{{call: {SEC}}}", "{bpf: detach, prog: fm}", "{livepatch: disable, patch: p1}"]),
    ("direct", ["{direct: register, name: d1, targets: [version_proc_show], tramp: my_tramp1}",
                "{call: version_proc_show}", "{direct: modify, name: d1, tramp: my_tramp2}",
                "{direct: unregister, name: d1}"]),
    # last: on 6.1 this kills ftrace (the scenarios after it run in a fresh guest)
    ("livepatch-fentry-fexit", [f"{{livepatch: enable, patch: p1, funcs: [{F}]}}",
                                f"{{bpf: attach, prog: fe, kind: fentry, target: {F}}}",
                                f"{{bpf: attach, prog: fx, kind: fexit, target: {F}}}", f"{{call: {F}}}",
                                "{bpf: detach, prog: fx}", "{bpf: detach, prog: fe}",
                                "{livepatch: disable, patch: p1}", f"{{call: {F}}}"]),
]

#: Symbols whose %pS size the records print (and the model assumes).
SIZED = ("ftrace_regs_caller", "call_direct_funcs", "klp_ftrace_handler", "arch_ftrace_ops_list_func",
         "kprobe_ftrace_handler", "function_trace_call", "ftrace_graph_func", "ftrace_caller", "ftrace_stub",
         "ftrace_ops_list_func", "ftrace_trampoline")
TRACING = "/sys/kernel/tracing"
COPIES = {"available_filter_functions": f"{TRACING}/available_filter_functions",
          "available_filter_functions_addrs": f"{TRACING}/available_filter_functions_addrs",
          "kallsyms": "/proc/kallsyms", "modules": "/proc/modules",
          "touched_functions.boot": f"{TRACING}/touched_functions"}


def scenario_text(name: str, steps: list[str]) -> str:
    return (f"description: \"ground truth: {name}\"\nkernel: {{catalogue: oracle-guest}}\nsteps:\n"
            + "".join(f"  - {s}\n" for s in steps))


def _hook(out_dir: str) -> Callable[[list[Any]], None]:
    names = sorted({n.rpartition(":")[2] for n in CALLABLE})
    per_step = {"op": "read", "action": "read tracefs", "files": [
        {"path": f"{TRACING}/enabled_functions"}, {"path": f"{TRACING}/touched_functions"}]}
    first = {"op": "read", "action": "copy files", "files": [
        {"path": p, "to": os.path.join(out_dir, n)} for n, p in COPIES.items()] + [
        {"path": "/proc/kallsyms", "words": names + list(SIZED)},
        {"path": f"{TRACING}/available_filter_functions_addrs", "words": names}]}

    def hook(planned: list[Any]) -> None:
        planned[0].steps.insert(0, dict(first))
        for p in planned[1:]:
            steps = []
            for st in p.steps:
                steps += [st, dict(per_step)]
            p.steps[:] = steps

    return hook


def run(out_dir: str, kernel: str = "6.12", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Boot, collect, write everything into ``out_dir``; returns facts.json's document."""
    from ..scenario import load_scenario_text
    from . import runner

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for name, steps in [("copy", ["{show: enabled_functions}"])] + FACT_SCENARIOS:
        src = os.path.join(out_dir, f"{name}.yaml")
        text = scenario_text(name, steps)
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        sc, lines = load_scenario_text(text, src)
        items.append(runner.Item(sc, lines, src))
    results = runner.run(items, out_dir, progress=progress, post_plan=_hook(out_dir), kernel=kernel)
    facts = collect(out_dir, results)
    tmp = os.path.join(out_dir, "facts.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "facts.json"))
    return facts


def _read(path: str) -> str:
    """A copied file's text; empty when the guest could not copy it (6.1 has no
    available_filter_functions_addrs nor touched_functions)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write_gz(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    os.replace(tmp, path)


def catalogue_counts(names: list[str]) -> dict[str, int]:
    c = Counter(names)
    return {"lines": len(names), "unique": len(c), "duplicated_names": sum(1 for v in c.values() if v > 1),
            "invalid": sum(1 for n in names if n.startswith(INVALID_PREFIX))}


def kallsyms_table(text: str) -> tuple[list[int], list[tuple[int, str, str | None]]]:
    """Sorted (address, name, module) of /proc/kallsyms' text symbols."""
    syms = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        mod = parts[3].strip("[]") if len(parts) > 3 else None
        syms.append((int(parts[0], 16), parts[2], mod))
    syms.sort()
    return [a for a, _, _ in syms], syms


def collect(out_dir: str, results: dict[str, Any]) -> dict[str, Any]:
    """facts.json from a run's output folder (see the module docstring)."""
    release, series = results["kernel"], results["series"]
    aff = _read(os.path.join(out_dir, "available_filter_functions")).splitlines()
    vml = [ln for ln in aff if not ln.endswith("]")]
    mod_lines = [ln for ln in aff if ln.endswith("]")]
    _write_gz(os.path.join(out_dir, f"debian-{release}.available_filter_functions.gz"),
              "".join(n + "\n" for n in vml))
    _write_gz(os.path.join(out_dir, f"oracle-guest-modules-{series}.available_filter_functions.gz"),
              "".join(n + "\n" for n in mod_lines))
    mods = Counter(ln.rsplit("[", 1)[1][:-1] for ln in mod_lines)
    order = list(dict.fromkeys(ln.rsplit("[", 1)[1][:-1] for ln in mod_lines))
    addrs, syms = kallsyms_table(_read(os.path.join(out_dir, "kallsyms")))

    def symbol_at(ip: int) -> tuple[int, str, str | None] | None:
        i = bisect.bisect_right(addrs, ip) - 1
        return syms[i] if i >= 0 else None

    sizes: dict[str, Any] = {}
    by_name: dict[str, int] = {}
    for i, (a, n, m) in enumerate(syms):
        if m is None and n in SIZED and n not in by_name:
            nxt = next((b for b, _, _ in syms[i + 1:] if b > a), None)
            by_name[n] = a
            sizes[n] = {"kallsyms": None if nxt is None else nxt - a, "printed": []}
    offsets: Counter[int] = Counter()
    endbr: dict[str, Any] = {}
    callable_names = {n.rpartition(":")[2]: n for n in CALLABLE}
    for line in _read(os.path.join(out_dir, "available_filter_functions_addrs")).splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        ip = int(parts[0], 16)
        s = symbol_at(ip)
        if s is None:
            continue
        offsets[ip - s[0]] += 1
        if parts[1] in callable_names and s[1] == parts[1]:
            endbr[callable_names[parts[1]]] = {"symbol": hex(s[0]), "record": hex(ip), "offset": ip - s[0]}
    scenarios = []
    for sc in results["scenarios"]:
        steps = []
        for st in sc["steps"]:
            if st["action"] in ("read tracefs", "copy files"):
                if steps and isinstance(st.get("view"), dict):
                    v = {k: (t if isinstance(t, str) else None) for k, t in st["view"].items()}
                    steps[-1]["enabled_functions"] = v.get(f"{TRACING}/enabled_functions")
                    steps[-1]["touched_functions"] = v.get(f"{TRACING}/touched_functions")
                continue
            steps.append({"action": st["action"], "result": st["result"], "enabled": st.get("enabled"),
                          "call": st.get("call"), "ftrace_dead": st.get("ftrace_dead"), "warn": st.get("warn")})
        scenarios.append({"name": os.path.basename(sc["source"]).rsplit(".", 1)[0], "status": sc["status"],
                          "steps": steps})
    import re
    sized = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+0x0/0x([0-9a-f]+)")
    for sc in scenarios:
        for st in sc["steps"]:
            for text in (st.get("enabled_functions") or "", st.get("touched_functions") or ""):
                for m in sized.finditer(text):
                    n, size = m.group(1), int(m.group(2), 16)
                    if n.startswith("bpf_trampoline_"):
                        n = "bpf_trampoline (" + sc["name"] + ")"
                    e = sizes.setdefault(n, {"kallsyms": None, "printed": []})
                    if size not in e["printed"]:
                        e["printed"].append(size)
    return {"kernel": release, "series": series,
            "catalogue": {"lines": len(aff), "vmlinux": catalogue_counts(vml),
                          "modules": [[m, mods[m]] for m in order]},
            "sizes": sizes, "endbr": endbr, "record_offsets": {str(k): v for k, v in sorted(offsets.items())},
            "scenarios": scenarios}


def main(argv: list[str]) -> int:  # pragma: no cover - a maintenance script
    import argparse

    p = argparse.ArgumentParser(prog="python -m ftlab.oracle.groundtruth")
    p.add_argument("out")
    p.add_argument("--kernel", default="6.12")
    args = p.parse_args(argv)
    facts = run(args.out, args.kernel, progress=lambda s: sys.stderr.write(s + "\n"))
    sys.stderr.write(json.dumps(facts["catalogue"]) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
