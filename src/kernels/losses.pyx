"""Losses fused with the output delta (Cython backend of nnfast._reference.losses).

Design: each loss is one pass per row (softmax cross-entropy: max, exp, normalize) or per element
that writes dJ/dlogits into `dout` and adds the loss terms in double precision. Rows (or elements)
are cut into fixed blocks; above PARALLEL_MIN elements the blocks run in a prange, each writing
its partial loss into its own slot, and the slots are added in block order afterwards — so the
loss does not depend on the thread count. `dout` may be the logits array itself (and for the
elementwise losses the targets array): every element is read before it is written.
exp is fastmath.h's vectorizable one; log/log1p are libm (one log per row for softmax).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from kernel_common cimport BLOCK, PARALLEL_MIN, fexp, flog, n_blocks
from loss_terms cimport BCE, MSE, SUMSQ, loss_block, softmax_xent_rows


cdef inline Py_ssize_t rows_per_block(Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """All m rows in one block below PARALLEL_MIN elements, else ~BLOCK elements per block."""
    if m * k < PARALLEL_MIN:
        return m if m > 0 else 1
    return max(1, BLOCK // max(k, 1))


def softmax_cross_entropy(const floating[:, ::1] logits,    # IN
                          const long long[::1] labels,      # IN, in [0, K)
                          floating[:, ::1] dout,            # OUT (may be logits)
                          int n_threads=1):
    """J = -1/m Σ log softmax(z_i)[y_i]; dout = (softmax(z) - onehot(y)) / m."""
    cdef Py_ssize_t m = logits.shape[0], k = logits.shape[1]
    cdef Py_ssize_t rows = rows_per_block(m, k), nb = (m + rows - 1) // rows, b
    cdef floating inv_m = <floating>(1.0 / m)
    cdef double total = 0
    cdef const floating* x = &logits[0, 0]
    cdef const long long* y = &labels[0]
    cdef floating* d = &dout[0, 0]
    cdef double* part
    if nb == 1:
        with nogil:
            total = softmax_xent_rows(x, y, d, m, k, inv_m)
        return total / m
    part = <double*>malloc(nb * sizeof(double))
    if part == NULL:
        raise MemoryError()
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        part[b] = softmax_xent_rows(x + b * rows * k, y + b * rows, d + b * rows * k,
                                    min(rows, m - b * rows), k, inv_m)
    for b in range(nb):
        total += part[b]
    free(part)
    return total / m


cdef double softmax_xent_probs_rows(const floating* x, const floating* t, floating* d,
                                    Py_ssize_t rows, Py_ssize_t k,
                                    floating inv_m) noexcept nogil:
    """Rows with target distributions t: δ = (softmax·Σt - t)/m; returns Σ -t·log softmax."""
    cdef Py_ssize_t r, j
    cdef floating mx, s, tsum, tx, log_norm
    cdef double loss = 0
    for r in range(rows):
        mx = x[0]
        tsum = 0
        tx = 0
        for j in range(1, k):
            mx = x[j] if x[j] > mx else mx
        s = 0
        for j in range(k):
            s = s + fexp(x[j] - mx)
            tsum = tsum + t[j]
            tx = tx + t[j] * (x[j] - mx)
        log_norm = flog(s)
        loss += log_norm * tsum - tx
        for j in range(k):              # d may alias x or t: element j read, then written
            d[j] = (fexp(x[j] - mx - log_norm) * tsum - t[j]) * inv_m
        x += k
        t += k
        d += k
    return loss


def softmax_cross_entropy_probs(const floating[:, ::1] logits,    # IN
                                const floating[:, ::1] targets,   # IN
                                floating[:, ::1] dout,            # OUT (may be logits/targets)
                                int n_threads=1):
    """Softmax cross-entropy against target rows (one-hot or soft)."""
    cdef Py_ssize_t m = logits.shape[0], k = logits.shape[1]
    cdef Py_ssize_t rows = rows_per_block(m, k), nb = (m + rows - 1) // rows, b
    cdef floating inv_m = <floating>(1.0 / m)
    cdef double total = 0
    cdef const floating* x = &logits[0, 0]
    cdef const floating* t = &targets[0, 0]
    cdef floating* d = &dout[0, 0]
    cdef double* part
    if nb == 1:
        with nogil:
            total = softmax_xent_probs_rows(x, t, d, m, k, inv_m)
        return total / m
    part = <double*>malloc(nb * sizeof(double))
    if part == NULL:
        raise MemoryError()
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        part[b] = softmax_xent_probs_rows(x + b * rows * k, t + b * rows * k, d + b * rows * k,
                                          min(rows, m - b * rows), k, inv_m)
    for b in range(nb):
        total += part[b]
    free(part)
    return total / m


# ---- elementwise losses: loss_terms.pxd's block function, one shared driver ----------------------

cdef double run_loss(int op, const floating* x, const floating* t, floating* d, floating c,
                     Py_ssize_t n, int n_threads) except? -1:
    cdef Py_ssize_t nb = n_blocks(n), b
    cdef double total = 0
    cdef double* part
    if nb == 1:
        with nogil:
            total = loss_block(op, x, t, d, c, n)
        return total
    part = <double*>malloc(nb * sizeof(double))
    if part == NULL:
        raise MemoryError()
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        part[b] = loss_block(op, x + b * BLOCK, t + b * BLOCK, d + b * BLOCK, c,
                             min(<Py_ssize_t>BLOCK, n - b * BLOCK))
    for b in range(nb):
        total += part[b]
    free(part)
    return total


def sigmoid_binary_cross_entropy(const floating[:, ::1] logits,    # IN
                                 const floating[:, ::1] targets,   # IN
                                 floating[:, ::1] dout,            # OUT (may alias an input)
                                 int n_threads=1):
    """J = -1/m Σ [y log σ(z) + (1-y) log(1-σ(z))]; dout = (σ(z) - y)/m."""
    cdef Py_ssize_t m = logits.shape[0]
    if logits.shape[1] == 0:
        return 0.0
    return run_loss(BCE, &logits[0, 0], &targets[0, 0], &dout[0, 0], <floating>(1.0 / m),
                    m * logits.shape[1], n_threads) / m


def mean_squared_error(const floating[:, ::1] pred,      # IN
                       const floating[:, ::1] targets,   # IN
                       floating[:, ::1] dout,            # OUT (may alias an input)
                       int n_threads=1):
    """The seed's J = 1/(2m) Σ (h - y)^2; dout = (h - y)/m."""
    cdef Py_ssize_t m = pred.shape[0]
    if pred.shape[1] == 0:
        return 0.0
    return run_loss(MSE, &pred[0, 0], &targets[0, 0], &dout[0, 0], <floating>(1.0 / m),
                    m * pred.shape[1], n_threads) / (2 * m)


def sum_squares_scaled(const floating[::1] w,       # IN
                       double scale,
                       floating[::1] grad_out,      # OUT
                       int n_threads=1):
    """Returns Σ w^2 (in double) and writes grad_out = scale * w."""
    if w.shape[0] == 0:
        return 0.0
    return run_loss(SUMSQ, &w[0], &w[0], &grad_out[0], <floating>scale, w.shape[0], n_threads)
