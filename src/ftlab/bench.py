"""Micro-benchmarks of ftlab's hot paths (``ftlab bench``). They print figures and never assert.

A benchmark is a named callable with no arguments; its wall time is what is measured. Each one is
run once untimed first (warm-up: fills caches such as ``catalogues.embedded()``), then ``runs``
times; the median, minimum and maximum are reported in seconds. Register one with::

    @register_benchmark("register_ftrace_function, 1 ops")
    def _bench_register() -> None:
        ...

Setup that must not be timed belongs in a cached helper the body calls (it is then paid during
the warm-up). The table :data:`BENCHMARKS` keeps registration order.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from . import catalogues
from .model.catalogue import Catalogue
from .model.glob import match_records
from .model.policies.registry import SEED_POLICY

#: Timed runs per benchmark (``--quick``: :data:`QUICK_RUNS`).
RUNS = 15
QUICK_RUNS = 3

_F = TypeVar("_F", bound=Callable[[], object])


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark: a name and the callable whose wall time is measured."""

    name: str
    func: Callable[[], object]


@dataclass(frozen=True)
class BenchResult:
    """Timings of one benchmark, in seconds."""

    name: str
    runs: int
    median_s: float
    min_s: float
    max_s: float

    def as_dict(self) -> dict[str, object]:
        """The JSON form used by ``ftlab bench --json``."""
        return {"name": self.name, "runs": self.runs, "median_s": self.median_s,
                "min_s": self.min_s, "max_s": self.max_s}


#: Registered benchmarks, in registration order.
BENCHMARKS: list[Benchmark] = []


def register_benchmark(name: str) -> Callable[[_F], _F]:
    """Decorator: add the decorated no-argument callable to :data:`BENCHMARKS` under ``name``."""

    def register(func: _F) -> _F:
        if any(b.name == name for b in BENCHMARKS):
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS.append(Benchmark(name, func))
        return func

    return register


def time_benchmark(bench: Benchmark, runs: int) -> BenchResult:
    """Run ``bench`` once untimed, then ``runs`` timed times."""
    bench.func()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        bench.func()
        times.append(time.perf_counter() - start)
    return BenchResult(bench.name, runs, statistics.median(times), min(times), max(times))


def run_benchmarks(quick: bool = False, benchmarks: list[Benchmark] | None = None) -> list[BenchResult]:
    """Time every benchmark of ``benchmarks`` (default: all registered), in order."""
    runs = QUICK_RUNS if quick else RUNS
    return [time_benchmark(b, runs) for b in (BENCHMARKS if benchmarks is None else benchmarks)]


#: Figures derived from two results: (label, numerator benchmark, denominator benchmark).
RATIOS: list[tuple[str, str, str]] = []


def derived_figures(results: list[BenchResult]) -> list[tuple[str, float]]:
    """The :data:`RATIOS` whose two benchmarks were both run: (label, median ratio)."""
    by_name = {r.name: r for r in results}
    out = []
    for label, num, den in RATIOS:
        if num in by_name and den in by_name and by_name[den].median_s > 0:
            out.append((label, by_name[num].median_s / by_name[den].median_s))
    return out


def format_results(results: list[BenchResult]) -> str:
    """Plain-text table: name, median, min (seconds) and runs, then derived ratios."""
    width = max([len("benchmark"), *(len(r.name) for r in results)])
    lines = [f"{'benchmark':<{width}}  {'median s':>10}  {'min s':>10}  runs\n"]
    lines.extend(f"{r.name:<{width}}  {r.median_s:>10.6f}  {r.min_s:>10.6f}  {r.runs:>4}\n" for r in results)
    for label, value in derived_figures(results):
        lines.append(f"{label}: {value:.2f}\n")
    return "".join(lines)


# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------
@register_benchmark("catalogue load, embedded (cold parse)")
def _bench_catalogue_load() -> None:
    catalogues.parse_embedded()


def _register_glob(token: str) -> None:
    @register_benchmark(f"match_records {token!r}, embedded")
    def _bench() -> None:
        match_records(catalogues.embedded(), token)


for _token in ("*", "vfs_*", "*_proc_show", "security_*", "*?*?*?*?*?*?#"):
    _register_glob(_token)


# -- the ftrace core --------------------------------------------------------------------------
def _one_function_cycle(cat: Catalogue) -> None:
    """register + unregister of a live-patch-like ops on one function (seed-v2 policy)."""
    from .model import ftrace
    from .model.flags import FTRACE_OPS_FL as F
    from .model.kernel import Kernel
    from .model.ops import ftrace_ops

    k = Kernel(cat, policy=SEED_POLICY)
    ip = cat.ip(len(cat) // 2)
    for n in range(20):
        ops = ftrace_ops(f"klp{n}", "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT)
        ftrace.ftrace_set_filter_ip(k, ops, ip)
        ftrace.register_ftrace_function(k, ops)
        ftrace.unregister_ftrace_function(k, ops)


@functools.lru_cache(maxsize=1)
def _catalogue_1k() -> Catalogue:
    emb = catalogues.embedded()
    return Catalogue(emb.names[:1000], "first 1,000 records of the embedded catalogue")


_REG_38K = "register+unregister 1-function ops x20, 38k records"
_REG_1K = "register+unregister 1-function ops x20, 1k records"


@register_benchmark(_REG_38K)
def _bench_register_38k() -> None:
    _one_function_cycle(catalogues.embedded())


@register_benchmark(_REG_1K)
def _bench_register_1k() -> None:
    _one_function_cycle(_catalogue_1k())


RATIOS.append(("t(38k)/t(1k) per-registration cost ratio (target <= 1.2)", _REG_38K, _REG_1K))


@register_benchmark("global ops (empty filter) register+unregister, 38k records")
def _bench_global_ops() -> None:
    from .model import ftrace
    from .model.kernel import Kernel
    from .model.ops import ftrace_ops

    k = Kernel(catalogues.embedded(), policy=SEED_POLICY)
    ops = ftrace_ops("global_ops", "function_trace_call", 0, core_data=True)
    ftrace.register_ftrace_function(k, ops)
    ftrace.unregister_ftrace_function(k, ops)


@register_benchmark("Kernel.copy() with one live patch and one trampoline, 38k records")
def _bench_copy() -> None:
    _populated_kernel().copy()


@functools.lru_cache(maxsize=1)
def _populated_kernel():  # type: ignore[no-untyped-def]
    from .model import direct, ftrace
    from .model.flags import FTRACE_OPS_FL as F
    from .model.kernel import Kernel
    from .model.ops import ftrace_ops

    k = Kernel(catalogues.embedded(), policy=SEED_POLICY)
    ip = k.cat.lookup("cmdline_proc_show")
    d = ftrace_ops("bpf", None, F.SHARE_IPMODIFY)
    ftrace.ftrace_set_filter_ip(k, d, ip)
    direct.register_ftrace_direct_multi(k, d, "bpf_trampoline_1")
    klp = ftrace_ops("klp", "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT)
    ftrace.ftrace_set_filter_ip(k, klp, ip)
    ftrace.register_ftrace_function(k, klp)
    return k


# -- the explorer -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExploreFigure:
    """States per second and peak memory of one exploration (and states/s with ``workers`` processes)."""

    universe: str
    policy: str
    depth: int
    states: int
    transitions: int
    elapsed_s: float
    states_per_s: float
    peak_mib: float
    workers: int
    workers_states_per_s: float

    def as_dict(self) -> dict[str, object]:
        return {"universe": self.universe, "policy": self.policy, "depth": self.depth,
                "states": self.states, "transitions": self.transitions,
                "elapsed_s": round(self.elapsed_s, 3), "states_per_s": round(self.states_per_s, 1),
                "peak_mib": round(self.peak_mib, 1), "workers": self.workers,
                "workers_states_per_s": round(self.workers_states_per_s, 1)}


def explore_figures(depth: int = 6, policy: str = SEED_POLICY) -> list[ExploreFigure]:
    """Action-order search of every bundled universe (no interleavings): speed and peak memory.

    Each universe is explored three times: timed in one process, with nothing else running;
    timed with the search shared out between one process per CPU (:meth:`Checker.workers`);
    and once under ``tracemalloc`` for the peak of the memory the one-process search allocates
    (tracing slows Python down several times, so it is never timed).
    """
    import os
    import tracemalloc

    from .bundled import bundled_universes, resolve_universe
    from .explorer.explore import explore

    workers = os.cpu_count() or 1
    out = []
    for name in bundled_universes():
        spec, _ = resolve_universe(name)
        r = explore(spec, policy, depth, threads=0).result
        rw = explore(spec, policy, depth, threads=0, workers=workers).result if workers > 1 else r
        tracemalloc.start()
        explore(spec, policy, depth, threads=0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append(ExploreFigure(name, policy, depth, r.states, r.transitions, r.elapsed,
                                 r.states_per_s, peak / 2**20, workers, rw.states_per_s))
    return out


def format_explore(figs: list[ExploreFigure]) -> str:
    w = max(len("universe"), *(len(f.universe) for f in figs))
    n = figs[0].workers if figs else 1
    lines = [f"{'universe':<{w}}  policy    depth  states  transitions  seconds  states/s  "
             f"states/s ({n} proc)  peak MiB\n"]
    wide = len(f"states/s ({n} proc)")
    lines += [f"{f.universe:<{w}}  {f.policy:<8}  {f.depth:>5}  {f.states:>6}  {f.transitions:>11}  "
              f"{f.elapsed_s:>7.2f}  {f.states_per_s:>8.0f}  {f.workers_states_per_s:>{wide}.0f}  "
              f"{f.peak_mib:>8.1f}\n" for f in figs]
    return "".join(lines)
