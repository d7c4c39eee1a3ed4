# BLAS for the kernels that run GEMMs (dense.pyx, grid.pyx): scipy's cython_blas sgemm/dgemm
# (no link step: the same OpenBLAS that scipy ships). BLAS is column-major and our arrays are
# row-major: a row-major (r, c) array is the column-major (c, r) array of its transpose, so the
# row-major product C = A·B is the column-major product Cᵀ = Bᵀ·Aᵀ, i.e. gemm on (B, A) with the
# dimensions swapped — no copies.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int M, int N, int K, const floating* A, int lda,
                      const floating* B, int ldb, floating* C, int ldc) noexcept nogil:
    """Column-major C (M×N) = op(A)·op(B), beta = 0."""
    cdef floating one = 1, zero = 0
    if floating is float:
        sgemm(&transa, &transb, &M, &N, &K, &one, <float*>A, &lda, <float*>B, &ldb, &zero, C,
              &ldc)
    else:
        dgemm(&transa, &transb, &M, &N, &K, &one, <double*>A, &lda, <double*>B, &ldb, &zero, C,
              &ldc)
