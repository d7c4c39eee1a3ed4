"""nnfast — fast training of multilayer perceptrons on the CPU.

Functional kernels (NumPy in, NumPy out) with three interchangeable backends — ``reference``
(plain NumPy), ``numba`` and ``cython`` — chosen per kernel by ``"auto"`` or by
``set_backend`` / ``use_backend`` / the ``NNFAST_BACKEND`` environment variable.
"""
import os

# Both compiled backends run their parallel loops on OpenMP (libgomp: the Cython kernels, and
# Numba's "omp" threading layer). OpenMP threads that spin after a parallel region keep a core
# from OpenBLAS's threads, and OpenBLAS's spinning threads keep it from ours: on 2 cores a
# sigmoid(2**18) + 128x784x512 GEMM pair took 8.0 ms median with libgomp's default wait policy
# and 0.77 ms with PASSIVE, against 0.55 ms for the GEMM alone (bench/README.md, "Threads").
# libgomp reads the variable once, when it is loaded, so it is set here, before any kernel
# module loads; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._backend import (backends, get_backend, get_num_threads, set_backend, set_num_threads,
                       use_backend)
from .activations import (identity, leaky_relu, leaky_relu_grad, relu, relu_grad, sigmoid,
                          sigmoid_grad, softmax, tanh, tanh_grad)
from .batchnorm import batchnorm_backward, batchnorm_forward
from .dense import dense_backward, dense_forward
from .gradcheck import gradcheck
from .losses import (l2_penalty, mean_squared_error, sigmoid_binary_cross_entropy,
                     softmax_cross_entropy)
from .model import History, MLP
from . import optim
from .updates import (adam_update, inverse_time_decay, momentum_update, rmsprop_update,
                      sgd_update)

__version__ = "0.1.0"

__all__ = [
    "backends", "get_backend", "set_backend", "use_backend", "set_num_threads",
    "get_num_threads",
    "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad", "leaky_relu",
    "leaky_relu_grad", "softmax", "identity",
    "softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error", "l2_penalty",
    "dense_forward", "dense_backward", "batchnorm_forward", "batchnorm_backward",
    "sgd_update", "momentum_update", "rmsprop_update", "adam_update", "inverse_time_decay",
    "MLP", "History", "optim", "gradcheck",
]
