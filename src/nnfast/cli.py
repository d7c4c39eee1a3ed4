"""The ``nnfast`` command: ``demo``, ``bench``, ``report`` and ``info``.

``main(argv=None)`` parses ``argv`` (default: ``sys.argv[1:]``), runs one command and returns
its exit code, so tests call it directly and ``[project.scripts]`` points at it.
"""
import argparse
import math
import os
import platform
import sys

import nnfast

_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
              "amx_tile", "neon", "asimd", "sve")


def _sizes(text):
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an element count: {text!r}") from None
    if value < 1 or value != float(text):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
    return value


def _parser():
    parser = argparse.ArgumentParser(
        prog="nnfast", description="Fast CPU training of multilayer perceptrons.")
    parser.add_argument("--version", action="version", version=f"nnfast {nnfast.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,report,info}")
    sub.required = True

    demo = sub.add_parser("demo", help="train an MLP on scikit-learn's digits and report speed")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--no-compare", action="store_true",
                      help="skip the timing of the NumPy reference backend")
    demo.add_argument("--plot", metavar="DIR", default=None,
                      help="also choose λ and save the learning curve, validation curve and "
                           "loss history as PNG files in DIR (needs matplotlib)")

    bench = sub.add_parser(
        "bench", help="this machine's limits, then the kernels and a training step vs NumPy",
        description="Measures this machine's limits (GEMM GFLOP/s, copy GB/s), then each "
                    "kernel in each backend against the NumPy reference, then a training step "
                    "against its GEMMs alone; rows print as they are measured.")
    bench.add_argument("--sizes", type=_sizes, nargs="+", default=None, metavar="N",
                       help="element counts, e.g. 1e3 1e5 1e6 (default: 1e3 1e5 1e6)")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    bench.add_argument("--kernels", nargs="+", default=None, metavar="NAME",
                       help="only these kernels (default: all; see --list)")
    bench.add_argument("--backend", nargs="+", default=None, metavar="NAME",
                       help="only these compiled backends (the reference is always timed: "
                            "it is the baseline)")
    bench.add_argument("--repeat", type=int, default=None,
                       help="timing repeats per measurement; median and IQR are reported "
                            "(default 5, --quick 3)")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes and short timings: a rough table in a few seconds")
    bench.add_argument("--no-step", action="store_true", help="skip the training-step rows")
    bench.add_argument("--no-context", action="store_true",
                       help="skip measuring the machine's GEMM and copy limits")
    bench.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                       help="one JSON document (load average, context, kernels, step): on "
                            "stdout instead of the text, or written to FILE (atomically) "
                            "after the text")
    bench.add_argument("--list", action="store_true",
                       help="list the kernels and backends, and exit")

    from nnfast import report
    report.add_arguments(sub.add_parser(
        "report", help="speedup table, plots and comparison of pytest-benchmark runs",
        description=report.DESCRIPTION))

    sub.add_parser("info", help="backends, threads, BLAS, CPU features, cache location")
    return parser


def _demo(args):
    try:
        from nnfast._demo import run_demo
    except ImportError as exc:
        print(f"nnfast demo: the demo is not available in this installation ({exc})",
              file=sys.stderr)
        return 1
    if args.epochs is not None and args.epochs < 1:
        print("nnfast demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    kwargs = {"progress": not args.no_progress, "compare": not args.no_compare}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.plot is not None:
        kwargs["plot_dir"] = args.plot
    try:
        run_demo(**kwargs)
    except ImportError as exc:          # --plot without matplotlib
        print(f"nnfast demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _bench(args):
    import json

    from nnfast import _bench as bench

    backends = bench.compiled_backends()
    if args.list:
        print("backends: reference (the baseline), " + ", ".join(backends))
        print("kernels (shape timed for n elements; work per call):")
        for name, case in bench.CASES.items():
            shape = case.shape(10**6)
            kind, amount = case.work(shape)
            what = (f"{amount // math.prod(shape)} arrays moved" if kind == "bytes"
                    else f"{amount // (2 * math.prod(shape))} GEMM(s)")
            print(f"  {name:<30} 1e6 -> {tuple(shape)}; {what}")
        return 0
    unknown = [k for k in args.kernels or () if k not in bench.CASES]
    if unknown:
        print(f"nnfast bench: unknown kernels {unknown}; choose from {', '.join(bench.CASES)}",
              file=sys.stderr)
        return 2
    if args.backend:
        bad = [b for b in args.backend if b not in backends]
        if bad:
            print(f"nnfast bench: backends {bad} not available; choose from "
                  f"{', '.join(backends)}", file=sys.stderr)
            return 2
        backends = [b for b in backends if b in args.backend]
    sizes = args.sizes or (bench.QUICK_SIZES if args.quick else bench.DEFAULT_SIZES)
    repeat = args.repeat or (3 if args.quick else 5)
    if repeat < 1:
        print("nnfast bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    target = 0.001 if args.quick else 0.005
    kernels = args.kernels or list(bench.CASES)
    to_stdout = args.json == "-"
    emit = _Emitter(quiet=to_stdout,
                    total=len(kernels) * len(sizes) * (1 + len(backends))
                    + (0 if args.no_step else 2 + len(backends) + 1))
    import datetime

    report = {"nnfast": nnfast.__version__, "numpy": _numpy_version(),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "dtype": args.dtype,
              "repeat": repeat, "backends": ["reference"] + backends,
              "load_average": {"start": bench.load_average()}}
    emit.line(f"nnfast bench: nnfast {report['nnfast']}, NumPy {report['numpy']}, "
              f"{args.dtype}, backends {', '.join(report['backends'])}")
    emit.line(bench.format_load("at start", report["load_average"]["start"]))
    warnings = [bench.load_warning(report["load_average"]["start"])]
    _warn(emit, warnings[-1])
    context = None
    if not args.no_context:
        emit.status("measuring GEMM and copy limits")
        context = bench.machine_context(args.dtype, repeat)
        report["context"] = context
        emit.line(bench.format_context(context, repeat))
    emit.line("")
    emit.line(bench.kernel_header())
    report["kernels"] = []
    for row in bench.kernel_rows(kernels, sizes, backends, args.dtype, repeat, target, context):
        report["kernels"].append(row)
        emit.line(bench.format_kernel_row(row), step=True)
    if not args.no_step:
        emit.line("")
        emit.line(bench.step_header(dtype=args.dtype))
        report["step"] = []
        for row in bench.step_rows(backends, dtype=args.dtype, repeat=repeat,
                                   target=4 * target):
            report["step"].append(row)
            emit.line(bench.format_step_row(row), step=True)
    emit.close()
    end = report["load_average"]["end"] = bench.load_average()
    emit.line("")
    emit.line(bench.format_load("at end", end) + " (this run's own process adds about 1)")
    # the run itself keeps one core busy: only load beyond that says other work ran meanwhile
    warnings.append(bench.load_warning(end, own=1.0) if end is not None else None)
    _warn(emit, warnings[-1])
    report["reference_run"] = not any(warnings)
    report["load_warnings"] = [w for w in warnings if w]
    noisy = sum(r.get("mark") == "noisy" for r in report["kernels"] + report.get("step", []))
    implausible = sum(r.get("mark") == "implausible" for r in report.get("step", []))
    if noisy or implausible:
        emit.line(f"{noisy} noisy (~) and {implausible} implausible figure(s): not results; "
                  "run again on an idle machine")
    if args.json is not None:
        text = json.dumps(report, indent=1)
        if to_stdout:
            print(text)
        else:
            from nnfast._files import replacing

            with replacing(args.json, "w") as f:
                f.write(text + "\n")
            emit.line(f"JSON written to {args.json}")
    return 0


def _warn(emit, warning):
    """A load warning in the printed text, or on stderr when the JSON takes stdout."""
    if warning and emit.quiet:
        print(f"nnfast bench: warning: {warning}", file=sys.stderr, flush=True)
    elif warning:
        emit.line(f"warning: {warning}")


def _numpy_version():
    import numpy as np
    return np.__version__


class _Emitter:
    """Prints each row as soon as it is measured (flushed); on a terminal, a tqdm progress bar
    on stderr counts the measurements (plain lines only, when stderr is a log). ``quiet``
    (``--json``): no lines, only the bar."""

    def __init__(self, quiet, total):
        self.quiet = quiet
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="meas", leave=False, file=sys.stderr)

    def status(self, text):
        if self.bar is not None:
            self.bar.set_description_str(text)

    def line(self, text, step=False):
        if not self.quiet:
            if self.bar is not None:
                self.bar.write(text, file=sys.stdout)
            else:
                print(text, flush=True)
        if step and self.bar is not None:
            self.bar.set_description_str("")
            self.bar.update()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def cpu_features():
    """(cpu name, sorted SIMD feature names) as LLVM (through numba) sees the host, else
    from /proc/cpuinfo's flags."""
    try:
        from llvmlite import binding

        name = binding.get_host_cpu_name()
        features = {f[1:] for f in binding.get_host_cpu_features().flatten().split(",")
                    if f.startswith("+")}
        features = {f.replace("-", "_") for f in features}
    except Exception:  # llvmlite missing or too old: the kernel's view is as good
        name, features = platform.processor() or platform.machine(), set()
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith(("flags", "Features")):
                        features = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return name, sorted(f for f in features if f in _CPU_FLAGS or f.startswith("avx512"))


def _numba_lines():
    try:
        import numba
    except ImportError:
        return ["numba: not installed"]
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        layer = f"not started (requested: {numba.config.THREADING_LAYER})"
    cache = numba.config.CACHE_DIR or None
    if cache is None:
        pycache = os.path.join(os.path.dirname(nnfast.__file__), "_numba", "__pycache__")
        cache = f"{pycache} (beside the sources; NUMBA_CACHE_DIR unset)"
    return [f"numba: {numba.__version__}, threading layer {layer}, "
            f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}",
            f"numba cache: {cache}"]


def _cython_line():
    if "cython" not in nnfast.backends():
        return "cython backend: not built"
    import nnfast._cython as cy

    openmp = (f"OpenMP, {cy.num_threads} thread(s) (more with nnfast.set_num_threads)"
              if cy.HAVE_OPENMP else "built without OpenMP")
    return f"cython backend: {os.path.dirname(cy.__file__)}; {openmp}"


def _blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl: not installed"]
    import numpy  # noqa: F401  (loads NumPy's BLAS so that threadpoolctl sees it)

    lines = []
    for pool in threadpool_info():
        lines.append(f"  {pool.get('user_api')}: {pool.get('internal_api')} "
                     f"{pool.get('version') or ''} threads={pool.get('num_threads')} "
                     f"arch={pool.get('architecture', '-')} "
                     f"({os.path.basename(pool.get('filepath', ''))})")
    return ["thread pools (threadpoolctl):"] + (lines or ["  none found"])


def _info(args):
    import numpy as np

    name, features = cpu_features()
    lines = [
        f"nnfast: {nnfast.__version__} ({os.path.dirname(nnfast.__file__)})",
        f"python: {platform.python_version()} on {platform.platform()}",
        f"numpy: {np.__version__}",
        f"backends: {', '.join(nnfast.backends())}",
        f"backend in force: {nnfast.get_backend()}"
        + (f" (NNFAST_BACKEND={os.environ['NNFAST_BACKEND']})"
           if "NNFAST_BACKEND" in os.environ else ""),
        f"threads: {nnfast.get_num_threads()} (cpu count {os.cpu_count()})",
        *_numba_lines(),
        _cython_line(),
        *_blas_lines(),
        f"cpu: {name}; features: {' '.join(features) or 'unknown'}",
    ]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            lines.append(f"env: {var}={os.environ[var]}")
    print("\n".join(lines))
    return 0


def _report(args):
    from nnfast import report
    return report.run(args)


_COMMANDS = {"demo": _demo, "bench": _bench, "report": _report, "info": _info}


def main(argv=None):
    """Run the ``nnfast`` command line on ``argv``; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        nnfast.get_backend()
    except ValueError as exc:   # a bad NNFAST_BACKEND: say so, without a traceback
        print(f"nnfast: error: {exc}", file=sys.stderr)
        return 2
    try:
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()      # inside the try: a pipe closed early fails here
        return code
    except BrokenPipeError:
        # the reader went away (``nnfast info | head -2``): stop quietly, as cat does; stdout
        # goes to devnull so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141   # 128 + SIGPIPE, what a shell reports for a killed pipeline member
