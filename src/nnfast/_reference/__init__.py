"""The ``reference`` backend: plain NumPy, written to read like the lecture's formulas.

It is the oracle of every test and the baseline of every benchmark. Each module here has the same
functions, with the same arguments, as the matching module of the compiled backends
(``nnfast._numba.<module>`` and the Cython extension ``nnfast._cython.<module>``). These low-level
functions assume validated input: C-contiguous arrays of one float dtype (float32 or float64),
shapes that fit, writable outputs. The public functions in ``nnfast`` do that checking.
"""
