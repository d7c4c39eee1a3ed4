"""The whole-network step of the Cython backend: the network pass kernel by kernel
(``nnfast._network.passes.LayerByLayer``) over this backend's compiled kernels, whose GEMMs
and fused epilogues do the work (the contract: ``nnfast._reference.step``)."""
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, losses

network = LayerByLayer(activations, batchnorm, dense, losses)
