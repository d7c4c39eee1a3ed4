"""The model step of ``grid.pyx`` (K = 1, no batch norm) split over row chunks, for two threads.
``nnfast._cython.step`` runs it for batches worth two cores (``step.worth_two``; README,
"Backends"), with the helper if the process may use two CPUs.

Rows of a mini-batch are independent through forward and backward: the batch is cut into
``n_chunks`` fixed row ranges, each chunk's forward/loss/backward writes a partial dW, db and
loss (δ scaled by 1/m of the whole batch) into an output slot, and the slots are added in chunk
order, then the L2 term. The chunks do not depend on which thread ran them, so results are the
same with or without the helper (bit for bit), and within rounding of ``grid.pyx``.

With ``rows`` (an epoch's shuffled row indices for this batch) X and y are the whole training
arrays and each chunk gathers its own rows into its thread's workspace: the gather runs on both
threads, and the rows land in the cache of the thread that uses them (a batch gathered by the
caller is read by the helper from the other core's cache). Measured in ``MLP.fit``, 100-64-1
batch 200 float32: 65 -> 52 µs per step (Zen 4, quiet). Indices are checked by the caller and
clamped again where a chunk reads them (a stale helper may read an index array being rewritten).

The helper is one persistent pthread (``step_pool.h``, which describes the protocol). It reads
only: the job snapshot (its own copy), the caller's input arrays X, y, W, b and the row
indices (kept alive by ``_held`` until the helper is seen idle after a later job was posted),
and its workspace and slots (module-owned; replaced ones are retired, freed only once the
helper is idle). The caller never waits for it. Several Python threads: one at a time uses the
helper (``_in_use``, under the GIL); the others run the same chunks on private buffers.

Measured (``bench/bench_pstep.py``, mean µs per step, 30 µs of Python between steps; 2-core AMD
EPYC Zen 4, one BLAS thread; grid.pyx K = 1 / 2 chunks on the caller / 2 chunks with helper):
quiet — 100-64-1 batch 200 float32 84 / 71 / 42, float64 160 / 140 / 87, 64-128-64-10 batch 64
float32 77 / 89 / 79; MLP.fit 100-64-2 batch 200 148 / 136 / 118 per step. With a busy-loop
process on one core the helper neither helps nor hurts: 91 / 75 / 78, 178 / 161 / 157,
87 / 103 / 103 (p99 under 300 µs in every case: no time-slice waits). 4 chunks: no better.
Tried: the idle helper spinning with the pause instruction instead of sched_yield() doubled
the mean step under load (100-64-1 float32 137 against 75 µs): it shared the caller's core.
"""
import atexit
import os
import warnings

from cython cimport floating
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from kernel_common cimport IDENTITY, SIGMOID, TANH
from model_pass cimport (IDENTITY_OUT, SIGMOID_OUT, SOFTMAX_OUT, check_shape,
                        check_targets, count_sizes, l2_term, nn_set_delta_tt, rows_pass)

cdef extern from "step_pool.h" nogil:
    enum:
        NN_POOL_MAX_LAYERS
        NN_POOL_MAX_CHUNKS
        NN_HDONE
        NN_CALLER
    ctypedef struct nn_job:
        int64_t dtype, output, kind
        double slope
        int64_t L, m, n_chunks, rows_max, n_w, n_b
        int64_t sizes[33]
        const void* X
        const int64_t* labels
        const void* t
        const void* W
        const void* b
        const int64_t* rows
        int64_t n_src
        void* ws
        void* dW
        void* db
        double* loss
    ctypedef void (*nn_chunk_fn)(const nn_job* job, int64_t chunk) noexcept nogil
    int nn_pool_start(nn_chunk_fn fn)
    void nn_pool_stop()
    int nn_pool_begin()
    uint64_t nn_pool_post(const nn_job* job, int wake)
    int nn_claim(uint64_t g, int64_t c)
    int nn_wait_or_take(uint64_t g, int64_t c, int64_t budget_ns)
    uint64_t nn_state_of(int64_t c)
    uint64_t nn_tag(uint64_t g, int st)
    int64_t nn_now_ns()
    void nn_retire(void* p)
    void nn_free_retired()
    void nn_copy_labels(const int64_t* src, int64_t* dst, int64_t n, int64_t k)
    void nn_gather_rows(const int64_t* rows, int64_t n, int64_t n_src, const char* src,
                        int64_t row_bytes, char* dst)
    void nn_gather_labels(const int64_t* rows, const int64_t* src, int64_t n, int64_t n_src,
                          int64_t* dst, int64_t k)
    int nn_alive
    int nn_child
    int64_t nn_spin_ns
    int nn_spin_yield
    int64_t nn_test_delay_ns
    void nn_instr(int64_t* out)

cdef void chunk_step(const nn_job* job, int64_t c, floating* like) noexcept nogil:
    """Chunk c's forward, loss and backward (``model_pass.rows_pass``) into slot c of ``job``:
    dW_c, db_c and Σ row losses (δ carries 1/m of the whole batch). Workspace: labels, then
    z, a, d (rows_max · n_b); with ``job.rows`` then the chunk's rows of X and of the targets,
    gathered here (by the thread that computes the chunk, into its own cache)."""
    cdef Py_ssize_t m = job.m, C = job.n_chunks, n_b = job.n_b, n_w = job.n_w
    cdef Py_ssize_t r0 = c * m // C, mc = (c + 1) * m // C - r0, rows = job.rows_max
    cdef const long long* sizes = <const long long*>job.sizes
    cdef long long* labels = <long long*>job.ws
    cdef floating* z = <floating*>(labels + rows)
    cdef floating* a = z + rows * n_b
    cdef floating* d = a + rows * n_b
    cdef int kind = job.kind
    cdef const floating* t = NULL
    cdef const floating* x = <const floating*>job.X + r0 * sizes[0]
    cdef floating* xg = d + rows * n_b
    cdef floating* tg = xg + rows * sizes[0]
    cdef Py_ssize_t k_out = sizes[job.L]
    if kind == IDENTITY or kind == SIGMOID or kind == TANH:
        a = z                            # g' from a (sigmoid, tanh) or none: a overwrites z
    if job.rows != NULL:
        nn_gather_rows(job.rows + r0, mc, job.n_src, <const char*>job.X,
                       sizes[0] * sizeof(floating), <char*>xg)
        x = xg
        if job.output == SOFTMAX_OUT:
            nn_gather_labels(job.rows + r0, job.labels, mc, job.n_src, <int64_t*>labels, k_out)
        else:
            nn_gather_rows(job.rows + r0, mc, job.n_src, <const char*>job.t,
                           k_out * sizeof(floating), <char*>tg)
            t = tg
    elif job.output == SOFTMAX_OUT:
        nn_copy_labels(job.labels + r0, <int64_t*>labels, mc, k_out)
    else:
        t = <const floating*>job.t + r0 * k_out
    job.loss[c] = rows_pass(job.output, x, labels, t,
                            sizes, job.L, mc, <floating>(1.0 / m), <const floating*>job.W,
                            <const floating*>job.b, <floating*>job.dW + c * n_w,
                            <floating*>job.db + c * n_b, z, a, d, kind, <floating>job.slope)


cdef void chunk_work(const nn_job* job, int64_t c) noexcept nogil:
    if job.dtype == 0:
        chunk_step[float](job, c, <float*>NULL)
    else:
        chunk_step[double](job, c, <double*>NULL)


cdef double reduce_slots(const nn_job* mine, const nn_job* helpers, const char* from_helper,
                         floating* dW, floating* db, const floating* W, double lam) noexcept nogil:
    """dW, db = Σ_c slot c (chunk order), then the L2 term; returns J."""
    cdef Py_ssize_t c, j, n_w = mine.n_w, n_b = mine.n_b, m = mine.m
    cdef const nn_job* src
    cdef const floating* sw
    cdef const floating* sb
    cdef double total = 0, loss
    for c in range(mine.n_chunks):
        src = helpers if from_helper[c] else mine
        sw = <const floating*>src.dW + c * n_w
        sb = <const floating*>src.db + c * n_b
        if c == 0:
            memcpy(dW, sw, n_w * sizeof(floating))
            memcpy(db, sb, n_b * sizeof(floating))
        else:
            for j in range(n_w):
                dW[j] = dW[j] + sw[j]
            for j in range(n_b):
                db[j] = db[j] + sb[j]
        total += src.loss[c]
    loss = total / (2 * m) if mine.output == IDENTITY_OUT else total / m
    return loss + l2_term(dW, W, n_w, m, lam)


cdef double caller_step(nn_job* mine, nn_job* helpers, bint use_helper, floating* dW,
                        floating* db, const floating* W, double lam) noexcept nogil:
    """Post the job (if the helper runs), claim chunks upwards, take over late ones, reduce."""
    cdef Py_ssize_t c, C = mine.n_chunks
    cdef uint64_t g = 0
    cdef char from_helper[NN_POOL_MAX_CHUNKS]
    cdef int64_t t0, budget, expect, last = 0
    cdef double mflop = 6e-6 * mine.rows_max * (mine.n_w + mine.n_b)
    for c in range(C):
        from_helper[c] = 0
    if not use_helper:
        for c in range(C):
            chunk_work(mine, c)
        return reduce_slots(mine, helpers, from_helper, dW, db, W, lam)
    g = nn_pool_post(helpers, 1)
    for c in range(C):
        if nn_claim(g, c):
            t0 = nn_now_ns()
            chunk_work(mine, c)
            last = nn_now_ns() - t0
            rate[mine.dtype] = (3 * rate[mine.dtype] + last / mflop) / 4 if rate[mine.dtype] \
                else last / mflop
    # the helper's chunks: wait up to 1.5 expected chunk times after its claim, then take the
    # chunk over. Expected: the lesser of this step's chunk on the caller (if it ran one) and
    # the caller's running ns per flop for this dtype (a preempted chunk inflates one of them)
    expect = <int64_t>(rate[mine.dtype] * mflop) if rate[mine.dtype] else 50000
    if last and last < expect:
        expect = last
    budget = 3 * expect // 2 + 2000
    for c in range(C):
        if nn_state_of(c) == nn_tag(g, NN_HDONE):
            from_helper[c] = 1
        elif nn_state_of(c) != nn_tag(g, NN_CALLER):
            if nn_wait_or_take(g, c, budget):
                from_helper[c] = 1
            else:
                chunk_work(mine, c)
                taken[0] += 1
    return reduce_slots(mine, helpers, from_helper, dW, db, W, lam)


# ---- module state (caller side: touched only under the GIL or by the _in_use holder) ----
cdef double rate[2]                     # per dtype: the caller's mean chunk ns per 10⁶ flops
rate[0] = rate[1] = 0
cdef int64_t taken[2]                   # chunks taken over; steps run on private buffers
taken[0] = taken[1] = 0
cdef void* caller_buf = NULL            # caller's workspace + slots (never seen by the helper)
cdef size_t caller_cap = 0
cdef void* helper_buf = NULL            # helper's workspace + slots (retired when replaced)
cdef size_t helper_cap = 0
cdef bint _in_use = False
_held = []                              # the arrays the current job's pointers name
_stale = []                             # older jobs' arrays, while the helper may be busy

#: Row chunks per step (results depend on it, not on the helper; NNFAST_STEP_CHUNKS, 2 to 16);
#: threads: 2 = use the helper (set by ``nnfast._cython.step`` from NNFAST_STEP_THREADS and the
#: CPUs the process may use).
_chunks = os.environ.get("NNFAST_STEP_CHUNKS", "2").strip()
n_chunks = int(_chunks) if _chunks.isdigit() and 2 <= int(_chunks) <= NN_POOL_MAX_CHUNKS else 2
if str(n_chunks) != _chunks.lstrip("0") and _chunks:
    warnings.warn(f"NNFAST_STEP_CHUNKS must be an integer from 2 to {NN_POOL_MAX_CHUNKS}, got "
                  f"{_chunks!r}; using 2", RuntimeWarning)
threads = 1


def set_spin(double us, bint yield_=True):
    """How long the idle helper spins before parking on its semaphore, and whether it calls
    sched_yield() while spinning (else the pause instruction)."""
    global nn_spin_ns, nn_spin_yield
    nn_spin_ns = <int64_t>(us * 1000)
    nn_spin_yield = yield_


def set_test_delay(double us):
    """Tests: the helper sleeps ``us`` in every chunk it claims before computing it (so the
    caller takes the chunk over and returns while the helper is still in it)."""
    global nn_test_delay_ns
    nn_test_delay_ns = <int64_t>(us * 1000)


def stats():
    """(helper running, forked child, chunks the caller took over, caller's ns per 10⁶ flops
    of a chunk (float32, float64), helper's chunks, their total ns, total ns from post to the helper's claim)."""
    cdef int64_t h[3]
    nn_instr(h)
    return (bool(nn_alive), bool(nn_child), taken[0], (rate[0], rate[1]), h[2], h[0], h[1],
            taken[1])


def _shutdown():
    with nogil:
        nn_pool_stop()


def _after_fork_in_child():
    global _in_use
    _in_use = False
    _held.clear()
    _stale.clear()


atexit.register(_shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)


cdef size_t layout_bytes(nn_job* job, size_t item) noexcept:
    """Bytes of one thread's workspace (labels, z, a, d; gathered X and targets) + slots (dW,
    db, loss per chunk)."""
    return (ws_bytes(job, item) + job.n_chunks * (job.n_w + job.n_b) * item
            + job.n_chunks * 8 + 64)


cdef size_t ws_bytes(nn_job* job, size_t item) noexcept:
    cdef size_t gathered = 0
    if job.rows != NULL:
        gathered = job.rows_max * (job.sizes[0] + job.sizes[job.L]) * item
    return job.rows_max * 8 + 3 * job.rows_max * job.n_b * item + gathered


cdef void carve(nn_job* job, char* base, size_t item) noexcept:
    job.ws = base
    base += ws_bytes(job, item)
    job.dW = base
    base += job.n_chunks * job.n_w * item
    job.db = base
    base += job.n_chunks * job.n_b * item
    base = <char*>((<size_t>base + 7) & ~(<size_t>7))
    job.loss = <double*>base


cdef double run(int output, const floating[:, ::1] X, object y_obj, const long long* labels,
                const floating* t, const long long[::1] sizes, floating[:, ::1] weights,
                floating[:, ::1] biases, floating[:, ::1] dweights, floating[:, ::1] dbiases,
                int kind, double slope, double lam, object rows_obj) except? -1:
    """One step on X's rows ``rows_obj`` (an int64 array; None: all of X's rows, in order)."""
    global caller_buf, caller_cap, helper_buf, helper_cap, _in_use, _held
    cdef Py_ssize_t L = sizes.shape[0] - 1, m = X.shape[0], i, C, n_src = X.shape[0]
    cdef const long long[::1] rows_view
    cdef const long long* rows = NULL
    cdef Py_ssize_t n_w = 0, n_b = 0, j
    cdef nn_job mine, helpers
    cdef size_t item = sizeof(floating), need
    cdef void* private = NULL
    cdef bint use_helper = False, busy
    cdef double J
    count_sizes(sizes, X.shape[1], NN_POOL_MAX_LAYERS, &n_w, &n_b)
    check_shape("weights", weights.shape[0], weights.shape[1], 1, n_w)
    check_shape("dweights", dweights.shape[0], dweights.shape[1], 1, n_w)
    check_shape("biases", biases.shape[0], biases.shape[1], 1, n_b)
    check_shape("dbiases", dbiases.shape[0], dbiases.shape[1], 1, n_b)
    if rows_obj is not None:
        rows_view = rows_obj
        m = rows_view.shape[0]
        if m:
            rows = &rows_view[0]
        for i in range(m):
            if rows[i] < 0 or rows[i] >= n_src:
                raise ValueError(f"rows must be in [0, {n_src}) (X's rows), got {rows[i]}")
    if m == 0:
        return 0.0
    if labels != NULL:
        for i in range(m):
            j = rows[i] if rows != NULL else i
            if labels[j] < 0 or labels[j] >= sizes[L]:
                raise ValueError(f"labels must be in [0, {sizes[L]}), got {labels[j]}")
    C = max(1, min(n_chunks, m, NN_POOL_MAX_CHUNKS))
    mine.dtype = 0 if floating is float else 1
    mine.output, mine.kind, mine.slope = output, kind, slope
    mine.L, mine.m, mine.n_chunks, mine.n_w, mine.n_b = L, m, C, n_w, n_b
    mine.rows_max = (m + C - 1) // C
    for i in range(L + 1):
        mine.sizes[i] = sizes[i]
    mine.X, mine.labels, mine.t = &X[0, 0], <const int64_t*>labels, t
    mine.W, mine.b = &weights[0, 0], &biases[0, 0]
    mine.rows, mine.n_src = <const int64_t*>rows, n_src
    need = layout_bytes(&mine, item)
    if _in_use:                         # another Python thread holds the pool: run alone
        taken[1] += 1
        private = malloc(need)
        if private == NULL:
            raise MemoryError()
        carve(&mine, <char*>private, item)
        with nogil:
            J = caller_step(&mine, &mine, False, &dweights[0, 0], &dbiases[0, 0],
                            &weights[0, 0], lam)
        free(private)
        return J
    _in_use = True
    try:
        if threads > 1:
            use_helper = nn_pool_start(chunk_work)
        busy = nn_pool_begin()          # the previous job is void from here on
        if busy:
            _stale.append(_held)
        else:
            _stale.clear()
            nn_free_retired()
        _held = [X, y_obj, weights, biases, rows_obj]
        if caller_cap < need:
            free(caller_buf)
            caller_buf = malloc(need)
            caller_cap = need if caller_buf != NULL else 0
            if caller_buf == NULL:
                raise MemoryError()
        carve(&mine, <char*>caller_buf, item)
        helpers = mine
        if use_helper and helper_cap < need:
            if busy:
                nn_retire(helper_buf)
            else:
                free(helper_buf)
            helper_buf = malloc(need)
            helper_cap = need if helper_buf != NULL else 0
        use_helper = use_helper and helper_buf != NULL
        if use_helper:
            carve(&helpers, <char*>helper_buf, item)
        with nogil:
            J = caller_step(&mine, &helpers, use_helper, &dweights[0, 0], &dbiases[0, 0],
                            &weights[0, 0], lam)
    finally:
        _in_use = False
    return J


def softmax_step(const floating[:, ::1] X, y, const long long[::1] sizes,
                 floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                 floating[:, ::1] dbiases, int kind, double slope, double lam, rows=None):
    """One step on int64 labels ``y``; returns J (``grid.softmax_grid`` at K = 1). ``rows``
    (int64, optional): the batch is those rows of X and y, gathered chunk by chunk."""
    cdef const long long[::1] labels = y
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"y has {labels.shape[0]} rows, X {X.shape[0]}")
    return run(SOFTMAX_OUT, X, y, &labels[0] if labels.shape[0] else NULL, <floating*>NULL,
               sizes, weights, biases, dweights, dbiases, kind, slope, lam, rows)


def sigmoid_step(const floating[:, ::1] X, const floating[:, ::1] y, const long long[::1] sizes,
                 floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                 floating[:, ::1] dbiases, int kind, double slope, double lam, rows=None):
    """One step on float targets ``y`` (m, outputs), binary cross-entropy."""
    check_targets(X.shape[0], y.shape[0], y.shape[1], sizes[sizes.shape[0] - 1])
    return run(SIGMOID_OUT, X, y, <long long*>NULL, &y[0, 0] if y.shape[0] else NULL,
               sizes, weights, biases, dweights, dbiases, kind, slope, lam, rows)


def identity_step(const floating[:, ::1] X, const floating[:, ::1] y, const long long[::1] sizes,
                  floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                  floating[:, ::1] dbiases, int kind, double slope, double lam, rows=None):
    """One step on float targets ``y`` (m, outputs), the seed's squared error."""
    check_targets(X.shape[0], y.shape[0], y.shape[1], sizes[sizes.shape[0] - 1])
    return run(IDENTITY_OUT, X, y, <long long*>NULL, &y[0, 0] if y.shape[0] else NULL,
               sizes, weights, biases, dweights, dbiases, kind, slope, lam, rows)


def set_delta_gemm(int choice):
    """How this module's model pass computes δ_prev = δ Wᵀ: 1 TT on δᵀ, 0 TN, -1 the CPU's
    choice (``src/kernels/cpu.h``). For tests: ``nnfast._cython.step.set_delta_gemm``."""
    nn_set_delta_tt(choice)
