"""Dense layers: forward pass and δ backpropagation (Cython backend of nnfast._reference.dense).

Design: the GEMMs go through scipy's BLAS (``blas.pxd``: row-major products as column-major gemm
on swapped operands, no copies). The batch is processed in blocks of rows (about EPILOGUE
elements of output each); right after a block's GEMM, while the block is still in cache, the
epilogue runs on it: + b and g(·) in the forward pass, ·g'(·) after δWᵀ in the backward pass.
BLAS runs its own threads inside each GEMM; the epilogues are serial per block.
"""
from cython cimport floating
from blas cimport gemm
from kernel_common cimport IDENTITY, SOFTMAX, grad_mul_block, softmax_rows, unary_block

cdef enum:
    EPILOGUE = 131072    # output elements per row block (512 KiB f32: L2; 32768 was 0.6-0.8x NumPy)


cdef inline Py_ssize_t block_rows(Py_ssize_t m, Py_ssize_t width) noexcept nogil:
    return min(m, max(<Py_ssize_t>128, EPILOGUE // max(width, 1)))


def dense_forward(const floating[:, ::1] a,     # IN (m, k)
                  const floating[:, ::1] W,     # IN (k, n)
                  b,                            # IN (n,) or None
                  int kind, double slope,
                  floating[:, ::1] z_out,       # OUT (m, n)
                  floating[:, ::1] a_out):      # OUT (m, n), may be z_out
    """z = a W + b, a_out = g(z); row blocks of GEMM each followed by its epilogue."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = W.shape[1]
    cdef Py_ssize_t rows, nb, blk, r0, mb, i, j
    cdef const floating[::1] bias
    cdef const floating* bp = NULL
    cdef floating slope_ = <floating>slope
    cdef floating* z
    cdef floating* out
    if m == 0 or n == 0:
        return a_out.base
    if b is not None:
        bias = b
        bp = &bias[0]
    if k == 0:                                     # empty product: z = 0 (+ b)
        z_out[:, :] = 0
    rows = block_rows(m, n)
    nb = (m + rows - 1) // rows
    with nogil:
        for blk in range(nb):
            r0 = blk * rows
            mb = min(rows, m - r0)
            z = &z_out[r0, 0]
            out = &a_out[r0, 0]
            if k > 0:
                gemm(c'N', c'N', <int>n, <int>mb, <int>k, &W[0, 0], <int>n, &a[r0, 0], <int>k, z,
                     <int>n)
            if bp != NULL:
                for i in range(mb):
                    for j in range(n):
                        z[i * n + j] = z[i * n + j] + bp[j]
            if kind == SOFTMAX:
                softmax_rows(z, out, mb, n)
            elif kind != IDENTITY or out != z:
                unary_block(kind, slope_, z, out, mb * n)
    return a_out.base


def dense_backward(const floating[:, ::1] delta,     # IN (m, n)
                   const floating[:, ::1] a_prev,    # IN (m, k)
                   const floating[:, ::1] W,         # IN (k, n)
                   floating[:, ::1] dW_out,          # OUT (k, n)
                   db_out,                           # OUT (n,) or None
                   dprev_out,                        # OUT (m, k) or None
                   int kind_prev, double slope,
                   const floating[:, ::1] grad_src):  # IN (m, k): a_prev or z_prev
    """dW = a_prevᵀ δ, db = Σ_rows δ, δ_prev = (δ Wᵀ) .* g'(·) fused per row block."""
    cdef Py_ssize_t m = delta.shape[0], n = delta.shape[1], k = W.shape[0]
    cdef Py_ssize_t rows, nb, blk, r0, mb, i, j
    cdef floating[::1] db
    cdef floating[:, ::1] dprev
    cdef floating* dbp
    cdef const floating* d
    cdef floating slope_ = <floating>slope
    # dW (k, n) = a_prevᵀ δ  <=>  column-major dWᵀ (n×k) = δᵀ (n×m) · a_prev (m×k)
    if k > 0 and n > 0:
        if m == 0:
            dW_out[:, :] = 0
        else:
            with nogil:
                gemm(c'N', c'T', <int>n, <int>k, <int>m, &delta[0, 0], <int>n, &a_prev[0, 0],
                     <int>k, &dW_out[0, 0], <int>n)
    if db_out is not None:
        db = db_out
        if n > 0:
            dbp = &db[0]
            with nogil:
                for j in range(n):
                    dbp[j] = 0
                for i in range(m):
                    d = &delta[i, 0]
                    for j in range(n):
                        dbp[j] = dbp[j] + d[j]
    if dprev_out is None or m == 0 or k == 0:
        return dW_out.base
    dprev = dprev_out
    if n == 0:                                       # empty product
        dprev[:, :] = 0
    # δ_prev (m, k) = δ Wᵀ  <=>  column-major δ_prevᵀ (k×m) = W (k×n, i.e. Wᵀ transposed) · δᵀ
    rows = block_rows(m, k)
    nb = (m + rows - 1) // rows
    with nogil:
        for blk in range(nb):
            r0 = blk * rows
            mb = min(rows, m - r0)
            if n > 0:
                gemm(c'T', c'N', <int>k, <int>mb, <int>n, &W[0, 0], <int>n, &delta[r0, 0], <int>n,
                     &dprev[r0, 0], <int>k)
            if kind_prev != IDENTITY:
                grad_mul_block(kind_prev, slope_, &grad_src[r0, 0], &dprev[r0, 0], mb * k)
    return dW_out.base
