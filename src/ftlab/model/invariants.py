"""Invariants: properties every state between two top-level calls should have.

Each invariant is a named predicate: ``Invariant(name, doc, check)`` where ``check(k)`` returns a
list of violations (empty when the property holds), each a one-line string naming the function
or object at fault. :data:`INVARIANTS` lists them in a fixed order; :func:`check_all` runs them
all. They are checks on the model, not kernel code: the kernel asserts none of them, and some
seed behaviours break some of them on purpose-built paths (the tests pin which).

Rules the invariants encode (facts §1.4, §2, §7, §8):

* IPMODIFY exclusivity: at most one IPMODIFY ops covers a record; under a policy with
  FTRACE_OPS_FL_SHARE_IPMODIFY (seed-v2), a non-IPMODIFY DIRECT ops may share a record with an
  IPMODIFY ops only if it has SHARE_IPMODIFY; the record's FTRACE_FL_IPMODIFY bit is set iff an
  IPMODIFY ops covers it.
* Record accounting: a record's count is the number of listed, ENABLED ops whose hashes cover it
  (filter minus notrace; an empty filter is every record); DISABLED records are not counted.
* DIRECT accounting: FTRACE_FL_DIRECT iff a DIRECT ops covers the record, and every DIRECT record
  has a direct_functions entry.
* No lock is held, no WARN or BUG was recorded, ftrace is alive.
* Call semantics (through :func:`ftlab.model.calls.call` on a copy of the state): a live patch's
  function that is not in transition runs the patch's new function (or the original code for a
  nop); every attached BPF program runs when its function is called; every registered kprobe
  fires; the function tracer records the functions its filter selects; a loaded direct-call
  sample's trampoline runs for its functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .flags import OPSF, RECF, ftrace_rec_count
from .ftrace import ftrace_ops_test, skip_record
from .hash import ftrace_hash_empty
from .kernel import Kernel
from .ops import ftrace_ops

R = RECF  # plain ints: hot paths
F = OPSF  # plain ints: hot paths

#: At most this many functions are called per call-semantics invariant for one client.
MAX_CALLS = 64


@dataclass(frozen=True)
class Invariant:
    """A named property of a state: ``check(k)`` returns the violations (empty when it holds).

    ``calls``: the check simulates calls and takes ``caller=`` (a :class:`Caller`), so that the
    invariants checked on one state together simulate each call once (:func:`check_all`).
    """

    name: str
    doc: str
    check: Callable[..., list[str]]
    calls: bool = False

    def __call__(self, k: Kernel, caller: Caller | None = None) -> list[str]:
        return self.check(k, caller=caller) if self.calls else self.check(k)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _live_ops(k: Kernel) -> list[ftrace_ops]:
    return [op for op in k.ftrace_ops_list if op.flags & F.ENABLED]


def _name(k: Kernel, ip: int) -> str:
    name = k.cat.qualified_name_of_ip(ip)
    idx = k.cat.scope_indices(name)
    if len(idx) > 1:
        return f"{name},{idx.index(k.rec_index(ip)) + 1}"
    return name


def _covered_ips(k: Kernel, op: ftrace_ops) -> Iterable[int] | None:
    """The ips ``op`` covers, or None for "every record except its notrace ones"."""
    h = op.hash
    if ftrace_hash_empty(h.filter_hash):
        return None
    notrace = h.notrace_hash.ips if h.notrace_hash is not None else frozenset()
    return [ip for ip in h.filter_hash if ip not in notrace]  # type: ignore[union-attr]


class Caller:
    """calls.call_pure on ``k``, each (function, sympos) simulated once: a call may log a WARN
    (or, through FTRACE_WARN_ON, kill ftrace); call_pure undoes that, so the checked state stays
    untouched and a second call of the same function would trace the same. Valid while ``k`` is
    not changed."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.memo: dict[tuple[str, int], Any] = {}

    def __call__(self, name: str, sympos: int = 0) -> Any:
        from .calls import call_pure  # imported lazily: calls imports the ftrace core only

        trace = self.memo.get((name, sympos))
        if trace is None:
            trace = self.memo[(name, sympos)] = call_pure(self.k, name, sympos)
        return trace


def _sympos(k: Kernel, ip: int) -> tuple[str, int]:
    name = k.cat.qualified_name_of_ip(ip)
    idx = k.cat.scope_indices(name)
    return name, (idx.index(k.rec_index(ip)) + 1 if len(idx) > 1 else 0)


# ---------------------------------------------------------------------------------------------
# Ftrace-side invariants
# ---------------------------------------------------------------------------------------------
def check_ipmodify_exclusive(k: Kernel) -> list[str]:
    """At most one IPMODIFY ops per record, sharing only as the policy allows; the record bit agrees."""
    out: list[str] = []
    ipmod: dict[int, list[str]] = {}
    direct_noshare: dict[int, list[str]] = {}
    share_flag = k.policy.has_share_ipmodify_flag
    for op in _live_ops(k):
        if not op.flags & (F.IPMODIFY | F.DIRECT):
            continue
        ips = _covered_ips(k, op)
        if ips is None:
            out.append(f"{op.name}: IPMODIFY/DIRECT ops with an empty filter is live")
            continue
        for ip in ips:
            if op.flags & F.IPMODIFY:
                ipmod.setdefault(ip, []).append(op.name)
            elif share_flag and not op.flags & F.SHARE_IPMODIFY:
                direct_noshare.setdefault(ip, []).append(op.name)
    for ip, names in sorted(ipmod.items()):
        if len(names) > 1:
            out.append(f"{_name(k, ip)}: {len(names)} IPMODIFY ops ({', '.join(names)})")
        if ip in direct_noshare:
            out.append(f"{_name(k, ip)}: IPMODIFY ops {names[0]} shares the function with DIRECT ops "
                       f"{', '.join(direct_noshare[ip])} which lacks SHARE_IPMODIFY")
    touched = {r.ip: r.flags for r in k.touched_records()}
    for ip in sorted(set(touched) | set(ipmod)):
        flags = k.rec(ip).flags
        if flags & R.DISABLED:
            continue  # __ftrace_hash_update_ipmodify skips DISABLED records
        has_bit = bool(flags & R.IPMODIFY)
        if has_bit != (ip in ipmod):
            out.append(f"{_name(k, ip)}: FTRACE_FL_IPMODIFY is {'set' if has_bit else 'clear'} but "
                       f"{'no' if has_bit else 'an'} IPMODIFY ops covers it")
    return out


def check_rec_counts(k: Kernel) -> list[str]:
    """Each record's count equals the number of listed ENABLED ops covering it (filter minus notrace)."""
    out: list[str] = []
    cat = k.cat
    all_ops = 0
    minus: dict[int, int] = {}   # ips excluded from an all-records ops by its notrace hash
    plus: dict[int, int] = {}    # ips covered by filtered ops
    for op in _live_ops(k):
        ips = _covered_ips(k, op)
        if ips is None:
            all_ops += 1
            nt = op.hash.notrace_hash
            if nt is not None:
                for ip in nt:
                    minus[ip] = minus.get(ip, 0) + 1
        else:
            for ip in ips:
                plus[ip] = plus.get(ip, 0) + 1
    for op in k.ftrace_ops_list:
        if not op.flags & F.ENABLED:
            out.append(f"{op.name}: on ftrace_ops_list but not ENABLED")
    if all_ops:
        indices: Iterable[int] = range(len(cat))
    else:
        wanted = {cat.index(ip) for ip in plus}
        indices = sorted(set(k.recs) | {i for i in wanted if i is not None})
    for i in indices:
        flags = k.get_flags(i)
        if skip_record(flags):
            continue
        ip = cat.ip(i)
        want = all_ops - minus.get(ip, 0) + plus.get(ip, 0)
        have = ftrace_rec_count(flags, k.ref_max)
        if have != want:
            out.append(f"{_name(k, ip)}: count {have}, but {want} enabled ops cover it")
            if len(out) > 20:
                out.append("... (more)")
                break
    return out


def check_direct_records(k: Kernel) -> list[str]:
    """FTRACE_FL_DIRECT iff a DIRECT ops covers the record, and then direct_functions has the ip."""
    out: list[str] = []
    direct_ips: set[int] = set()
    for op in _live_ops(k):
        if op.flags & F.DIRECT:
            ips = _covered_ips(k, op)
            if ips is not None:
                direct_ips.update(ips)
    touched = {r.ip: r.flags for r in k.touched_records()}
    for ip in sorted(set(touched) | direct_ips):
        flags = touched.get(ip, 0)
        if skip_record(flags):
            continue
        has = bool(flags & R.DIRECT)
        if has != (ip in direct_ips):
            out.append(f"{_name(k, ip)}: FTRACE_FL_DIRECT is {'set' if has else 'clear'} but "
                       f"{'no' if has else 'a'} DIRECT ops covers it")
        if has and not k.direct_functions.get(ip):
            out.append(f"{_name(k, ip)}: FTRACE_FL_DIRECT without a direct_functions entry")
    return out


def check_no_locks(k: Kernel) -> list[str]:
    """No lock is held after a top-level call returns."""
    return [f"{lock} still held by {holder}" for lock, holder in sorted(k.locks.items())]


def check_no_warn(k: Kernel) -> list[str]:
    """No WARN or BUG was recorded and ftrace is not dead."""
    out = [str(e) for e in k.events if e.kind in ("WARN", "BUG")]
    if k.ftrace_disabled:
        out.append("ftrace is dead (ftrace_kill)")
    return out


# ---------------------------------------------------------------------------------------------
# Call-semantics invariants
# ---------------------------------------------------------------------------------------------
def _orig_call_skipped(trace: Any) -> bool:
    return any(kind == "orig_call" and detail.startswith("skipped") for kind, detail in trace.events)


def check_livepatch_body(k: Kernel, caller: Caller | None = None) -> list[str]:
    """A live-patched function not in transition runs the top patch's new function (original for a nop)."""
    st = k.subsys.get("klp")
    if st is None or k.ftrace_disabled:
        return []
    caller = caller or Caller(k)
    out: list[str] = []
    for ops in st.ops[:MAX_CALLS]:
        if not ops.func_stack:
            out.append(f"{ops.fops.name}: empty func_stack")
            continue
        func = ops.func_stack[0]
        if func.transition or func.old_func is None:
            continue
        name, sympos = _sympos(k, func.old_func)
        trace = caller(name, sympos)
        if _orig_call_skipped(trace):
            continue  # an fmod_ret program replaced the call: no body runs, by design
        want = name if func.nop else func.new_func
        if trace.body != want:
            out.append(f"{_name(k, func.old_func)}: the live patch's body is {want}, "
                       f"but {trace.body} ran")
    return out


def check_bpf_programs_run(k: Kernel, caller: Caller | None = None) -> list[str]:
    """Every attached BPF program runs when its function is called (fmod_ret: up to the first non-zero)."""
    st = k.subsys.get("bpf")
    if st is None or k.ftrace_disabled:
        return []
    caller = caller or Caller(k)
    out: list[str] = []
    by_target: dict[tuple[str, int], list[Any]] = {}
    for prog in getattr(st, "links", {}):
        by_target.setdefault((prog.target, prog.sympos), []).append(prog)
    for (target, sympos), progs in sorted(by_target.items())[:MAX_CALLS]:
        trace = caller(target, sympos)
        expected = set()
        skipped_after = False
        table = getattr(st, "trampoline_table", {})
        link = st.links[progs[0]]
        tr = table.get(link.key)
        fmod_order = [lk.prog for lk in tr.progs_hlist[2]] if tr is not None else []
        for p in progs:
            if p.kind != "fmod_ret":
                expected.add(p.name)
        for p in fmod_order:
            if skipped_after:
                break
            expected.add(p.name)
            if p.ret != 0:
                skipped_after = True
        missing = sorted(expected - set(trace.programs))
        if missing:
            out.append(f"{target}: attached BPF program(s) {', '.join(missing)} did not run")
    return out


def check_kprobes_fire(k: Kernel, caller: Caller | None = None) -> list[str]:
    """Every registered kprobe's pre_handler (and post_handler, if any) runs when its function is called."""
    st = k.subsys.get("kprobes")
    if st is None or k.ftrace_disabled:
        return []
    caller = caller or Caller(k)
    out: list[str] = []
    by_addr: dict[int, list[Any]] = {}
    for p in st.probes.values():
        by_addr.setdefault(p.addr, []).append(p)
    for addr, probes in sorted(by_addr.items())[:MAX_CALLS]:
        name, sympos = _sympos(k, addr)
        trace = caller(name, sympos)
        pre = trace.details("kprobe_pre")
        post = trace.details("kprobe_post")
        for p in probes:
            if p.disabled:
                continue
            if p.label not in pre:
                out.append(f"{_name(k, addr)}: kprobe {p.label} did not fire")
            elif p.post_handler and p.label not in post:
                out.append(f"{_name(k, addr)}: kprobe {p.label}'s post_handler did not run")
    return out


def check_tracer_records(k: Kernel, caller: Caller | None = None) -> list[str]:
    """With current_tracer=function, calls of functions the filter selects are recorded."""
    st = k.subsys.get("tracer")
    if st is None or st.current_tracer != "function" or k.ftrace_disabled:
        return []
    op = st.global_ops
    if not op.flags & F.ENABLED:
        return ["current_tracer is function but global_ops is not registered"]
    ips = _covered_ips(k, op)
    if ips is None:
        # every record: check those other clients hook too, then the first few
        shared = [r.ip for r in k.touched_records() if r.count > 1]
        first = [k.cat.ip(i) for i in range(min(len(k.cat), 8)) if i not in k.cat.invalid]
        candidates = shared + [ip for ip in first if ip not in shared]
    else:
        candidates = list(ips)
    caller = caller or Caller(k)
    out: list[str] = []
    for ip in candidates[:MAX_CALLS]:
        if not ftrace_ops_test(k, op, ip):
            continue
        name, sympos = _sympos(k, ip)
        trace = caller(name, sympos)
        if name not in trace.details("function"):
            out.append(f"{_name(k, ip)}: selected by set_ftrace_filter but not traced")
    return out


def check_direct_client_runs(k: Kernel, caller: Caller | None = None) -> list[str]:
    """A loaded direct-call sample's trampoline runs for each of its functions."""
    st = k.subsys.get("direct_client")
    if st is None or k.ftrace_disabled:
        return []
    caller = caller or Caller(k)
    out: list[str] = []
    for mod in st.modules.values():
        tramp = str(mod.tramp).partition("#")[0]
        for f in mod.funcs[:MAX_CALLS]:
            trace = caller(f)
            if f"{mod.name}:{tramp}" not in trace.details("direct"):
                out.append(f"{f}: direct trampoline {tramp} of {mod.name} did not run")
    return out


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("ipmodify_exclusive",
              "at most one IPMODIFY ops per function (a DIRECT one may share only with SHARE_IPMODIFY "
              "under seed-v2); FTRACE_FL_IPMODIFY set iff an IPMODIFY ops covers the function",
              check_ipmodify_exclusive),
    Invariant("rec_counts",
              "every record's count is the number of listed ENABLED ops covering it (filter minus notrace)",
              check_rec_counts),
    Invariant("direct_records",
              "FTRACE_FL_DIRECT iff a DIRECT ops covers the function, and then direct_functions has it",
              check_direct_records),
    Invariant("no_locks", "no lock is held between top-level calls", check_no_locks),
    Invariant("no_warn", "no WARN or BUG was recorded and ftrace is alive", check_no_warn),
    Invariant("livepatch_body",
              "an enabled live patch out of transition is the body that runs",
              check_livepatch_body, calls=True),
    Invariant("bpf_programs_run", "every attached BPF program runs when its function is called",
              check_bpf_programs_run, calls=True),
    Invariant("kprobes_fire", "every registered kprobe fires when its function is called",
              check_kprobes_fire, calls=True),
    Invariant("tracer_records", "the function tracer records the functions its filter selects",
              check_tracer_records, calls=True),
    Invariant("direct_client_runs", "a loaded direct-call sample's trampoline runs for its functions",
              check_direct_client_runs, calls=True),
)

BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in INVARIANTS}


def check_all(k: Kernel, names: Iterable[str] | None = None) -> list[str]:
    """Run the invariants (all, or those named) and return ``"<name>: <violation>"`` lines."""
    selected = INVARIANTS if names is None else tuple(BY_NAME[n] for n in names)
    caller = Caller(k)
    out: list[str] = []
    for inv in selected:
        out.extend(f"{inv.name}: {v}" for v in inv(k, caller))
    return out


__all__ = ["Invariant", "Caller", "INVARIANTS", "BY_NAME", "check_all", "check_ipmodify_exclusive",
           "check_rec_counts", "check_direct_records", "check_no_locks", "check_no_warn",
           "check_livepatch_body", "check_bpf_programs_run", "check_kprobes_fire",
           "check_tracer_records", "check_direct_client_runs"]
