"""Shared machinery of the pytest-benchmark suites (see bench/README.md).

Every benchmark times one implementation — a backend ("reference", "numba", "cython") in force
through ``nnfast.use_backend``, or an outside baseline ("numpy", "torch-fused", ...) — and puts
it in the group ``f"{kernel}-{dtype}-{size}"`` shared with the NumPy reference, so that each group
reads as a ratio. The computations come from ``nnfast._bench.CASES`` (the same table the
``nnfast bench`` command times); inputs, ``out=`` arrays and optimizer state are allocated before
timing, so only the call is timed.

In the ordinary test run (``--benchmark-disable``, pyproject's default) every benchmark runs its
callable once, untimed, so none can rot; sizes above ``UNTIMED_MAX`` are skipped there (their
code path is the one the smaller sizes run). At the end of a timed run the terminal summary
prints, per group, the baseline's min time ÷ each implementation's min time
(``nnfast.report.text_table``).
"""
import pytest

from nnfast.report import Record, text_table

from .harness import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    records = [Record(b.group or b.name, b.extra_info.get("backend", b.name), b.stats.median,
                      b.stats.iqr, b.stats.min, b.stats.rounds)
               for b in session.benchmarks if b]
    text = text_table(records, "min")
    if text:
        terminalreporter.write_sep("-", "nnfast speedups per group (nnfast.report.text_table)")
        terminalreporter.write_line(text)
