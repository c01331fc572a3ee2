"""Livepatch as an ftrace client (kernel/livepatch/{core,patch,transition}.c, Linux 6.1) under seed-v2.

Every step runs through clientutil.Run, which checks all invariants afterwards and that a refused
call leaves the whole state unchanged.
"""

from __future__ import annotations

import itertools

import pytest
from clientutil import (
    EAGAIN,
    EBUSY,
    EEXIST,
    EINVAL,
    ENODEV,
    ENOENT,
    LAYOUTS,
    TAGS,
    Run,
    assert_quiet,
    full_key,
    init_clients,
    run_orders,
    small_kernel,
)

from ftlab import catalogues
from ftlab.model import calls, views
from ftlab.model.arch import ArchProfile
from ftlab.model.calls import call
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import livepatch as lp
from ftlab.model.clients.direct_client import direct_client_load, direct_client_unload
from ftlab.model.clients.kprobes import register_kprobe, unregister_kprobe
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel

OBS_KLP = ("cmdline_proc_show (1)   I  \ttramp: ADDR (klp_ftrace_handler+0x0/0x110) "
           "->klp_ftrace_handler+0x0/0x110")


def body(k: Kernel, name: str, sympos: int = 0) -> str | None:
    return call(k, name, sympos).body  # type: ignore[return-value]


def new(patch: str, func: str) -> str:
    return lp.default_new_func(patch, func)


# ---------------------------------------------------------------------------------------------
# One patch
# ---------------------------------------------------------------------------------------------
def test_klp_fops_is_dynamic_ipmodify_permanent_without_save_regs_on_x86_64():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    ops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa"))
    assert ops is not None and ops.fops.func == "klp_ftrace_handler"
    # facts §1.4: DYNAMIC|IPMODIFY|PERMANENT + INITIALIZED + ENABLED + ALLOC_TRAMP = 0x11843
    assert ops.fops.flags == 0x11843


def test_klp_fops_asks_for_save_regs_where_the_arch_lacks_ftrace_with_args():
    arch = ArchProfile("with_regs_only", True, False, True, True, True, True, True, 5)
    run = Run(small_kernel(arch=arch))
    run(lp.livepatch_enable, "p1", ["fa"])
    ops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa"))
    assert ops is not None and ops.fops.flags & F.SAVE_REGS
    assert run.k.rec_by_name("fa").flags & (1 << 30)  # FTRACE_FL_REGS


def test_klp_enable_patch_is_enodev_without_have_livepatch():
    run = Run(small_kernel(arch="arm64"))
    run(lp.livepatch_enable, "p1", ["fa"], expect=ENODEV)
    assert lp.klp_state(run.k).modules == {}


def test_enabled_functions_for_a_live_patch_alone_matches_the_real_kernel():
    k = init_clients(Kernel(catalogues.embedded()))
    run = Run(k)
    run(lp.livepatch_enable, "livepatch_cmdline", ["cmdline_proc_show"])
    text = views.normalize_addresses(views.enabled_functions(k))
    assert text == OBS_KLP + "\n"


def test_the_patched_body_runs_and_returns_its_marker():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa", "fb"])
    t = call(run.k, "fa")
    assert t.body == new("p1", "fa")
    assert t.retval == lp.livepatch_body_retval(new("p1", "fa"))
    assert ("regs.ip", f"fa -> {new('p1', 'fa')} (by klp_ops[fa])") in t.events
    assert body(run.k, "fc") == "fc"


def test_sysfs_view_of_an_enabled_patch():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa", ("dup", 2)])
    assert lp.livepatch_sysfs(run.k) == (
        "/sys/kernel/livepatch/\n"
        "/sys/kernel/livepatch/p1/\n"
        "/sys/kernel/livepatch/p1/enabled: 1\n"
        "/sys/kernel/livepatch/p1/force\n"
        "/sys/kernel/livepatch/p1/transition: 0\n"
        "/sys/kernel/livepatch/p1/vmlinux/\n"
        "/sys/kernel/livepatch/p1/vmlinux/patched: 1\n"
        "/sys/kernel/livepatch/p1/vmlinux/fa,1/\n"
        "/sys/kernel/livepatch/p1/vmlinux/dup,2/\n")
    assert body(run.k, "dup", 2) == new("p1", "dup") + ",2"
    assert body(run.k, "dup", 1) == "dup"


def test_disable_then_rmmod_leaves_the_kernel_quiet_and_sysfs_empty():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa", "fb"])
    run(lp.livepatch_unload, "p1", expect=EAGAIN)  # the patch holds a module reference
    run(lp.livepatch_disable, "p1")
    assert lp.livepatch_sysfs(run.k) == "/sys/kernel/livepatch/\n"
    run(lp.livepatch_unload, "p1")
    assert_quiet(run.k)
    assert lp.klp_state(run.k).ops == []


def test_loading_a_livepatch_module_twice_is_eexist():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p1", ["fb"], expect=EEXIST)


def test_writing_the_current_value_to_enabled_is_einval():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_write_enabled, "p1", 1, expect=EINVAL)


def test_writing_enabled_of_a_freed_patch_finds_no_file():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_disable, "p1")
    run(lp.livepatch_write_enabled, "p1", 1, expect=ENOENT)


def test_reenabling_a_disabled_patch_before_its_kobject_is_released_is_einval():
    run = Run(small_kernel())
    lp.klp_state(run.k).defer_free_work = True
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_disable, "p1")
    assert "/sys/kernel/livepatch/p1/enabled: 0\n" in lp.livepatch_sysfs(run.k)
    run(lp.livepatch_write_enabled, "p1", 1, expect=EINVAL)
    run(lp.livepatch_write_enabled, "p1", 0, expect=EINVAL)
    lp.klp_run_free_work(run.k)
    assert lp.livepatch_sysfs(run.k) == "/sys/kernel/livepatch/\n"


# ---------------------------------------------------------------------------------------------
# klp_enable_patch failures
# ---------------------------------------------------------------------------------------------
def test_a_nameless_or_empty_patch_is_einval():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", [], expect=EINVAL)
    run(lp.livepatch_enable, "p1", [lp.klp_func(None, "livepatch_p1:x")], expect=EINVAL)
    run(lp.livepatch_enable, "p1", [lp.klp_func("fa", None)], expect=EINVAL)
    assert lp.klp_state(run.k).modules == {}


def test_unknown_symbol_is_einval_with_the_kernel_message():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa", "nosuch"], expect=EINVAL)
    assert "livepatch: symbol 'nosuch' not found in symbol table" in [e.text for e in run.k.events]


def test_ambiguous_symbol_without_sympos_is_einval_printing_a_null_object_name():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["dup"], expect=EINVAL)
    assert "livepatch: unresolvable ambiguity for symbol 'dup' in object '(null)'" in \
        [e.text for e in run.k.events]
    run(lp.livepatch_enable, "p1", [("dup", 3)], expect=EINVAL)
    assert "livepatch: symbol position 3 for symbol 'dup' in object 'vmlinux' not found" in \
        [e.text for e in run.k.events]


def test_a_failing_second_function_unpatches_the_first_and_returns_the_ftrace_error():
    run = Run(small_kernel())
    run(register_kprobe, "fb", True)
    before = full_key(run.k)
    run(lp.livepatch_enable, "p1", ["fa", "fb"], expect=EBUSY)
    assert full_key(run.k) == before
    texts = [e.text for e in run.k.events if e.kind == "ERR"]
    assert texts == ["livepatch: failed to register ftrace handler for function 'fb' (-16)",
                     "livepatch: failed to patch object 'vmlinux'",
                     "livepatch: failed to enable patch 'p1'"]
    assert lp.livepatch_sysfs(run.k) == "/sys/kernel/livepatch/\n"
    assert body(run.k, "fa") == "fa"


def test_enable_while_another_transition_is_open_is_ebusy():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"], hold=True)
    run(lp.livepatch_enable, "p2", ["fb"], expect=EBUSY)
    run(lp.livepatch_disable, "p2", expect=ENOENT)
    run(lp.klp_transition_complete)
    run(lp.livepatch_enable, "p2", ["fb"])


def test_disable_while_another_transition_is_open_is_ebusy():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fb"], hold=True)
    run(lp.livepatch_disable, "p1", expect=EBUSY)


# ---------------------------------------------------------------------------------------------
# Stacking
# ---------------------------------------------------------------------------------------------
def test_stacked_patches_share_one_fops_and_the_newest_runs():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    fops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa")).fops
    run(lp.livepatch_enable, "p2", ["fa"])
    assert [o.name for o in run.k.ftrace_ops_list] == ["klp_ops[fa]"]
    assert lp.klp_find_ops(run.k, run.k.cat.lookup("fa")).fops is fops
    assert run.k.rec_by_name("fa").count == 1
    assert body(run.k, "fa") == new("p2", "fa")


@pytest.mark.parametrize("first", ["p1", "p2"])
def test_stacked_patches_disabled_in_either_order_fall_back_then_restore_the_original(first):
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fa"])
    other = "p2" if first == "p1" else "p1"
    run(lp.livepatch_disable, first)
    assert body(run.k, "fa") == new(other, "fa")
    run(lp.livepatch_disable, other)
    assert body(run.k, "fa") == "fa"
    assert_quiet(run.k)


# ---------------------------------------------------------------------------------------------
# Transition held open
# ---------------------------------------------------------------------------------------------
def test_during_a_held_enable_the_unmigrated_task_runs_the_original_code():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"], hold=True)
    assert "/sys/kernel/livepatch/p1/transition: 1\n" in lp.livepatch_sysfs(run.k)
    assert body(run.k, "fa") == "fa"
    run(lp.klp_transition_complete)
    assert body(run.k, "fa") == new("p1", "fa")
    assert "/sys/kernel/livepatch/p1/transition: 0\n" in lp.livepatch_sysfs(run.k)


def test_during_a_held_stacked_enable_the_task_runs_the_previous_patch():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fa", "fb"], hold=True)
    assert body(run.k, "fa") == new("p1", "fa")
    assert body(run.k, "fb") == "fb"
    run(lp.klp_transition_work)  # the retry work alone cannot switch a blocked task
    assert lp.klp_in_transition(run.k)
    run(lp.klp_transition_complete)
    assert body(run.k, "fa") == new("p2", "fa")
    assert body(run.k, "fb") == new("p2", "fb")


def test_during_a_held_disable_the_task_still_runs_the_patch():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_disable, "p1", hold=True)
    assert "/sys/kernel/livepatch/p1/enabled: 0\n" in lp.livepatch_sysfs(run.k)
    assert body(run.k, "fa") == new("p1", "fa")
    run(lp.klp_transition_complete)
    assert body(run.k, "fa") == "fa"
    assert_quiet(run.k)


def test_writing_zero_during_the_patch_s_own_enable_transition_reverses_it():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"], hold=True)
    run(lp.livepatch_disable, "p1")
    assert lp.klp_in_transition(run.k)
    assert "/sys/kernel/livepatch/p1/enabled: 0\n" in lp.livepatch_sysfs(run.k)
    # the unmigrated task is already in the new target state: the next work run completes it
    run(lp.klp_transition_work)
    assert not lp.klp_in_transition(run.k)
    assert_quiet(run.k)
    run(lp.livepatch_unload, "p1")


def test_writing_one_during_the_patch_s_own_disable_transition_reverses_it():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_disable, "p1", hold=True)
    run(lp.livepatch_write_enabled, "p1", 1)
    run(lp.klp_transition_work)
    assert not lp.klp_in_transition(run.k)
    assert body(run.k, "fa") == new("p1", "fa")


def test_force_switches_the_blocked_task_and_a_forced_disable_keeps_the_module_reference():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_force, "p1", expect=EINVAL)  # not in transition
    run(lp.livepatch_disable, "p1", hold=True)
    run(lp.livepatch_force, "p1")
    run(lp.klp_transition_work)
    assert not lp.klp_in_transition(run.k)
    assert body(run.k, "fa") == "fa"
    run(lp.livepatch_unload, "p1", expect=EAGAIN)  # forced: module_put is skipped for good


def test_klp_transition_complete_without_a_transition_is_einval():
    run = Run(small_kernel())
    run(lp.klp_transition_complete, expect=EINVAL)
    run(lp.klp_transition_work, expect=EINVAL)


# ---------------------------------------------------------------------------------------------
# Atomic replace
# ---------------------------------------------------------------------------------------------
def test_replace_adds_nops_and_on_completion_frees_the_older_patches():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fb"])
    run(lp.livepatch_enable, "p3", ["fc"], replace=True, hold=True)
    # in transition: nops stacked on fa and fb; the task still runs the old patches
    p3 = lp.klp_state(run.k).sysfs["p3"]
    assert sorted((f.old_name, f.nop) for o in p3.objs for f in o.funcs) == \
        [("fa", True), ("fb", True), ("fc", False)]
    assert (body(run.k, "fa"), body(run.k, "fb"), body(run.k, "fc")) == \
        (new("p1", "fa"), new("p2", "fb"), "fc")
    run(lp.klp_transition_complete)
    assert (body(run.k, "fa"), body(run.k, "fb"), body(run.k, "fc")) == ("fa", "fb", new("p3", "fc"))
    assert sorted(lp.klp_state(run.k).sysfs) == ["p3"]
    assert [o.name for o in run.k.ftrace_ops_list] == ["klp_ops[fc]"]
    assert [f.old_name for o in p3.objs for f in o.funcs] == ["fc"]
    run(lp.livepatch_unload, "p1")
    run(lp.livepatch_unload, "p2")


def test_replace_of_the_same_function_takes_over_its_fops():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa", "fb"])
    run(lp.livepatch_enable, "p2", ["fa"], replace=True)
    assert body(run.k, "fa") == new("p2", "fa")
    assert body(run.k, "fb") == "fb"
    assert [o.name for o in run.k.ftrace_ops_list] == ["klp_ops[fa]"]


def test_replace_reversed_during_its_transition_keeps_the_older_patches():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fb"], replace=True, hold=True)
    run(lp.livepatch_disable, "p2")
    run(lp.klp_transition_work)
    assert body(run.k, "fa") == new("p1", "fa")
    assert body(run.k, "fb") == "fb"
    assert sorted(lp.klp_state(run.k).sysfs) == ["p1"]


def test_forced_replace_marks_the_replaced_patches_forced():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(lp.livepatch_enable, "p2", ["fb"], replace=True, hold=True)
    run(lp.livepatch_force, "p2")
    run(lp.klp_transition_work)
    run(lp.livepatch_unload, "p1", expect=EAGAIN)


# ---------------------------------------------------------------------------------------------
# With the other clients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("other", [t for t in TAGS if t != "L"])
@pytest.mark.parametrize("l_first", [True, False])
@pytest.mark.parametrize("l_detached_first", [True, False])
def test_live_patch_with_each_other_client_in_every_attach_and_detach_order(layout, other, l_first,
                                                                            l_detached_first):
    order = ["L", other] if l_first else [other, "L"]
    detach = ["L", other] if l_detached_first else [other, "L"]
    run_orders(layout, order, detach)


def test_seed_live_patch_first_makes_the_plain_direct_sample_eagain():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(direct_client_load, "dm", ["fa"], expect=EAGAIN)


def test_seed_plain_direct_sample_first_makes_the_live_patch_ebusy_for_lack_of_ops_func():
    run = Run(small_kernel())
    run(direct_client_load, "dm", ["fa"])
    run(lp.livepatch_enable, "p1", ["fa"], expect=EBUSY)
    assert "livepatch: failed to register ftrace handler for function 'fa' (-16)" in \
        [e.text for e in run.k.events]
    run(direct_client_unload, "dm")
    run(lp.livepatch_enable, "p1", ["fa"])


def test_kprobe_with_post_handler_and_live_patch_are_ebusy_in_both_orders():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    run(register_kprobe, "fa", True, expect=EBUSY)
    run(lp.livepatch_disable, "p1")
    run(register_kprobe, "fa", True)
    run(lp.livepatch_enable, "p2", ["fa"], expect=EBUSY)
    run(unregister_kprobe, "fa")


def test_kprobe_without_post_handler_sees_the_call_and_the_patch_still_runs():
    run = Run(small_kernel())
    run(register_kprobe, "fa")
    run(lp.livepatch_enable, "p1", ["fa"])
    t = call(run.k, "fa")
    assert t.details("kprobe_pre") == ["fa"] and t.body == new("p1", "fa")


def test_every_order_of_all_five_clients_on_overlapping_functions():
    for perm in itertools.permutations(TAGS):
        run_orders("glob", perm)
        run_orders("glob", perm, perm)


def test_handler_without_func_stack_warns_once():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    ops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa"))
    ctx = calls.CallContext(ip=run.k.cat.lookup("fa"), name="fa", regs=calls.Regs("fa"))
    ops.func_stack.clear()
    lp.klp_ftrace_handler(run.k, ops.fops, ctx)
    assert ctx.regs.ip == "fa"
    assert [e.where for e in run.k.warnings] == ["klp_ftrace_handler"]


def test_the_synthetic_catalogue_helper_matches_the_kernel_lookup():
    k = Kernel(Catalogue.synthetic(["x", "y"]))
    assert lp.klp_find_object_symbol(k, None, "y", 0) == k.cat.lookup("y")
