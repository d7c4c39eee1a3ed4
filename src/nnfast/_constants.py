"""Constants shared by every backend: the one place they are written in Python.

The Cython kernels cannot import Python, so ``src/kernels/kernel_common.pxd`` repeats them as a
``cdef enum``; ``tests/test_constants.py`` checks that every name there has the value here.
The Numba kernels compile them in (``nnfast._numba._cache`` stamps this file into their cache
key), and this module imports nothing, so that editing the dispatch table (``_backend``) does
not recompile the Numba kernels.
"""

# Activation codes. Compiled kernels take an ``int`` instead of a string so that one kernel can
# apply any activation (or its derivative) in the epilogue of a GEMM without a Python call per
# layer.
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
#: Output layers only: row-wise softmax in the forward pass (its δ comes from the loss).
SOFTMAX = 5
#: ``GRAD + code`` names the derivative of an activation in the Cython element loops; above every
#: code so that the two never collide.
GRAD = 16

ACTIVATIONS = {
    "identity": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
}

#: Activations whose derivative is computed from the activation ``a`` (seed: ``a(1-a)``,
#: ``1-a^2``); the others take the pre-activation ``z`` (seed: ``g'(z) = 1 for z >= 0``).
GRAD_FROM_OUTPUT = frozenset({SIGMOID, TANH})

#: Arrays with at least this many elements are split over threads by both compiled backends;
#: below it one thread runs the loop (bench/bench_contention.py and bench/README.md, "Threads").
PARALLEL_MIN = 1 << 17

#: Elements per block of a parallel loop: fixed, not derived from the thread count, so blocked
#: sums add the same partial sums in the same order on any number of threads.
BLOCK = 1 << 14
