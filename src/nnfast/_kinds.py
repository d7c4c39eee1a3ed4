"""The activation codes of ``nnfast._constants``, where they are defined, under the name that
``model.py`` and ``_numba/step.py`` still import (they move to ``_constants`` with the network
restructuring of issue 8; this module then goes)."""
from ._constants import (ACTIVATIONS, GRAD_FROM_OUTPUT, IDENTITY, LEAKY_RELU, RELU,  # noqa: F401
                         SIGMOID, SOFTMAX, TANH)
