"""Checked entries: the common case of a public kernel call, checked and run in C.

A public function (``nnfast.relu``, ``nnfast.dense_forward``, ...) first calls its entry here. The
entry serves the call when the Cython backend is the one in force for it
(``set_backend("cython")``, or ``"auto"`` at sizes where ``nnfast._backend.AUTO_TABLE`` picks
Cython) and every argument is already in the form the kernel needs: exactly ``numpy.ndarray``,
float32 or float64 in native byte order, aligned and C-contiguous, with fitting shapes; ``out=``
arrays writable and sharing no byte with what the kernel reads (an elementwise ``out`` may be
exactly its input). Scalars must be finite Python floats, activations one of the names. It then
runs the loops the Cython backend runs (``kernel_common.pxd``, ``dense_rows.pxd``: the same code,
so the same bits) and returns the result.

Anything else — a list, a strided or byte-swapped array, an overlap, an empty array, a size that
another backend serves, a bad argument — returns None, and the public function takes its Python
path, which converts what can be converted and raises the errors that name the argument. So an
entry decides nothing the Python path would decide differently; it only skips the deciding when
there is nothing to convert. Measured (bench/README.md, "The dispatch table"): the Python guard and
dispatch cost 5-6 µs a call, an entry about 0.2 µs.

Elementwise entries serve arrays below PARALLEL_MIN elements (one thread, as the Cython backend
runs them); above it the Python path passes the kernels their thread count.
"""
cimport numpy as cnp
from cpython.contextvars cimport get_value
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.math cimport isfinite

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

from dense_rows cimport backward_rows, forward_rows
from loss_terms cimport softmax_xent_rows
from optim_apply cimport adam_apply, momentum_apply, rmsprop_apply, sgd_apply
from kernel_common cimport (GRAD, IDENTITY, LEAKY_RELU, PARALLEL_MIN, RELU, SIGMOID, SOFTMAX, TANH,
                            softmax_rows, unary_block)

cnp.import_array()

#: The (kernel module, function) of each entry, as ``nnfast._backend.AUTO_TABLE`` names them, in
#: the order of their slots in ``_auto_max``.
KERNELS = tuple([("activations", name) for name in (
                    "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
                    "leaky_relu", "leaky_relu_grad", "softmax")]
                + [("losses", "softmax_cross_entropy"), ("dense", "dense_forward"),
                   ("dense", "dense_backward")]
                + [("optim", name) for name in (
                    "sgd_update", "momentum_update", "rmsprop_update", "adam_update")])

cdef enum:
    K_SIGMOID, K_SIGMOID_GRAD, K_TANH, K_TANH_GRAD, K_RELU, K_RELU_GRAD, K_LEAKY_RELU, \
        K_LEAKY_RELU_GRAD, K_SOFTMAX, K_SOFTMAX_XENT, K_DENSE_FORWARD, K_DENSE_BACKWARD, K_SGD, \
        K_MOMENTUM, K_RMSPROP, K_ADAM, N_KERNELS

cdef object _override = None   # nnfast._backend._override, the per-thread backend (a ContextVar)
cdef dict _state = None        # nnfast._backend's globals: "_current" is the process's backend
cdef Py_ssize_t _auto_max[N_KERNELS]   # largest size "auto" runs on Cython, per kernel (-1: none)
for _k in range(N_KERNELS):
    _auto_max[_k] = -1


def bind(override, dict state, auto_max):
    """Called once by ``nnfast._backend``: its backend variables, and ``auto_max`` mapping each
    pair of ``KERNELS`` to the largest size (None: any) that "auto" runs on Cython."""
    global _override, _state
    cdef Py_ssize_t i
    for i, key in enumerate(KERNELS):
        limit = auto_max.get(key, -1)
        _auto_max[i] = PY_SSIZE_T_MAX if limit is None else limit
    _override = override
    _state = state


cdef inline bint serves(int kernel, Py_ssize_t size):
    """Whether the backend in force runs ``kernel`` on Cython at this size (never before
    ``bind``)."""
    cdef object backend
    cdef PyObject* current
    if _override is None:
        return False
    backend = get_value(_override, None)
    if backend is None:
        current = PyDict_GetItem(_state, "_current")
        if current == NULL:
            return False
        backend = <object>current
    if type(backend) is not str:
        return False                           # None: not chosen yet (the Python path does)
    if <str>backend == "auto":
        return size <= _auto_max[kernel]
    return <str>backend == "cython"


cdef inline int float_type(object x, int ndim):
    """NPY_FLOAT or NPY_DOUBLE if ``x`` is exactly an ndarray of that dtype with ``ndim`` axes
    (any: -1), native byte order, aligned and C-contiguous, and not empty; else -1."""
    cdef cnp.ndarray a
    cdef int t
    if not cnp.PyArray_CheckExact(x):
        return -1
    a = <cnp.ndarray>x
    t = cnp.PyArray_TYPE(a)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        return -1
    if (ndim >= 0 and cnp.PyArray_NDIM(a) != ndim) or not cnp.PyArray_ISNOTSWAPPED(a):
        return -1
    if (cnp.PyArray_FLAGS(a) & (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)
            != (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)):
        return -1
    return t if cnp.PyArray_SIZE(a) > 0 else -1


cdef inline bint writable(object x, int t, int ndim, cnp.npy_intp d0, cnp.npy_intp d1):
    """``x`` is an ``out=`` array the kernel may write directly: as ``float_type`` with dtype
    ``t``, shape (d0,) or (d0, d1) (ndim -1: any shape, the caller checks), writable."""
    cdef cnp.ndarray a
    if float_type(x, ndim) != t:
        return False
    a = <cnp.ndarray>x
    if not cnp.PyArray_FLAGS(a) & cnp.NPY_ARRAY_WRITEABLE:
        return False
    if ndim < 0:
        return True
    return cnp.PyArray_DIMS(a)[0] == d0 and (ndim == 1 or cnp.PyArray_DIMS(a)[1] == d1)


cdef inline bint overlap(object x, object y):
    """Whether the byte ranges of two C-contiguous arrays (or None) meet."""
    cdef char* lo1
    cdef char* lo2
    if x is None or y is None:
        return False
    lo1 = cnp.PyArray_BYTES(<cnp.ndarray>x)
    lo2 = cnp.PyArray_BYTES(<cnp.ndarray>y)
    return (lo1 < lo2 + cnp.PyArray_NBYTES(<cnp.ndarray>y)
            and lo2 < lo1 + cnp.PyArray_NBYTES(<cnp.ndarray>x))


cdef inline bint finite_float(object x):
    return type(x) is float and isfinite(<double>x)


cdef inline void* data(object x):
    return cnp.PyArray_DATA(<cnp.ndarray>x)


cdef object new_like(cnp.ndarray x):
    return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), cnp.PyArray_TYPE(x), 0)


cdef object new_2d(cnp.npy_intp d0, cnp.npy_intp d1, int t):
    cdef cnp.npy_intp dims[2]
    dims[0] = d0
    dims[1] = d1
    return cnp.PyArray_EMPTY(2, dims, t, 0)


# ---- elementwise activations -------------------------------------------------------------------

cdef object unary(int kernel, int op, object x, object out, double slope):
    """An elementwise function (op: an activation code, GRAD + code for its derivative, or
    SOFTMAX: rows along the last axis)."""
    cdef int t = float_type(x, -1)
    cdef Py_ssize_t n, k
    cdef cnp.ndarray xa
    if t < 0:
        return None
    xa = <cnp.ndarray>x
    n = cnp.PyArray_SIZE(xa)
    if n >= PARALLEL_MIN or (op == SOFTMAX and cnp.PyArray_NDIM(xa) == 0) or \
            not serves(kernel, n):
        return None
    if out is None:
        out = new_like(xa)
    else:
        if not writable(out, t, -1, 0, 0) or not same_shape(out, xa):
            return None
        if data(out) != data(x) and overlap(out, x):
            return None
    if op == SOFTMAX:
        k = cnp.PyArray_DIMS(xa)[cnp.PyArray_NDIM(xa) - 1]
        if t == cnp.NPY_FLOAT:
            softmax_rows(<const float*>data(x), <float*>data(out), n // k, k)
        else:
            softmax_rows(<const double*>data(x), <double*>data(out), n // k, k)
    elif t == cnp.NPY_FLOAT:
        unary_block(op, <float>slope, <const float*>data(x), <float*>data(out), n)
    else:
        unary_block(op, slope, <const double*>data(x), <double*>data(out), n)
    return out


def sigmoid(x, out):
    return unary(K_SIGMOID, SIGMOID, x, out, 0.0)


def sigmoid_grad(a, out):
    return unary(K_SIGMOID_GRAD, GRAD + SIGMOID, a, out, 0.0)


def tanh(x, out):
    return unary(K_TANH, TANH, x, out, 0.0)


def tanh_grad(a, out):
    return unary(K_TANH_GRAD, GRAD + TANH, a, out, 0.0)


def relu(x, out):
    return unary(K_RELU, RELU, x, out, 0.0)


def relu_grad(z, out):
    return unary(K_RELU_GRAD, GRAD + RELU, z, out, 0.0)


def softmax(x, out):
    return unary(K_SOFTMAX, SOFTMAX, x, out, 0.0)


def leaky_relu(x, slope, out):
    if not finite_float(slope):
        return None
    return unary(K_LEAKY_RELU, LEAKY_RELU, x, out, <double>slope)


def leaky_relu_grad(z, slope, out):
    if not finite_float(slope):
        return None
    return unary(K_LEAKY_RELU_GRAD, GRAD + LEAKY_RELU, z, out, <double>slope)


# ---- softmax cross-entropy with integer labels -------------------------------------------------

def softmax_cross_entropy(logits, y, out):
    """``nnfast.softmax_cross_entropy``'s common case, int64 labels in range below PARALLEL_MIN
    elements (one block, as the Cython kernel runs it): ``(loss, delta)``, or None."""
    cdef int t = float_type(logits, 2)
    cdef cnp.npy_intp m, k, i
    cdef cnp.ndarray ya
    cdef const long long* labels
    cdef double loss
    if t < 0 or not cnp.PyArray_CheckExact(y):
        return None
    m = cnp.PyArray_DIMS(<cnp.ndarray>logits)[0]
    k = cnp.PyArray_DIMS(<cnp.ndarray>logits)[1]
    if m * k >= PARALLEL_MIN or not serves(K_SOFTMAX_XENT, m * k):
        return None
    ya = <cnp.ndarray>y
    if (cnp.PyArray_TYPE(ya) != cnp.NPY_INT64 or cnp.PyArray_NDIM(ya) != 1
            or cnp.PyArray_DIMS(ya)[0] != m or not cnp.PyArray_ISNOTSWAPPED(ya)
            or cnp.PyArray_FLAGS(ya) & (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)
            != (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)):
        return None
    labels = <const long long*>cnp.PyArray_DATA(ya)
    for i in range(m):
        if labels[i] < 0 or labels[i] >= k:
            return None                 # the Python path names the labels out of range
    if out is None:
        out = new_2d(m, k, t)
    elif (not writable(out, t, 2, m, k) or overlap(out, y)
          or (data(out) != data(logits) and overlap(out, logits))):
        return None
    if t == cnp.NPY_FLOAT:
        loss = softmax_xent_rows(<const float*>data(logits), labels, <float*>data(out), m, k,
                                 <float>(1.0 / m))
    else:
        loss = softmax_xent_rows(<const double*>data(logits), labels, <double*>data(out), m, k,
                                 <double>(1.0 / m))
    return loss / m, out


# ---- dense layers ------------------------------------------------------------------------------

cdef int activation_code(object name, bint softmax):
    """The code of an activation name (nnfast._constants), or -1."""
    if type(name) is not str:
        return -1
    if <str>name == "relu":
        return RELU
    if <str>name == "identity":
        return IDENTITY
    if <str>name == "tanh":
        return TANH
    if <str>name == "sigmoid":
        return SIGMOID
    if <str>name == "leaky_relu":
        return LEAKY_RELU
    if softmax and <str>name == "softmax":
        return SOFTMAX
    return -1


def dense_forward(a, W, b, activation, slope, out, z_out):
    """``nnfast.dense_forward``'s common case; None where the Python path must decide."""
    cdef int t = float_type(a, 2), kind = activation_code(activation, True)
    cdef cnp.npy_intp m, k, n
    cdef const void* bp = NULL
    if t < 0 or kind < 0 or float_type(W, 2) != t or not finite_float(slope):
        return None
    m = cnp.PyArray_DIMS(<cnp.ndarray>a)[0]
    k = cnp.PyArray_DIMS(<cnp.ndarray>a)[1]
    n = cnp.PyArray_DIMS(<cnp.ndarray>W)[1]
    if cnp.PyArray_DIMS(<cnp.ndarray>W)[0] != k or not serves(K_DENSE_FORWARD, m * n):
        return None
    if b is not None:
        if float_type(b, 1) != t or cnp.PyArray_DIMS(<cnp.ndarray>b)[0] != n:
            return None
        bp = data(b)
    if out is None:
        out = new_2d(m, n, t)
    elif not writable(out, t, 2, m, n) or overlap(out, a) or overlap(out, W) or overlap(out, b):
        return None
    if z_out is None:
        z_out = out
    elif (not writable(z_out, t, 2, m, n) or overlap(z_out, a) or overlap(z_out, W)
          or overlap(z_out, b) or overlap(z_out, out)):
        return None
    cdef const void* ap = data(a)
    cdef const void* wp = data(W)
    cdef void* zp = data(z_out)
    cdef void* op = data(out)
    cdef double s = slope
    with nogil:
        if t == cnp.NPY_FLOAT:
            forward_rows(<const float*>ap, <const float*>wp, <const float*>bp, m, k, n, kind,
                         <float>s, <float*>zp, <float*>op)
        else:
            forward_rows(<const double*>ap, <const double*>wp, <const double*>bp, m, k, n, kind,
                         s, <double*>zp, <double*>op)
    return out


def dense_backward(delta, a_prev, W, activation_prev, z_prev, slope, need_dprev, dW_out, db_out,
                   dprev_out):
    """``nnfast.dense_backward``'s common case: ``(dW, db, delta_prev)``, or None where the Python
    path must decide."""
    cdef int t = float_type(delta, 2), kind = activation_code(activation_prev, False)
    cdef cnp.npy_intp m, k, n
    cdef object src = a_prev
    if (t < 0 or kind < 0 or float_type(a_prev, 2) != t or float_type(W, 2) != t
            or not finite_float(slope) or (need_dprev is not True and need_dprev is not False)):
        return None
    m = cnp.PyArray_DIMS(<cnp.ndarray>delta)[0]
    n = cnp.PyArray_DIMS(<cnp.ndarray>delta)[1]
    k = cnp.PyArray_DIMS(<cnp.ndarray>W)[0]
    if (cnp.PyArray_DIMS(<cnp.ndarray>W)[1] != n or cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0] != m
            or cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[1] != k
            or not serves(K_DENSE_BACKWARD, m * n + m * k)):
        return None
    if need_dprev and (kind == RELU or kind == LEAKY_RELU):
        if (float_type(z_prev, 2) != t or cnp.PyArray_DIMS(<cnp.ndarray>z_prev)[0] != m
                or cnp.PyArray_DIMS(<cnp.ndarray>z_prev)[1] != k):
            return None
        src = z_prev
    if dW_out is None:
        dW_out = new_2d(k, n, t)
    elif not writable(dW_out, t, 2, k, n) or reads_overlap(dW_out, delta, a_prev, W, src):
        return None
    if db_out is None:
        db_out = cnp.PyArray_EMPTY(1, &n, t, 0)
    elif (not writable(db_out, t, 1, n, 0) or reads_overlap(db_out, delta, a_prev, W, src)
          or overlap(db_out, dW_out)):
        return None
    if not need_dprev:
        dprev_out = None
    elif dprev_out is None:
        dprev_out = new_2d(m, k, t)
    elif (not writable(dprev_out, t, 2, m, k) or reads_overlap(dprev_out, delta, a_prev, W, src)
          or overlap(dprev_out, dW_out) or overlap(dprev_out, db_out)):
        return None
    cdef const void* dp = data(delta)
    cdef const void* ap = data(a_prev)
    cdef const void* wp = data(W)
    cdef const void* sp = data(src)
    cdef void* dwp = data(dW_out)
    cdef void* dbp = data(db_out)
    cdef void* pp = data(dprev_out) if dprev_out is not None else NULL
    cdef double s = slope
    with nogil:
        if t == cnp.NPY_FLOAT:
            backward_rows(<const float*>dp, <const float*>ap, <const float*>wp, m, k, n,
                          <float*>dwp, <float*>dbp, <float*>pp, kind, <float>s,
                          <const float*>sp)
        else:
            backward_rows(<const double*>dp, <const double*>ap, <const double*>wp, m, k, n,
                          <double*>dwp, <double*>dbp, <double*>pp, kind, s, <const double*>sp)
    return dW_out, db_out, dprev_out


cdef inline bint reads_overlap(object w, object a, object b, object c, object d):
    return overlap(w, a) or overlap(w, b) or overlap(w, c) or overlap(w, d)


# ---- optimizer updates -------------------------------------------------------------------------
# The scalars are the rule's kernel arguments (nnfast._rules, already checked); the entries check
# the arrays as nnfast.updates does: one shape and dtype, param and states written in place
# (writable, C-contiguous), nothing written shared with anything else. True when served.

cdef int update_type(int kernel, object param, object grad, object s1, object s2):
    """The dtype of an update's arrays (s1, s2: its states or None), or -1."""
    cdef int t = float_type(param, -1), nd, i
    cdef cnp.ndarray p
    cdef Py_ssize_t n
    if t < 0 or float_type(grad, -1) != t:
        return -1
    p = <cnp.ndarray>param
    n = cnp.PyArray_SIZE(p)
    if n >= PARALLEL_MIN or not serves(kernel, n):
        return -1
    if not cnp.PyArray_FLAGS(p) & cnp.NPY_ARRAY_WRITEABLE or not same_shape(grad, p):
        return -1
    if s1 is not None and (not writable(s1, t, -1, 0, 0) or not same_shape(s1, p)
                           or overlap(s1, param) or overlap(s1, grad)):
        return -1
    if s2 is not None and (not writable(s2, t, -1, 0, 0) or not same_shape(s2, p)
                           or overlap(s2, param) or overlap(s2, grad) or overlap(s2, s1)):
        return -1
    return -1 if overlap(param, grad) else t


cdef inline bint same_shape(object x, cnp.ndarray p):
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef int i
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(p):
        return False
    for i in range(cnp.PyArray_NDIM(p)):
        if cnp.PyArray_DIMS(a)[i] != cnp.PyArray_DIMS(p)[i]:
            return False
    return True


def sgd_update(param, grad, double lr, double weight_decay):
    cdef int t = update_type(K_SGD, param, grad, None, None)
    if t < 0:
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    if t == cnp.NPY_FLOAT:
        sgd_apply(<float*>data(param), <const float*>data(grad), n, lr, weight_decay, 1)
    else:
        sgd_apply(<double*>data(param), <const double*>data(grad), n, lr, weight_decay, 1)
    return True


def momentum_update(param, grad, velocity, double lr, double beta, double dampening,
                    double weight_decay, bint nesterov, bint sklearn_style):
    cdef int t = update_type(K_MOMENTUM, param, grad, velocity, None)
    if t < 0:
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    if t == cnp.NPY_FLOAT:
        momentum_apply(<float*>data(param), <const float*>data(grad), <float*>data(velocity), n,
                       lr, beta, dampening, weight_decay, nesterov, sklearn_style, 1)
    else:
        momentum_apply(<double*>data(param), <const double*>data(grad), <double*>data(velocity),
                       n, lr, beta, dampening, weight_decay, nesterov, sklearn_style, 1)
    return True


def rmsprop_update(param, grad, sq, double lr, double beta, double eps, double weight_decay,
                   bint eps_inside):
    cdef int t = update_type(K_RMSPROP, param, grad, sq, None)
    if t < 0:
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    if t == cnp.NPY_FLOAT:
        rmsprop_apply(<float*>data(param), <const float*>data(grad), <float*>data(sq), n, lr,
                      beta, eps, weight_decay, eps_inside, 1)
    else:
        rmsprop_apply(<double*>data(param), <const double*>data(grad), <double*>data(sq), n, lr,
                      beta, eps, weight_decay, eps_inside, 1)
    return True


def adam_update(param, grad, m, v, double lr, double beta1, double beta2, double eps,
                double weight_decay, bint decoupled, double bias_correction1,
                double bias_correction2, bint eps_inside):
    cdef int t = update_type(K_ADAM, param, grad, m, v)
    if t < 0:
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    if t == cnp.NPY_FLOAT:
        adam_apply(<float*>data(param), <const float*>data(grad), <float*>data(m),
                   <float*>data(v), n, lr, beta1, beta2, eps, weight_decay, decoupled,
                   bias_correction1, bias_correction2, eps_inside, 1)
    else:
        adam_apply(<double*>data(param), <const double*>data(grad), <double*>data(m),
                   <double*>data(v), n, lr, beta1, beta2, eps, weight_decay, decoupled,
                   bias_correction1, bias_correction2, eps_inside, 1)
    return True
