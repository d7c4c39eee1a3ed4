"""Integer codes for activations, shared by every backend: the names of ``nnfast._constants``,
where they are defined, under the name older modules import."""
from ._constants import (ACTIVATIONS, GRAD_FROM_OUTPUT, IDENTITY, LEAKY_RELU, RELU,  # noqa: F401
                         SIGMOID, SOFTMAX, TANH)
