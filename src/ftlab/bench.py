"""Micro-benchmarks of ftlab's hot paths (``ftlab bench``). They print figures and never assert.

A benchmark is a named callable with no arguments; its wall time is what is measured. Each one is
run once untimed first (warm-up: fills caches such as ``Catalogue.embedded()``), then ``runs``
times; the median, minimum and maximum are reported in seconds. Register one with::

    @register_benchmark("register_ftrace_function, 1 ops")
    def _bench_register() -> None:
        ...

Setup that must not be timed belongs in a cached helper the body calls (it is then paid during
the warm-up). The table :data:`BENCHMARKS` keeps registration order.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .model.catalogue import Catalogue
from .model.glob import match_records

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


def format_results(results: list[BenchResult]) -> str:
    """Plain-text table: name, median, min (seconds) and runs."""
    width = max([len("benchmark"), *(len(r.name) for r in results)])
    lines = [f"{'benchmark':<{width}}  {'median s':>10}  {'min s':>10}  runs\n"]
    lines.extend(f"{r.name:<{width}}  {r.median_s:>10.6f}  {r.min_s:>10.6f}  {r.runs:>4}\n" for r in results)
    return "".join(lines)


# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------
@register_benchmark("catalogue load, embedded (cold parse)")
def _bench_catalogue_load() -> None:
    Catalogue.parse_embedded()


def _register_glob(token: str) -> None:
    @register_benchmark(f"match_records {token!r}, embedded")
    def _bench() -> None:
        match_records(Catalogue.embedded(), token)


for _token in ("*", "vfs_*", "*_proc_show", "security_*"):
    _register_glob(_token)
