"""How the kept runs ``docs/bench/2026-*.json`` were made: their raw pytest-benchmark JSON was
not kept, so their tables were read back, by this script, from the README of commit 4f012d9,
where ``bench/perf_readme.py`` and ``python -m bench.bench_sklearn`` had printed them.

    git show 4f012d9:README.md | python docs/bench/transcribe.py docs/bench

An implementation's median is the baseline's median ÷ the printed ratio (two significant
figures); a spread printed as "(±N%)" is kept as its IQR, and an unprinted one as
``spread_max`` 0.1 (the table printed spreads above 10% only). The scikit-learn fits were
printed without a spread: their ``iqr`` is null, so ``nnfast report`` marks them all.
"""
import json
import os
import re
import sys

UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
README = "README.md of commit 4f012d9"


def seconds(text):
    number, unit = re.fullmatch(r"([\d.]+)(ns|us|ms|s)", text).groups()
    return float(number) * UNITS[unit]


def kernel_table(lines):
    records = []
    for line in lines:
        group, base, cells = (c.strip() for c in line.strip().strip("|").split("|"))
        group = group.strip("`")
        impl, time, spread = base.split()
        median = seconds(time)
        records.append({"group": group, "impl": impl, "median": median,
                        "iqr": float(spread.strip("±%")) / 100 * median})
        for cell in cells.split(";")[0].split(", "):
            name, ratio, marked = re.fullmatch(r"(\S+) ([\d.e+-]+)×(?: \(±([\d.]+)%\))?",
                                               cell).groups()
            m = median / float(ratio)
            record = {"group": group, "impl": name, "median": m}
            if marked:
                record["iqr"] = float(marked) / 100 * m
            else:
                record["iqr"], record["spread_max"] = None, 0.1
            records.append(record)
    return records


def sklearn_table(lines):
    records = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        group = "fit-" + cells[0]
        for impl, text in (("sklearn", cells[1]), ("nnfast", cells[2]),
                           ("patched", cells[4].split(" (")[0])):
            records.append({"group": group, "impl": impl, "median": float(text.split()[0]),
                            "iqr": None})
    return records


def section(text, start, rows):
    lines = text[text.index(start):].splitlines()
    return [line for line in lines if line.startswith(rows)]


def main(out):
    text = sys.stdin.read()
    avx512 = section(text, "### AVX-512: the development machine", "| `")[:27]
    avx2 = section(text, "### AVX2: emulated on the same machine", "| `")[:27]
    fits = section(text, "Default, two runs one after the other", ("| digits", "| synthetic"))
    common = {"format": "nnfast-records/1", "cpu": "2-core AMD EPYC (Zen 4, AVX-512)"}
    kernels = ("python bench/perf_readme.py --json run.json (pytest-benchmark, float32)")
    runs = {
        "2026-11-28-avx512": dict(
            common, title="Kernels, steps and peers: AVX-512 (2026-11-28)", date="2026-11-28",
            command=kernels, load_note="3-9 on 2 cores, reported at the time",
            source=f"transcribed from the {README} by docs/bench/transcribe.py",
            records=kernel_table(avx512)),
        "2026-11-28-avx2-emulated": dict(
            common, title="Kernels, steps and peers: AVX2 emulated on the same CPU (2026-11-28)",
            date="2026-11-28", command="bash bench/perf_readme_avx2.sh --json run-avx2.json",
            load_note="3-9 on 2 cores, reported at the time",
            source=f"transcribed from the {README} by docs/bench/transcribe.py; AVX2 emulated "
                   "(OpenBLAS, NumPy, torch and XLA held to AVX2, Numba for Haswell, portable "
                   "Cython build), not a real AVX2 machine",
            records=kernel_table(avx2)),
    }
    for i, letter in enumerate("ab"):
        runs[f"2026-12-03-sklearn-front-{letter}"] = dict(
            common, title=f"scikit-learn front, fit wall time, run {i + 1} of 2 (2026-12-03)",
            date="2026-12-03", command="python -m bench.bench_sklearn --repeats 5",
            load_note="1.1-1.5, reported at the time",
            source=f"transcribed from the {README} by docs/bench/transcribe.py; each time the "
                   "median of 5 fresh processes, printed to two or three figures, so the "
                   "ratios here can differ in their last digit from those printed then",
            records=sklearn_table(fits[3 * i:3 * i + 3]))
    for name, run in runs.items():
        with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(run, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
