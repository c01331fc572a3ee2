"""Random sequences of core calls (Hypothesis stateful testing) under the seed's policy.

After every step: no lock is held, and each record's count, DIRECT and IPMODIFY bits agree with
the listed ops. After every refused call: the kernel state (records, ops list, hashes of listed
ops, direct_functions, locks) is exactly as before, with one documented exception that is the
seed's own behaviour: prepare_direct_functions_for_ipmodify does not undo the SHARE_IPMODIFY it
obtained for an earlier ip when a later ip fails (facts §2.4 step 5).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from kutil import F, R, SharingOwner, ftrace_ops, small_kernel

from ftlab.model import direct, ftrace
from ftlab.model.hash import hash_contains_ip

FUNCS = ["fa", "fb", "fc", "fd", "dup"]


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.k = k = small_kernel()
        self.owner = SharingOwner()
        self.owner.kernel = k
        self.ops = {
            "klp_a": ftrace_ops("klp_a", "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT),
            "klp_b": ftrace_ops("klp_b", "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT),
            "kprobe_ip": ftrace_ops("kprobe_ip", "kprobe_ftrace_handler", F.IPMODIFY | F.SAVE_REGS),
            "tracer": ftrace_ops("tracer", "function_trace_call", 0),
            "regs": ftrace_ops("regs", "kprobe_ftrace_handler", F.SAVE_REGS),
        }
        self.dops = {
            "bpf": ftrace_ops("bpf", None, 0, ops_func=self.owner),
            "sample": ftrace_ops("sample", None, 0),
            "legacy": ftrace_ops("legacy", None, F.IPMODIFY),
        }
        for o in list(self.ops.values()) + list(self.dops.values()):
            ftrace.ftrace_ops_init(k, o)
            o.local_hash.filter_hash = None

    # -- helpers ---------------------------------------------------------------------------
    def _ip(self, f: str) -> int:
        return self.k.cat.indices(f) and self.k.cat.ip(self.k.cat.indices(f)[0])

    def _check_refusal(self, before_key, before_share, ret: int) -> None:
        if ret == 0:
            return
        now_share = {n: bool(o.flags & F.SHARE_IPMODIFY) for n, o in self.dops.items()}
        if now_share != before_share:
            # the documented exception: only SHARE bits gained, nothing else
            assert all(now_share[n] or not before_share[n] for n in now_share)
            return
        assert self.k.key() == before_key, f"refused call (ret {ret}) changed the state"

    def _snap(self):
        return self.k.key(), {n: bool(o.flags & F.SHARE_IPMODIFY) for n, o in self.dops.items()}

    # -- rules -----------------------------------------------------------------------------
    @rule(name=st.sampled_from(["klp_a", "klp_b", "kprobe_ip", "tracer", "regs"]))
    def register(self, name):
        ops = self.ops[name]
        if ops.flags & F.ENABLED:
            return
        if ops.flags & F.IPMODIFY and ops.hash.filter_hash is None:
            return  # would oops in prepare (pinned in its own test)
        key, share = self._snap()
        ret = ftrace.register_ftrace_function(self.k, ops)
        self._check_refusal(key, share, ret)

    @rule(name=st.sampled_from(["klp_a", "klp_b", "kprobe_ip", "tracer", "regs"]))
    def unregister(self, name):
        ops = self.ops[name]
        if not ops.flags & F.ENABLED:
            return
        assert ftrace.unregister_ftrace_function(self.k, ops) == 0

    @rule(name=st.sampled_from(["klp_a", "klp_b", "kprobe_ip", "tracer", "regs", "bpf", "sample",
                                "legacy"]),
          func=st.sampled_from(FUNCS), remove=st.booleans())
    def set_filter_ip(self, name, func, remove):
        ops = self.ops.get(name) or self.dops[name]
        if ops.flags & F.DIRECT and ops.flags & F.ENABLED:
            return  # a live direct ops' filter is changed through the direct API only
        key, share = self._snap()
        ret = ftrace.ftrace_set_filter_ip(self.k, ops, self._ip(func), remove=remove)
        self._check_refusal(key, share, ret)

    @rule(name=st.sampled_from(["bpf", "sample", "legacy"]), share=st.booleans(),
          addr=st.sampled_from(["t1", "t2"]))
    def register_direct(self, name, share, addr):
        ops = self.dops[name]
        if ops.flags & F.ENABLED:
            return
        ops.func, ops.trampoline = None, 0  # what a retrying owner does
        if name == "bpf":
            ops.flags = (ops.flags | F.SHARE_IPMODIFY) if share else (ops.flags & ~F.SHARE_IPMODIFY)
        key, share_before = self._snap()
        ret = direct.register_ftrace_direct_multi(self.k, ops, f"{addr}_{name}")
        self._check_refusal(key, share_before, ret)

    @rule(name=st.sampled_from(["bpf", "sample", "legacy"]))
    def unregister_direct(self, name):
        ops = self.dops[name]
        if not ops.flags & F.ENABLED:
            return
        addr = self.k.direct_functions[next(iter(ops.hash.filter_hash))]
        assert direct.unregister_ftrace_direct_multi(self.k, ops, addr) == 0

    @rule(name=st.sampled_from(["bpf", "sample", "legacy"]), addr=st.sampled_from(["m1", "m2"]))
    def modify_direct(self, name, addr):
        ops = self.dops[name]
        if not ops.flags & F.ENABLED:
            return
        assert direct.modify_ftrace_direct_multi(self.k, ops, f"{addr}_{name}") == 0

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def no_lock_held(self):
        assert self.k.locks == {}

    @invariant()
    def no_warning(self):
        assert self.k.warnings == [] and not self.k.ftrace_disabled

    @invariant()
    def records_agree_with_listed_ops(self):
        k = self.k
        for i in range(len(k.cat)):
            if i in k.cat.invalid:
                assert k.get_flags(i) == R.DISABLED
                continue
            ip = k.cat.ip(i)
            covering = [op for op in k.ftrace_ops_list if hash_contains_ip(ip, op.hash)]
            flags = k.get_flags(i)
            assert flags & 0x7FFFFF == len(covering)
            assert bool(flags & R.ENABLED) == bool(covering)
            assert bool(flags & R.DIRECT) == any(op.flags & F.DIRECT for op in covering)
            ipmod = [op for op in k.ftrace_ops_list
                     if op.flags & F.IPMODIFY and op.hash.filter_hash is not None
                     and ip in op.hash.filter_hash]
            assert bool(flags & R.IPMODIFY) == bool(ipmod)
            if flags & R.DIRECT:
                assert ip in k.direct_functions


CoreMachine.TestCase.settings = settings(max_examples=1000, stateful_step_count=25, deadline=None)
TestCoreStateful = CoreMachine.TestCase
