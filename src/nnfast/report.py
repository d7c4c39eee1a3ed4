"""Reports over kept benchmark runs: tables, plots and comparisons, never typed by hand.

    python -m pytest bench --benchmark-only --benchmark-enable --benchmark-json=run.json
    nnfast report run.json                       # Markdown: speedup over NumPy per group
    nnfast report run.json --plots plots/        # + one PNG per kernel family: speedup vs size
    nnfast report new.json --baseline old.json   # + regressions beyond the runs' own noise
    nnfast report --docs docs/bench --out DIR    # one Markdown page per kept run, for the docs

A run is any of three JSON files (``load_run``): a pytest-benchmark ``--benchmark-json`` run
of ``bench/``; an ``nnfast bench --json FILE`` run; or a list of records
(``"format": "nnfast-records/1"``: ``group``, ``impl``, ``median`` seconds, ``iqr`` seconds or
null, optionally ``spread_max``), for figures whose raw timings were not kept, with a
``source`` saying where they come from.

(``python -m nnfast.report`` is the same command.) Every benchmark of ``bench/`` records its
implementation in ``extra_info["backend"]`` and shares its group (``kernel-dtype-size``) with
its baseline: the plain NumPy expression ``numpy`` where the group has one, else the NumPy
``reference`` backend (scikit-learn's ``MLPClassifier`` in ``fit-digits``). A speedup is the
baseline's median time ÷ the implementation's median.

A comparison of two runs takes each benchmark's median in both, and its noise from the runs'
own spread: the larger of the two interquartile ranges. A change is flagged as a regression
(or an improvement) only when it exceeds ``threshold`` × that noise *and* ``min_change`` of the
old median, so a run on a busy machine — wide IQRs — flags less rather than more.

Every table applies ``nnfast._tables.mark``: a figure whose spread (IQR ÷ median), or its
baseline's, exceeds 10% — or is not recorded — prints as ``~1.3×``, and a step faster than its
own GEMMs (a group with a ``gemms`` implementation) as "implausible"; neither is a result. A run
whose load average at its start exceeded 0.5, or was not recorded, is said not to be a
reference run.

Plots need matplotlib (``pip install "nnfast[plot]"``); every file is written through
``nnfast._files.replacing`` (whole or not at all).
"""
import argparse
import glob
import json
import math
import os
import sys
from typing import NamedTuple

from nnfast._files import replacing
from nnfast._tables import NOISY_SPREAD, format_load, format_size, mark, marked, spread

#: A group's baseline: the first of these it has ("sklearn": the fit-digits group; "torch":
#: the torch loop of bench/bench_fuse.py's groups).
BASELINES = ("numpy", "reference", "sklearn", "torch")
DTYPES = ("float32", "float64")


class Record(NamedTuple):
    group: str
    impl: str
    median: float
    iqr: float            # seconds; None where the source did not record it
    min: float = None
    rounds: int = None
    #: an upper bound on the spread, where the source printed spreads only above a threshold
    spread_max: float = None

    @property
    def spread(self):
        """IQR ÷ median; else ``spread_max``; None if neither is known."""
        if self.iqr is not None:
            return spread(self.median, self.iqr)
        return self.spread_max


class Run(NamedTuple):
    path: str
    meta: dict        # title, date, cpu, command, source, load_average {start, end}, load_note
    records: list


RECORDS_FORMAT = "nnfast-records/1"


def load_run(path):
    """A kept run (module docstring: three kinds of JSON) as a ``Run``."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if "benchmarks" in data:            # pytest-benchmark
        machine = data.get("machine_info", {})
        cpu = machine.get("cpu", {})
        meta = {"date": data.get("datetime", "")[:10], "cpu": cpu.get("brand_raw", ""),
                "command": "python -m pytest bench --benchmark-only --benchmark-enable "
                           "--benchmark-json=FILE",
                "load_average": data.get("load_average", machine.get("load_average"))}
        records = [Record(b["group"] or b["name"],
                          b.get("extra_info", {}).get("backend", b["name"]),
                          b["stats"]["median"], b["stats"]["iqr"], b["stats"]["min"],
                          b["stats"]["rounds"]) for b in data["benchmarks"]]
    elif "kernels" in data:             # nnfast bench --json
        meta = {"date": data.get("date", ""), "cpu": data.get("context", {}).get("cpu", ""),
                "command": "nnfast bench --json FILE", "load_average": data.get("load_average")}
        records = [Record(f"{r['kernel']}-{r['dtype']}-{format_size(r['size'])}", r["backend"],
                          r["median"], r["iqr"], r["min"], len(r["times"]))
                   for r in data["kernels"] if "skipped" not in r]
        records += [Record(r["kernel"], r["backend"], r["median"], r["iqr"], r["min"],
                           len(r["times"])) for r in data.get("step", [])]
    elif data.get("format") == RECORDS_FORMAT:
        meta = {k: v for k, v in data.items() if k != "records"}
        records = [Record(r["group"], r["impl"], r["median"], r.get("iqr"),
                          spread_max=r.get("spread_max")) for r in data["records"]]
    else:
        raise ValueError(f"{path}: neither a pytest-benchmark run, an 'nnfast bench --json' "
                         f"run nor {RECORDS_FORMAT!r} records")
    meta.setdefault("title", os.path.splitext(os.path.basename(path))[0])
    return Run(os.fspath(path), meta, records)


def load(path):
    """The benchmarks of a kept run (``load_run``) as ``Record`` s."""
    return load_run(path).records


def split_group(group):
    """``"adam-float32-1e6"`` -> ``("adam", "float32", "1e6")``; ``"softmax-float64-1024x10"``
    -> ``("softmax", "float64", "1024x10")``; a group without a dtype -> ``(group, "", "")``."""
    parts = group.split("-")
    for i, part in enumerate(parts):
        if part in DTYPES:
            return "-".join(parts[:i]), part, "-".join(parts[i + 1:])
    return group, "", ""


def size_value(size):
    """Elements of a size label: ``"1e6"`` -> 1e6, ``"1024x10"`` -> 10240; None if not one."""
    try:
        return math.prod(float(p) for p in size.split("x")) if size else None
    except ValueError:
        return None


def speedups(records, stat="median"):
    """``{group: (baseline impl, baseline Record, {impl: speedup})}`` for every group that has
    a baseline, ordered by family, dtype, then size; speedup = baseline ÷ impl, both times the
    Record field ``stat`` ("median", or "min" for the terminal summary of a timed run)."""
    groups = {}
    for r in records:
        groups.setdefault(r.group, {})[r.impl] = r
    table = {}
    for group in sorted(groups, key=_group_key):
        impls = groups[group]
        base = next((b for b in BASELINES if b in impls), None)
        if base is None:
            continue
        base_time = getattr(impls[base], stat)
        table[group] = (base, impls[base], {i: base_time / getattr(r, stat)
                                            for i, r in impls.items()
                                            if i != base and getattr(r, stat) > 0})
    return table


def _group_key(group):
    family, dtype, size = split_group(group)
    return (family, dtype, size_value(size) or 0.0, size)


def marks(records):
    """``{(group, impl): mark}`` (``nnfast._tables.mark``) for every implementation of every
    group with a baseline: noisy where its spread or the baseline's exceeds 10% or is unknown,
    implausible where the group times the step's GEMMs alone and one of nnfast's steps beat
    them; the baseline's own mark under ``(group, baseline)``."""
    groups = {}
    for r in records:
        groups.setdefault(r.group, {})[r.impl] = r
    result = {}
    for group, impls in groups.items():
        base = next((b for b in BASELINES if b in impls), None)
        if base is None:
            continue
        gemms = impls.get("gemms")
        for impl, r in impls.items():
            of_gemms = (r.median / gemms.median if gemms is not None and _runs_these_gemms(impl)
                        else None)
            bases = () if impl == base else (impls[base].spread,)
            result[(group, impl)] = mark(r.spread, bases, of_gemms)
    return result


def _runs_these_gemms(impl):
    """Whether ``impl`` is one of nnfast's steps, whose matrix products are the BLAS GEMMs that
    ``gemms`` times alone (a peer — torch, JAX — runs its own kernels: it may beat them)."""
    return impl.split("-")[0] in ("reference", "auto", "numba", "cython")


def _spread_text(rec):
    if rec.iqr is not None:
        return f"±{sig(100 * rec.iqr / rec.median)}%" if rec.median else ""
    if rec.spread_max is not None:
        return f"±≤{sig(100 * rec.spread_max)}%"
    return "± not recorded"


def _columns(table):
    order = {"numba": 0, "cython": 1, "auto": 2, "reference": 3}
    columns = []
    for _, _, ratios in table.values():
        columns += [i for i in ratios if i not in columns]
    return sorted(columns, key=lambda c: (order.get(c, 4), c))


def sig(x, digits=2):
    """Significant figures, never "0.00": 0.0042, 0.42, 4.2, 42, 420."""
    from nnfast._bench import sig as _sig
    return _sig(x, digits)


def _seconds(t):
    from nnfast._bench import format_seconds
    return format_seconds(t)


def markdown_table(records):
    """Markdown: one row per group, the baseline's median time and ± IQR (% of median), then
    the speedup of each implementation (× over the baseline; > 1 is faster), marked by
    ``marks``: ``~1.3×`` noisy, "implausible", never as a plain result."""
    table = speedups(records)
    how = marks(records)
    columns = _columns(table)
    lines = ["| group | baseline | baseline median ± IQR | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for group, (base, rec, ratios) in table.items():
        time = marked(_seconds(rec.median), how[(group, base)])
        cells = [marked(f"{sig(ratios[c])}×", how[(group, c)]) if c in ratios else "–"
                 for c in columns]
        lines.append(f"| {group} | {base} | {time} {_spread_text(rec)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = (f"A cell is the baseline's median time ÷ the implementation's (> 1: faster). "
          f"Spread = IQR ÷ median. `~` marks a noisy figure — its spread or its baseline's "
          f"exceeded {NOISY_SPREAD:.0%} or was not recorded — and *implausible* one of nnfast's "
          "steps timed faster than its own GEMMs (`gemms`, which it contains): neither is a "
          "result.")


def reference_run(meta):
    """None if ``meta``'s load average at the start was recorded and at most 0.5, else why the
    run is not a reference run."""
    from nnfast._machine import LOAD_LIMIT

    load = (meta.get("load_average") or {}).get("start")
    if load is None:
        note = meta.get("load_note")
        return "load average not recorded" + (f" ({note})" if note else "")
    if load[0] > LOAD_LIMIT:
        return f"load average {load[0]:g} at its start exceeds {LOAD_LIMIT:g}"
    return None


def compact_table(records):
    """Markdown for a page: one row per group, the baseline's median ± IQR, then every
    implementation's speedup over it, fastest first, marked as ``markdown_table`` marks."""
    how = marks(records)
    lines = ["| group | baseline: median ± IQR | speedup over the baseline |", "|---|---|---|"]
    for group, (base, rec, ratios) in speedups(records).items():
        order = sorted(ratios, key=lambda impl: (impl not in ("numba", "cython", "auto"),
                                                 -ratios[impl]))
        cells = ", ".join(f"{impl} " + marked(f"{sig(ratios[impl])}×", how[(group, impl)])
                          for impl in order)
        time = marked(_seconds(rec.median), how[(group, base)])
        lines.append(f"| `{group}` | {base} {time} {_spread_text(rec)} | {cells} |")
    return "\n".join(lines)


def run_header(run):
    """Markdown lines about a run: where it comes from, when, on what, under what load."""
    meta = run.meta
    lines = []
    if meta.get("source"):
        lines.append(f"Source: {meta['source']}")
    facts = [f"date {meta['date']}" if meta.get("date") else "",
             f"CPU {meta['cpu']}" if meta.get("cpu") else "",
             f"command `{meta['command']}`" if meta.get("command") else ""]
    lines.append("; ".join(f for f in facts if f) + ".")
    load = meta.get("load_average") or {}
    if load:
        lines.append(format_load("at start", load.get("start")).capitalize() + "; "
                     + format_load("at end", load.get("end")) + ".")
    verdict = reference_run(meta)
    lines.append(f"**Not a reference run**: {verdict}." if verdict else "A reference run "
                 "(load average at most 0.5 at its start).")
    return lines


def markdown_page(run):
    """The Markdown page of one kept run: title, header, legend and the marked table."""
    return "\n".join([f"### {run.meta['title']}", "", *(line + "  " for line in run_header(run)),
                      "", LEGEND, "", compact_table(run.records), ""])


def docs_pages(folder, out):
    """``out/<name>.md`` (``markdown_page``) for each kept run ``folder/<name>.json``, written
    whole or not at all; returns the paths, sorted by name."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + ".md")
        text = markdown_page(load_run(path))
        with replacing(target, "w") as f:
            f.write(text)
        paths.append(target)
    return paths


def text_table(records, stat="min"):
    """Plain text for a terminal: one line per group, the baseline's ``stat`` time, then the
    speedup of each implementation (``bench/conftest.py`` prints it after a timed run)."""
    table = speedups(records, stat)
    if not table:
        return ""
    how = marks(records)
    columns = _columns(table)
    width = max(len(g) for g in table) + 2
    cell = max([9] + [len(c) + 2 for c in columns])
    lines = [f"speedup = baseline {stat} time / implementation {stat} time (> 1: faster than "
             f"baseline); ~: noisy (IQR/median above {NOISY_SPREAD:.0%}, its own or the "
             "baseline's); implausible: a step faster than its GEMMs",
             "group".ljust(width) + "baseline".rjust(10) + stat.rjust(9)
             + "".join(c.rjust(cell) for c in columns)]
    for group, (base, rec, ratios) in table.items():
        line = group.ljust(width) + base.rjust(10) + _seconds(getattr(rec, stat)).rjust(9)
        for c in columns:
            line += (marked(f"{ratios[c]:.2f}x", how[(group, c)]) if c in ratios
                     else "-").rjust(cell)
        lines.append(line)
    return "\n".join(lines)


def plot_data(records, with_marks=False):
    """``{family-dtype: {impl: ([sizes], [speedups])}}`` for the groups with a numeric size,
    sizes ascending — what ``speedup_figures`` draws; ``with_marks``: ``([sizes], [speedups],
    [marks])``, each point's ``marks`` entry."""
    how = marks(records)
    data = {}
    for group, (_, _, ratios) in speedups(records).items():
        family, dtype, size = split_group(group)
        x = size_value(size)
        if x is None:
            continue
        series = data.setdefault(f"{family}-{dtype}", {})
        for impl, ratio in ratios.items():
            xs, ys, ms = series.setdefault(impl, ([], [], []))
            xs.append(x)
            ys.append(ratio)
            ms.append(how[(group, impl)])
    for series in data.values():
        for impl, columns in series.items():
            order = sorted(range(len(columns[0])), key=columns[0].__getitem__)
            series[impl] = tuple([c[i] for i in order] for c in columns[:3 if with_marks else 2])
    return data


def speedup_figures(records):
    """One matplotlib Figure per kernel family and dtype: speedup over NumPy against size (log
    axes), a line per implementation, the 1× line dashed. A noisy point (``marks``) is drawn
    as an open marker, never as a plain result; an implausible one is left out. ``{name:
    Figure}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    for name, series in plot_data(records, with_marks=True).items():
        fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        for impl, (xs, ys, ms) in sorted(series.items()):
            ys = [math.nan if m == "implausible" else y for y, m in zip(ys, ms)]
            line, = ax.plot(xs, ys, marker="o", label=impl)
            noisy = [(x, y) for x, y, m in zip(xs, ys, ms) if m == "noisy"]
            if noisy:
                ax.plot(*zip(*noisy), linestyle="none", marker="o", markersize=9,
                        markerfacecolor="white", markeredgecolor=line.get_color(),
                        label="_noisy")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("size (elements)")
        ax.set_ylabel("speedup over NumPy (×)")
        ax.set_title(name + ("  (open marker: noisy, not a result)"
                             if any("noisy" in ms for _, _, ms in series.values()) else ""))
        ax.legend(fontsize="small")
        figures[name] = fig
    return figures


def save_plots(records, directory):
    """Write ``speedup-<family>-<dtype>.png`` per family into ``directory``; returns paths."""
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, fig in speedup_figures(records).items():
        path = os.path.join(directory, f"speedup-{name}.png")
        with replacing(path) as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


class Change(NamedTuple):
    group: str
    impl: str
    old: float
    new: float
    noise: float      # the larger IQR of the two runs, seconds
    verdict: str      # "regression", "faster" or "within noise"

    @property
    def change(self):
        return self.new / self.old - 1.0


def compare(old_records, new_records, threshold=2.0, min_change=0.05):
    """Changes of each benchmark present in both runs, by group and implementation."""
    old = {(r.group, r.impl): r for r in old_records}
    changes = []
    for r in sorted(new_records, key=lambda r: (_group_key(r.group), r.impl)):
        before = old.get((r.group, r.impl))
        if before is None:
            continue
        if before.iqr is None or r.iqr is None:
            continue        # no noise recorded: nothing can be told apart from it
        noise = max(before.iqr, r.iqr)
        delta = r.median - before.median
        beyond = abs(delta) > threshold * noise and abs(delta) > min_change * before.median
        verdict = ("regression" if delta > 0 else "faster") if beyond else "within noise"
        changes.append(Change(r.group, r.impl, before.median, r.median, noise, verdict))
    return changes


def markdown_comparison(changes, threshold=2.0, min_change=0.05):
    lines = [f"Regression: slower by more than {sig(threshold)} × the larger IQR of the two runs "
             f"and more than {sig(100 * min_change)}%.", "",
             "| group | impl | old median | new median | change | noise (IQR) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in changes:
        mark = "**regression**" if c.verdict == "regression" else c.verdict
        lines.append(f"| {c.group} | {c.impl} | {_seconds(c.old)} | {_seconds(c.new)} | "
                     f"{c.change:+.1%} | ±{sig(100 * c.noise / c.old)}% | {mark} |")
    n = sum(c.verdict == "regression" for c in changes)
    lines += ["", f"{n} regression(s) beyond the noise in {len(changes)} benchmarks."]
    return "\n".join(lines)


def add_arguments(p):
    """The command's arguments, on ``p`` (shared by ``nnfast report`` and ``python -m``)."""
    p.add_argument("run", nargs="?", help="a kept run: a pytest-benchmark --benchmark-json "
                   "file, an 'nnfast bench --json FILE' file or nnfast-records JSON")
    p.add_argument("--docs", metavar="DIR", help="instead: one Markdown page per kept run "
                   "DIR/*.json (the documentation's benchmark tables)")
    p.add_argument("--out", metavar="DIR", help="where --docs writes its pages "
                   "(default: DIR itself)")
    p.add_argument("--plots", metavar="DIR", help="write speedup-vs-size PNGs here "
                                                  "(needs matplotlib: nnfast[plot])")
    p.add_argument("--baseline", metavar="OLD.json",
                   help="an earlier run: compare and flag regressions beyond the noise")
    p.add_argument("--threshold", type=float, default=2.0,
                   help="a regression exceeds this many IQRs (default 2)")
    p.add_argument("--min-change", type=float, default=0.05,
                   help="... and this fraction of the old median (default 0.05)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit with status 1 if the comparison flags a regression")
    return p


DESCRIPTION = ("Markdown speedup tables (noisy and implausible figures marked), speedup-vs-size "
               "plots and a noise-aware comparison of kept benchmark runs; --docs writes the "
               "documentation's pages.")


def run(args):
    if args.docs:
        paths = docs_pages(args.docs, args.out or args.docs)
        print(f"{len(paths)} page(s): " + ", ".join(paths))
        return 0
    if not args.run:
        print("nnfast report: give a run (JSON file) or --docs DIR", file=sys.stderr)
        return 2
    kept = load_run(args.run)
    records = kept.records
    print(f"## Speedup over NumPy: {args.run}\n")
    print("\n".join(run_header(kept)) + "\n")
    print(LEGEND + "\n")
    print(markdown_table(records))
    if args.plots:
        try:
            paths = save_plots(records, args.plots)
        except ImportError as exc:
            print(f"nnfast report: plots need matplotlib (pip install 'nnfast[plot]'): {exc}",
                  file=sys.stderr)
            return 1
        print(f"\n{len(paths)} plot(s) in {args.plots}: "
              + ", ".join(os.path.basename(p) for p in paths))
    if args.baseline:
        changes = compare(load(args.baseline), records, args.threshold, args.min_change)
        print(f"\n## {args.run} against {args.baseline}\n")
        print(markdown_comparison(changes, args.threshold, args.min_change))
        if args.fail_on_regression and any(c.verdict == "regression" for c in changes):
            return 1
    return 0


def main(argv=None):
    try:
        p = argparse.ArgumentParser(prog="python -m nnfast.report", description=DESCRIPTION)
        args = add_arguments(p).parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
