"""``ftlab preflight``: rebuild a real machine's ftrace state from a snapshot, then predict actions.

Three parts:

1. :func:`load_snapshot` (:mod:`~ftlab.preflight.load`) -- read and check a JSON file written by
   ``ftlab snapshot`` (:mod:`ftlab.snapshot`), its catalogue (the machine's own
   available_filter_functions) and the policy that stands for its exact kernel build (``uname -r``
   + the Debian package version of ``uname -v``; :func:`choose_policy`): any other build is
   refused naming the nearest policy, unless ``--policy`` forces one (then not validated).
2. :func:`reconstruct` (:mod:`~ftlab.preflight.reconstruction`) -- work out which clients hold
   each enabled record (:mod:`~ftlab.preflight.records` parses them) and replay their actions
   into a model kernel (:mod:`~ftlab.preflight.replay`). Sources, strongest first: the
   ``tramp: ... (OWNER)`` part of a record with one user (klp_ftrace_handler: a live patch;
   call_direct_funcs: a direct-call ops; kprobe_ftrace_handler: a kprobe; function_trace_call:
   the function tracer), the ``direct-->`` line (``bpf_trampoline_<key>``: a BPF trampoline; a
   module symbol: a plain direct-call client), /sys/kernel/livepatch (patch names, functions,
   enabled/transition; /proc/modules gives their load order), the BPF tracing links (kind,
   program name, target), current_tracer + set_ftrace_filter/notrace, and the kprobes list.
   Whatever count is left unexplained becomes an "unknown ftrace_ops" (a module's own ops,
   IPMODIFY / SAVE_REGS as the record's flags demand). Where the snapshot cannot decide (a direct
   trampoline whose owner is unknown, a BPF trampoline without program information) the
   reconstruction has *variants*, and every prediction is made once per variant.
3. :func:`preflight` (:mod:`~ftlab.preflight.predict`) -- parse the proposed actions
   (:func:`parse_action`, the scenario step syntax on one line), run them with the scenario
   runner's machinery on each variant and report per action: the result (or errno and the kernel
   rule, :func:`explain`), the records that change (enabled_functions lines), what a call of each
   touched function runs afterwards, and the guarantees (:func:`ftlab.model.invariants.check_all`)
   that break. :func:`render` (:mod:`~ftlab.preflight.report`) turns the document into text.

:mod:`ftlab.preflight.oracle` takes snapshots of real oracle guests (the test data, the
end-to-end test); this package does not import it.
"""

from .load import (
    SNAPSHOT_FORMAT,
    PolicyChoice,
    Snapshot,
    choose_policy,
    debian_version,
    load_snapshot,
    upstream_version,
)
from .predict import (
                      PREFLIGHT_FORMAT,
                      check_action_names,
                      explain,
                      parse_action,
                      predict_variant,
                      preflight,
                      step_functions,
)
from .reconstruction import OWNER_FUNCS, reconstruct
from .records import Record, parse_enabled_functions
from .replay import MAX_VARIANTS, Action, Question, Rebuilt, Reconstruction, compare_records, rebuild
from .report import render

__all__ = ["MAX_VARIANTS", "OWNER_FUNCS", "PREFLIGHT_FORMAT", "SNAPSHOT_FORMAT", "Action", "PolicyChoice", "Question",
           "Rebuilt", "Reconstruction", "Record", "Snapshot", "check_action_names", "choose_policy",
           "compare_records", "debian_version", "explain", "load_snapshot", "parse_action", "parse_enabled_functions",
           "predict_variant", "preflight", "rebuild", "reconstruct", "render", "step_functions", "upstream_version"]
