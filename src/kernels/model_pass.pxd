# One model's pass over rows of a mini-batch — forward (GEMM, + b, g), the loss with its output
# delta, backward (dW = a_prevᵀ δ, db = Σ δ, δ_prev = δ Wᵀ .* g') — and the L2 term, for the
# network-step engine (engine.pyx: each model of a plan on each row chunk of a batch), with the
# check of a network's sizes. Buffers are in MLP's layout (nnfast._numba.grid's docstring).
from cython cimport floating

from blas cimport gemm
from kernel_common cimport IDENTITY, RELU, SIGMOID, TANH, grad_mul_block, unary_block
from loss_terms cimport BCE, MSE, loss_block, softmax_xent_rows

cdef extern from "cpu.h" nogil:
    int nn_delta_tt()
    void nn_set_delta_tt(int c)

cdef extern from "l2_loops.h" nogil:
    double nn_l2_loop_f32(float* dW, const float* W, Py_ssize_t n, float s)
    double nn_l2_loop_f64(double* dW, const double* W, Py_ssize_t n, double s)

cdef enum:
    SOFTMAX_OUT = 0
    SIGMOID_OUT = 1
    IDENTITY_OUT = 2


cdef inline double l2_term(floating* dW, const floating* W, Py_ssize_t n_w, Py_ssize_t m,
                           double lam) noexcept nogil:
    """The L2 term of a batch of m rows: dW += λ/m · W; returns λ/(2m) Σ W² (0 for λ = 0).
    Σ W² is taken in double over eight interleaved partial sums: one running sum is a chain of
    dependent adds that strict IEEE order keeps serial (measured: 15 µs of an 82 µs model step
    on 17k weights); eight independent ones pipeline. Only the reported J depends on the order;
    dW does not. The loops: l2_loops.h (compiled per CPU level, the same bits on each)."""
    if lam == 0:
        return 0
    if floating is float:
        return lam / (2.0 * m) * nn_l2_loop_f32(dW, W, n_w, <float>(lam / m))
    else:
        return lam / (2.0 * m) * nn_l2_loop_f64(dW, W, n_w, <double>(lam / m))


cdef inline int count_sizes(const long long[::1] sizes, Py_ssize_t features,
                            Py_ssize_t max_layers, Py_ssize_t* n_w, Py_ssize_t* n_b) except -1:
    """ValueError unless ``sizes`` is a network on ``features`` inputs of positive widths (and
    at most ``max_layers`` layers, 0: any number); its weight and bias counts into n_w, n_b."""
    cdef Py_ssize_t i, L = sizes.shape[0] - 1
    if L < 1 or (max_layers and L > max_layers) or sizes[0] != features:
        most = f" and have at most {max_layers} layers" if max_layers else ""
        raise ValueError(f"sizes must start with X's {features} columns{most}, got "
                         f"{list(sizes)}")
    n_w[0] = n_b[0] = 0
    for i in range(L):
        if sizes[i] < 1 or sizes[i + 1] < 1:
            raise ValueError(f"sizes must be positive, got {list(sizes)}")
        n_w[0] += sizes[i] * sizes[i + 1]
        n_b[0] += sizes[i + 1]
    return 0


cdef inline void transpose(const floating* x, floating* out, Py_ssize_t m,
                           Py_ssize_t n) noexcept nogil:
    """out (n, m) = xᵀ for x (m, n), both row-major, in 16×16 tiles."""
    cdef Py_ssize_t r0, c0, r, c
    for r0 in range(0, m, 16):
        for c0 in range(0, n, 16):
            for c in range(c0, min(c0 + 16, n)):
                for r in range(r0, min(r0 + 16, m)):
                    out[c * m + r] = x[r * n + c]


cdef inline void bias_relu(floating* z, floating* a, const floating* b, Py_ssize_t m,
                           Py_ssize_t n) noexcept nogil:
    """z += b (row by row), a = ReLU(z): the bias loop and unary_block's RELU, fused."""
    cdef Py_ssize_t r, j
    cdef floating v
    for r in range(m):
        for j in range(n):
            v = z[r * n + j] + b[j]
            z[r * n + j] = v
            a[r * n + j] = 0 if v < 0 else v       # NaN passes through, as in np.maximum


cdef inline double rows_pass(int output, const floating* X, const long long* labels,
                             const floating* t, const long long* sizes, Py_ssize_t L,
                             Py_ssize_t m, floating inv_m, const floating* W, const floating* b,
                             floating* dW, floating* db, floating* z, floating* a, floating* d,
                             int kind, floating slope) noexcept nogil:
    """Forward, loss and backward of one model on the m rows of X (labels / targets t of those
    rows), δ scaled by ``inv_m`` (1 / the batch's rows); dW, db of these rows. Returns the
    unscaled Σ of the rows' losses (cross-entropy, or squared error before its 1/2)."""
    cdef Py_ssize_t i, r, j, fi = 0, fo = 0, wo = 0, bo = 0, zo = 0
    cdef const floating* a_prev = X
    cdef floating* zi
    cdef floating* ai
    cdef floating* di
    cdef double loss
    for i in range(L):                                   # forward
        fi, fo = sizes[i], sizes[i + 1]
        zi, ai = z + zo, a + zo
        gemm(c'N', c'N', <int>fo, <int>m, <int>fi, W + wo, <int>fo, a_prev, <int>fi, zi, <int>fo)
        if i < L - 1 and kind == RELU and ai != zi:
            bias_relu(zi, ai, b + bo, m, fo)         # + b and ReLU in one pass over z
        else:
            for r in range(m):
                for j in range(fo):
                    zi[r * fo + j] = zi[r * fo + j] + b[bo + j]
            if i < L - 1 and (kind != IDENTITY or ai != zi):
                unary_block(kind, slope, zi, ai, m * fo)
        a_prev = ai
        wo, bo, zo = wo + fi * fo, bo + fo, zo + m * fo
    zi, di = z + zo - m * fo, d + zo - m * fo            # the logits and their delta
    if output == SOFTMAX_OUT:
        loss = softmax_xent_rows(zi, labels, di, m, fo, inv_m)
    elif output == SIGMOID_OUT:
        loss = loss_block(BCE, zi, t, di, inv_m, m * fo)
    else:
        loss = loss_block(MSE, zi, t, di, inv_m, m * fo)
    for i in range(L - 1, -1, -1):                       # backward
        fi, fo = sizes[i], sizes[i + 1]
        wo, bo, zo = wo - fi * fo, bo - fo, zo - m * fo
        di = d + zo
        a_prev = X if i == 0 else a + zo - m * fi
        # dW (fi, fo) = a_prevᵀ δ  <=>  column-major dWᵀ (fo×fi) = δᵀ (fo×m) · a_prev (m×fi)
        gemm(c'N', c'T', <int>fo, <int>fi, <int>m, di, <int>fo, a_prev, <int>fi, dW + wo,
             <int>fo)
        for j in range(fo):
            db[bo + j] = 0
        for r in range(m):
            for j in range(fo):
                db[bo + j] = db[bo + j] + di[r * fo + j]
        if i > 0 and nn_delta_tt():
            # δ_prev (m, fi) = δ Wᵀ  <=>  column-major δ_prevᵀ (fi×m) = Wᵀ · (δᵀ)ᵀ, with δᵀ
            # copied into this layer's a (free from here on: dW of the layer above has read
            # it): on AVX-512 CPUs OpenBLAS's small-matrix kernel takes TT, while TN runs its
            # packing path (cpu.h; 64-128-64-10 float32, batch 64: grid step 66.0 -> 64.3 µs)
            transpose(di, a + zo, m, fo)
            gemm(c'T', c'T', <int>fi, <int>m, <int>fo, W + wo, <int>fo, a + zo, <int>m,
                 d + zo - m * fi, <int>fi)
        elif i > 0:
            # δ_prev (m, fi) = δ Wᵀ  <=>  column-major δ_prevᵀ (fi×m) = W (fi×fo)ᵀᵀ · δᵀ
            gemm(c'T', c'N', <int>fi, <int>m, <int>fo, W + wo, <int>fo, di, <int>fo,
                 d + zo - m * fi, <int>fi)
        if i > 0:
            grad_mul_block(kind, slope, (a if kind == SIGMOID or kind == TANH else z) + zo - m * fi,
                           d + zo - m * fi, m * fi)
    return loss
