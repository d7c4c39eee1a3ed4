# The forward and the backward of a chain of torch.nn.Linear layers, each followed by its own
# activation, in torch's weight layout — W (out, in) row-major, y = x Wᵀ + b — for the engine's
# caller-gradient entry (engine.pyx: ``chain_forward`` / ``chain_backward``, the passes of
# ``nnfast.torch.fuse``). The two halves of model_pass.pxd's ``rows_pass`` with the loss cut out:
# autograd runs the forward, hands back the gradient of the chain's output (any loss), and the
# backward turns it into dW, db (and dX) — so each half keeps what the other needs in ``ws``.
#
# Derivatives are torch's, case for case (so that a fused module's gradients are autograd's):
# ReLU passes δ where z > 0 (0 at z = 0, δ at NaN), LeakyReLU δ·slope where not z > 0, tanh
# δ(1 - a²), sigmoid δ(1 - a)·a, softmax a(δ - Σ δa) row by row.
from cython cimport floating

from blas cimport gemm
from kernel_common cimport (IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH, softmax_rows,
                            unary_block)


cdef inline void activation_grad(int kind, floating slope, const floating* z, const floating* a,
                                 floating* d, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """d (m, n) = dJ/dz from d = dJ/da, for a = kind(z)."""
    cdef Py_ssize_t i, r, j
    cdef floating s
    if kind == RELU:
        for i in range(m * n):
            d[i] = 0 if z[i] <= 0 else d[i]
    elif kind == LEAKY_RELU:
        for i in range(m * n):
            d[i] = d[i] if z[i] > 0 else d[i] * slope
    elif kind == TANH:
        for i in range(m * n):
            d[i] = d[i] * (1 - a[i] * a[i])
    elif kind == SIGMOID:
        for i in range(m * n):
            d[i] = d[i] * (1 - a[i]) * a[i]
    elif kind == SOFTMAX:
        for r in range(m):
            s = 0
            for j in range(n):
                s = s + d[r * n + j] * a[r * n + j]
            for j in range(n):
                d[r * n + j] = a[r * n + j] * (d[r * n + j] - s)


cdef inline void chain_forward_rows(Py_ssize_t L, const long long* sz, const int* kinds,
                                    const double* slopes, Py_ssize_t m, Py_ssize_t r0,
                                    Py_ssize_t mc, const floating* X, const long long* W,
                                    const long long* b, floating* ws,
                                    floating* out) noexcept nogil:
    """Layer by layer on rows r0 .. r0+mc of the m rows of X (m, sz[0]): z_i = a_{i-1} W_iᵀ + b_i
    (b[i] 0: no bias) and a_i = kind_i(z_i), kept in ``ws`` (z_i, then a_i, m · sz[i+1] values
    each, layer after layer; these rows' part of each); out (m, sz[L]) = a_{L-1}. W, b: the
    layers' data pointers."""
    cdef Py_ssize_t i, r, j, fi, fo
    cdef const floating* a_prev = X + r0 * sz[0]
    cdef floating* z = ws
    cdef floating* zr
    cdef floating* a
    cdef const floating* bi
    for i in range(L):
        fi, fo = sz[i], sz[i + 1]
        zr = z + r0 * fo
        a = zr + m * fo
        # z (mc, fo) = a_prev Wᵀ  <=>  column-major zᵀ (fo×mc) = W (fo×fi, row-major: Wᵀ
        # column-major, so 'T') · a_prevᵀ
        gemm(c'T', c'N', <int>fo, <int>mc, <int>fi, <const floating*>W[i], <int>fi, a_prev,
             <int>fi, zr, <int>fo)
        if b[i]:
            bi = <const floating*>b[i]
            for r in range(mc):
                for j in range(fo):
                    zr[r * fo + j] = zr[r * fo + j] + bi[j]
        if kinds[i] == SOFTMAX:
            softmax_rows(zr, a, mc, fo)
        else:
            unary_block(kinds[i], <floating>slopes[i], zr, a, mc * fo)
        a_prev = a
        z = z + 2 * m * fo
    for i in range(mc * sz[L]):
        out[r0 * sz[L] + i] = a_prev[i]


cdef inline void chain_delta_rows(Py_ssize_t L, const long long* sz, const int* kinds,
                                  const double* slopes, Py_ssize_t m, Py_ssize_t r0,
                                  Py_ssize_t mc, Py_ssize_t lowest, const long long* W,
                                  const floating* ws, const floating* G, floating* D,
                                  floating* dX) noexcept nogil:
    """The backward's δ on rows r0 .. r0+mc, from G = dJ/d(out) (m, sz[L]) and the forward's
    ``ws`` (left as it was: a second backward of the same forward reads it again): δ_i of
    layers L-1 down to ``lowest`` into D (δ_i: m · sz[i+1] values, layer after layer), and
    dX = δ_0 W_0 (m, sz[0]) unless NULL."""
    cdef Py_ssize_t i, j, fi, fo, zo = 0, do = 0
    cdef floating* d
    for i in range(L - 1):
        zo += 2 * m * sz[i + 1]
        do += m * sz[i + 1]
    fo = sz[L]
    d = D + do + r0 * fo
    for j in range(mc * fo):
        d[j] = G[r0 * fo + j]
    activation_grad(kinds[L - 1], <floating>slopes[L - 1], ws + zo + r0 * fo,
                    ws + zo + m * fo + r0 * fo, d, mc, fo)
    for i in range(L - 1, lowest - 1, -1):
        fi, fo = sz[i], sz[i + 1]
        if i == 0 and dX == NULL:
            break
        if i > lowest or i == 0:
            zo -= 2 * m * fi
            do -= m * fi
            # δ_prev (mc, fi) = δ W  <=>  column-major δ_prevᵀ (fi×mc) = Wᵀ (W row-major) · δᵀ
            gemm(c'N', c'N', <int>fi, <int>mc, <int>fo, <const floating*>W[i], <int>fi,
                 d, <int>fo,
                 dX + r0 * fi if i == 0 else D + do + r0 * fi, <int>fi)
            if i > 0:
                d = D + do + r0 * fi
                activation_grad(kinds[i - 1], <floating>slopes[i - 1], ws + zo + r0 * fi,
                                ws + zo + m * fi + r0 * fi, d, mc, fi)


cdef inline void chain_weight_grads(Py_ssize_t m, Py_ssize_t fi, Py_ssize_t fo, Py_ssize_t f0,
                                    Py_ssize_t f1, const floating* a_prev, const floating* d,
                                    floating* dW, floating* db) noexcept nogil:
    """Rows f0 .. f1 of one layer's dW (fo, fi) = δᵀ a_prev and of db = Σ_rows δ, over all m
    rows (dW or db NULL: not wanted)."""
    cdef Py_ssize_t r, j
    if dW != NULL:
        # dW[f0:f1] = δ[:, f0:f1]ᵀ a_prev  <=>  column-major (fi×(f1-f0)) = a_prevᵀ · δ[:, f0:f1]
        gemm(c'N', c'T', <int>fi, <int>(f1 - f0), <int>m, a_prev, <int>fi, d + f0, <int>fo,
             dW + f0 * fi, <int>fi)
    if db != NULL:
        for j in range(f0, f1):
            db[j] = 0
        for r in range(m):
            for j in range(f0, f1):
                db[j] = db[j] + d[r * fo + j]
