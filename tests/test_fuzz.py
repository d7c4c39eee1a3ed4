"""Generated hostile input (hypothesis) over the public kernels, on every backend and dtype.

Each test draws a class of input that crashed, corrupted memory or answered wrongly before
(issue 7) and checks the contract of DESIGN.md on it:

- ``test_overlapping_arguments``: every array argument of a call is either a fresh array or a
  view (contiguous or strided, possibly the very same view as another argument) into one shared
  buffer, so ``out=``, labels, parameters, gradients and state overlap each other in every way.
  The call must either raise ValueError naming the arrays that share memory, with the buffer
  untouched, or give exactly what the reference gives on fresh copies of the same values.
- ``test_ndarray_subclasses``: one argument is an ``np.matrix``, a masked array or another
  ndarray subclass. Written arrays (``out=``, parameters, state) must be a TypeError naming the
  argument; a masked input is a TypeError; any other subclass input is read as its data.
- ``test_huge_scalars``: hyperparameters that are huge Python ints, inf, NaN, bools or numpy
  scalars: a result or a TypeError/ValueError naming the argument (never OverflowError).
- ``test_tampered_batchnorm_cache``: the cache's arrays replaced by ones of other shapes,
  dtypes or layouts: a TypeError/ValueError naming the cache field.

The number of examples per test is the hypothesis profile's (``HYPOTHESIS_PROFILE``, default
"nnfast": 30 derandomized examples, so CI runs the same cases every time; "nnfast-long" draws
1000 new ones).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnfast
from conftest import close, reference
from nnfast.batchnorm import BatchNormCache

settings.register_profile("nnfast", max_examples=30, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("nnfast-long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "nnfast"))

M, K, N = 4, 3, 5      # batch rows, fan_in, fan_out / classes


class Arg:
    """One array argument: its name, shape, role ("in" read, "out" written result, "state"
    updated in place) and values ("normal", "positive" or "labels" in [0, N))."""

    def __init__(self, name, shape, role="in", values="normal"):
        self.name, self.shape, self.role, self.values = name, shape, role, values


def _elementwise(fn, xname="x", **kw):
    return ([Arg(xname, (M, N)), Arg("out", (M, N), "out")],
            lambda a: fn(a[xname], out=a["out"], **kw))


def _update(fn, states, **kw):
    args = [Arg("param", (M, N), "state"), Arg("grad", (M, N))]
    args += [Arg(s, (M, N), "state", "positive" if s in ("sq", "v") else "normal")
             for s in states]

    def call(a):
        if fn is nnfast.adam_update:
            return fn(a["param"], a["grad"], a["m"], a["v"], 1, **kw)
        return fn(a["param"], a["grad"], *[a[s] for s in states], **kw)
    return args, call


def _update_lists(fn, states, **kw):
    """The list form: two tensors whose arrays may overlap across tensors."""
    args = []
    for i in range(2):
        args += [Arg(f"param[{i}]", (N,), "state"), Arg(f"grad[{i}]", (N,))]
        args += [Arg(f"{s}[{i}]", (N,), "state", "positive" if s in ("sq", "v") else "normal")
                 for s in states]

    def call(a):
        lists = [[a[f"{n}[{i}]"] for i in range(2)] for n in ("param", "grad") + states]
        if fn is nnfast.adam_update:
            return fn(*lists, 1, **kw)
        return fn(*lists, **kw)
    return args, call


def _bn_cache(a):
    return BatchNormCache(a["xhat"], a["gamma"], a["invstd"])


CALLS = {
    "sigmoid": _elementwise(nnfast.sigmoid),
    "tanh_grad": _elementwise(nnfast.tanh_grad, "a"),
    "relu": _elementwise(nnfast.relu),
    "leaky_relu_grad": _elementwise(nnfast.leaky_relu_grad, "z", slope=0.1),
    "softmax": _elementwise(nnfast.softmax),
    "identity": _elementwise(nnfast.identity),
    "softmax_cross_entropy labels": (
        [Arg("logits", (M, N)), Arg("y", (M,), values="labels"), Arg("out", (M, N), "out")],
        lambda a: nnfast.softmax_cross_entropy(a["logits"], a["y"], out=a["out"])),
    "softmax_cross_entropy one-hot": (
        [Arg("logits", (M, N)), Arg("y", (M, N), values="positive"),
         Arg("out", (M, N), "out")],
        lambda a: nnfast.softmax_cross_entropy(a["logits"], a["y"], out=a["out"])),
    "sigmoid_binary_cross_entropy": (
        [Arg("logits", (M, N)), Arg("y", (M, N), values="positive"),
         Arg("out", (M, N), "out")],
        lambda a: nnfast.sigmoid_binary_cross_entropy(a["logits"], a["y"], out=a["out"])),
    "mean_squared_error": (
        [Arg("pred", (M, N)), Arg("y", (M, N)), Arg("out", (M, N), "out")],
        lambda a: nnfast.mean_squared_error(a["pred"], a["y"], out=a["out"])),
    "dense_forward": (
        [Arg("a", (M, K)), Arg("W", (K, N)), Arg("b", (N,)), Arg("out", (M, N), "out"),
         Arg("z_out", (M, N), "out")],
        lambda a: nnfast.dense_forward(a["a"], a["W"], a["b"], "relu", out=a["out"],
                                       z_out=a["z_out"])),
    "dense_backward": (
        [Arg("delta", (M, N)), Arg("a_prev", (M, K)), Arg("W", (K, N)), Arg("z_prev", (M, K)),
         Arg("dW_out", (K, N), "out"), Arg("db_out", (N,), "out"),
         Arg("dprev_out", (M, K), "out")],
        lambda a: nnfast.dense_backward(a["delta"], a["a_prev"], a["W"], "leaky_relu",
                                        z_prev=a["z_prev"], dW_out=a["dW_out"],
                                        db_out=a["db_out"], dprev_out=a["dprev_out"])),
    "batchnorm_forward training": (
        [Arg("z", (M, N)), Arg("gamma", (N,)), Arg("beta", (N,)),
         Arg("running_mean", (N,), "state"), Arg("running_var", (N,), "state", "positive"),
         Arg("out", (M, N), "out")],
        lambda a: nnfast.batchnorm_forward(a["z"], a["gamma"], a["beta"], a["running_mean"],
                                           a["running_var"], out=a["out"])[0]),
    "batchnorm_forward inference": (
        [Arg("z", (M, N)), Arg("gamma", (N,)), Arg("beta", (N,)), Arg("running_mean", (N,)),
         Arg("running_var", (N,), values="positive"), Arg("out", (M, N), "out")],
        lambda a: nnfast.batchnorm_forward(a["z"], a["gamma"], a["beta"], a["running_mean"],
                                           a["running_var"], training=False, out=a["out"])[0]),
    "batchnorm_backward": (
        [Arg("dout", (M, N)), Arg("xhat", (M, N)), Arg("gamma", (N,)),
         Arg("invstd", (N,), values="positive"), Arg("out", (M, N), "out")],
        lambda a: nnfast.batchnorm_backward(a["dout"], _bn_cache(a), out=a["out"])),
    "sgd_update": _update(nnfast.sgd_update, (), lr=0.1, weight_decay=0.01),
    "momentum_update": _update(nnfast.momentum_update, ("velocity",), lr=0.1),
    "rmsprop_update": _update(nnfast.rmsprop_update, ("sq",), lr=0.1),
    "adam_update": _update(nnfast.adam_update, ("m", "v"), lr=0.1),
    "sgd_update lists": _update_lists(nnfast.sgd_update, (), lr=0.1),
    "adam_update lists": _update_lists(nnfast.adam_update, ("m", "v"), lr=0.1),
}


def _results(value):
    """The arrays and floats of a result (tuples flattened, None and caches skipped)."""
    if isinstance(value, (tuple, list)):
        return [r for v in value for r in _results(v)]
    if isinstance(value, (np.ndarray, float)):
        return [value]
    return []


def _fill(rng, arg, dtype):
    if arg.values == "labels":
        return rng.integers(0, N, arg.shape)
    x = rng.standard_normal(arg.shape)
    return (np.abs(x) + 0.1 if arg.values == "positive" else x).astype(dtype)


@st.composite
def placements(draw, args):
    """Per argument: None (a fresh array) or (offset, step) in a shared buffer; sometimes
    exactly the placement of an earlier argument of the same shape."""
    size = max(int(np.prod(a.shape)) for a in args)
    room = 2 * size + 4
    out = []
    for i, arg in enumerate(args):
        same = [j for j in range(i) if args[j].shape == arg.shape and out[j] is not None
                and args[j].values != "labels" and arg.values != "labels"]
        choice = draw(st.sampled_from(["fresh", "view", "view", "strided"]
                                      + (["same"] if same else [])))
        if choice == "fresh":
            out.append(None)
        elif choice == "same":
            out.append(out[draw(st.sampled_from(same))])
        else:
            step = 2 if choice == "strided" else 1
            n = int(np.prod(arg.shape))
            out.append((draw(st.integers(0, room - step * (n - 1) - 1)), step))
    return out


def _materialize(args, where, dtype, seed):
    """The argument arrays (views into one buffer where ``where`` says) and the buffer."""
    rng = np.random.default_rng(seed)
    size = max(int(np.prod(a.shape)) for a in args)
    buf = rng.standard_normal(2 * size + 4).astype(dtype)
    ints = buf.view(np.int64 if dtype == np.float64 else np.int32)
    arrays = {}
    # labels last: a float written over their bytes would make them out of range
    for arg, place in sorted(zip(args, where), key=lambda p: p[0].values == "labels"):
        value = _fill(rng, arg, dtype)
        if place is None:
            arrays[arg.name] = value
            continue
        offset, step = place
        n = int(np.prod(arg.shape))
        base = ints if arg.values == "labels" else buf
        view = base[offset:offset + step * (n - 1) + 1:step].reshape(arg.shape)
        view[...] = value
        arrays[arg.name] = view
    return arrays, buf


@pytest.mark.parametrize("name", list(CALLS))
@given(data=st.data())
def test_overlapping_arguments(name, backend, dtype, data):
    args, call = CALLS[name]
    where = data.draw(placements(args), label="placements")
    arrays, buf = _materialize(args, where, dtype, seed=len(name))
    fresh = {k: v.copy() for k, v in arrays.items()}
    before = buf.copy()
    what = f"{name}, backend {backend}, dtype {dtype}, placements {where}"
    try:
        got = call(arrays)
    except ValueError as exc:
        msg = str(exc)
        strided = [a.name for a, p in zip(args, where) if a.role != "in" and p and p[1] == 2]
        if not any(msg.startswith(f"{n} must be C-contiguous") or
                   msg.startswith(f"{n} is not C-contiguous") for n in strided):
            assert "shares memory with" in msg, f"{what}: {msg}"
            assert any(msg.startswith(a.name + " shares") for a in args
                       if a.role != "in"), f"{what}: the message names no written array: {msg}"
        np.testing.assert_array_equal(buf, before, err_msg=f"{what}: written before the error")
        return
    expected = reference(call, fresh)
    for g, e in zip(_results(got), _results(expected)):
        close(g, e, dtype, what, equal_nan=True)
    for arg in args:
        if arg.role == "state":
            close(arrays[arg.name], fresh[arg.name], dtype, f"{what}: {arg.name}")


# --- ndarray subclasses -------------------------------------------------------------------

class Tagged(np.ndarray):
    """A harmless subclass, as a library's array type would be."""


SUBCLASSES = {
    "matrix": lambda x: np.asmatrix(x) if x.ndim == 2 else None,
    "masked": lambda x: np.ma.masked_array(x, mask=np.arange(x.size).reshape(x.shape) % 2 == 0),
    "masked, nothing masked": lambda x: np.ma.masked_array(x),
    "tagged": lambda x: x.view(Tagged),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("kind", list(SUBCLASSES))
@pytest.mark.parametrize("name", list(CALLS))
@given(data=st.data())
def test_ndarray_subclasses(name, kind, backend, dtype, data):
    args, call = CALLS[name]
    arg = data.draw(st.sampled_from([a for a in args if a.values != "labels" or kind != "matrix"]),
                    label="argument")
    arrays, _ = _materialize(args, [None] * len(args), dtype, seed=len(name))
    fresh = {k: v.copy() for k, v in arrays.items()}
    sub = SUBCLASSES[kind](arrays[arg.name])
    if sub is None:
        return
    arrays[arg.name] = sub
    what = f"{name}, backend {backend}, dtype {dtype}, {arg.name} as {kind}"
    field = name == "batchnorm_backward" and arg.name in ("xhat", "gamma", "invstd")
    shown = f"cache.{arg.name}" if field else arg.name
    if arg.role != "in" or kind.startswith("masked"):
        with pytest.raises(TypeError, match=rf"^{shown.replace('[', '.').replace(']', '.')} "):
            call(arrays)
        return
    got = call(arrays)
    expected = reference(call, fresh)
    for g, e in zip(_results(got), _results(expected)):
        assert type(g) in (np.ndarray, float), f"{what}: returned a {type(g).__name__}"
        close(g, e, dtype, what, equal_nan=True)


# --- hyperparameters ------------------------------------------------------------------------

SCALARS = st.one_of(
    st.integers(-10**400, 10**400), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -10**400, 2**31, 2**63, 2**64, True, np.float32(1e30),
                     np.int64(2**62), np.float64("nan"), None, "0.1", 1j, np.array([0.1, 0.2])]))

#: name -> call taking one hyperparameter value.
HYPER = {
    "sgd_update lr": lambda v, a: nnfast.sgd_update(a["param"], a["grad"], lr=v),
    "sgd_update weight_decay": lambda v, a: nnfast.sgd_update(a["param"], a["grad"], 0.1,
                                                              weight_decay=v),
    "momentum_update beta": lambda v, a: nnfast.momentum_update(a["param"], a["grad"], a["m"],
                                                                0.1, beta=v),
    "rmsprop_update eps": lambda v, a: nnfast.rmsprop_update(a["param"], a["grad"], a["v"], 0.1,
                                                             eps=v),
    "adam_update step": lambda v, a: nnfast.adam_update(a["param"], a["grad"], a["m"], a["v"],
                                                        v, 0.1),
    "adam_update lr": lambda v, a: nnfast.adam_update(a["param"], a["grad"], a["m"], a["v"], 1,
                                                      lr=v),
    "adam_update eps": lambda v, a: nnfast.adam_update(a["param"], a["grad"], a["m"], a["v"], 1,
                                                       0.1, eps=v),
    "leaky_relu slope": lambda v, a: nnfast.leaky_relu(a["grad"], slope=v),
    "batchnorm_forward momentum": lambda v, a: nnfast.batchnorm_forward(
        a["grad"], a["gamma"], a["beta"], a["rm"], a["rv"], momentum=v),
    "batchnorm_forward eps": lambda v, a: nnfast.batchnorm_forward(
        a["grad"], a["gamma"], a["beta"], a["rm"], a["rv"], eps=v),
    "batchnorm_forward training": lambda v, a: nnfast.batchnorm_forward(
        a["grad"], a["gamma"], a["beta"], a["rm"], a["rv"], training=v),
    "l2_penalty lam": lambda v, a: nnfast.l2_penalty([a["param"]], v, 10),
    "l2_penalty m": lambda v, a: nnfast.l2_penalty([a["param"]], 0.1, v),
    "inverse_time_decay epoch": lambda v, a: nnfast.inverse_time_decay(0.1, 1.0, v),
    "gradcheck eps": lambda v, a: nnfast.gradcheck(lambda: 0.0, a["param"], a["grad"], eps=v),
    # mid-sized ints would allocate (and initialize) gigabytes on the shared test machine:
    # the guard under test is the one for sizes beyond memory
    "MLP layer_sizes": lambda v, a: (None if type(v) is int and 10**4 < v < 10**13
                                     else nnfast.MLP([3, v, 2])),
    "MLP l2": lambda v, a: nnfast.MLP([3, 2], l2=v),
    "optim.Adam lr": lambda v, a: nnfast.optim.Adam(lr=v),
    "optim.SGD step on a huge lr": lambda v, a: nnfast.optim.SGD(lr=v).step(a["param"],
                                                                           a["grad"]),
}


@pytest.mark.parametrize("name", list(HYPER))
@given(value=SCALARS)
def test_huge_scalars(name, backend, dtype, value):
    """A result, or TypeError/ValueError naming the parameter: never OverflowError, and
    nothing written when an error is raised."""
    rng = np.random.default_rng(0)
    a = {k: rng.standard_normal((M, N)).astype(dtype) for k in ("param", "grad", "m")}
    a["v"] = np.abs(a["m"])
    a.update(gamma=np.ones(N, dtype), beta=np.zeros(N, dtype), rm=np.zeros(N, dtype),
             rv=np.ones(N, dtype))
    before = {k: x.copy() for k, x in a.items()}
    what = f"{name}, backend {backend}, dtype {dtype}, value {value!r:.60}"
    try:
        with np.errstate(all="ignore"):
            HYPER[name](value, a)
    except (TypeError, ValueError) as exc:
        short = name.split()[-1]
        assert short in str(exc) or "layer_sizes" in str(exc), f"{what}: {exc}"
        for k, x in a.items():
            np.testing.assert_array_equal(x, before[k], err_msg=f"{what}: {k} written")


# --- a tampered batch-norm cache --------------------------------------------------------------

TAMPER = {
    "gamma shorter": lambda c: setattr(c, "gamma", c.gamma[:-1]),
    "gamma longer": lambda c: setattr(c, "gamma", np.concatenate([c.gamma, c.gamma])),
    "invstd 2-D": lambda c: setattr(c, "invstd", c.invstd[None, :]),
    "invstd other dtype": lambda c: setattr(c, "invstd", c.invstd.astype(
        np.float32 if c.invstd.dtype == np.float64 else np.float64)),
    "xhat fewer columns": lambda c: setattr(c, "xhat", c.xhat[:, :-1]),
    "xhat 1-D": lambda c: setattr(c, "xhat", c.xhat.reshape(-1)),
    "xhat strided": lambda c: setattr(c, "xhat", np.repeat(c.xhat, 2, axis=1)[:, ::2]),
    "xhat a list": lambda c: setattr(c, "xhat", c.xhat.tolist()),
    "xhat int": lambda c: setattr(c, "xhat", c.xhat.astype(np.int64)),
    "gamma None": lambda c: setattr(c, "gamma", None),
    "gamma masked": lambda c: setattr(c, "gamma", np.ma.masked_array(c.gamma)),
}


@pytest.mark.parametrize("tamper", list(TAMPER))
@given(m=st.integers(2, 40), n=st.integers(1, 40))
def test_tampered_batchnorm_cache(tamper, backend, dtype, m, n):
    """What the compiled backward kernels index is checked: an error naming the cache field,
    or (for a harmless change such as a strided or list xhat) the reference's answer."""
    rng = np.random.default_rng(m * 41 + n)
    z = rng.standard_normal((m, n)).astype(dtype)
    _, cache = nnfast.batchnorm_forward(z, np.ones(n, dtype), np.zeros(n, dtype),
                                        np.zeros(n, dtype), np.ones(n, dtype))
    TAMPER[tamper](cache)
    dout = rng.standard_normal((m, n)).astype(dtype)
    try:
        got = nnfast.batchnorm_backward(dout, cache)
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith("cache.") or str(exc).startswith("dout "), str(exc)
        return
    expected = reference(nnfast.batchnorm_backward, dout, cache)
    for g, e in zip(got, expected):
        close(g, e, dtype, f"{tamper}, backend {backend}, dtype {dtype}", scale=m)


# --- extreme values through the optimizers and batch norm -------------------------------------

GRAD_VALUES = [0.0, -0.0, 1e-30, -1e-30, 0.5, -2.0, 1e19, -1e19, 1e30, -1e30, np.inf, -np.inf]
STATE_VALUES = [0.0, 1e-30, 1.0, 1e30, np.inf]
EPS_VALUES = [0.0, 1e-8, 1e30, 1e300]


@pytest.mark.parametrize("kernel", ["adam seed", "adam torch", "rmsprop seed", "rmsprop torch"])
@given(grad=st.lists(st.sampled_from(GRAD_VALUES), min_size=1, max_size=40),
       state=st.sampled_from(STATE_VALUES), eps=st.sampled_from(EPS_VALUES))
def test_optimizer_extremes(kernel, backend, dtype, grad, state, eps):
    """Every backend gives the reference's answer (NaN where it gives NaN) on gradients up to
    ±inf, second moments up to inf and eps up to 1e300 (inf in float32)."""
    name, style = kernel.split()
    g = np.array(grad, dtype)
    arrays = [np.ones_like(g), np.full_like(g, 0.1), np.full_like(g, state)]

    def call(p, m, v):
        with np.errstate(all="ignore"):
            if name == "adam":
                nnfast.adam_update(p, g, m, v, 3, 0.1, eps=eps, style=style)
            else:
                nnfast.rmsprop_update(p, g, v, 0.1, eps=eps, style=style)
        return p, m, v

    got = call(*[a.copy() for a in arrays])
    expected = reference(call, *[a.copy() for a in arrays])
    for label, x, e in zip(("param", "m", "v"), got, expected):
        close(x, e, dtype, f"{kernel}, backend {backend}, dtype {dtype}: {label}, grad {grad}, "
                           f"state {state}, eps {eps}", equal_nan=True)


@given(var=st.lists(st.sampled_from(STATE_VALUES), min_size=1, max_size=20),
       eps=st.sampled_from([1e-5, 1e30, 1e300]))
def test_batchnorm_inference_extremes(backend, dtype, var, eps):
    n = len(var)
    z = np.linspace(-3, 3, 4 * n).reshape(4, n).astype(dtype)
    args = (z, np.full(n, 2.0, dtype), np.full(n, 0.5, dtype), np.zeros(n, dtype),
            np.array(var, dtype))
    with np.errstate(all="ignore"):
        got = nnfast.batchnorm_forward(*args, eps=eps, training=False)[0]
        expected = reference(nnfast.batchnorm_forward, *args, eps=eps, training=False)[0]
    close(got, expected, dtype, f"backend {backend}, dtype {dtype}, var {var}, eps {eps}",
          equal_nan=True)
