"""The README's performance table: one pytest-benchmark run of the groups it quotes, then the
table, from that run only.

    python bench/perf_readme.py [--json run.json] [--max-time 0.2] [--label TEXT]

runs (from the repository root) ``pytest bench --benchmark-only --benchmark-enable`` on the
README's groups — optimizer updates, fused activation pairs, softmax cross-entropy, 64-element
call overhead, two training steps and the digits fit — saves the run's JSON (``--json``, kept
for ``nnfast report --baseline`` later) and prints a Markdown section: the CPU and SIMD level
pytest-benchmark recorded for the run, the date, and per group the NumPy reference's median time
and ± IQR and every implementation's speedup over it (median ÷ median), followed by "(±N%)"
where that implementation's own IQR exceeds 10% of its median (a noisy figure). Peers (torch, JAX,
optax) appear when installed: ``pip install ".[peers]"``.

Run it with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` where those pin OpenBLAS to another
core type (bench/README.md). ``--label`` adds a line to the heading (e.g. how an AVX2 machine was
emulated).
"""
import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from nnfast import report

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: pytest -k expression of the README's groups (float32 throughout).
SELECT = (
    "float32 and ((test_update or test_peer_update) and not 1e3"
    " or test_forward_and_grad and 1e6"
    " or test_softmax_cross_entropy and (1024x10 or 256x1000)"
    " or bench_overhead and (relu or adam_update or sigmoid))"
    " or test_step or test_fit_digits")


def simd_level(flags):
    flags = set(flags)
    for level in ("avx512f", "avx2", "avx", "sse4_2"):
        if level in flags:
            return level.upper().replace("AVX512F", "AVX-512")
    return "baseline"


NOISY = 0.10


def _noisy(rec):
    """" (±N%)" after a speedup whose implementation's IQR exceeds ``NOISY`` of its median."""
    spread = rec.iqr / rec.median if rec.median else 0.0
    return f" (±{report.sig(100 * spread)}%)" if spread > NOISY else ""


def section(run_path, label=""):
    """The Markdown section for the README from one ``--benchmark-json`` run."""
    with open(run_path, encoding="utf-8") as fh:
        data = json.load(fh)
    cpu = data.get("machine_info", {}).get("cpu", {})
    brand = cpu.get("brand_raw") or data.get("machine_info", {}).get("processor", "unknown CPU")
    cores = cpu.get("count", "?")
    when = data.get("datetime", "")[:10]
    records = report.load(run_path)
    table = report.speedups(records)
    by = {(r.group, r.impl): r for r in records}
    lines = [f"CPU: {brand}, {cores} cores, {simd_level(cpu.get('flags', []))} "
             f"(as recorded by pytest-benchmark); {when}; float32."
             + (f" {label}" if label else ""), "",
             "| group | baseline: NumPy, or sklearn (median ± IQR) "
             "| speedup over it (median ÷ median) |",
             "|---|---|---|"]
    for group, (base, rec, ratios) in table.items():
        order = sorted(ratios, key=lambda impl: (impl not in ("numba", "cython", "auto"),
                                                 -ratios[impl]))
        cells = ", ".join(f"{impl} {report.sig(ratios[impl])}×" + _noisy(by[(group, impl)])
                          for impl in order)
        gemms = by.get((group, "gemms"))
        auto = by.get((group, "auto"))
        if gemms and auto:
            cells += f"; auto takes {report.sig(auto.median / gemms.median, 3)}× its GEMMs' time"
        spread = f"±{report.sig(100 * rec.iqr / rec.median)}%"
        lines.append(f"| `{group}` | {base} {report._seconds(rec.median)} {spread} | {cells} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="keep the run here (default: a temporary file)")
    p.add_argument("--max-time", default="0.2", help="--benchmark-max-time per benchmark")
    p.add_argument("--label", default="", help="a sentence added to the table's heading")
    args = p.parse_args(argv)
    path = args.json or os.path.join(tempfile.mkdtemp(), "run.json")
    cmd = [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider",
           "-k", SELECT, "--benchmark-only", "--benchmark-enable",
           f"--benchmark-max-time={args.max_time}", f"--benchmark-json={path}"]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
    if proc.returncode != 0:
        return proc.returncode
    print(f"<!-- bench/perf_readme.py, {datetime.date.today()} -->")
    print(section(path, args.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
