"""nnfast — fast training of multilayer perceptrons on the CPU.

Functional kernels (NumPy in, NumPy out) with three interchangeable backends — ``reference``
(plain NumPy), ``numba`` and ``cython`` — chosen per kernel by ``"auto"`` or by
``set_backend`` / ``use_backend`` / the ``NNFAST_BACKEND`` environment variable.
"""
from ._backend import (backends, get_backend, get_num_threads, set_backend, set_num_threads,
                       use_backend)
from .activations import (identity, leaky_relu, leaky_relu_grad, relu, relu_grad, sigmoid,
                          sigmoid_grad, softmax, tanh, tanh_grad)
from .batchnorm import batchnorm_backward, batchnorm_forward
from .dense import dense_backward, dense_forward
from .gradcheck import gradcheck
from .losses import (l2_penalty, mean_squared_error, sigmoid_binary_cross_entropy,
                     softmax_cross_entropy)
from .model import History, MLP, ModelFileError
from . import optim
from . import selection
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
    "MLP", "History", "ModelFileError", "optim", "gradcheck", "selection",
]
