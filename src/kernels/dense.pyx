"""Dense layers: forward pass and δ backpropagation (Cython backend of nnfast._reference.dense).

Design: the GEMMs go through scipy's BLAS (``blas.pxd``); each block of rows is followed by its
epilogue while it is in cache (``dense_rows.pxd``, shared with the checked entries of
``entry.pyx``). These functions take memoryviews: the arrays nnfast.dense validated.
"""
from cython cimport floating
from dense_rows cimport backward_rows, forward_rows


def dense_forward(const floating[:, ::1] a,     # IN (m, k)
                  const floating[:, ::1] W,     # IN (k, n)
                  b,                            # IN (n,) or None
                  int kind, double slope,
                  floating[:, ::1] z_out,       # OUT (m, n)
                  floating[:, ::1] a_out):      # OUT (m, n), may be z_out
    """z = a W + b, a_out = g(z); row blocks of GEMM each followed by its epilogue."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = W.shape[1]
    cdef const floating[::1] bias
    cdef const floating* bp = NULL
    if m == 0 or n == 0:
        return a_out.base
    if b is not None:
        bias = b
        bp = &bias[0]
    with nogil:
        forward_rows(&a[0, 0] if k > 0 else NULL, &W[0, 0] if k > 0 else NULL, bp, m, k, n,
                     kind, <floating>slope, &z_out[0, 0], &a_out[0, 0])
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
    cdef floating[::1] db
    cdef floating[:, ::1] dprev
    cdef floating* dbp = NULL
    cdef floating* dpp = NULL
    if db_out is not None and n > 0:
        db = db_out
        dbp = &db[0]
    if dprev_out is not None and m > 0 and k > 0:
        dprev = dprev_out
        dpp = &dprev[0, 0]
    with nogil:
        backward_rows(&delta[0, 0] if m > 0 and n > 0 else NULL,
                      &a_prev[0, 0] if m > 0 and k > 0 else NULL,
                      &W[0, 0] if k > 0 and n > 0 else NULL, m, k, n,
                      &dW_out[0, 0] if k > 0 and n > 0 else NULL, dbp, dpp, kind_prev,
                      <floating>slope, &grad_src[0, 0] if m > 0 and k > 0 else NULL)
    return dW_out.base
