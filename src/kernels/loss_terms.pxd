# The loss terms with their output delta, shared by losses.pyx (whole-array losses, blocked and
# parallel) and grid.pyx (a λ grid's step): rows of softmax cross-entropy, and the elementwise
# terms (BCE, MSE, SUMSQ) of a contiguous block. Σ in double; d may be x (every element is read
# before it is written).
from cython cimport floating

from kernel_common cimport fexp, flog, flog1p, nn_exp_shift_loop_f32, nn_exp_shift_loop_f64


cdef inline double softmax_xent_rows(const floating* x, const long long* labels, floating* d,
                                     Py_ssize_t rows, Py_ssize_t k, floating inv_m) noexcept nogil:
    """Rows of softmax cross-entropy: writes δ = (softmax - onehot)/m, returns Σ row losses."""
    cdef Py_ssize_t r, j, y
    cdef floating mx, s, xy
    cdef double loss = 0
    for r in range(rows):
        y = labels[r]
        xy = x[y]                       # read before d (maybe x itself) is written
        mx = x[0]
        for j in range(1, k):
            mx = x[j] if x[j] > mx else mx
        if floating is float:
            nn_exp_shift_loop_f32(x, mx, d, k)
        else:
            nn_exp_shift_loop_f64(x, mx, d, k)
        s = 0
        for j in range(k):
            s = s + d[j]
        loss += flog(s) - (xy - mx)
        for j in range(k):
            d[j] = d[j] / s * inv_m
        d[y] = d[y] - inv_m
        x += k
        d += k
    return loss


cdef enum:
    BCE = 0
    MSE = 1
    SUMSQ = 2


cdef inline double loss_block(int op, const floating* x, const floating* t, floating* d, floating c,
                              Py_ssize_t n) noexcept nogil:
    """Σ loss terms over n elements, writing the gradient into d (c = 1/m, or the L2 scale)."""
    cdef Py_ssize_t i
    cdef floating z, e, s, diff
    cdef double acc = 0
    if op == BCE:
        for i in range(n):
            z = x[i]
            e = fexp(-z if z >= 0 else z)          # e^{-|z|}
            # -[y log σ(z) + (1-y) log(1-σ(z))] = max(z, 0) - z y + log(1 + e^{-|z|})
            acc += (z if z > 0 else 0) - z * t[i] + flog1p(e)
            s = e / (1 + e)                          # σ(-|z|)
            # σ(z) - y without cancelling 1 - σ(|z|) (the reference loses ~1 ulp of 1 there)
            d[i] = ((1 - t[i]) - s if z >= 0 else s - t[i]) * c
    elif op == MSE:
        for i in range(n):
            diff = x[i] - t[i]
            acc += diff * diff
            d[i] = diff * c
    else:
        for i in range(n):
            acc += <double>x[i] * <double>x[i]
            d[i] = x[i] * c
    return acc
