"""A pytest plugin (``-p nnfast._pytest_load``, in pyproject's ``addopts``) that makes every
timed pytest-benchmark run record the load average at its start and end, as ``nnfast bench``
does: ``load_average`` ({"start", "end"}: 1-, 5- and 15-minute values) and ``load_warnings`` at
the top level of its ``--benchmark-json`` file, which ``nnfast report`` reads; a timed run on a
machine whose load exceeded 0.5 also says, at its end, that it is not a reference run. The
ordinary test run (``--benchmark-disable``) is left alone.
"""
from nnfast._machine import load_average, load_warning
from nnfast._tables import format_load

_START = {}


def pytest_sessionstart(session):
    _START["load"] = load_average()


def _warnings(end):
    start = _START.get("load")
    # the run itself keeps a core busy: at the end only load beyond that counts
    return [w for w in (load_warning(start), end and load_warning(end, own=1.0)) if w]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    end = load_average()
    output_json["load_average"] = {"start": _START.get("load"), "end": end}
    output_json["load_warnings"] = _warnings(end)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    end = load_average()
    terminalreporter.write_line(format_load("at start", _START.get("load")) + "; "
                                + format_load("at end", end))
    for warning in _warnings(end):
        terminalreporter.write_line(f"warning: {warning}", yellow=True)
