"""Timing and this machine's limits, measured in the same run as the kernels they put in
context: ``time_calls`` / ``summary`` (per-call seconds with their spread), ``load_average`` /
``load_warning`` (how busy the machine was), and ``machine_context`` (CPU, cores, BLAS pools,
single- and all-core GEMM GFLOP/s, copy GB/s), used by ``nnfast bench`` through
``nnfast._bench``.
"""
import os
import platform
import time
import timeit

import numpy as np

import nnfast


# --- timing ---------------------------------------------------------------------------------

def time_calls(fn, repeat=5, target=0.005):
    """Seconds per call of ``fn`` in each of ``repeat`` timeit runs of about ``target`` seconds
    (a list, so that the spread can be reported). A first, untimed call warms up JIT
    compilation and caches."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(target / once))
    return [t / number for t in timeit.repeat(fn, repeat=repeat, number=number)]


def summary(times):
    """``{"median", "iqr", "min", "max"}`` of per-call seconds; ``iqr`` is the 75th minus the
    25th percentile (0 for one repeat)."""
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "min": float(min(times)),
            "max": float(max(times))}


# --- how busy the machine is ----------------------------------------------------------------

#: A reference run is taken on a machine whose 1-minute load average is at most this (other
#: processes holding a core make threaded work wait for scheduler slices: the figures then
#: describe the load, not the code).
LOAD_LIMIT = 0.5


def load_average():
    """The 1-, 5- and 15-minute load averages (``os.getloadavg``), or None where the system has
    none (Windows)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_warning(load, own=0.0):
    """A sentence saying that a run is not a reference run, or None: the 1-minute load average
    ``load`` (from ``load_average``) exceeds ``LOAD_LIMIT`` plus ``own``, the load that the run
    itself adds (one busy process: 1.0 at its end, 0 at its start)."""
    if load is None:
        return "the load average is not available here: not a reference run"
    if load[0] > LOAD_LIMIT + own:
        return (f"load average {load[0]:g} exceeds {LOAD_LIMIT:g}"
                + (f" plus this run's own {own:g}" if own else "")
                + ": other work is running on this machine, so this is not a reference run "
                  "(its figures describe that load as much as the code)")
    return None


# --- the machine's context and limits, measured in the same run -----------------------------

COPY_ELEMENTS = 1 << 24   # 64 MiB of float32 per array: far beyond the caches
GEMM_N = 1024


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus():
    """CPUs this process may run on: its affinity, capped by a cgroup CPU quota (a container
    limited to one CPU's time gains nothing from a second thread: it is throttled)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, int(quota))) if quota is not None else n


def _cgroup_quota():
    """The cgroup CPU quota in CPUs (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files, split = [f"/sys/fs/cgroup{path}/cpu.max", "/sys/fs/cgroup/cpu.max"], None
        elif "cpu" in controllers.split(","):
            base = "/sys/fs/cgroup/" + controllers
            files, split = [f"{base}{path}/cpu.cfs_quota_us", f"{base}/cpu.cfs_quota_us"], True
        else:
            continue
        for name in files:
            try:
                with open(name) as f:
                    text = f.read().split()
                if split:       # v1: quota and period in two files
                    with open(name.replace("cfs_quota_us", "cfs_period_us")) as f:
                        text += f.read().split()
                quota, period = text[0], text[1]
                if quota in ("max", "-1"):
                    return None
                return int(quota) / int(period)
            except (OSError, ValueError, IndexError):
                continue
    return None


def _blas_pools():
    from threadpoolctl import threadpool_info

    return [{"user_api": p.get("user_api"), "internal_api": p.get("internal_api"),
             "version": p.get("version"), "num_threads": p.get("num_threads"),
             "architecture": p.get("architecture")} for p in threadpool_info()]


def gemm_gflops(dtype, threads, repeat=5, n=GEMM_N):
    """GFLOP/s of an n×n×n GEMM (NumPy's BLAS) with ``threads`` BLAS threads (None: as is):
    ``summary`` of the repeats, in GFLOP/s (median of the rates)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        times = time_calls(lambda: np.matmul(a, b, out=c), repeat, target=0.05)
    return _rates(2.0 * n ** 3 / 1e9, times)


def copy_bandwidth(threads, repeat=5, elements=COPY_ELEMENTS):
    """GB/s of copying ``elements`` float32 (bytes read + bytes written per second) split
    over ``threads`` Python threads (``np.copyto`` releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    src = np.ones(elements, np.float32)
    dst = np.zeros_like(src)
    chunks = [slice(i * elements // threads, (i + 1) * elements // threads)
              for i in range(threads)]
    if threads == 1:
        def copy():
            np.copyto(dst, src)
        times = time_calls(copy, repeat, target=0.05)
    else:
        with ThreadPoolExecutor(threads) as pool:
            def copy():
                list(pool.map(lambda c: np.copyto(dst[c], src[c]), chunks))
            times = time_calls(copy, repeat, target=0.05)
    return _rates(2.0 * src.nbytes / 1e9, times)


def _rates(amount, times):
    """``summary`` of ``amount / t`` over per-call ``times``."""
    return summary([amount / t for t in times])


def machine_context(dtype="float32", repeat=5):
    """What this machine can do, measured now: CPU, cores, BLAS, GEMM and copy limits."""
    from nnfast.cli import cpu_features

    llvm_name, features = cpu_features()
    dtype = np.dtype(dtype)
    cores = usable_cpus()
    gemm = "SGEMM" if dtype == np.float32 else "DGEMM"
    context = {
        "cpu": _cpu_model(), "cpu_llvm": llvm_name, "simd": features,
        "cores": cores, "nnfast_threads": nnfast.get_num_threads(),
        "blas": _blas_pools(), "dtype": dtype.name, "gemm": gemm, "gemm_n": GEMM_N,
        "gemm_gflops_1": gemm_gflops(dtype, 1, repeat),
        "gemm_gflops_all": gemm_gflops(dtype, None, repeat),
        "copy_gbps_1": copy_bandwidth(1, repeat),
        "copy_gbps_all": copy_bandwidth(cores, repeat) if cores > 1 else None,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                           "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
                if k in os.environ},
    }
    best_copy = max(c["median"] for c in (context["copy_gbps_1"], context["copy_gbps_all"])
                    if c)
    context["copy_gbps"] = best_copy
    context["gemm_gflops"] = context["gemm_gflops_all"]["median"]
    return context
