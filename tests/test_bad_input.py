"""Bad input is an error that names the argument, raised before anything is written.

Each case builds fresh arrays, calls one public function with one thing wrong, and checks the
exception type, that its message names the culprit, and that every array involved (inputs,
``out=``, parameters and optimizer state) is exactly as it was. The validation lives in the
Python layer, so every backend must give the same errors (and no compiled kernel is reached).
"""
import numpy as np
import pytest

import nnfast

F64 = np.float64


def _a(*shape, dtype=F64, fill=None):
    rng = np.random.default_rng(sum(shape) + 7)
    x = rng.standard_normal(shape).astype(dtype) if fill is None else np.full(shape, fill, dtype)
    return x


def _ro(x):
    x.flags.writeable = False
    return x


CASES = {}


def case(name, exc, match):
    """Register ``fn() -> (thunk, watched arrays)`` as a bad-input case."""
    def register(fn):
        CASES[name] = (exc, match, fn)
        return fn
    return register


# --- activations ----------------------------------------------------------------------------

for _dt in (np.int64, np.int32, np.float16, np.complex128, object, bool):
    for _fn, _arg in ((nnfast.sigmoid, "x"), (nnfast.sigmoid_grad, "a"), (nnfast.tanh, "x"),
                      (nnfast.relu_grad, "z"), (nnfast.leaky_relu, "x"), (nnfast.softmax, "x"),
                      (nnfast.identity, "x")):
        def _make(fn=_fn, dt=_dt):
            x = np.ones((3, 2), dtype=dt)
            return (lambda: fn(x)), [x]
        case(f"{_fn.__name__} dtype {np.dtype(_dt).name}", TypeError,
             rf"^{_arg} (must have dtype|must be a float)")(_make)


@case("sigmoid of None", TypeError, "^x must be")
def _():
    return (lambda: nnfast.sigmoid(None)), []


@case("sigmoid of a string", TypeError, "^x must be")
def _():
    return (lambda: nnfast.sigmoid("1.0")), []


@case("sigmoid of a list of ints", TypeError, "^x must have dtype")
def _():
    return (lambda: nnfast.sigmoid([1, 2, 3])), []


@case("sigmoid out wrong shape", ValueError, r"^out has shape \(3, 2\).*\(2, 3\)")
def _():
    x, out = _a(2, 3), _a(3, 2)
    return (lambda: nnfast.sigmoid(x, out=out)), [x, out]


@case("sigmoid out wrong dtype", TypeError, "^out has dtype float32")
def _():
    x, out = _a(2, 3), _a(2, 3, dtype=np.float32)
    return (lambda: nnfast.sigmoid(x, out=out)), [x, out]


@case("tanh out read-only", ValueError, "^out is read-only")
def _():
    x, out = _a(4), _ro(_a(4, fill=0.0))
    return (lambda: nnfast.tanh(x, out=out)), [x, out]


@case("relu out a list", TypeError, "^out must be a numpy array")
def _():
    x = _a(3)
    return (lambda: nnfast.relu(x, out=[0.0, 0.0, 0.0])), [x]


@case("softmax out wrong shape", ValueError, "^out has shape")
def _():
    x, out = _a(2, 3), _a(2, 4)
    return (lambda: nnfast.softmax(x, out=out)), [x, out]


@case("softmax 0-d", ValueError, "at least one axis")
def _():
    x = np.array(1.0)
    return (lambda: nnfast.softmax(x)), [x]


@case("leaky_relu slope NaN", ValueError, "^slope must be finite")
def _():
    x, out = _a(5), _a(5)
    return (lambda: nnfast.leaky_relu(x, slope=float("nan"), out=out)), [x, out]


@case("leaky_relu_grad slope a string", TypeError, "^slope must be a real number")
def _():
    x = _a(5)
    return (lambda: nnfast.leaky_relu_grad(x, slope="0.1")), [x]


@case("identity out wrong dtype", TypeError, "^out has dtype")
def _():
    x, out = _a(3), _a(3, dtype=np.float32)
    return (lambda: nnfast.identity(x, out=out)), [x, out]


# --- losses ---------------------------------------------------------------------------------

@case("softmax_cross_entropy int logits", TypeError, "^logits must have dtype")
def _():
    z, y = np.ones((3, 2), np.int64), np.array([0, 1, 0])
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy float16 logits", TypeError, "^logits must have dtype")
def _():
    z, y = np.ones((3, 2), np.float16), np.array([0, 1, 0])
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy 1-D logits", ValueError, "^logits must be 2-D")
def _():
    z, y = _a(3), np.array([0, 1, 0])
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy empty batch", ValueError, "^logits has no rows")
def _():
    z, y = _a(0, 3), np.zeros(0, np.int64)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy no classes", ValueError, "^logits has no classes")
def _():
    z, y = _a(3, 0), np.zeros(3, np.int64)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy label too large", ValueError, r"^y holds labels in \[0, 3\]")
def _():
    z, y, out = _a(3, 3), np.array([0, 3, 1]), _a(3, 3)
    return (lambda: nnfast.softmax_cross_entropy(z, y, out=out)), [z, y, out]


@case("softmax_cross_entropy negative label", ValueError, r"^y holds labels in \[-1, 1\]")
def _():
    z, y, out = _a(3, 3), np.array([0, -1, 1]), _a(3, 3)
    return (lambda: nnfast.softmax_cross_entropy(z, y, out=out)), [z, y, out]


@case("softmax_cross_entropy labels wrong length", ValueError, r"^y has shape \(2,\)")
def _():
    z, y = _a(3, 3), np.array([0, 1])
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy one-hot wrong shape", ValueError, r"^y has shape \(3, 2\)")
def _():
    z, y = _a(3, 3), _a(3, 2)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy one-hot float32 with float64 logits", TypeError,
      "^y has dtype float32")
def _():
    z, y = _a(3, 3), np.eye(3, dtype=np.float32)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy float16 one-hot", TypeError, "^y (must have|has) dtype")
def _():
    z, y = _a(3, 3), np.eye(3, dtype=np.float16)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy complex y", TypeError, "^y must hold integer labels")
def _():
    z, y = _a(3, 3), np.eye(3, dtype=np.complex128)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy object y", TypeError, "^y must hold integer labels")
def _():
    z, y = _a(3, 3), np.array([0, 1, 2], dtype=object)
    return (lambda: nnfast.softmax_cross_entropy(z, y)), [z, y]


@case("softmax_cross_entropy out wrong dtype", TypeError, "^out has dtype float32")
def _():
    z, y, out = _a(3, 3), np.array([0, 1, 2]), _a(3, 3, dtype=np.float32)
    return (lambda: nnfast.softmax_cross_entropy(z, y, out=out)), [z, y, out]


@case("softmax_cross_entropy out read-only", ValueError, "^out is read-only")
def _():
    z, y, out = _a(3, 3), np.array([0, 1, 2]), _ro(_a(3, 3))
    return (lambda: nnfast.softmax_cross_entropy(z, y, out=out)), [z, y, out]


@case("sigmoid_binary_cross_entropy y shape", ValueError, r"^y has shape \(4,\).*logits")
def _():
    z, y, out = _a(4, 1), _a(4), _a(4, 1)
    return (lambda: nnfast.sigmoid_binary_cross_entropy(z, y, out=out)), [z, y, out]


@case("sigmoid_binary_cross_entropy 3-D logits", ValueError, "^logits must be 1-D or 2-D")
def _():
    z = _a(2, 2, 2)
    return (lambda: nnfast.sigmoid_binary_cross_entropy(z, z.copy())), [z]


@case("sigmoid_binary_cross_entropy complex y", TypeError, "^y must have dtype")
def _():
    z, y = _a(4), np.ones(4, np.complex64)
    return (lambda: nnfast.sigmoid_binary_cross_entropy(z, y)), [z, y]


@case("mean_squared_error int pred", TypeError, "^pred must have dtype")
def _():
    p, y = np.ones(4, np.int32), _a(4)
    return (lambda: nnfast.mean_squared_error(p, y)), [p, y]


@case("mean_squared_error dtype mismatch", TypeError, "^y has dtype float32")
def _():
    p, y = _a(4), _a(4, dtype=np.float32)
    return (lambda: nnfast.mean_squared_error(p, y)), [p, y]


@case("mean_squared_error empty batch", ValueError, "^pred has no rows")
def _():
    p = _a(0, 2)
    return (lambda: nnfast.mean_squared_error(p, p.copy())), [p]


@case("l2_penalty of None", TypeError, "^weights must be an array or a list")
def _():
    return (lambda: nnfast.l2_penalty(None, 0.1, 10)), []


@case("batchnorm_forward training is an array", TypeError, "^training must be a bool")
def _():
    z, g, b, rm, rv = _bn()
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv, training=np.array([1, 0]))), \
        [z, g, b, rm, rv]


@case("l2_penalty negative lam", ValueError, "^lam must be >= 0")
def _():
    w = _a(3, 3)
    return (lambda: nnfast.l2_penalty(w, -0.1, 10)), [w]


@case("l2_penalty NaN lam", ValueError, "^lam must be finite")
def _():
    w = _a(3, 3)
    return (lambda: nnfast.l2_penalty(w, float("nan"), 10)), [w]


@case("l2_penalty m = 0", ValueError, "^m must be > 0")
def _():
    w = _a(3, 3)
    return (lambda: nnfast.l2_penalty(w, 0.1, 0)), [w]


@case("l2_penalty int weights in a list", TypeError, r"^weights\[1\] must have dtype")
def _():
    w0, w1 = _a(3, 3), np.ones((2, 2), np.int64)
    return (lambda: nnfast.l2_penalty([w0, w1], 0.1, 10)), [w0, w1]


# --- dense ----------------------------------------------------------------------------------

@case("dense_forward int a", TypeError, "^a must have dtype")
def _():
    a, W = np.ones((2, 3), np.int64), _a(3, 4)
    return (lambda: nnfast.dense_forward(a, W, None)), [a, W]


@case("dense_forward W float32, a float64", TypeError, "^W has dtype float32")
def _():
    a, W = _a(2, 3), _a(3, 4, dtype=np.float32)
    return (lambda: nnfast.dense_forward(a, W, None)), [a, W]


@case("dense_forward b float32", TypeError, "^b has dtype float32")
def _():
    a, W, b = _a(2, 3), _a(3, 4), _a(4, dtype=np.float32)
    return (lambda: nnfast.dense_forward(a, W, b)), [a, W, b]


@case("dense_forward shapes do not fit", ValueError, r"a \(shape \(2, 3\)\) and W \(shape \(4, 4\)\)")
def _():
    a, W, out = _a(2, 3), _a(4, 4), _a(2, 4)
    return (lambda: nnfast.dense_forward(a, W, None, out=out)), [a, W, out]


@case("dense_forward b wrong shape", ValueError, r"^b has shape \(3,\)")
def _():
    a, W, b, out = _a(2, 3), _a(3, 4), _a(3), _a(2, 4)
    return (lambda: nnfast.dense_forward(a, W, b, out=out)), [a, W, b, out]


@case("dense_forward unknown activation", ValueError, "^activation must be one of")
def _():
    a, W, out = _a(2, 3), _a(3, 4), _a(2, 4)
    return (lambda: nnfast.dense_forward(a, W, None, "gelu", out=out)), [a, W, out]


@case("dense_forward out wrong shape", ValueError, r"^out has shape \(4, 2\)")
def _():
    a, W, out = _a(2, 3), _a(3, 4), _a(4, 2)
    return (lambda: nnfast.dense_forward(a, W, None, out=out)), [a, W, out]


@case("dense_forward out non-contiguous", ValueError, "^out must be C-contiguous")
def _():
    a, W, buf = _a(2, 3), _a(3, 4), _a(2, 8)
    return (lambda: nnfast.dense_forward(a, W, None, out=buf[:, ::2])), [a, W, buf]


@case("dense_forward out is a", ValueError, "^out shares memory with a")
def _():
    a, W = _a(2, 3), _a(3, 3)
    return (lambda: nnfast.dense_forward(a, W, None, out=a)), [a, W]


@case("dense_forward z_out is W", ValueError, "^z_out shares memory with W")
def _():
    a, W = _a(3, 3), _a(3, 3)
    return (lambda: nnfast.dense_forward(a, W, None, "relu", z_out=W)), [a, W]


@case("dense_forward z_out is out", ValueError, "^z_out shares memory with out")
def _():
    a, W, out = _a(2, 3), _a(3, 4), _a(2, 4)
    return (lambda: nnfast.dense_forward(a, W, None, "relu", out=out, z_out=out)), [a, W, out]


@case("dense_forward slope NaN", ValueError, "^slope must be finite")
def _():
    a, W = _a(2, 3), _a(3, 4)
    return (lambda: nnfast.dense_forward(a, W, None, "leaky_relu", slope=float("nan"))), [a, W]


@case("dense_backward relu without z_prev", ValueError, "^z_prev is required")
def _():
    d, a, W, dW = _a(5, 4), _a(5, 3), _a(3, 4), _a(3, 4)
    return (lambda: nnfast.dense_backward(d, a, W, "relu", dW_out=dW)), [d, a, W, dW]


@case("dense_backward softmax as activation_prev", ValueError, "^activation_prev must be one of")
def _():
    d, a, W = _a(5, 4), _a(5, 3), _a(3, 4)
    return (lambda: nnfast.dense_backward(d, a, W, "softmax")), [d, a, W]


@case("dense_backward shapes do not fit", ValueError, "^shapes do not fit: delta")
def _():
    d, a, W, dW = _a(5, 4), _a(5, 3), _a(2, 4), _a(2, 4)
    return (lambda: nnfast.dense_backward(d, a, W, dW_out=dW)), [d, a, W, dW]


@case("dense_backward z_prev wrong shape", ValueError, r"^z_prev has shape \(5, 2\)")
def _():
    d, a, W, z, dW = _a(5, 4), _a(5, 3), _a(3, 4), _a(5, 2), _a(3, 4)
    return (lambda: nnfast.dense_backward(d, a, W, "relu", z_prev=z, dW_out=dW)), [d, a, W, z, dW]


@case("dense_backward a_prev float32", TypeError, "^a_prev has dtype float32")
def _():
    d, a, W = _a(5, 4), _a(5, 3, dtype=np.float32), _a(3, 4)
    return (lambda: nnfast.dense_backward(d, a, W)), [d, a, W]


@case("dense_backward dW_out wrong shape", ValueError, r"^dW_out has shape \(4, 3\)")
def _():
    d, a, W, dW, db = _a(5, 4), _a(5, 3), _a(3, 4), _a(4, 3), _a(4)
    return (lambda: nnfast.dense_backward(d, a, W, dW_out=dW, db_out=db)), [d, a, W, dW, db]


@case("dense_backward dW_out and dprev_out overlap", ValueError,
      "^dW_out shares memory with dprev_out")
def _():
    d, a, W, buf, db = _a(5, 4), _a(5, 3), _a(3, 4), _a(40), _a(4)
    return (lambda: nnfast.dense_backward(d, a, W, dW_out=buf[:12].reshape(3, 4), db_out=db,
                                          dprev_out=buf[:15].reshape(5, 3))), [d, a, W, buf, db]


@case("dense_backward dprev_out read-only", ValueError, "^dprev_out is read-only")
def _():
    d, a, W, dW, dp = _a(5, 4), _a(5, 3), _a(3, 4), _a(3, 4), _ro(_a(5, 3))
    return (lambda: nnfast.dense_backward(d, a, W, dW_out=dW, dprev_out=dp)), [d, a, W, dW, dp]


# --- batch norm -----------------------------------------------------------------------------

def _bn(m=4, n=3, dtype=F64):
    return _a(m, n, dtype=dtype), _a(n, dtype=dtype), _a(n, dtype=dtype), _a(n, dtype=dtype), \
        np.abs(_a(n, dtype=dtype)) + 1


@case("batchnorm_forward training with one row", ValueError, "at least 2 rows")
def _():
    z, g, b, rm, rv = _bn(m=1)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward running_mean read-only", ValueError, "^running_mean is read-only")
def _():
    z, g, b, rm, rv = _bn()
    _ro(rm)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward running_var non-contiguous", ValueError,
      "^running_var is not C-contiguous")
def _():
    z, g, b, rm, _ = _bn()
    buf = np.ones(6)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, buf[::2])), [z, g, b, rm, buf]


@case("batchnorm_forward running stats are one array", ValueError,
      "^running_mean shares memory with running_var")
def _():
    z, g, b, rm, _ = _bn()
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rm)), [z, g, b, rm]


@case("batchnorm_forward running_mean float32", TypeError, "^running_mean has dtype float32")
def _():
    z, g, b, rm, rv = _bn()
    rm = rm.astype(np.float32)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward running_var wrong shape", ValueError, r"^running_var has shape \(4,\)")
def _():
    z, g, b, rm, _ = _bn()
    rv = np.ones(4)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward gamma wrong shape", ValueError, r"^gamma has shape \(2,\)")
def _():
    z, _, b, rm, rv = _bn()
    g = np.ones(2)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward int z", TypeError, "^z must have dtype")
def _():
    _, g, b, rm, rv = _bn()
    z = np.ones((4, 3), np.int64)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv)), [z, g, b, rm, rv]


@case("batchnorm_forward momentum 1.5", ValueError, "^momentum must be <= 1")
def _():
    z, g, b, rm, rv = _bn()
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv, momentum=1.5)), [z, g, b, rm, rv]


@case("batchnorm_forward eps 0", ValueError, "^eps must be > 0")
def _():
    z, g, b, rm, rv = _bn()
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv, eps=0.0)), [z, g, b, rm, rv]


@case("batchnorm_forward out is z in training", ValueError, "^out shares memory with z")
def _():
    z, g, b, rm, rv = _bn()
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv, out=z)), [z, g, b, rm, rv]


@case("batchnorm_forward inference running_var wrong shape", ValueError,
      r"^running_var has shape \(2,\)")
def _():
    z, g, b, rm, _ = _bn()
    rv, out = np.ones(2), _a(4, 3)
    return (lambda: nnfast.batchnorm_forward(z, g, b, rm, rv, training=False, out=out)), \
        [z, g, b, rm, rv, out]


@case("batchnorm_backward cache from elsewhere", TypeError, "^cache must be the BatchNormCache")
def _():
    d = _a(4, 3)
    return (lambda: nnfast.batchnorm_backward(d, None)), [d]


def _bn_cache():
    z, g, b, rm, rv = _bn()
    with nnfast.use_backend("reference"):
        _, cache = nnfast.batchnorm_forward(z, g, b, rm, rv)
    return cache


@case("batchnorm_backward dout wrong shape", ValueError, r"^dout has shape \(3, 3\)")
def _():
    cache, d = _bn_cache(), _a(3, 3)
    return (lambda: nnfast.batchnorm_backward(d, cache)), [d, cache.xhat, cache.gamma]


@case("batchnorm_backward dout float32", TypeError, "^dout has dtype float32")
def _():
    cache, d = _bn_cache(), _a(4, 3, dtype=np.float32)
    return (lambda: nnfast.batchnorm_backward(d, cache)), [d, cache.xhat]


@case("batchnorm_backward out overlaps dout", ValueError, "^out shares memory with dout")
def _():
    cache, buf = _bn_cache(), _a(5, 3)
    return (lambda: nnfast.batchnorm_backward(buf[:4], cache, out=buf[1:])), [buf, cache.xhat]


# --- optimizer updates ----------------------------------------------------------------------

def _p(n=6, dtype=F64):
    return _a(n, dtype=dtype), _a(n, dtype=dtype) * 0.1


@case("sgd_update param read-only", ValueError, "^param is read-only")
def _():
    p, g = _p()
    _ro(p)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update param non-contiguous", ValueError, "^param is not C-contiguous")
def _():
    buf, g = _a(12), _a(6)
    return (lambda: nnfast.sgd_update(buf[::2], g, 0.1)), [buf, g]


@case("sgd_update param Fortran 2-D", ValueError, "^param is not C-contiguous")
def _():
    p, g = np.asfortranarray(_a(4, 3)), _a(4, 3)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update param a list of floats", TypeError, r"^param\[0\] must be a numpy array")
def _():
    return (lambda: nnfast.sgd_update([[1.0, 2.0]], [np.ones(2)], 0.1)), []


@case("sgd_update int param", TypeError, "^param must have dtype")
def _():
    p, g = np.ones(6, np.int64), _a(6)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update float16 param", TypeError, "^param must have dtype")
def _():
    p, g = np.ones(6, np.float16), _a(6)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update grad wrong shape", ValueError, r"^grad has shape \(5,\)")
def _():
    p, g = _a(6), _a(5)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update grad float32", TypeError, "^grad has dtype float32")
def _():
    p, g = _a(6), _a(6, dtype=np.float32)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update grad complex", TypeError, "^grad must have dtype")
def _():
    p, g = _a(6), np.ones(6, np.complex128)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p, g]


@case("sgd_update negative lr", ValueError, "^lr must be >= 0")
def _():
    p, g = _p()
    return (lambda: nnfast.sgd_update(p, g, -0.1)), [p, g]


@case("sgd_update NaN lr", ValueError, "^lr must be finite")
def _():
    p, g = _p()
    return (lambda: nnfast.sgd_update(p, g, float("nan"))), [p, g]


@case("sgd_update inf lr", ValueError, "^lr must be finite")
def _():
    p, g = _p()
    return (lambda: nnfast.sgd_update(p, g, float("inf"))), [p, g]


@case("sgd_update negative weight_decay", ValueError, "^weight_decay must be >= 0")
def _():
    p, g = _p()
    return (lambda: nnfast.sgd_update(p, g, 0.1, weight_decay=-1.0)), [p, g]


@case("momentum_update velocity read-only", ValueError, "^velocity is read-only")
def _():
    p, g = _p()
    v = _ro(np.zeros(6))
    return (lambda: nnfast.momentum_update(p, g, v, 0.1)), [p, g, v]


@case("momentum_update velocity non-contiguous", ValueError, "^velocity is not C-contiguous")
def _():
    p, g = _p()
    buf = np.zeros(12)
    return (lambda: nnfast.momentum_update(p, g, buf[::2], 0.1)), [p, g, buf]


@case("momentum_update velocity is param", ValueError, "^param shares memory with velocity")
def _():
    p, g = _p()
    return (lambda: nnfast.momentum_update(p, g, p, 0.1)), [p, g]


@case("momentum_update velocity wrong shape", ValueError, r"^velocity has shape \(5,\)")
def _():
    p, g = _p()
    v = np.zeros(5)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1)), [p, g, v]


@case("momentum_update velocity float32", TypeError, "^velocity has dtype float32")
def _():
    p, g = _p()
    v = np.zeros(6, np.float32)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1)), [p, g, v]


for _beta, _msg in ((1.0, "^beta must be < 1"), (-0.1, "^beta must be >= 0"),
                    (float("nan"), "^beta must be finite")):
    def _make(beta=_beta):
        p, g = _p()
        v = np.ones(6)
        return (lambda: nnfast.momentum_update(p, g, v, 0.1, beta)), [p, g, v]
    case(f"momentum_update beta {_beta}", ValueError, _msg)(_make)


@case("momentum_update unknown style", ValueError, "^style must be one of")
def _():
    p, g = _p()
    v = np.ones(6)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1, style="keras")), [p, g, v]


@case("momentum_update dampening in the seed's style", ValueError, "^dampening is fixed")
def _():
    p, g = _p()
    v = np.ones(6)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1, dampening=0.1)), [p, g, v]


@case("momentum_update dampening 2", ValueError, "^dampening must be <= 1")
def _():
    p, g = _p()
    v = np.ones(6)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1, style="torch", dampening=2.0)), \
        [p, g, v]


@case("momentum_update nesterov a string", TypeError, "^nesterov must be a bool")
def _():
    p, g = _p()
    v = np.ones(6)
    return (lambda: nnfast.momentum_update(p, g, v, 0.1, style="torch", nesterov="yes")), \
        [p, g, v]


@case("rmsprop_update sq wrong shape", ValueError, r"^sq has shape \(3, 2\)")
def _():
    p, g = _p()
    s = np.ones((3, 2))
    return (lambda: nnfast.rmsprop_update(p, g, s, 0.1)), [p, g, s]


@case("rmsprop_update negative eps", ValueError, "^eps must be >= 0")
def _():
    p, g = _p()
    s = np.ones(6)
    return (lambda: nnfast.rmsprop_update(p, g, s, 0.1, eps=-1e-8)), [p, g, s]


@case("rmsprop_update NaN beta", ValueError, "^beta must be finite")
def _():
    p, g = _p()
    s = np.ones(6)
    return (lambda: nnfast.rmsprop_update(p, g, s, 0.1, beta=float("nan"))), [p, g, s]


@case("rmsprop_update sklearn style", ValueError, "^style must be one of")
def _():
    p, g = _p()
    s = np.ones(6)
    return (lambda: nnfast.rmsprop_update(p, g, s, 0.1, style="sklearn")), [p, g, s]


def _adam(**kw):
    p, g = _p()
    m, v = np.ones(6), np.ones(6)
    args = dict(step=1, lr=0.01)
    args.update(kw)
    return (lambda: nnfast.adam_update(p, g, m, v, **args)), [p, g, m, v]


for _kw, _exc, _msg in (
        (dict(beta1=1.0), ValueError, "^beta1 must be < 1"),
        (dict(beta1=-0.5), ValueError, "^beta1 must be >= 0"),
        (dict(beta2=1.5), ValueError, "^beta2 must be < 1"),
        (dict(beta2=float("nan")), ValueError, "^beta2 must be finite"),
        (dict(lr=-1.0), ValueError, "^lr must be >= 0"),
        (dict(lr=float("nan")), ValueError, "^lr must be finite"),
        (dict(eps=float("inf")), ValueError, "^eps must be finite"),
        (dict(weight_decay=-0.1), ValueError, "^weight_decay must be >= 0"),
        (dict(step=0), ValueError, "^step must be >= 1"),
        (dict(step=1.5), TypeError, "^step must be an integer"),
        (dict(style="keras"), ValueError, "^style must be one of"),
        (dict(decoupled=1), TypeError, "^decoupled must be a bool"),
        (dict(lr="0.1"), TypeError, "^lr must be a real number")):
    case(f"adam_update {_kw}", _exc, _msg)(lambda kw=_kw: _adam(**kw))


@case("adam_update m read-only", ValueError, "^m is read-only")
def _():
    p, g = _p()
    m, v = _ro(np.ones(6)), np.ones(6)
    return (lambda: nnfast.adam_update(p, g, m, v, 1, 0.01)), [p, g, m, v]


@case("adam_update v float32", TypeError, "^v has dtype float32")
def _():
    p, g = _p()
    m, v = np.ones(6), np.ones(6, np.float32)
    return (lambda: nnfast.adam_update(p, g, m, v, 1, 0.01)), [p, g, m, v]


@case("adam_update m and v overlap", ValueError, "^m shares memory with v")
def _():
    p, g = _p()
    buf = np.ones(9)
    return (lambda: nnfast.adam_update(p, g, buf[:6], buf[3:], 1, 0.01)), [p, g, buf]


@case("adam_update list: second param read-only, first untouched", ValueError,
      r"^param\[1\] is read-only")
def _():
    p0, g0 = _p()
    p1, g1 = _p(4)
    _ro(p1)
    ms, vs = [np.ones(6), np.ones(4)], [np.ones(6), np.ones(4)]
    return (lambda: nnfast.adam_update([p0, p1], [g0, g1], ms, vs, 1, 0.01)), \
        [p0, g0, p1, g1, *ms, *vs]


@case("adam_update list: last v wrong shape, nothing written", ValueError, r"^v\[2\] has shape")
def _():
    ps = [_a(3), _a(4), _a(5)]
    gs = [_a(3), _a(4), _a(5)]
    ms = [np.ones(3), np.ones(4), np.ones(5)]
    vs = [np.ones(3), np.ones(4), np.ones(6)]
    return (lambda: nnfast.adam_update(ps, gs, ms, vs, 1, 0.01)), [*ps, *gs, *ms, *vs]


@case("sgd_update list lengths differ", ValueError, "^grad must be a list of 2 arrays")
def _():
    ps, gs = [_a(3), _a(4)], [_a(3)]
    return (lambda: nnfast.sgd_update(ps, gs, 0.1)), [*ps, *gs]


@case("momentum_update velocity not a list", ValueError, "^velocity must be a list of 2")
def _():
    ps, gs = [_a(3), _a(4)], [_a(3), _a(4)]
    v = np.zeros(3)
    return (lambda: nnfast.momentum_update(ps, gs, v, 0.1)), [*ps, *gs, v]


@case("momentum_update list: second velocity is the first param", ValueError,
      "shares memory")
def _():
    ps, gs = [_a(3), _a(3)], [_a(3), _a(3)]
    vs = [np.zeros(3), ps[0]]
    return (lambda: nnfast.momentum_update(ps, gs, vs, 0.1)), [*ps, *gs, vs[0]]


@case("sgd_update grad overlaps param (buf[1:], buf[:-1])", ValueError,
      r"^param shares memory with grad")
def _():
    buf = _a(7)
    return (lambda: nnfast.sgd_update(buf[1:], buf[:-1], 0.1)), [buf]


@case("adam_update list: grad[1] is param[0]", ValueError,
      r"^param\[0\] shares memory with grad\[1\]")
def _():
    ps = [_a(4), _a(4)]
    gs = [_a(4), ps[0]]
    ms, vs = [np.zeros(4), np.zeros(4)], [np.ones(4), np.ones(4)]
    return (lambda: nnfast.adam_update(ps, gs, ms, vs, 1, 0.1)), [*ps, *ms, *vs]


@case("sigmoid out is an np.matrix", TypeError, "^out must be a plain numpy.ndarray")
def _():
    x, out = _a(3, 4), np.zeros((3, 4)).view(np.matrix)
    return (lambda: nnfast.sigmoid(x, out=out)), [x, out]


@case("sgd_update param is a masked array", TypeError, "^param must be a plain numpy.ndarray")
def _():
    p, g = np.ma.masked_array(_a(4), mask=[1, 0, 0, 1]), _a(4)
    return (lambda: nnfast.sgd_update(p, g, 0.1)), [p.data, g]


@case("sigmoid of a masked array", TypeError, "^x is a masked array")
def _():
    x = np.ma.masked_array(_a(4), mask=[1, 0, 0, 1])
    return (lambda: nnfast.sigmoid(x)), [x.data]


@case("batchnorm_forward inference out overlaps gamma", ValueError,
      "^out shares memory with gamma")
def _():
    z, g, b, rm, rv = _bn()
    buf = np.zeros(4 * 3 + 3)
    out, g2 = buf[:12].reshape(4, 3), buf[9:12]
    g2[...] = g
    return (lambda: nnfast.batchnorm_forward(z, g2, b, rm, rv, training=False, out=out)), \
        [z, buf, b, rm, rv]


@case("inverse_time_decay negative decay_rate", ValueError, "^decay_rate must be >= 0")
def _():
    return (lambda: nnfast.inverse_time_decay(0.2, -1.0, 3)), []


@case("inverse_time_decay NaN alpha0", ValueError, "^alpha0 must be finite")
def _():
    return (lambda: nnfast.inverse_time_decay(float("nan"), 1.0, 3)), []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_and_writes_nothing(name, backend):
    exc, match, build = CASES[name]
    thunk, watched = build()
    before = [x.copy() for x in watched]
    with pytest.raises(exc, match=match):
        thunk()
    for i, (x, x0) in enumerate(zip(watched, before)):
        np.testing.assert_array_equal(x, x0, err_msg=f"{name}, backend {backend}: array {i} "
                                                     "was written before the error")
