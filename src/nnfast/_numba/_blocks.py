"""The chunk driver of the backend's elementwise kernels, written once.

``in_blocks(span, arrays, scalars)`` runs ``span(*arrays, *scalars)`` on the calling thread below
``PARALLEL_MIN`` elements, and above it over fixed ``BLOCK``-long pieces of every array in a
``prange`` (pieces independent of the thread count: the same result on any number of threads).
``span`` is a serial, cached kernel that takes its arrays first, then its scalars; it is given
views, because indexing with an offset ``lo + i`` costs a negative-index fix-up per element
(measured 4x slower). The caller is a ``parallel=True`` kernel: ``in_blocks`` is inlined into it
(``inline="always"``), with ``span`` a compile-time constant, so the compiled code is the loop
that each kernel used to write out (the bench files time the same; see the issue 8 note).
"""
from numba import prange
from numba.extending import overload

from .._constants import BLOCK, PARALLEL_MIN
from ._cache import njit


def _pieces(arrays, lo, hi):
    """``tuple(a[lo:hi] for a in arrays)`` (Numba cannot loop over a tuple of mixed types: a
    read-only ``grad`` is another type than ``param``)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(_pieces, inline="always")
def _pieces_ol(arrays, lo, hi):
    if len(arrays) == 2:
        return lambda arrays, lo, hi: (arrays[0][lo:hi], arrays[1][lo:hi])
    if len(arrays) == 3:
        return lambda arrays, lo, hi: (arrays[0][lo:hi], arrays[1][lo:hi], arrays[2][lo:hi])
    if len(arrays) == 4:
        return lambda arrays, lo, hi: (arrays[0][lo:hi], arrays[1][lo:hi], arrays[2][lo:hi],
                                       arrays[3][lo:hi])
    return None


@njit(inline="always")
def in_blocks(span, arrays, scalars):
    """``span(*arrays, *scalars)``, over BLOCK-long pieces on threads from PARALLEL_MIN
    elements (of ``arrays[0]``; all arrays have its length)."""
    n = arrays[0].size
    if n < PARALLEL_MIN:
        span(*(arrays + scalars))
    else:
        for c in prange((n + BLOCK - 1) // BLOCK):
            span(*(_pieces(arrays, c * BLOCK, (c + 1) * BLOCK) + scalars))
