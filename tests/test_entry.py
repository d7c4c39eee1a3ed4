"""The checked entries (nnfast._cython.entry) against the Python path they shortcut.

Each case builds its arguments twice, calls the public function once as users do (the entry may
serve it) and once with the entries switched off (the Python path always decides), and requires
the same outcome: the same exception type and message, or bit-identical results and the same
bits in every array the call may write. ``served`` says whether the entry itself must take the
call (its plain, already-checked form) or hand it back (anything to convert, check or refuse), so
a change that makes the entry decline everything, or serve what it must not, fails here.
"""
import numpy as np
import pytest

import nnfast
from nnfast import _backend

pytestmark = [pytest.mark.skipif(_backend.missing("cython", ()) is not None,
                                 reason="the checked entries are part of the Cython backend"),
              pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")]

F32, F64 = np.float32, np.float64
ACTIVATIONS = ("sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
               "leaky_relu", "leaky_relu_grad", "softmax")


class _Off:
    """Stands in for ``_backend.entries``: every entry declines."""

    def __getattr__(self, name):
        return _backend._never


def _entry_module():
    import nnfast._cython.entry as entry

    getattr(_backend.entries, "relu")      # binds the entries to the backend state
    return entry


def _unaligned(n, dtype):
    raw = np.zeros(n * np.dtype(dtype).itemsize + 1, np.uint8)
    x = np.frombuffer(raw.data, dtype=dtype, count=n, offset=1)
    x[...] = np.linspace(-2, 2, n)
    assert not x.flags.aligned
    return x


def _arrays(result):
    if isinstance(result, tuple):
        return [r for r in result if r is not None]
    return [result] if isinstance(result, np.ndarray) else []


def _outcome(call, make):
    args, kwargs = make()
    try:
        result = call(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return ("raised", type(exc), str(exc))
    written = [np.ascontiguousarray(np.asarray(a)).copy()
               for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    scalars = [r for r in result if isinstance(r, float)] if isinstance(result, tuple) else []
    return ("returned", [np.ascontiguousarray(np.asarray(r)).copy() for r in _arrays(result)],
            written, type(result).__name__, scalars)


def _same(a, b):
    assert a[0] == b[0], (a, b)
    if a[0] == "raised":
        assert a[1:] == b[1:]
        return
    assert a[3] == b[3] and a[4] == b[4]        # the result's type, and a loss to the bit
    for x, y in zip(a[1] + a[2], b[1] + b[2]):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), "bits differ"
    assert len(a[1]) == len(b[1]) and len(a[2]) == len(b[2])


def check(monkeypatch, backend, public, make):
    with nnfast.use_backend(backend):
        fast = _outcome(public, make)
        with monkeypatch.context() as m:
            for module in (nnfast.activations, nnfast.dense, nnfast.updates, nnfast.losses):
                m.setattr(module, "_entry", _Off())
            slow = _outcome(public, make)
    _same(fast, slow)
    return fast


def _x(shape, dtype, seed=0):
    return np.random.default_rng(seed).normal(0.0, 2.0, shape).astype(dtype)


def unary_cases(dtype):
    """(label, make, served): make() -> (args, kwargs) for f(x, out=...)."""
    def plain(shape):
        return lambda: ((_x(shape, dtype),), {})

    def with_out(build):
        def make():
            x, out = build()
            return (x,), {"out": out}
        return make

    base = lambda: _x(65, dtype)  # noqa: E731
    cases = [
        ("1-D", plain(100), True),
        ("3-D", plain((3, 4, 5)), True),
        ("out new", with_out(lambda: (_x(50, dtype), np.empty(50, dtype))), True),
        ("out is x", with_out(lambda: (lambda x: (x, x))(_x(50, dtype))), True),
        ("out overlaps x", with_out(lambda: (lambda b: (b[1:], b[:-1]))(base())), False),
        ("out strided", with_out(lambda: (_x(20, dtype), np.empty(40, dtype)[::2])), False),
        ("out a plain view", with_out(lambda: (_x(20, dtype),
                                               np.empty(20, dtype).view(np.ndarray))), True),
        ("out other dtype", with_out(lambda: (_x(20, dtype), np.empty(20, np.float16))), False),
        ("out other shape", with_out(lambda: (_x(20, dtype), np.empty(21, dtype))), False),
        ("out same size, other shape", with_out(lambda: (_x((4, 5), dtype),
                                                         np.empty((5, 4), dtype))), False),
        ("out a matrix", with_out(lambda: (_x((2, 3), dtype),
                                           np.asmatrix(np.empty((2, 3), dtype)))), False),
        ("x strided", lambda: ((_x(40, dtype)[::2],), {}), False),
        ("x Fortran", lambda: ((np.asfortranarray(_x((3, 4), dtype)),), {}), False),
        ("x byte-swapped", lambda: ((_x(10, dtype).astype(np.dtype(dtype).newbyteorder()),),
                                    {}), False),
        ("x unaligned", lambda: ((_unaligned(10, dtype),), {}), False),
        ("x a list", lambda: (([0.5, -1.0],), {}), False),
        ("x int", lambda: ((np.arange(5),), {}), False),
        ("x empty", lambda: ((np.empty(0, dtype),), {}), False),
        ("x 0-d", lambda: ((np.array(1.5, dtype),), {}), True),
        ("x a memmap-like subclass", lambda: ((np.asmatrix(_x((2, 2), dtype)),), {}), False),
        ("x large", plain(1 << 17), False),
    ]
    return cases


@pytest.mark.parametrize("backend", ["cython", "auto"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_entries_agree_with_the_python_path(monkeypatch, backend, dtype, name):
    entry = _entry_module()
    public = getattr(nnfast, name)
    cases = unary_cases(dtype)
    if name == "relu":       # the read-only case: make the out really read-only
        def ro():
            out = np.empty(20, dtype)
            out.flags.writeable = False
            return (_x(20, dtype),), {"out": out}
        cases.append(("out really read-only", ro, False))
    for label, make, served in cases:
        check(monkeypatch, backend, public, make)
        args, kwargs = make()
        slope = (0.01,) if "leaky" in name else ()
        with nnfast.use_backend("cython"):
            got = getattr(entry, name)(*args, *slope, kwargs.get("out"))
        if name == "softmax" and label == "x 0-d":
            served = False           # softmax needs an axis: the Python path raises
        assert (got is not None) == served, (name, label)


@pytest.mark.parametrize("slope", [0.2, 0.0, -3.0, 1, np.float64(0.2), True, float("nan"),
                                   float("inf"), "0.1", None])
def test_leaky_slope_entries_agree(monkeypatch, slope):
    for name in ("leaky_relu", "leaky_relu_grad"):
        check(monkeypatch, "cython", getattr(nnfast, name),
              lambda: ((_x(30, F32),), {"slope": slope}))


def test_entries_follow_the_backend_in_force():
    entry = _entry_module()
    x = _x(1000, F32)
    for backend, served in (("cython", True), ("numba", False), ("reference", False),
                            ("auto", True)):
        if backend in nnfast.backends():
            with nnfast.use_backend(backend):
                assert (entry.relu(x, None) is not None) == served, backend
    big = _x(4096, F32)     # auto runs softmax on Cython only up to 2047 elements
    with nnfast.use_backend("auto"):
        assert entry.softmax(x, None) is not None
        assert entry.softmax(big, None) is None
    with nnfast.use_backend("cython"):
        assert entry.softmax(big, None) is not None


def dense_forward_cases(dtype):
    m, k, n = 6, 5, 4

    def make(a=None, W=None, b="b", activation="relu", out=None, z_out=None, **kw):
        def build():
            aa = _x((m, k), dtype, 1) if a is None else a()
            WW = _x((k, n), dtype, 2) if W is None else W()
            bb = _x(n, dtype, 3) if b == "b" else (b() if callable(b) else b)
            kwargs = dict(kw)
            if out is not None:
                kwargs["out"] = out()
            if z_out is not None:
                kwargs["z_out"] = z_out()
            return (aa, WW, bb, activation), kwargs
        return build

    return [
        ("plain", make(), True),
        ("no bias", make(b=None), True),
        ("every activation", None, True),
        ("out and z_out", make(out=lambda: np.empty((m, n), dtype),
                               z_out=lambda: np.empty((m, n), dtype)), True),
        ("z_out is out", None, False),
        ("out overlaps a", None, False),
        ("z_out overlaps W", None, False),
        ("bias wrong length", make(b=lambda: _x(n + 1, dtype)), False),
        ("bias 2-D", make(b=lambda: _x((1, n), dtype)), False),
        ("bias other dtype", make(b=lambda: _x(n, np.float16)), False),
        ("a strided", make(a=lambda: _x((m, 2 * k), dtype)[:, ::2]), False),
        ("W Fortran", make(W=lambda: np.asfortranarray(_x((k, n), dtype))), False),
        ("W other dtype", make(W=lambda: _x((k, n), F32 if dtype == F64 else F64)), False),
        ("shapes do not fit", make(W=lambda: _x((k + 1, n), dtype)), False),
        ("a 1-D", make(a=lambda: _x(k, dtype)), False),
        ("a a list", make(a=lambda: [[1.0] * k] * m), False),
        ("k = 0", make(a=lambda: np.empty((m, 0), dtype), W=lambda: np.empty((0, n), dtype)),
         False),
        ("m = 0", make(a=lambda: np.empty((0, k), dtype)), False),
        ("bad activation", make(activation="swish"), False),
        ("activation not a string", make(activation=3), False),
        ("softmax", make(activation="softmax"), True),
        ("slope int", make(activation="leaky_relu", slope=1), False),
        ("slope nan", make(activation="leaky_relu", slope=float("nan")), False),
        ("out wrong shape", make(out=lambda: np.empty((m, n + 1), dtype)), False),
        ("out Fortran", make(out=lambda: np.empty((m, n), dtype, order="F")), False),
    ]


def _dense_forward_special(dtype, label):
    m, k, n = 6, 5, 4
    a, W, b = _x((m, k), dtype, 1), _x((k, n), dtype, 2), _x(n, dtype, 3)
    if label == "z_out is out":
        out = np.empty((m, n), dtype)
        return (a, W, b, "relu"), {"out": out, "z_out": out}
    if label == "out overlaps a":
        buf = np.empty(m * k + m * n, dtype)
        a2 = buf[:m * k].reshape(m, k)
        a2[...] = a
        return (a2, W, b, "relu"), {"out": buf[m * k - n:m * k - n + m * n].reshape(m, n)}
    if label == "z_out overlaps W":
        buf = np.empty(k * n + m * n, dtype)
        W2 = buf[:k * n].reshape(k, n)
        W2[...] = W
        return (a, W2, b, "tanh"), {"z_out": buf[1:1 + m * n].reshape(m, n)}
    raise AssertionError(label)


@pytest.mark.parametrize("backend", ["cython", "auto"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_dense_forward_entry_agrees_with_the_python_path(monkeypatch, backend, dtype):
    entry = _entry_module()
    for label, make, served in dense_forward_cases(dtype):
        if label == "every activation":
            for act in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"):
                mk = dense_forward_cases(dtype)[0][1]
                check(monkeypatch, backend, nnfast.dense_forward,
                      lambda: (mk()[0][:3] + (act,), {}))
            continue
        if make is None:
            make = (lambda lb: lambda: _dense_forward_special(dtype, lb))(label)
        check(monkeypatch, backend, nnfast.dense_forward, make)
        args, kwargs = make()
        with nnfast.use_backend("cython"):
            got = entry.dense_forward(*args, kwargs.get("slope", 0.01), kwargs.get("out"),
                                      kwargs.get("z_out"))
        assert (got is not None) == served, label


def dense_backward_make(dtype, act="relu", need_dprev=True, z_prev=True, outs=(), **change):
    m, k, n = 7, 5, 3

    def build():
        arrays = {"delta": _x((m, n), dtype, 1), "a_prev": _x((m, k), dtype, 2),
                  "W": _x((k, n), dtype, 3)}
        for name, fn in change.items():
            if name in arrays:
                arrays[name] = fn(arrays)
        kwargs = {"need_dprev": need_dprev}
        if z_prev:
            kwargs["z_prev"] = change.get("z", lambda arrays: _x((m, k), dtype, 4))(arrays)
        shapes = {"dW_out": (k, n), "db_out": (n,), "dprev_out": (m, k)}
        for name in outs:
            kwargs[name] = np.empty(shapes[name], dtype)
        if "shared_outs" in change:
            buf = np.empty(k * n + n, dtype)
            kwargs["dW_out"] = buf[:k * n].reshape(k, n)
            kwargs["db_out"] = buf[k * n - 1:k * n - 1 + n]
        return (arrays["delta"], arrays["a_prev"], arrays["W"], act), kwargs
    return build


@pytest.mark.parametrize("backend", ["cython", "auto"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_dense_backward_entry_agrees_with_the_python_path(monkeypatch, backend, dtype):
    entry = _entry_module()
    cases = [("plain", dense_backward_make(dtype), True),
             ("outs given", dense_backward_make(dtype, outs=("dW_out", "db_out", "dprev_out")),
              True),
             ("no dprev", dense_backward_make(dtype, need_dprev=False), True),
             ("need_dprev 1", dense_backward_make(dtype, need_dprev=1), False),
             ("relu without z_prev", dense_backward_make(dtype, z_prev=False), False),
             ("tanh without z_prev", dense_backward_make(dtype, act="tanh", z_prev=False), True),
             ("identity", dense_backward_make(dtype, act="identity"), True),
             ("leaky", dense_backward_make(dtype, act="leaky_relu"), True),
             ("softmax is not a hidden activation", dense_backward_make(dtype, act="softmax"),
              False),
             ("outs share memory", dense_backward_make(dtype, shared_outs=None), False),
             ("delta strided", dense_backward_make(
                 dtype, delta=lambda a: np.repeat(a["delta"], 2, axis=1)[:, ::2]), False),
             ("W other shape", dense_backward_make(
                 dtype, W=lambda a: _x((6, 3), dtype)), False),
             ("z_prev other shape", dense_backward_make(
                 dtype, z=lambda a: _x((7, 4), dtype)), False),
             ("m = 0", dense_backward_make(
                 dtype, delta=lambda a: np.empty((0, 3), dtype),
                 a_prev=lambda a: np.empty((0, 5), dtype), z=lambda a: np.empty((0, 5), dtype)),
              False)]
    for label, make, served in cases:
        check(monkeypatch, backend, nnfast.dense_backward, make)
        args, kwargs = make()
        with nnfast.use_backend("cython"):
            got = entry.dense_backward(*args, kwargs.get("z_prev"), 0.01,
                                       kwargs.get("need_dprev", True), kwargs.get("dW_out"),
                                       kwargs.get("db_out"), kwargs.get("dprev_out"))
        assert (got is not None) == served, label


def _update_cases(dtype, n_states):
    shape = (40,)

    def make(param=None, grad=None, states=None):
        def build():
            p = _x(shape, dtype, 1) if param is None else param()
            g = _x(shape, dtype, 2) * 0.1 if grad is None else grad()
            ss = ([np.abs(_x(shape, dtype, 3 + i)) for i in range(n_states)]
                  if states is None else states())
            return p, g, ss
        return build

    def state_is_param():
        p = _x(shape, dtype, 1)
        return p, _x(shape, dtype, 2), [p] + [np.zeros(shape, dtype)] * (n_states - 1)

    def states_overlap():
        p = _x(shape, dtype, 1)
        buf = np.zeros(2 * shape[0] - 1, dtype)
        return p, _x(shape, dtype, 2), [buf[:shape[0]], buf[shape[0] - 1:]]

    cases = [("plain", make(), True),
             ("2-D", make(param=lambda: _x((5, 8), dtype), grad=lambda: _x((5, 8), dtype),
                          states=lambda: [np.abs(_x((5, 8), dtype)) for _ in range(n_states)]),
              True),
             ("grad strided", make(grad=lambda: _x(80, dtype)[::2]), False),
             ("grad other shape", make(grad=lambda: _x((40, 1), dtype)), False),
             ("grad other dtype", make(grad=lambda: _x(shape, np.float16)), False),
             ("param read-only", make(param=lambda: (lambda p: (setattr(p.flags, "writeable",
                                                                       False), p)[1])(
                 _x(shape, dtype))), False),
             ("param strided", make(param=lambda: _x(80, dtype)[::2]), False),
             ("param a list", make(param=lambda: [0.5] * 40), False),
             ("grad is param", None, False),
             ("large", make(param=lambda: _x(1 << 17, dtype),
                            grad=lambda: _x(1 << 17, dtype),
                            states=lambda: [np.zeros(1 << 17, dtype) for _ in range(n_states)]),
              False)]
    if n_states:
        cases += [("state is param", state_is_param, False),
                  ("state other dtype", make(states=lambda: [np.zeros(shape, np.float16)
                                                             for _ in range(n_states)]), False),
                  ("state other shape", make(states=lambda: [np.zeros((41,), dtype)
                                                             for _ in range(n_states)]), False)]
    if n_states == 2:
        cases.append(("states overlap", states_overlap, False))
    return cases


UPDATES = {
    "sgd_update": (0, lambda p, g, ss: ((p, g, 0.01), {"weight_decay": 0.1})),
    "momentum_update": (1, lambda p, g, ss: ((p, g, ss[0], 0.01), {"beta": 0.8,
                                                                   "style": "torch",
                                                                   "nesterov": True})),
    "rmsprop_update": (1, lambda p, g, ss: ((p, g, ss[0], 0.01), {"style": "torch"})),
    "adam_update": (2, lambda p, g, ss: ((p, g, ss[0], ss[1], 3, 0.01),
                                         {"weight_decay": 0.01, "decoupled": True})),
}


#: The rules' kernel scalars (nnfast._rules ``kernel_args``) for a direct call of each entry.
ENTRY_SCALARS = {"sgd_update": (0.01, 0.1),
                 "momentum_update": (0.01, 0.9, 0.1, 0.0, True, False),
                 "rmsprop_update": (0.01, 0.99, 1e-8, 0.0, False),
                 "adam_update": (0.01, 0.9, 0.999, 1e-8, 0.0, False, 0.1, 0.01, True)}


@pytest.mark.parametrize("backend", ["cython", "auto"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", list(UPDATES))
def test_update_entries_agree_with_the_python_path(monkeypatch, backend, dtype, name):
    entry = _entry_module()
    n_states, call_args = UPDATES[name]
    public = getattr(nnfast, name)
    for label, make, served in _update_cases(dtype, n_states):
        if make is None:        # grad is param
            def make():
                p = _x((40,), dtype)
                return p, p, [np.zeros(40, dtype) for _ in range(n_states)]
        check(monkeypatch, backend, public, lambda: call_args(*make()))
        p, g, ss = make()
        with nnfast.use_backend("cython"):
            got = getattr(entry, name)(p, g, *ss, *ENTRY_SCALARS[name])
        assert got == served, label


@pytest.mark.parametrize("bad", [{"beta1": 1.0}, {"beta1": True}, {"eps": float("nan")},
                                 {"style": "keras"}, {"beta1": np.array([0.9])},
                                 {"weight_decay": -1}])
def test_cached_rules_never_skip_a_check(bad):
    """The optimizer rules are made once per options (``updates._rule``): a bad option still
    raises its error on every call, however often the good one ran before."""
    p, g = np.zeros(8, F32), np.ones(8, F32)
    m, v = np.zeros(8, F32), np.zeros(8, F32)
    for _ in range(2):
        nnfast.adam_update(p, g, m, v, 1, 0.01)
        with pytest.raises((TypeError, ValueError)):
            nnfast.adam_update(p, g, m, v, 1, 0.01, **bad)


def test_an_unbound_entry_declines():
    """Before ``nnfast._backend`` binds the entries to its backend state (a process that imports
    the extension module directly), every entry hands the call back instead of guessing."""
    import subprocess
    import sys

    code = ("import numpy as np, nnfast._cython.entry as e\n"
            "x = np.ones(3)\n"
            "assert e.relu(x, None) is None and e.sgd_update(x, x.copy(), 0.1, 0.0) is False\n"
            "assert e.dense_forward(np.ones((2, 3)), np.ones((3, 2)), None, 'relu', 0.01, None,"
            " None) is None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr



@pytest.mark.parametrize("backend", ["cython", "auto"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_softmax_cross_entropy_entry_agrees_with_the_python_path(monkeypatch, backend, dtype):
    entry = _entry_module()
    m, k = 9, 4

    def make(labels=None, logits=None, out=None):
        def build():
            z = _x((m, k), dtype) if logits is None else logits()
            y = np.arange(m) % k if labels is None else labels()
            return (z, y), ({} if out is None else {"out": out(z)})
        return build

    def shared_out():
        buf = np.empty(m * k + 1, dtype)
        z = buf[1:].reshape(m, k)
        z[...] = _x((m, k), dtype)
        return (z, np.arange(m) % k), {"out": buf[:-1].reshape(m, k)}

    cases = [("plain", make(), True),
             ("out given", make(out=lambda z: np.empty((m, k), dtype)), True),
             ("out is the logits", make(out=lambda z: z), True),
             ("out overlaps the logits", shared_out, False),
             ("int32 labels", make(labels=lambda: (np.arange(m) % k).astype(np.int32)), False),
             ("label out of range", make(labels=lambda: np.arange(m)), False),
             ("negative label", make(labels=lambda: -(np.arange(m) % k)), False),
             ("labels strided", make(labels=lambda: (np.arange(2 * m) % k)[::2]), False),
             ("labels too short", make(labels=lambda: np.arange(m - 1) % k), False),
             ("labels a list", make(labels=lambda: [0] * m), False),
             ("one-hot targets", make(labels=lambda: np.eye(k, dtype=dtype)[np.arange(m) % k]),
              False),
             ("logits 1-D", make(logits=lambda: _x(k, dtype), labels=lambda: np.zeros(1, int)),
              False),
             ("logits Fortran", make(logits=lambda: np.asfortranarray(_x((m, k), dtype))),
              False),
             ("large", make(logits=lambda: _x((1 << 15, k), dtype),
                            labels=lambda: np.arange(1 << 15) % k), False)]
    for label, build, served in cases:
        check(monkeypatch, backend, nnfast.softmax_cross_entropy, build)
        args, kwargs = build()
        with nnfast.use_backend("cython"):
            got = entry.softmax_cross_entropy(*args, kwargs.get("out"))
        assert (got is not None) == served, label
