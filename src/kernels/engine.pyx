"""The network-step engine of the Cython backend: mini-batch steps of a multilayer perceptron
from a plan, in one call without the GIL.

A :class:`Plan` describes the network once — layer sizes, hidden activation, output/loss, K
models that share the data (a λ grid: K L2 strengths), the optimizer rule or none, the
threads — and ``run`` takes it with the data of a call: X and y, the batches (bounds into an
optional row order: the rows are gathered chunk by chunk), the flat parameters and gradients,
the optimizer's state and its per-step scalars. For each batch:

1. its m rows are cut into C fixed row chunks (``Plan.chunks``: by shape only, never by the
   thread count); every (model, chunk) pair runs forward, loss and backward on its rows
   (``model_pass.pxd``'s ``rows_pass``; δ carries 1/m of the whole batch) into its own gradient
   slot — chunk 0 into the model's gradients, the others into the plan's slots — and its
   threads' own workspace; the pairs run in an OpenMP ``prange`` (dynamic: a thread that is
   descheduled holds up at most the pair it has started);
2. the slots are added into the gradients in chunk order (over fixed element blocks, in
   parallel), the row losses in chunk order, then the L2 term λ_k/m · W (J in double);
3. with an optimizer rule, its fused update over every parameter (``optim_apply.pxd``: the
   arithmetic of ``optim.pyx``'s public kernels, over fixed blocks) with that step's scalars.

So results depend on the shapes only: the same bits for 1, 2 or 16 threads and whichever thread
ran a chunk. With C = 1 a step is exactly the one-pass step (the model pass on the whole batch).
The GEMMs are ``blas.pxd``'s with one BLAS thread each (every call holds its BLAS to one
thread: ``blas_threads.h``), so threads come from one place: this module's OpenMP team.

A batch whose J is not finite is not applied: the call returns the batches applied before it
(``losses`` holds that batch's J), and the caller decides (``MLP.fit`` reruns it to raise).

Contention. An OpenMP pass ends when its last thread does; a thread that the OS has
descheduled (another process holds its core) holds the pass up for a scheduler slice
(milliseconds), and one that shares its core runs at a fraction of its speed: either can make
a parallel step slower than a serial one. So each parallel pass times its chunks: if the pass
took more than 1.75 times its rounds of the fastest chunk (+ 20 µs; ``late``), the plan runs
its next batches on the calling thread alone — 4 of them, doubling on every late pass up to
1024, halving back on every pass that was on time — then tries its threads again (a plan's
first parallel pass, on a cold team and workspace, is not judged). Results do not change (the
chunks are the same); under contention the step settles near its one-thread speed and pays
one late pass per back-off, and a false alarm on a quiet machine costs a few serial batches.

fork(): libgomp's threads do not survive it; a child of a process whose team has run steps on
one thread (``_after_fork_in_child``).
"""
import os

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from chain_pass cimport chain_delta_rows, chain_forward_rows, chain_weight_grads
from kernel_common cimport (BLOCK, IDENTITY, LEAKY_RELU, PARALLEL_MIN, RELU, SIGMOID, SOFTMAX,
                            TANH, block_len, n_blocks)
from model_pass cimport (IDENTITY_OUT, SIGMOID_OUT, SOFTMAX_OUT, count_sizes, l2_term,
                        nn_delta_tt, nn_set_delta_tt, rows_pass)
from optim_apply cimport adam_apply, momentum_apply, rmsprop_apply, sgd_apply

cdef enum:
    NO_RULE = -1
    SGD_RULE = 0
    MOMENTUM_RULE = 1
    RMSPROP_RULE = 2
    ADAM_RULE = 3
    MAX_CHUNKS = 16
    MIN_CHUNK_ROWS = 64
    MIN_CHUNK_WORK = 1000000
    MIN_BACKOFF = 4
    MAX_SLOT_VALUES = 1 << 26           # 256 MiB of float32 slots for one model
    MAX_BACKOFF = 1024

#: The optimizer kernels a plan can fuse (``nnfast._rules``' ``kernel`` names): their code here
#: and the number of scalars and state arrays each takes.
RULES = {"sgd_update": (SGD_RULE, 2, 0), "momentum_update": (MOMENTUM_RULE, 6, 1),
         "rmsprop_update": (RMSPROP_RULE, 5, 1), "adam_update": (ADAM_RULE, 9, 2)}
OUTPUTS = {"softmax": SOFTMAX_OUT, "sigmoid": SIGMOID_OUT, "identity": IDENTITY_OUT}
#: Row chunks of a batch (``n_chunks``): at least CHUNK_ROWS rows and CHUNK_WORK multiply-adds
#: (forward + backward: 3 per weight and row) each, two of them from 2 · CHUNK_ROWS rows and
#: about 4 · CHUNK_ROWS rows each from three chunks on. Smaller chunks lose more than another
#: core gains: a chunk's GEMMs run slower per row at fewer rows (784-512-256 float32, one
#: thread: 30.3 / 26.3 / 24.4 µs per row at 32 / 64 / 128 rows) and every chunk past the first
#: adds its gradient slot in (2-core Zen 4: 100-64-1 batch 100 gained nothing from two chunks,
#: batch 200 did; 64-128-64-10 batch 64 did not; 784-1024-1024-10 batch 512 as 4 chunks took
#: 7% longer on one core than as 2, and 14% on two).
CHUNK_ROWS = MIN_CHUNK_ROWS
CHUNK_WORK = MIN_CHUNK_WORK

cdef extern from "clock.h" nogil:
    int64_t nn_clock_ns()

cdef extern from "blas_threads.h" nogil:
    void nn_blas_functions(void* get, void* set)
    void nn_blas_enter()
    void nn_blas_leave()


def set_blas_threads_functions(size_t get, size_t set):
    """The addresses of ``openblas_get_num_threads`` and ``openblas_set_num_threads`` of the
    BLAS the GEMMs call (``nnfast._blas.thread_functions``; 0, 0: none): every call then holds
    that BLAS to one thread around its work (``blas_threads.h``)."""
    nn_blas_functions(<void*>get, <void*>set)


def blas_enter():
    """That BLAS on one thread until the matching ``blas_leave`` (counted: the last to leave
    restores it; ``nnfast._blas.serial``)."""
    nn_blas_enter()


def blas_leave():
    nn_blas_leave()

ctypedef struct nn_ctrl:
    # The thread controller (module docstring, "Contention"): batches left to run on one
    # thread, the next back-off's length, and counts for ``Plan.stats``.
    Py_ssize_t serial_left, interval, late, parallel, serial


ctypedef struct nn_plan:
    # the network: L layers, sizes sz[0..L]; output (loss) and hidden activation codes
    int out, kind
    double slope
    Py_ssize_t L, n_w, n_b
    const long long* sz
    # K models side by side (λ_k each); the optimizer rule (NO_RULE: gradients only)
    Py_ssize_t K, n_params
    const double* lam
    int code, n_args, n_states
    int threads
    nn_ctrl ctrl


cdef inline Py_ssize_t n_chunks(const nn_plan* p, Py_ssize_t m) noexcept nogil:
    """The row chunks of a batch of m rows: two from 2 · CHUNK_ROWS rows, then one per
    4 · CHUNK_ROWS rows, at most MAX_CHUNKS, and fewer while a chunk would hold fewer than
    CHUNK_WORK multiply-adds or the gradient slots of one model more than MAX_SLOT_VALUES
    values."""
    cdef Py_ssize_t c = 1
    if m >= 2 * MIN_CHUNK_ROWS:
        c = min(<Py_ssize_t>MAX_CHUNKS, max(<Py_ssize_t>2, m // (4 * MIN_CHUNK_ROWS)))
    while c > 1 and (3 * (m // c) * p.n_w < MIN_CHUNK_WORK
                     or (c - 1) * (p.n_w + p.n_b) > MAX_SLOT_VALUES):
        c -= 1
    return max(c, 1)


cdef void update(int rule, floating* p, const floating* g, floating* s0, floating* s1,
                 Py_ssize_t n, const double* a, int threads) noexcept nogil:
    """One optimizer step with the scalars ``a`` (``kernel_args``; flags as 0/1)."""
    if rule == SGD_RULE:
        sgd_apply(p, g, n, a[0], a[1], threads)
    elif rule == MOMENTUM_RULE:
        momentum_apply(p, g, s0, n, a[0], a[1], a[2], a[3], a[4] != 0, a[5] != 0, threads)
    elif rule == RMSPROP_RULE:
        rmsprop_apply(p, g, s0, n, a[0], a[1], a[2], a[3], a[4] != 0, threads)
    else:
        adam_apply(p, g, s0, s1, n, a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7],
                   a[8] != 0, threads)


cdef class Plan:
    """What a network's steps are: ``sizes`` (int64: input width, then each layer's),
    ``output`` ("softmax": int64 labels, cross-entropy; "sigmoid": float targets, binary
    cross-entropy; "identity": float targets, the seed's squared error), the hidden activation
    ``kind`` (an ``nnfast._kinds`` code) with its ``slope``, ``lambdas`` (float64, one L2
    strength per model: K models side by side), ``rule`` (an optimizer kernel name of
    ``RULES``, or None: gradients only), ``threads`` (the most OpenMP threads a call takes) and
    ``dtype``. Holds the calls' workspace (grown on demand and reused; a second Python thread
    inside a call of the same plan gets a workspace of its own for that call)."""
    cdef nn_plan p
    cdef readonly object sizes, lambdas, dtype, output, rule
    cdef int busy
    cdef char* ws
    cdef size_t ws_cap

    def __init__(self, sizes, str output, int kind, double slope, lambdas, rule, int threads,
                 dtype):
        cdef const long long[::1] s = sizes
        cdef const double[::1] lam = lambdas
        cdef Py_ssize_t n_w = 0, n_b = 0
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {output!r}")
        if rule is not None and rule not in RULES:
            raise ValueError(f"rule must be None or one of {sorted(RULES)}, got {rule!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if lam.shape[0] < 1:
            raise ValueError("lambdas must hold one L2 strength per model, got none")
        if s.shape[0] < 2:
            raise ValueError(f"sizes must name an input width and at least one layer, got "
                             f"{list(s)}")
        self.dtype = __import__("numpy").dtype(dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        count_sizes(s, s[0], 0, &n_w, &n_b)
        self.sizes, self.lambdas, self.output, self.rule = sizes, lambdas, output, rule
        self.p.sz, self.p.lam = &s[0], &lam[0]
        self.p.out, self.p.kind, self.p.slope = OUTPUTS[output], kind, slope
        self.p.code, self.p.n_args, self.p.n_states = (RULES[rule] if rule is not None
                                                        else (NO_RULE, 0, 0))
        self.p.threads, self.p.L, self.p.K = threads, s.shape[0] - 1, lam.shape[0]
        self.p.n_w, self.p.n_b = n_w, n_b
        self.p.n_params = self.p.K * (n_w + n_b)
        self.p.ctrl.interval = MIN_BACKOFF

    def stats(self):
        """The thread controller's counts: batches run in parallel, on one thread, and
        parallel batches that waited on a late thread (then backed off)."""
        return {"parallel": self.p.ctrl.parallel, "serial": self.p.ctrl.serial,
                "late": self.p.ctrl.late}

    def __dealloc__(self):
        free(self.ws)

    @property
    def threads(self):
        return self.p.threads

    @property
    def K(self):
        return self.p.K

    @property
    def n_params(self):
        return self.p.n_params

    def chunks(self, Py_ssize_t m):
        """The row chunks of a batch of m rows (``CHUNK_ROWS``, ``CHUNK_WORK``)."""
        return n_chunks(&self.p, m)


cdef double chunk_pass(const nn_plan* p, Py_ssize_t k, Py_ssize_t c, Py_ssize_t C,
                       Py_ssize_t m, Py_ssize_t lo, const floating* X, Py_ssize_t f,
                       const long long* labels, const floating* t, Py_ssize_t t_cols,
                       const long long* order, const floating* params, floating* grads,
                       floating* slots, char* ws) noexcept nogil:
    """Model k's forward, loss and backward on chunk c (of C) of the batch of m rows starting
    at ``lo`` (of ``order``, or of X's rows): dW, db into model k's gradients (c = 0) or its
    slot c; returns the chunk's unscaled Σ of row losses. ``ws``: this thread's workspace."""
    cdef Py_ssize_t K = p.K, n_w = p.n_w, n_b = p.n_b
    cdef Py_ssize_t r0 = c * m // C, mc = (c + 1) * m // C - r0, rows = (m + C - 1) // C, r
    cdef long long row
    cdef long long* lg = <long long*>ws
    cdef floating* z = <floating*>(lg + rows)
    cdef floating* a = z + rows * n_b
    cdef floating* d = a + rows * n_b
    cdef floating* xg = d + rows * n_b
    cdef floating* tg = xg + rows * f
    cdef const floating* x
    cdef const long long* lab = NULL
    cdef const floating* tt = NULL
    cdef floating* dW
    cdef floating* db
    if order != NULL:                   # gather the chunk's rows into this thread's cache
        for r in range(mc):
            row = order[lo + r0 + r]
            memcpy(xg + r * f, X + row * f, f * sizeof(floating))
            if labels != NULL:
                lg[r] = labels[row]
            else:
                memcpy(tg + r * t_cols, t + row * t_cols, t_cols * sizeof(floating))
        x, lab, tt = xg, lg, tg
    else:
        x = X + (lo + r0) * f
        if labels != NULL:
            lab = labels + lo + r0
        else:
            tt = t + (lo + r0) * t_cols
    if c == 0:
        dW, db = grads + k * n_w, grads + K * n_w + k * n_b
    else:
        dW = slots + (k * (C - 1) + c - 1) * (n_w + n_b)
        db = dW + n_w
    return rows_pass(p.out, x, lab, tt, p.sz, p.L, mc, <floating>(1.0 / m), params + k * n_w,
                     params + K * n_w + k * n_b, dW, db, z, a, d, p.kind, <floating>p.slope)


cdef void add_slots(const nn_plan* p, Py_ssize_t C, floating* grads, const floating* slots,
                    int threads) noexcept nogil:
    """Every model's gradients += its slots 1 .. C-1, in chunk order (over fixed element
    blocks: the same sums for any thread count)."""
    cdef Py_ssize_t K = p.K, n_w = p.n_w, n_b = p.n_b, slot = n_w + n_b
    cdef Py_ssize_t k, c, j, blk, nb = n_blocks(n_w), lo, n
    cdef floating* g
    cdef const floating* s
    for k in range(K):
        if nb == 1 or threads == 1:
            for c in range(1, C):
                s = slots + (k * (C - 1) + c - 1) * slot
                g = grads + k * n_w
                for j in range(n_w):
                    g[j] = g[j] + s[j]
        else:
            for blk in prange(nb, schedule='static', num_threads=threads):
                lo = blk * BLOCK
                n = block_len(n_w, blk)
                for c in range(1, C):
                    s = slots + (k * (C - 1) + c - 1) * slot + lo
                    g = grads + k * n_w + lo
                    for j in range(n):
                        g[j] = g[j] + s[j]
        g = grads + K * n_w + k * n_b
        for c in range(1, C):
            s = slots + (k * (C - 1) + c - 1) * slot + n_w
            for j in range(n_b):
                g[j] = g[j] + s[j]


cdef int64_t test_delay_ns = 0
#: Whether this process has run an OpenMP team (set at the first parallel pass), and whether it
#: is a fork() child of one that had: libgomp's thread pool does not survive fork(), and a
#: parallel region in such a child waits forever for threads that are not there. So a forked
#: child of a process whose team ran runs every pass on its own thread.
cdef int team_started = 0
cdef int forked_after_team = 0


def _after_fork_in_child():
    global forked_after_team
    forked_after_team = forked_after_team or team_started


if hasattr(os, "register_at_fork"):       # POSIX: fork() exists
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_test_delay(double us):
    """Tests: every chunk that a thread other than the caller's runs starts ``us`` late (as a
    descheduled thread would), so that the thread controller backs off."""
    global test_delay_ns
    test_delay_ns = <int64_t>(us * 1000)


cdef bint late(int T, Py_ssize_t items, const int64_t* took, int64_t elapsed) noexcept nogil:
    """Whether a parallel pass of ``items`` chunks on T threads took longer than 1.75 times its
    rounds of the fastest chunk (+ 20 µs): a thread started late (descheduled) or ran slower
    than the others (its core shared with another process), so that the pass gained little or
    nothing over one thread."""
    cdef int64_t fastest = took[0]
    cdef Py_ssize_t i
    for i in range(1, items):
        fastest = min(fastest, took[i])
    return elapsed > 7 * ((items + T - 1) // T) * fastest // 4 + 20000


cdef Py_ssize_t run_plan(const nn_plan* p, const floating* X, Py_ssize_t f,
                         const long long* labels, const floating* t, Py_ssize_t t_cols,
                         const long long* order, const long long* bounds, Py_ssize_t n_batches,
                         floating* params, floating* grads, floating* s0, floating* s1,
                         const double* args, double* losses, char* ws, size_t per_thread,
                         floating* slots, double* loss, int64_t* took,
                         nn_ctrl* ctrl) noexcept nogil:
    """The batches of a call (``run``); returns those applied. ``loss``, ``took``: K · C_max
    each; ``ctrl``: the plan's thread controller."""
    cdef Py_ssize_t K = p.K, n_w = p.n_w, j, m, lo, C, items, i, k, c, done = 0
    cdef int T, tid
    cdef int64_t t_start, t_chunk, t_done
    global team_started
    cdef double J, Jk
    for j in range(n_batches):
        lo, m = bounds[j], bounds[j + 1] - bounds[j]
        if m == 0:
            losses[j] = 0
            done += 1
            continue
        C = n_chunks(p, m)
        items = K * C
        T = 1 if forked_after_team else <int>min(<Py_ssize_t>p.threads, items)
        if T > 1 and ctrl.serial_left > 0:
            ctrl.serial_left -= 1
            T = 1
        if T == 1:
            ctrl.serial += 1
            for i in range(items):
                loss[i] = chunk_pass(p, i // C, i % C, C, m, lo, X, f, labels, t, t_cols,
                                     order, params, grads, slots, ws)
        else:
            ctrl.parallel += 1
            team_started = 1
            t_start = nn_clock_ns()
            for i in prange(items, schedule='dynamic', chunksize=1, num_threads=T):
                tid = threadid()
                t_chunk = nn_clock_ns()
                if test_delay_ns and tid != 0:
                    while nn_clock_ns() - t_chunk < test_delay_ns:
                        pass            # tests: a thread other than the caller's is late
                loss[i] = chunk_pass(p, i // C, i % C, C, m, lo, X, f, labels, t, t_cols,
                                     order, params, grads, slots, ws + tid * per_thread)
                t_done = nn_clock_ns()
                took[i] = t_done - t_chunk
            if late(T, items, took, nn_clock_ns() - t_start) and ctrl.parallel > 1:
                ctrl.late += 1
                ctrl.serial_left = ctrl.interval
                ctrl.interval = min(2 * ctrl.interval, <Py_ssize_t>MAX_BACKOFF)
            else:
                ctrl.interval = max(ctrl.interval // 2, <Py_ssize_t>MIN_BACKOFF)
        if C > 1:
            add_slots(p, C, grads, slots, T)
        J = 0
        for k in range(K):
            Jk = 0
            for c in range(C):
                Jk = Jk + loss[k * C + c]
            Jk = Jk / (2 * m) if p.out == IDENTITY_OUT else Jk / m
            J = J + (Jk + l2_term(grads + k * n_w, params + k * n_w, n_w, m, p.lam[k]))
        losses[j] = J
        if p.code == NO_RULE:
            done += 1
            continue
        if not isfinite(J):
            break
        update(p.code, params, grads, s0, s1, p.n_params, args + j * p.n_args, T)
        done += 1
    return done


cdef floating* state_pointer(object state, floating[::1] params, str rule) except NULL:
    """The data of an optimizer state array: writable, contiguous, params' dtype and length."""
    cdef floating[::1] view = state
    if view.shape[0] != params.shape[0] or view.shape[0] == 0:
        raise ValueError(f"{rule}'s state arrays must have params' {params.shape[0]} elements, "
                         f"got {view.shape[0]}")
    return &view[0]


cdef Py_ssize_t call(Plan plan, const floating[:, ::1] X, y, order_obj,
                     const long long[::1] bounds, Py_ssize_t start, floating[::1] params,
                     floating[::1] grads, list states, const double[:, ::1] args,
                     double[::1] losses) except -1:
    cdef const nn_plan* p = &plan.p
    cdef Py_ssize_t n = X.shape[0], f = X.shape[1], L = p.L, k_out = p.sz[p.L], i, j, lo, hi
    cdef Py_ssize_t n_batches = bounds.shape[0] - 1 - start, C, C_max = 1, m_max = 0
    cdef Py_ssize_t t_cols = 0, n_idx = n, n_slots, gathered
    cdef const long long[::1] labels_view
    cdef const floating[:, ::1] targets
    cdef const long long[::1] order_view
    cdef const long long* labels = NULL
    cdef const floating* t = NULL
    cdef const long long* order = NULL
    cdef floating* s[2]
    cdef size_t item = sizeof(floating), per_thread, need
    cdef char* ws
    cdef char* private = NULL
    cdef int T
    cdef nn_ctrl ctrl
    cdef double* extra
    cdef int64_t* took
    cdef Py_ssize_t done
    if item != plan.dtype.itemsize:
        raise TypeError(f"X must be {plan.dtype} (the plan's dtype), got "
                        f"{'float64' if item == 8 else 'float32'}")
    if f != p.sz[0]:
        raise ValueError(f"X must have {p.sz[0]} columns (the plan's sizes[0]), got {f}")
    if params.shape[0] != p.n_params or grads.shape[0] != p.n_params:
        raise ValueError(f"params and grads must have {p.n_params} elements, got "
                         f"{params.shape[0]} and {grads.shape[0]}")
    if p.out == SOFTMAX_OUT:
        labels_view = y
        if labels_view.shape[0] != n:
            raise ValueError(f"y has {labels_view.shape[0]} rows, X {n}")
        labels = &labels_view[0] if n else NULL
    else:
        targets = y
        if targets.shape[0] != n or targets.shape[1] != k_out:
            raise ValueError(f"y must be ({n}, {k_out}), got ({targets.shape[0]}, "
                             f"{targets.shape[1]})")
        t, t_cols = (&targets[0, 0] if n else NULL), k_out
    if order_obj is not None:
        order_view = order_obj
        n_idx = order_view.shape[0]
        order = &order_view[0] if n_idx else NULL
        for i in range(n_idx):
            if order[i] < 0 or order[i] >= n:
                raise ValueError(f"order must be in [0, {n}) (X's rows), got {order[i]}")
            if labels != NULL and (labels[order[i]] < 0 or labels[order[i]] >= k_out):
                raise ValueError(f"labels must be in [0, {k_out}), got {labels[order[i]]}")
    elif labels != NULL:
        for i in range(n):
            if labels[i] < 0 or labels[i] >= k_out:
                raise ValueError(f"labels must be in [0, {k_out}), got {labels[i]}")
    if start < 0 or n_batches < 0:
        raise ValueError(f"start must be in [0, {bounds.shape[0] - 1}], got {start}")
    if p.code == NO_RULE and n_batches > 1:
        raise ValueError(f"a plan without an optimizer rule runs one batch per call, got "
                         f"{n_batches}")
    if losses.shape[0] < n_batches:
        raise ValueError(f"losses needs a row per batch ({n_batches}), got {losses.shape[0]}")
    s[0] = s[1] = NULL
    if p.code != NO_RULE:
        if args is None or args.shape[0] < n_batches or args.shape[1] != p.n_args:
            raise ValueError(f"args must be ({n_batches}, {p.n_args}) for {plan.rule}")
        if len(states) != p.n_states:
            raise ValueError(f"{plan.rule} takes {p.n_states} state arrays, got {len(states)}")
        for i in range(p.n_states):
            s[i] = state_pointer(states[i], params, plan.rule)
    for j in range(start, start + n_batches):
        lo, hi = bounds[j], bounds[j + 1]
        if lo < 0 or hi < lo or hi > n_idx:
            raise ValueError(f"bounds must rise within [0, {n_idx}], got {lo}, {hi}")
        C = n_chunks(p, hi - lo)
        m_max, C_max = max(m_max, (hi - lo + C - 1) // C), max(C_max, C)
    if n_batches == 0 or m_max == 0:
        for j in range(n_batches):
            losses[j] = 0
        return n_batches
    T = <int>min(<Py_ssize_t>p.threads, p.K * C_max)
    gathered = (f + t_cols) if order != NULL else 0
    # one thread's workspace: labels, z, a, δ, gathered rows of X and the targets (64-aligned)
    per_thread = (m_max * sizeof(long long) + m_max * (3 * p.n_b + gathered) * item + 63) & ~63
    n_slots = p.K * (C_max - 1) * (p.n_w + p.n_b)
    need = T * per_thread + n_slots * item + p.K * C_max * (sizeof(double) + sizeof(int64_t))
    if plan.busy:                       # another Python thread is in a call of this plan
        private = <char*>malloc(need)
        if private == NULL:
            raise MemoryError()
        ws = private
    else:
        if plan.ws_cap < need:
            free(plan.ws)
            plan.ws = <char*>malloc(need)
            plan.ws_cap = need if plan.ws != NULL else 0
            if plan.ws == NULL:
                raise MemoryError()
            memset(plan.ws, 0, need)    # its pages now, not in the threads' first chunks
        ws = plan.ws
        plan.busy = 1
    ctrl = plan.p.ctrl                  # a private copy for a concurrent call
    extra = <double*>(ws + T * per_thread + n_slots * item)
    took = <int64_t*>(extra + p.K * C_max)
    try:
        with nogil:
            nn_blas_enter()
            done = run_plan(p, &X[0, 0], f, labels, t, t_cols, order, &bounds[start],
                            n_batches, &params[0], &grads[0], s[0], s[1],
                            &args[0, 0] if p.code != NO_RULE else NULL, &losses[0], ws,
                            per_thread, <floating*>(ws + T * per_thread), extra, took, &ctrl)
            nn_blas_leave()
    finally:
        if private != NULL:
            free(private)
        else:
            plan.p.ctrl = ctrl
            plan.busy = 0
    return done


def run(Plan plan not None, const floating[:, ::1] X, y, order, const long long[::1] bounds,
        Py_ssize_t start, floating[::1] params, floating[::1] grads, list states,
        const double[:, ::1] args, double[::1] losses):
    """Batches ``start``, ``start + 1``, ... of ``bounds`` with the ``plan``: batch j is the
    rows ``bounds[j]:bounds[j + 1]`` of ``order`` (int64 row indices of X, gathered chunk by
    chunk) or of X itself (``order`` None). ``y``: int64 labels (n,) for a softmax plan, else
    float targets (n, outputs) of X's dtype. ``params`` / ``grads``: the K models' flat
    parameters, all weights (K × n_w, model-major, each in ``MLP``'s layout) then all biases
    (K × n_b). With the plan's optimizer rule each batch is one step — gradients, then the
    update with the scalars ``args[j - start]`` (float64, a row per batch) and the rule's state
    arrays ``states`` — and a batch whose J is not finite ends the call unapplied; without one
    the call takes one batch (``args`` None, ``states`` []) and leaves its gradients in
    ``grads``. ``losses[j - start]`` gets batch j's Σ_k J_k. Returns the batches applied."""
    return call(plan, X, y, order, bounds, start, params, grads, states, args, losses)


def set_delta_gemm(int choice):
    """How the model pass computes δ_prev = δ Wᵀ: 1 TT on δᵀ, 0 TN, -1 the CPU's choice
    (``src/kernels/cpu.h``). For tests: ``nnfast._cython.step.set_delta_gemm``."""
    nn_set_delta_tt(choice)


def delta_gemm():
    """1 if the model pass computes δ_prev as a TT GEMM, 0 if as TN."""
    return nn_delta_tt()


# ---- The caller's output gradient: a chain's forward and backward apart ---------------------------

cdef enum:
    FEATURE_BLOCK = 128             # dW rows a thread computes at once in a chain's backward


cdef class Chain:
    """A chain of torch.nn.Linear layers in torch's weight layout (W (out, in), y = x Wᵀ + b),
    each followed by its activation, for ``nnfast.torch.fuse``: ``sizes`` (int64: input width,
    then each layer's), ``kinds`` (int32 activation codes, ``nnfast._kinds``, SOFTMAX too: row
    by row), ``slopes`` (float64, LeakyReLU's), ``threads`` (the most OpenMP threads a pass
    takes) and ``dtype``. ``forward`` keeps z and a of every layer in a workspace of
    ``workspace(m)`` values; ``backward`` takes the gradient of the output from the caller
    (autograd: any loss) and turns it into dW, db and dX (``chain_pass.pxd``).

    Threads: a batch's rows are cut into the fixed chunks of ``Plan.chunks`` (by shape); the
    forward and the δ of each chunk run on the team, then dW and db in blocks of FEATURE_BLOCK
    rows of each layer's dW (no sums across threads: every value is computed by one thread, the
    same way whatever the thread count). The GEMMs run on one BLAS thread. A pass that waited
    on a late thread backs the chain off to the calling thread as the engine's plans do
    (module docstring, "Contention").

    The data arguments are addresses (``tensor.data_ptr()``) of C-contiguous arrays of the
    chain's dtype, checked by the caller (``nnfast.torch``): x (m, sizes[0]); W[i]
    (sizes[i+1], sizes[i]); b[i] (sizes[i+1]) or 0 (no bias); ws: ``workspace(m)`` values;
    out (m, sizes[-1]); g like out; scratch: ``scratch(m)`` values; dW[i], db[i] like W[i],
    b[i] or 0 (not wanted); dx like x or 0."""
    cdef readonly object sizes, kinds, slopes, dtype
    cdef const long long[::1] sz
    cdef const int[::1] kd
    cdef const double[::1] sl
    cdef Py_ssize_t L, per_row, deltas
    cdef bint f64
    cdef nn_plan p                  # sizes and threads, for n_chunks; its thread controller

    def __init__(self, sizes, kinds, slopes, int threads, dtype):
        cdef Py_ssize_t i
        self.sz, self.kd, self.sl = sizes, kinds, slopes
        self.L = self.sz.shape[0] - 1
        if self.L < 1 or self.kd.shape[0] != self.L or self.sl.shape[0] != self.L:
            raise ValueError(f"sizes must name an input width and at least one layer, with a "
                             f"kind and a slope per layer, got {list(sizes)}, {list(kinds)}, "
                             f"{list(slopes)}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        for i in range(self.L + 1):
            if self.sz[i] < 1:
                raise ValueError(f"sizes must be positive, got {list(sizes)}")
        for i in range(self.L):
            if self.kd[i] not in (IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX):
                raise ValueError(f"kinds must be activation codes, got {list(kinds)}")
        self.dtype = __import__("numpy").dtype(dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.f64 = self.dtype.itemsize == 8
        self.sizes, self.kinds, self.slopes = sizes, kinds, slopes
        self.per_row = self.deltas = 0
        for i in range(self.L):
            self.deltas += self.sz[i + 1]
            self.p.n_w += self.sz[i] * self.sz[i + 1]
            self.p.n_b += self.sz[i + 1]
        self.per_row = 2 * self.deltas
        self.p.threads, self.p.K = threads, 1
        self.p.ctrl.interval = MIN_BACKOFF

    def workspace(self, Py_ssize_t m):
        """Values of the forward's workspace for m rows: z and a of every layer."""
        return m * self.per_row

    def scratch(self, Py_ssize_t m):
        """Values of the backward's scratch for m rows: δ of every layer."""
        return m * self.deltas

    def chunks(self, Py_ssize_t m):
        """The row chunks of a batch of m rows (``Plan.chunks``)."""
        return n_chunks(&self.p, m)

    def stats(self):
        """As ``Plan.stats``: passes run in parallel, on one thread, and late."""
        return {"parallel": self.p.ctrl.parallel, "serial": self.p.ctrl.serial,
                "late": self.p.ctrl.late}

    def forward(self, size_t x, Py_ssize_t m, const long long[::1] W, const long long[::1] b,
                size_t ws, size_t out):
        """z, a of every layer into ws; out = the last layer's a."""
        if m < 1 or W.shape[0] != self.L or b.shape[0] != self.L or not (x and ws and out):
            raise ValueError("forward needs m >= 1 rows and a weight and bias address per layer")
        with nogil:
            nn_blas_enter()
            if self.f64:
                chain_forward(self, <const double*>x, m, &W[0], &b[0], <double*>ws,
                              <double*>out)
            else:
                chain_forward(self, <const float*>x, m, &W[0], &b[0], <float*>ws,
                              <float*>out)
            nn_blas_leave()

    def backward(self, size_t x, Py_ssize_t m, const long long[::1] W, size_t ws, size_t g,
                 size_t scratch, const long long[::1] dW, const long long[::1] db, size_t dx):
        """dW, db (and dx) of the forward that filled ws, from g = dJ/d(out)."""
        if m < 1 or W.shape[0] != self.L or dW.shape[0] != self.L or db.shape[0] != self.L \
                or not (x and ws and g and scratch):
            raise ValueError("backward needs m >= 1 rows and a weight, dW and db address per "
                             "layer")
        with nogil:
            nn_blas_enter()
            if self.f64:
                chain_backward(self, <const double*>x, m, &W[0], <const double*>ws,
                               <const double*>g, <double*>scratch, &dW[0], &db[0],
                               <double*>dx)
            else:
                chain_backward(self, <const float*>x, m, &W[0], <const float*>ws,
                               <const float*>g, <float*>scratch, &dW[0], &db[0],
                               <float*>dx)
            nn_blas_leave()


cdef int chain_threads(Chain ch, Py_ssize_t items) noexcept nogil:
    """The threads of a chain pass over ``items`` pieces of work (1: on the calling thread)."""
    cdef int T = 1 if forked_after_team else <int>min(<Py_ssize_t>ch.p.threads, items)
    if T > 1 and ch.p.ctrl.serial_left > 0:
        ch.p.ctrl.serial_left -= 1
        T = 1
    if T == 1:
        ch.p.ctrl.serial += 1
    return T


cdef void chain_judge(Chain ch, int T, Py_ssize_t items, const int64_t* took,
                      int64_t elapsed) noexcept nogil:
    """The thread controller after a parallel chain pass (``run_plan``'s rule)."""
    global team_started
    team_started = 1
    ch.p.ctrl.parallel += 1
    if late(T, items, took, elapsed) and ch.p.ctrl.parallel > 1:
        ch.p.ctrl.late += 1
        ch.p.ctrl.serial_left = ch.p.ctrl.interval
        ch.p.ctrl.interval = min(2 * ch.p.ctrl.interval, <Py_ssize_t>MAX_BACKOFF)
    else:
        ch.p.ctrl.interval = max(ch.p.ctrl.interval // 2, <Py_ssize_t>MIN_BACKOFF)


cdef void chain_forward(Chain ch, const floating* x, Py_ssize_t m, const long long* W,
                        const long long* b, floating* ws, floating* out) noexcept nogil:
    cdef Py_ssize_t C = n_chunks(&ch.p, m), c
    cdef int T = chain_threads(ch, C)
    cdef int64_t took[MAX_CHUNKS]
    cdef int64_t t_start, t0
    if T == 1:
        for c in range(C):
            chain_forward_rows(ch.L, &ch.sz[0], &ch.kd[0], &ch.sl[0], m, c * m // C,
                               (c + 1) * m // C - c * m // C, x, W, b, ws, out)
        return
    t_start = nn_clock_ns()
    for c in prange(C, schedule='dynamic', chunksize=1, num_threads=T):
        t0 = nn_clock_ns()
        chain_forward_rows(ch.L, &ch.sz[0], &ch.kd[0], &ch.sl[0], m, c * m // C,
                           (c + 1) * m // C - c * m // C, x, W, b, ws, out)
        took[c] = nn_clock_ns() - t0
    chain_judge(ch, T, C, took, nn_clock_ns() - t_start)


cdef void chain_backward(Chain ch, const floating* x, Py_ssize_t m, const long long* W,
                         const floating* ws, const floating* g, floating* D,
                         const long long* dW, const long long* db,
                         floating* dx) noexcept nogil:
    cdef Py_ssize_t L = ch.L, C = n_chunks(&ch.p, m), c, i, lowest = L, items = 0, it, nb
    cdef const long long* sz = &ch.sz[0]
    cdef int T
    cdef int64_t took[MAX_CHUNKS]
    cdef int64_t t_start, t0
    for i in range(L):
        if dW[i] or db[i]:
            lowest = i
            break
    if dx != NULL:
        lowest = 0
    if lowest == L:
        return
    # δ of every layer, row chunk by row chunk
    T = chain_threads(ch, C)
    if T == 1:
        for c in range(C):
            chain_delta_rows(L, sz, &ch.kd[0], &ch.sl[0], m, c * m // C,
                             (c + 1) * m // C - c * m // C, lowest, W, ws, g, D, dx)
    else:
        t_start = nn_clock_ns()
        for c in prange(C, schedule='dynamic', chunksize=1, num_threads=T):
            t0 = nn_clock_ns()
            chain_delta_rows(L, sz, &ch.kd[0], &ch.sl[0], m, c * m // C,
                             (c + 1) * m // C - c * m // C, lowest, W, ws, g, D, dx)
            took[c] = nn_clock_ns() - t0
        chain_judge(ch, T, C, took, nn_clock_ns() - t_start)
    # dW, db: with one chunk, one GEMM per layer; else blocks of FEATURE_BLOCK rows of dW
    for i in range(L):
        nb = 1 if C == 1 else max(<Py_ssize_t>1, sz[i + 1] // FEATURE_BLOCK)
        items += nb if (dW[i] or db[i]) else 0
    T = 1 if C == 1 else chain_threads(ch, items)
    if T == 1:
        for it in range(items):
            weight_block(sz, L, C, m, it, x, ws, D, dW, db)
    else:
        for it in prange(items, schedule='dynamic', chunksize=1, num_threads=T):
            weight_block(sz, L, C, m, it, x, ws, D, dW, db)


cdef void weight_block(const long long* sz, Py_ssize_t L, Py_ssize_t C, Py_ssize_t m,
                       Py_ssize_t it, const floating* x, const floating* ws,
                       const floating* D, const long long* dW,
                       const long long* db) noexcept nogil:
    """Work item ``it`` of a chain backward's dW, db: a block of one layer's dW rows."""
    cdef Py_ssize_t i, nb, fi, fo, zo = 0, do = 0, k = it
    for i in range(L):
        fi, fo = sz[i], sz[i + 1]
        nb = 1 if C == 1 else max(<Py_ssize_t>1, fo // FEATURE_BLOCK)
        if dW[i] or db[i]:
            if k < nb:
                chain_weight_grads(m, fi, fo, k * fo // nb, (k + 1) * fo // nb,
                                   x if i == 0 else ws + zo - m * fi, D + do,
                                   <floating*>dW[i], <floating*>db[i])
                return
            k -= nb
        zo += 2 * m * fo
        do += m * fo


def update_many(str rule, bint f64, const long long[::1] params, const long long[::1] grads,
                const long long[::1] s0, const long long[::1] s1, const long long[::1] sizes,
                const double[::1] args, int threads):
    """One optimizer step (``rule``: a ``RULES`` name, with its scalars ``args``) on each of
    several tensors: params[i], grads[i] and the rule's states s0[i], s1[i] are the addresses of
    sizes[i] contiguous values each (float64 if ``f64``, else float32), checked by the caller
    (``nnfast.torch``'s optimizers: a model's tensors in one call, not a call per tensor)."""
    cdef int code, n_args, n_states
    cdef Py_ssize_t i, n = sizes.shape[0]
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    code, n_args, n_states = RULES[rule]
    if args.shape[0] != n_args or params.shape[0] != n or grads.shape[0] != n or \
            (n_states > 0 and s0.shape[0] != n) or (n_states > 1 and s1.shape[0] != n):
        raise ValueError(f"{rule} takes {n_args} scalars and an address per tensor in each "
                         f"array")
    cdef Py_ssize_t small = 0
    for i in range(n):
        if sizes[i] < PARALLEL_MIN:
            small += sizes[i]
    with nogil:
        for i in range(n):         # large tensors, each over the threads in fixed blocks
            if sizes[i] >= PARALLEL_MIN:
                update_one(code, f64, n_states, params, grads, s0, s1, sizes, &args[0], i,
                           threads)
        # the others, each on one thread: shared out among the threads when together they are
        # as much work as a large one (60 tensors of 1.7e4: 1.3 ms serial, torch 0.8 ms)
        if threads > 1 and small >= PARALLEL_MIN:
            for i in prange(n, schedule='dynamic', chunksize=1, num_threads=threads):
                if sizes[i] < PARALLEL_MIN:
                    update_one(code, f64, n_states, params, grads, s0, s1, sizes, &args[0],
                               i, 1)
        else:
            for i in range(n):
                if sizes[i] < PARALLEL_MIN:
                    update_one(code, f64, n_states, params, grads, s0, s1, sizes, &args[0],
                               i, 1)


cdef inline void update_one(int code, bint f64, int n_states, const long long[::1] params,
                            const long long[::1] grads, const long long[::1] s0,
                            const long long[::1] s1, const long long[::1] sizes,
                            const double* args, Py_ssize_t i, int threads) noexcept nogil:
    """``update_many``'s step of tensor ``i`` (none if it is empty)."""
    if sizes[i] < 1:
        return
    if f64:
        update(code, <double*>params[i], <const double*>grads[i],
               <double*>(s0[i] if n_states > 0 else 0),
               <double*>(s1[i] if n_states > 1 else 0), sizes[i], args, threads)
    else:
        update(code, <float*>params[i], <const float*>grads[i],
               <float*>(s0[i] if n_states > 0 else 0),
               <float*>(s1[i] if n_states > 1 else 0), sizes[i], args, threads)
