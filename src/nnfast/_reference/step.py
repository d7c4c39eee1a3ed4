"""The whole-network step of the reference backend: the network pass kernel by kernel
(``nnfast._network.passes.LayerByLayer``) over this backend's NumPy kernels.

Every backend has a ``step`` module with ``network``, an object with the methods ``forward``,
``backward``, ``objective`` (the loss J, optionally dJ/dparams), ``output`` and
``threaded_objective``; ``nnfast._backend.network_step()`` returns the one of the backend a
network runs on. Here, and in the Cython backend, it is the layer-by-layer pass; the Numba
backend adds a compiled whole-network kernel (``nnfast._numba.step``).
"""
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, losses

network = LayerByLayer(activations, batchnorm, dense, losses)
