"""Per-group speedups of a pytest-benchmark run: baseline min time ÷ each backend's min time.

Every benchmark in ``bench/`` records its implementation in ``extra_info["backend"]``
("reference", "numba", "cython", "torch-fused", "numpy", ...) and shares its group with the
baseline it is compared with: the plain NumPy expression ("numpy") where a group has one (the
call-overhead groups), else the ``reference`` backend. ``bench/conftest.py`` prints this table at
the end of a timed run; for a saved run:

    pytest bench --benchmark-only --benchmark-enable --benchmark-json=run.json
    python bench/ratios.py run.json
"""
import json
import math
import sys

from nnfast._bench import format_seconds

BASELINES = ("numpy", "reference")


def speedups(records):
    """``records``: iterable of (group, backend, min seconds). Returns ``{group: (baseline,
    baseline seconds, {backend: baseline seconds / backend seconds})}``, sorted by group."""
    groups = {}
    for group, backend, seconds in records:
        groups.setdefault(group, {})[backend] = seconds
    table = {}
    for group in sorted(groups, key=_group_key):
        times = groups[group]
        base = next((b for b in BASELINES if b in times), None)
        if base is None:
            continue
        table[group] = (base, times[base],
                        {b: times[base] / t for b, t in times.items() if b != base and t > 0})
    return table


def _group_key(group):
    """Sort "adam-float32-1e6" and "softmax-float64-1024x10" by name, then size as a number."""
    head, _, size = group.rpartition("-")
    try:
        number = math.prod(float(part) for part in size.split("x"))
    except ValueError:
        number = 0.0
    return (head, number, size)


def format_speedups(records):
    """The report: one line per group, the baseline's min time, then × per implementation."""
    table = speedups(records)
    if not table:
        return ""
    columns = []
    for _, _, ratios in table.values():
        columns += [b for b in ratios if b not in columns]
    order = {"numba": 0, "cython": 1, "reference": 2}
    columns.sort(key=lambda b: (order.get(b, 3), b))
    width = max(len(g) for g in table) + 2
    cell = max([9] + [len(c) + 2 for c in columns])
    lines = ["speedup = baseline min time / implementation min time (> 1: faster than baseline)",
             "group".ljust(width) + "baseline".rjust(10) + "min".rjust(9)
             + "".join(c.rjust(cell) for c in columns)]
    for group, (base, seconds, ratios) in table.items():
        line = group.ljust(width) + base.rjust(10) + format_seconds(seconds).rjust(9)
        for c in columns:
            line += (f"{ratios[c]:.2f}x" if c in ratios else "-").rjust(cell)
        lines.append(line)
    return "\n".join(lines)


def records_from_json(path):
    """(group, backend, min seconds) of each benchmark in a ``--benchmark-json`` file."""
    with open(path) as fh:
        data = json.load(fh)
    return [(b["group"], b["extra_info"].get("backend", b["name"]), b["stats"]["min"])
            for b in data["benchmarks"]]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python bench/ratios.py RUN.json", file=sys.stderr)
        return 2
    print(format_speedups(records_from_json(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
