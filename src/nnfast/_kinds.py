"""Integer codes for activations, shared by every backend.

Compiled kernels take an ``int`` instead of a string so that one kernel can apply any activation
(or its derivative) in the epilogue of a GEMM without a Python call per layer.
"""

IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
#: Output layers only: row-wise softmax in the forward pass (its δ comes from the loss).
SOFTMAX = 5

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
