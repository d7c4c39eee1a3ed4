"""How ``nnfast bench`` prints: significant figures, times and sizes, the machine's context and
the kernel and step tables (re-exported by ``nnfast._bench``)."""
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


def _spread(row):
    """IQR as a percentage of the median: how noisy this measurement was."""
    return f"±{sig(100 * row['iqr'] / row['median'])}%" if row["median"] else "-"


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
    "  bandwidth or all-core GEMM rate above (cache-resident sizes can exceed 100%).")
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
    return _line([name, size, row["backend"], format_seconds(row["median"]), _spread(row),
                  sig(row["speedup"]), f"{sig(row['rate'])} {row['unit']}",
                  f"{sig(100 * of_limit)}%" if of_limit is not None else ""])


def step_header(net=STEP_NET, dtype="float32"):
    sizes, m = net
    return ("training step (MLP " + "-".join(map(str, sizes)) + f", batch {m}, ReLU, softmax, "
            f"Adam, {dtype}): median ±IQR; × GEMMs = time ÷ its GEMMs alone; speedup vs "
            "reference\n" + f"{'implementation':<16}{'median':>9}{'spread':>8}{'× GEMMs':>9}"
            f"{'speedup':>9}")


def format_step_row(row):
    return (f"{row['backend']:<16}{format_seconds(row['median']):>9}{_spread(row):>8}"
            f"{sig(row['of_gemms'], 3):>9}{sig(row['speedup']):>9}")
