"""How ``nnfast bench`` and ``nnfast report`` print: significant figures, times and sizes, the
rules that mark a figure as not a result, the machine's context and the kernel and step tables
(re-exported by ``nnfast._bench``).

The marking rules (``mark``), shared by both commands:

- **spread** is a measurement's interquartile range ÷ its median (``spread``);
- a cell is **noisy** when its spread, or its baseline's, exceeds ``NOISY_SPREAD`` (10%):
  ``nnfast bench`` re-measures such a cell once before deciding; a noisy ratio prints as
  ``~1.3``, never as a plain result;
- a ratio that contradicts its own run — a whole training step faster than its own GEMMs
  (``of_gemms`` < 1), which it contains — is **implausible** and prints as that word.
"""
import math

#: The network ``nnfast bench`` times a training step of: (layer sizes, batch rows).
STEP_NET = ([784, 512, 256, 10], 128)


# --- formatting -----------------------------------------------------------------------------

def sig(x, digits=2):
    """``x`` to ``digits`` significant figures, without exponent for 1e-3 <= |x| < 1e5:
    0.0042, 0.42, 4.2, 42, 420, 4200."""
    if x is None:
        return "-"
    if x == 0 or not math.isfinite(x):
        return str(x)
    x = float(f"{x:.{digits}g}")   # round first: 0.996 -> 1.0, whose magnitude is 0
    magnitude = math.floor(math.log10(abs(x)))
    if not -3 <= magnitude < 5:
        return f"{x:.{digits - 1}e}"
    decimals = max(digits - 1 - magnitude, 0)
    return f"{x:.{decimals}f}"


def format_seconds(t):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{sig(t / scale, 3)}{unit}"
    return f"{sig(t / 1e-9, 3)}ns"


def format_size(n):
    exponent = int(round(math.log10(n))) if n > 0 else 0
    return f"1e{exponent}" if 10 ** exponent == n else str(n)


# --- what counts as a result ----------------------------------------------------------------

#: A measurement whose spread (IQR ÷ median) exceeds this is noisy: not printed as a result.
NOISY_SPREAD = 0.10


def spread(median, iqr):
    """A measurement's spread: its interquartile range ÷ its median (inf for a zero median)."""
    return iqr / median if median > 0 else math.inf


def mark(cell_spread, base_spreads=(), of_gemms=None):
    """``"implausible"`` for a step faster than its own GEMMs (``of_gemms`` < 1), ``"noisy"``
    where ``cell_spread`` or any of its baselines' ``base_spreads`` exceeds ``NOISY_SPREAD``,
    else ``""`` (a result). An unknown spread (None) counts as noisy: it cannot be vouched
    for."""
    if of_gemms is not None and of_gemms < 1:
        return "implausible"
    spreads = (cell_spread, *base_spreads)
    if any(s is None or s > NOISY_SPREAD for s in spreads):
        return "noisy"
    return ""


def marked(text, how):
    """A formatted figure as printed under mark ``how``: ``"1.3"``, ``"~1.3"`` (noisy) or
    ``"implausible"``."""
    if how == "implausible":
        return "implausible"
    return "~" + text if how == "noisy" else text


def _spread(row):
    """IQR as a percentage of the median: how noisy this measurement was."""
    return f"±{sig(100 * row['iqr'] / row['median'])}%" if row["median"] else "-"


def format_load(label, load):
    """``"load average at start: 0.12 0.3 0.25 (1, 5, 15 min)"`` (``_machine.load_average``)."""
    if load is None:
        return f"load average {label}: not available"
    return f"load average {label}: {' '.join(f'{x:g}' for x in load)} (1, 5, 15 min)"


def format_context(ctx, repeat):
    blas = "; ".join(" ".join(filter(None, (p["internal_api"], p["version"])))
                     + f" ({p['user_api']}, {p['num_threads']} threads"
                     + (f", arch {p['architecture']})" if p["architecture"] else ")")
                     for p in ctx["blas"]) or "none found"
    g1, ga = ctx["gemm_gflops_1"], ctx["gemm_gflops_all"]
    c1, ca = ctx["copy_gbps_1"], ctx["copy_gbps_all"]
    lines = [
        f"machine (measured in this run; median of {repeat} repeats, ± is the IQR — "
        "a busy machine shows as a wide spread):",
        f"  cpu: {ctx['cpu']} (LLVM: {ctx['cpu_llvm']}); SIMD: {' '.join(ctx['simd']) or '-'}",
        f"  cores usable: {ctx['cores']}; nnfast threads: {ctx['nnfast_threads']}",
        f"  BLAS: {blas}",
        f"  {ctx['gemm']} {ctx['gemm_n']}³: 1 thread {sig(g1['median'], 3)} GFLOP/s "
        f"±{sig(100 * g1['iqr'] / g1['median'])}%, all threads {sig(ga['median'], 3)} GFLOP/s "
        f"±{sig(100 * ga['iqr'] / ga['median'])}%",
        f"  copy bandwidth (64 MiB, read + write): 1 thread {sig(c1['median'], 3)} GB/s "
        f"±{sig(100 * c1['iqr'] / c1['median'])}%"
        + (f", {ctx['cores']} threads {sig(ca['median'], 3)} GB/s "
           f"±{sig(100 * ca['iqr'] / ca['median'])}%" if ca else ""),
    ]
    lines += [f"  env: {k}={v}" for k, v in ctx["env"].items()]
    return "\n".join(lines)


KERNEL_HEADER = (
    "kernels: median time per call and its spread (±IQR/median); speedup = reference (NumPy)\n"
    "  median ÷ backend median (> 1: faster than NumPy); rate = minimum bytes moved (each input\n"
    "  read, each output written once) or GEMM flops per second; 'of limit' = rate ÷ the copy\n"
    "  bandwidth or all-core GEMM rate above (cache-resident sizes can exceed 100%).\n"
    f"  ~: noisy, not a result — its spread or the reference's exceeded {NOISY_SPREAD:.0%} of\n"
    "  the median, also when measured a second time.")
KERNEL_COLUMNS = (("kernel", 28, "<"), ("size", 5, ">"), ("backend", 10, "<"),
                  ("median", 9, ">"), ("spread", 7, ">"), ("speedup", 8, ">"),
                  ("rate", 14, ">"), ("of limit", 9, ">"))


def _line(cells):
    return " ".join(f"{c:{align}{width}}" for c, (_, width, align)
                    in zip(cells, KERNEL_COLUMNS)).rstrip()


def kernel_header():
    return KERNEL_HEADER + "\n" + _line([c[0] for c in KERNEL_COLUMNS])


def format_kernel_row(row):
    first = row["backend"] == "reference"
    name = row["kernel"] if first else ""
    size = format_size(row["size"]) if first else ""
    if "skipped" in row:
        return _line([name, size, row["backend"], "-", "", "", "", ""]) + \
            f"  ({row['skipped']})"
    of_limit = row.get("of_limit")
    how = row.get("mark", "")
    return _line([name, size, row["backend"], format_seconds(row["median"]), _spread(row),
                  marked(sig(row["speedup"]), how),
                  marked(f"{sig(row['rate'])} {row['unit']}", how),
                  marked(f"{sig(100 * of_limit)}%", how) if of_limit is not None else ""])


def step_header(net=STEP_NET, dtype="float32"):
    sizes, m = net
    return ("training step (MLP " + "-".join(map(str, sizes)) + f", batch {m}, ReLU, softmax, "
            f"Adam, {dtype}): median ±IQR;\n  × GEMMs = time ÷ its GEMMs alone; speedup vs "
            "reference; ~: noisy (its spread, the GEMMs' or the\n  reference's exceeded "
            f"{NOISY_SPREAD:.0%}, also when measured again); implausible: faster than its own "
            "GEMMs\n" + f"{'implementation':<16}{'median':>9}{'spread':>8}{'× GEMMs':>12}"
            f"{'speedup':>9}")


def format_step_row(row):
    how = row.get("mark", "")
    of_gemms = marked(sig(row["of_gemms"], 3), how)
    speedup = sig(row["speedup"])
    if how:   # an implausible row's speedup is not vouched for either
        speedup = "~" + speedup if row["speedup"] is not None else speedup
    return (f"{row['backend']:<16}{format_seconds(row['median']):>9}{_spread(row):>8}"
            f"{of_gemms:>12}{speedup:>9}")
