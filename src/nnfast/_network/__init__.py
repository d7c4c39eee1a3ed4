"""What ``nnfast.MLP`` is made of, one concern per module (``nnfast.model`` is the front).

- ``layout``: the flat parameter, gradient and batch-norm buffers, the per-layer views into
  them and each parameter array's offset; initialization.
- ``workspace``: the arrays one pass over m rows writes, allocated once per batch size.
- ``passes``: the network pass kernel by kernel (forward with batch norm, loss, L2,
  backpropagation of δ, the output activation), over one backend's kernel modules. Every
  backend's ``step`` module (``nnfast._reference.step``, ``_numba.step``, ``_cython.step``)
  provides the pass as ``network``; ``nnfast._backend.network_step`` picks the one in force.
- ``inputs``: checks of X, y and of the constructor's choices.
- ``training``: ``fit`` (mini-batches, decay, early stopping and restore) and ``History``.
- ``checking``: ``check_gradients``, threaded where the backend's pass releases the GIL.
- ``persistence``: ``save`` / ``load`` of ``.npz`` files, and ``ModelFileError``.
"""
