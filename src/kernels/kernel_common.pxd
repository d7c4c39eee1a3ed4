# Shared by every kernel module (cimported, compiled into each; nothing is imported at run time).
#
# - fastmath.h: vectorizable exp/tanh/sigmoid (see its header comment); `fexp` picks the float or
#   double exp for the fused type (`flog`, `flog1p`, `fsqrt`: libm).
# - sigmoid/tanh/softmax-exp loops live in fastmath.h (compiled for AVX2 and baseline, picked at
#   run time); the rest of the per-element math is here or in the modules.
# - Elementwise blocks: `unary_block(op, ...)` applies an activation (op = a code from
#   nnfast._constants) or its derivative (op = GRAD + code) to a contiguous block;
#   `grad_mul_block` multiplies a block by g'(src) (the δ_prev epilogue); `softmax_rows` works row
#   by row. Each loop is a plain serial loop over raw pointers that gcc vectorizes (checked with
#   -fopt-info-vec).
# - Parallel loops: arrays of fewer than PARALLEL_MIN elements run serially; larger ones are cut
#   into fixed BLOCK-element blocks run by prange(schedule='static', num_threads=n_threads), the
#   thread count a kernel argument (nnfast._backend passes it). Blocks do not depend on the thread
#   count, and reductions add their per-block partial sums in block order, so results are the
#   same for any thread count.
# - The constants below are nnfast/_constants.py's (the source; tests/test_constants.py checks
#   every name of these enums against it).
from cython cimport floating

cdef extern from "fastmath.h" nogil:
    float nn_expf(float x)
    double nn_exp(double x)
    # whole loops, with run-time AVX2 dispatch (see fastmath.h)
    void nn_sigmoid_loop_f32(const float* x, float* out, Py_ssize_t n)
    void nn_sigmoid_loop_f64(const double* x, double* out, Py_ssize_t n)
    void nn_tanh_loop_f32(const float* x, float* out, Py_ssize_t n)
    void nn_tanh_loop_f64(const double* x, double* out, Py_ssize_t n)
    void nn_exp_shift_loop_f32(const float* x, float shift, float* out, Py_ssize_t n)
    void nn_exp_shift_loop_f64(const double* x, double shift, double* out, Py_ssize_t n)

cdef extern from "parallel.h" nogil:
    const int NN_HAVE_OPENMP

cdef extern from "<math.h>" nogil:
    float logf(float x)
    double log(double x)
    float log1pf(float x)
    double log1p(double x)
    float sqrtf(float x)
    double sqrt(double x)

# nnfast/_constants.py: activation codes, GRAD, PARALLEL_MIN, BLOCK.
cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5
    GRAD = 16          # GRAD + code: the derivative, from a (sigmoid, tanh) or from z (relu, leaky)

cdef enum:
    PARALLEL_MIN = 131072
    BLOCK = 16384


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return nn_expf(x)
    else:
        return nn_exp(x)


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating fsqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline Py_ssize_t n_blocks(Py_ssize_t n) noexcept nogil:
    """1 below PARALLEL_MIN (run serially), else the number of BLOCK-sized blocks."""
    return 1 if n < PARALLEL_MIN else (n + BLOCK - 1) // BLOCK


cdef inline Py_ssize_t block_len(Py_ssize_t n, Py_ssize_t b) noexcept nogil:
    return BLOCK if (b + 1) * BLOCK <= n else n - b * BLOCK


cdef inline void unary_block(int op, floating slope, const floating* x, floating* out,
                             Py_ssize_t n) noexcept nogil:
    """out[i] = g(x[i]) or g'(x[i]) for i < n; out may be x."""
    cdef Py_ssize_t i
    if op == IDENTITY:
        for i in range(n):
            out[i] = x[i]
    elif op == SIGMOID:
        if floating is float:
            nn_sigmoid_loop_f32(x, out, n)
        else:
            nn_sigmoid_loop_f64(x, out, n)
    elif op == TANH:
        if floating is float:
            nn_tanh_loop_f32(x, out, n)
        else:
            nn_tanh_loop_f64(x, out, n)
    elif op == RELU:
        for i in range(n):
            out[i] = 0 if x[i] < 0 else x[i]     # NaN passes through, as in np.maximum
    elif op == LEAKY_RELU:
        for i in range(n):
            out[i] = x[i] * (1 if x[i] >= 0 else slope)
    elif op == GRAD + SIGMOID:       # <floating>1: a bare 1 is the C double 1.0 here, which
        for i in range(n):            # made float32's loop double arithmetic (and 2x slower)
            out[i] = x[i] * (<floating>1 - x[i])
    elif op == GRAD + TANH:
        for i in range(n):
            out[i] = <floating>1 - x[i] * x[i]
    elif op == GRAD + RELU:
        for i in range(n):
            out[i] = 1 if x[i] >= 0 else 0
    elif op == GRAD + LEAKY_RELU:
        for i in range(n):
            out[i] = 1 if x[i] >= 0 else slope


cdef inline void grad_mul_block(int kind, floating slope, const floating* src, floating* out,
                                Py_ssize_t n) noexcept nogil:
    """out[i] *= g'(src[i]) for the activation `kind` (IDENTITY: nothing to do)."""
    cdef Py_ssize_t i
    if kind == SIGMOID:
        for i in range(n):
            out[i] = out[i] * (src[i] * (1 - src[i]))
    elif kind == TANH:
        for i in range(n):
            out[i] = out[i] * (1 - src[i] * src[i])
    elif kind == RELU:
        for i in range(n):
            out[i] = out[i] * (1 if src[i] >= 0 else 0)
    elif kind == LEAKY_RELU:
        for i in range(n):
            out[i] = out[i] * (1 if src[i] >= 0 else slope)


cdef inline void softmax_rows(const floating* x, floating* out, Py_ssize_t rows,
                              Py_ssize_t k) noexcept nogil:
    """Row-wise softmax of a (rows, k) block; out may be x. Row max subtracted first."""
    cdef Py_ssize_t r, j
    cdef floating mx, s
    cdef const floating* xr
    cdef floating* outr
    for r in range(rows):
        xr = x + r * k
        outr = out + r * k
        mx = xr[0]
        for j in range(1, k):
            mx = xr[j] if xr[j] > mx else mx
        if floating is float:
            nn_exp_shift_loop_f32(xr, mx, outr, k)
        else:
            nn_exp_shift_loop_f64(xr, mx, outr, k)
        s = 0
        for j in range(k):                   # apart from the exp loop, which then vectorizes
            s = s + outr[j]
        for j in range(k):
            outr[j] = outr[j] / s
