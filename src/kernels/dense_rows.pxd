# One dense layer's passes over raw row-major pointers: the bodies of dense.pyx's kernels and of
# the checked entries (entry.pyx), written once.
#
# The batch is processed in blocks of rows (about EPILOGUE elements of output each); right after a
# block's GEMM, while the block is still in cache, the epilogue runs on it: + b and g(·) in the
# forward pass, ·g'(·) after δWᵀ in the backward pass. BLAS runs its own threads inside each GEMM;
# the epilogues are serial per block. Row-major products run as column-major gemm on swapped
# operands (blas.pxd), without copies.
from cython cimport floating
from blas cimport gemm
from kernel_common cimport IDENTITY, SOFTMAX, grad_mul_block, softmax_rows, unary_block

cdef enum:
    EPILOGUE = 131072    # output elements per row block (512 KiB f32: L2; 32768 was 0.6-0.8x NumPy)


cdef inline Py_ssize_t block_rows(Py_ssize_t m, Py_ssize_t width) noexcept nogil:
    return min(m, max(<Py_ssize_t>128, EPILOGUE // max(width, 1)))


cdef inline void forward_rows(const floating* a, const floating* W, const floating* bp,
                              Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, int kind,
                              floating slope, floating* z_out, floating* a_out) noexcept nogil:
    """z = a W + b (bp may be NULL), a_out = g(z); a (m, k), W (k, n), z_out and a_out (m, n),
    a_out may be z_out. m and n > 0."""
    cdef Py_ssize_t rows = block_rows(m, n), nb = (m + rows - 1) // rows, blk, r0, mb, i, j
    cdef floating* z
    cdef floating* out
    for blk in range(nb):
        r0 = blk * rows
        mb = min(rows, m - r0)
        z = z_out + r0 * n
        out = a_out + r0 * n
        if k > 0:
            gemm(c'N', c'N', <int>n, <int>mb, <int>k, W, <int>n, a + r0 * k, <int>k, z, <int>n)
        else:                                      # empty product: z = 0 (+ b)
            for i in range(mb * n):
                z[i] = 0
        if bp != NULL:
            for i in range(mb):
                for j in range(n):
                    z[i * n + j] = z[i * n + j] + bp[j]
        if kind == SOFTMAX:
            softmax_rows(z, out, mb, n)
        elif kind != IDENTITY or out != z:
            unary_block(kind, slope, z, out, mb * n)


cdef inline void backward_rows(const floating* delta, const floating* a_prev, const floating* W,
                               Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, floating* dW,
                               floating* db, floating* dprev, int kind_prev, floating slope,
                               const floating* grad_src) noexcept nogil:
    """dW = a_prevᵀ δ, db = Σ_rows δ (db may be NULL), δ_prev = (δ Wᵀ) .* g'(grad_src) fused per
    row block (dprev may be NULL); delta (m, n), a_prev and grad_src (m, k), W and dW (k, n)."""
    cdef Py_ssize_t rows, nb, blk, r0, mb, i, j
    cdef const floating* d
    # dW (k, n) = a_prevᵀ δ  <=>  column-major dWᵀ (n×k) = δᵀ (n×m) · a_prev (m×k)
    if k > 0 and n > 0:
        if m == 0:
            for i in range(k * n):
                dW[i] = 0
        else:
            gemm(c'N', c'T', <int>n, <int>k, <int>m, delta, <int>n, a_prev, <int>k, dW, <int>n)
    if db != NULL:
        for j in range(n):
            db[j] = 0
        for i in range(m):
            d = delta + i * n
            for j in range(n):
                db[j] = db[j] + d[j]
    if dprev == NULL or m == 0 or k == 0:
        return
    # δ_prev (m, k) = δ Wᵀ  <=>  column-major δ_prevᵀ (k×m) = W (k×n, i.e. Wᵀ transposed) · δᵀ
    rows = block_rows(m, k)
    nb = (m + rows - 1) // rows
    for blk in range(nb):
        r0 = blk * rows
        mb = min(rows, m - r0)
        if n > 0:
            gemm(c'T', c'N', <int>k, <int>mb, <int>n, W, <int>n, delta + r0 * n, <int>n,
                 dprev + r0 * k, <int>k)
        else:                                      # empty product
            for i in range(mb * k):
                dprev[r0 * k + i] = 0
        if kind_prev != IDENTITY:
            grad_mul_block(kind_prev, slope, grad_src + r0 * k, dprev + r0 * k, mb * k)
