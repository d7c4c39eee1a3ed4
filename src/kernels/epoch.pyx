"""An epoch's mini-batch steps in one call: for each batch, its rows gathered from the training
arrays, ``grid.pyx``'s model step (forward, loss, backward, L2 term: ``model_pass.pxd``) and the
optimizer's fused update (``optim_apply.pxd``, the arithmetic of ``optim.pyx``'s kernels) —
without returning to Python between batches. ``nnfast._cython.step`` runs it from ``fit``'s and
the scikit-learn front's epochs (``training.run_epoch``) for networks the one-call kernel serves
and batches not worth two threads; the results are those of the batch-by-batch loop (gather,
``grid``'s kernel, the optimizer's ``step_flat`` with the Cython kernel) bit for bit.

Why: on a small network the step is short and Python's part of it is not. Measured (64-128-64-10,
batch 64, float32, Adam, one BLAS thread, 2-core Zen 4): per batch 69 µs in the grid kernel and 7
µs in Adam, 85 µs per batch in the Python loop (gather, dispatch, the optimizer's bookkeeping),
79 µs with this kernel; ``bench/bench_step.py``'s ``epochs-digits``: five epochs 9.0 -> 7.9 ms.
The caller bounds a call's work (``step.CALL_WORK``, ~0.1 s) so that Ctrl-C is seen between
calls: this loop runs without the GIL and cannot check for signals.

The optimizer's scalars of every step (learning rate, bias corrections, ...) come from the
caller as rows of ``args`` (``nnfast._rules``' ``kernel_args`` of that step, in order), so the
rules stay in one place. A batch whose J is not finite is not applied: the call returns the
batches applied before it, and the caller reruns that batch its own way (and raises).
"""
from cython cimport floating
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from model_pass cimport (IDENTITY_OUT, SIGMOID_OUT, SOFTMAX_OUT, count_sizes, l2_term,
                        nn_set_delta_tt, rows_pass)
from optim_apply cimport adam_apply, momentum_apply, rmsprop_apply, sgd_apply

cdef enum:
    SGD_RULE = 0
    MOMENTUM_RULE = 1
    RMSPROP_RULE = 2
    ADAM_RULE = 3

#: The optimizer kernels this module runs (``nnfast._rules``' ``kernel``): their code here and
#: the number of scalars each takes.
RULES = {"sgd_update": (SGD_RULE, 2, 0), "momentum_update": (MOMENTUM_RULE, 6, 1),
         "rmsprop_update": (RMSPROP_RULE, 5, 1), "adam_update": (ADAM_RULE, 9, 2)}
OUTPUTS = {"softmax": SOFTMAX_OUT, "sigmoid": SIGMOID_OUT, "identity": IDENTITY_OUT}


cdef void update(int rule, floating* p, const floating* g, floating* s0, floating* s1,
                 Py_ssize_t n, const double* a) noexcept nogil:
    """One optimizer step with the scalars ``a`` (``kernel_args``; flags as 0/1)."""
    if rule == SGD_RULE:
        sgd_apply(p, g, n, a[0], a[1], 1)
    elif rule == MOMENTUM_RULE:
        momentum_apply(p, g, s0, n, a[0], a[1], a[2], a[3], a[4] != 0, a[5] != 0, 1)
    elif rule == RMSPROP_RULE:
        rmsprop_apply(p, g, s0, n, a[0], a[1], a[2], a[3], a[4] != 0, 1)
    else:
        adam_apply(p, g, s0, s1, n, a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7],
                   a[8] != 0, 1)


cdef Py_ssize_t run(int output, const floating[:, ::1] X, const long long* labels,
                    const floating* t, Py_ssize_t t_cols, const long long[::1] order,
                    const long long[::1] bounds, Py_ssize_t start, const long long[::1] sizes,
                    floating[::1] params, floating[::1] grads, int kind, double slope,
                    double lam, int rule, floating* s0, floating* s1,
                    const double[:, ::1] args, double[::1] losses) except -1:
    cdef Py_ssize_t L = sizes.shape[0] - 1, n = X.shape[0], f = X.shape[1], i, j, r, c
    cdef Py_ssize_t n_w = 0, n_b = 0, m, m_max = 0, lo, hi, done = 0
    cdef Py_ssize_t n_batches = bounds.shape[0] - 1 - start
    cdef long long k
    cdef floating* buf
    cdef floating *z, *a, *d, *xg, *tg
    cdef long long* lg
    cdef double J
    count_sizes(sizes, f, 0, &n_w, &n_b)
    if params.shape[0] != n_w + n_b or grads.shape[0] != n_w + n_b:
        raise ValueError(f"params and grads must have {n_w + n_b} elements, got "
                         f"{params.shape[0]} and {grads.shape[0]}")
    if t != NULL and t_cols != sizes[L]:
        raise ValueError(f"y must have {sizes[L]} columns, got {t_cols}")
    if start < 0 or n_batches < 0:
        raise ValueError(f"start must be in [0, {bounds.shape[0] - 1}], got {start}")
    if args.shape[0] < n_batches or losses.shape[0] < n_batches:
        raise ValueError(f"args and losses need a row per batch ({n_batches}), got "
                         f"{args.shape[0]} and {losses.shape[0]}")
    for j in range(start, start + n_batches):
        lo, hi = bounds[j], bounds[j + 1]
        if lo < 0 or hi < lo or hi > order.shape[0]:
            raise ValueError(f"bounds must rise within [0, {order.shape[0]}], got {lo}, {hi}")
        m_max = max(m_max, hi - lo)
    for i in range(order.shape[0]):
        if order[i] < 0 or order[i] >= n:
            raise ValueError(f"order must be in [0, {n}) (X's rows), got {order[i]}")
        if labels != NULL and (labels[order[i]] < 0 or labels[order[i]] >= sizes[L]):
            raise ValueError(f"labels must be in [0, {sizes[L]}), got {labels[order[i]]}")
    if n_batches == 0 or m_max == 0:
        return 0
    # z, a, δ (m_max · n_b each), the gathered rows of X and of the targets, then the labels
    buf = <floating*>malloc(sizeof(floating) * m_max * (3 * n_b + f + t_cols)
                            + sizeof(long long) * m_max)
    if buf == NULL:
        raise MemoryError()
    z, a, d = buf, buf + m_max * n_b, buf + 2 * m_max * n_b
    xg = buf + 3 * m_max * n_b
    tg = xg + m_max * f
    lg = <long long*>(tg + m_max * t_cols)
    try:
        with nogil:
            for j in range(n_batches):
                lo, hi = bounds[start + j], bounds[start + j + 1]
                m = hi - lo
                if m == 0:
                    losses[j] = 0
                    done += 1
                    continue
                for r in range(m):
                    k = order[lo + r]
                    memcpy(xg + r * f, &X[k, 0], sizeof(floating) * f)
                    if labels != NULL:
                        lg[r] = labels[k]
                    else:
                        for c in range(t_cols):
                            tg[r * t_cols + c] = t[k * t_cols + c]
                J = rows_pass(output, xg, lg, tg, &sizes[0], L, m, <floating>(1.0 / m),
                              &params[0], &params[n_w], &grads[0], &grads[n_w], z, a, d, kind,
                              <floating>slope)
                J = J / (2 * m) if output == IDENTITY_OUT else J / m
                J = J + l2_term(&grads[0], &params[0], n_w, m, lam)
                losses[j] = J
                if not isfinite(J):
                    break
                update(rule, &params[0], &grads[0], s0, s1, n_w + n_b, &args[j, 0])
                done += 1
    finally:
        free(buf)
    return done


cdef floating* state_pointer(object state, floating[::1] params, str rule) except NULL:
    """The data of an optimizer state array: writable, contiguous, params' dtype and length."""
    cdef floating[::1] view = state
    if view.shape[0] != params.shape[0] or view.shape[0] == 0:
        raise ValueError(f"{rule}'s state arrays must have params' {params.shape[0]} elements, "
                         f"got {view.shape[0]}")
    return &view[0]


def run_batches(str output, const floating[:, ::1] X, y, const long long[::1] order,
                const long long[::1] bounds, Py_ssize_t start, const long long[::1] sizes,
                floating[::1] params, floating[::1] grads, int kind, double slope, double lam,
                str rule, list states, const double[:, ::1] args, double[::1] losses):
    """Batches ``start``, ``start + 1``, ... of an epoch: batch j is X's rows
    ``order[bounds[j]:bounds[j + 1]]`` (and those of ``y``: int64 labels for ``output``
    "softmax", else float targets of X's dtype, (rows, outputs)); each is one step of the
    network ``sizes`` whose flat ``params`` (weights, then biases: ``MLP``'s layout) and
    ``grads`` it updates — forward, loss, backward, L2 term ``lam``, then the optimizer ``rule``
    (an ``nnfast._rules`` kernel name) with the scalars ``args[j - start]`` and its state
    arrays ``states``. Returns the batches applied; ``losses[j - start]`` is batch j's J. A
    batch whose J is not finite is left unapplied and ends the call (its J is in losses)."""
    cdef const long long[::1] labels
    cdef const floating[:, ::1] targets
    cdef floating* s[2]
    cdef int code, n_args, n_states, out
    cdef Py_ssize_t i
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {output!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    out = OUTPUTS[output]
    code, n_args, n_states = RULES[rule]
    if args.shape[1] != n_args:
        raise ValueError(f"{rule} takes {n_args} scalars per step, args has {args.shape[1]}")
    if len(states) != n_states:
        raise ValueError(f"{rule} takes {n_states} state arrays, got {len(states)}")
    s[0] = s[1] = NULL
    for i in range(n_states):
        s[i] = state_pointer(states[i], params, rule)
    if out == SOFTMAX_OUT:
        labels = y
        if labels.shape[0] != X.shape[0]:
            raise ValueError(f"y has {labels.shape[0]} rows, X {X.shape[0]}")
        return run(out, X, &labels[0] if labels.shape[0] else NULL, <floating*>NULL, 0, order,
                   bounds, start, sizes, params, grads, kind, slope, lam, code, s[0], s[1],
                   args, losses)
    targets = y
    if targets.shape[0] != X.shape[0]:
        raise ValueError(f"y has {targets.shape[0]} rows, X {X.shape[0]}")
    return run(out, X, <long long*>NULL, &targets[0, 0] if targets.shape[0] else NULL,
               targets.shape[1], order, bounds, start, sizes, params, grads, kind, slope, lam,
               code, s[0], s[1], args, losses)


def set_delta_gemm(int choice):
    """How this module's model pass computes δ_prev = δ Wᵀ: 1 TT on δᵀ, 0 TN, -1 the CPU's
    choice (``src/kernels/cpu.h``). For tests: ``nnfast._cython.step.set_delta_gemm``."""
    nn_set_delta_tt(choice)
