"""Vectorizable scalar math for the Numba kernels: exp, tanh, sigmoid, log1p_unit.

Why this file exists: ``math.exp``/``math.tanh``/``math.log1p`` in Numba are calls into libm,
one element at a time, so LLVM cannot vectorize a loop that uses them (measured, 1e6 float32:
sigmoid through ``math.exp`` 3.1 ms against NumPy's SIMD ``1/(1+np.exp(-x))`` 0.8 ms; ``math.tanh``
17 ms against ``np.tanh`` 0.39 ms). The functions here are plain arithmetic, bit casts and
selects, so they inline into a kernel's loop and LLVM turns that loop into AVX2/FMA code.

exp(x): Cody–Waite range reduction, ``n = rint(x·log2 e)``, ``r = x - n·ln2_hi - n·ln2_lo``, a
polynomial for e^r on |r| <= ln2/2 (float32: Cephes ``expf``'s minimax, about 1 ulp; float64:
Taylor to degree 13, truncation < 1e-17 relative), then ``e^r · 2^n`` with 2^n built by
shifting n into the exponent bits (the ``_ldexp`` intrinsic: integer shift and LLVM
``bitcast``). 2^n is applied as two factors 2^(n/2)·2^(n - n/2), so the whole range from total
underflow to overflow comes out right (0, subnormals, inf) with x clamped only to keep n small.
NaN propagates: the clamps are comparisons that are false for NaN, and n is taken from 0 then.

Every function is written once per dtype (``@overload`` on the argument type) with constants of
that dtype, so float32 math never widens to float64 (a float64 constant would turn a float32
loop into convert-and-compute, half the SIMD width).

Fast-math flags (``FASTMATH``, used by every kernel of the backend): ``nsz`` (sign of zero),
``arcp`` (x/y as x·(1/y)), ``contract`` (fused multiply-add), ``afn`` (approximate sqrt/div
sequences). Not ``nnan``/``ninf``: NaN and inf must go through as NumPy's do. Not ``reassoc``
in general: it would let LLVM reorder the Cody–Waite steps here. Sums along a row need it to
vectorize, so they live in small non-inlined helpers compiled with ``SUM_FASTMATH``
(``FASTMATH`` + ``reassoc``, e.g. ``sum_span``): the order of additions is then
fixed by the compiled code, the same on every call (deterministic).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .._constants import BLOCK, PARALLEL_MIN  # noqa: F401 (the backend's parallel loops)
from ._cache import njit

FASTMATH = {"nsz", "arcp", "contract", "afn"}
# error_model="numpy": a float division by zero gives inf/NaN instead of raising
# ZeroDivisionError; the Python model's check per division stops vectorization (measured).
# inline="always": Numba inlines at its IR level; without it every call is an opaque native call
# (with an error-status check) and the loop does not vectorize.
_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}
_INLINE = dict(_JIT, inline="always")
# The overloads' implementations are inlined into every caller and never run on their own, so
# they are not cached: a cached caller does not need them, and an uncached one compiles them in
# milliseconds. (Cached, their lambdas had cache files of their own that _cache's guards do not
# cover: a damaged one stopped every later compilation.)
_OVERLOAD = {"fastmath": FASTMATH, "error_model": "numpy"}
SUM_FASTMATH = FASTMATH | {"reassoc"}
#: For kernels that divide by a square root (optimizers, batch norm): without ``arcp`` LLVM keeps
#: ``x / sqrt(y)`` a true sqrt and division. With it, it emits a reciprocal-square-root estimate
#: and a Newton step, ``r·(1.5 - 0.5·y·r²)``, which is NaN for y = inf (inf·0) where NumPy gives
#: x / inf = 0: float32 Adam/RMSprop with grad = 1e30, eps = 1e300 or an inf second moment, batch
#: norm with an inf running variance (issue 7). ``afn`` alone does not do this (tried).
SQRT_FASTMATH = FASTMATH - {"arcp"}


@intrinsic
def _ldexp(typingctx, p, t):
    """p · 2^t for an integer-valued float t (|t| < 2·max exponent), as two exponent-bit
    factors 2^(t>>1) · 2^(t - t>>1) built with integer shifts and a ``bitcast``; p's type."""
    if p not in (types.float32, types.float64) or t != p:
        return None

    def codegen(context, builder, sig, args):
        value, power = args
        if p == types.float32:
            ity, fty, bias, shift = ir.IntType(32), ir.FloatType(), 127, 23
        else:
            ity, fty, bias, shift = ir.IntType(64), ir.DoubleType(), 1023, 52
        n = builder.fptosi(power, ity)
        n1 = builder.ashr(n, ir.Constant(ity, 1))
        n2 = builder.sub(n, n1)
        result = value
        for half in (n1, n2):
            bits = builder.shl(builder.add(half, ir.Constant(ity, bias)), ir.Constant(ity, shift))
            result = builder.fmul(result, builder.bitcast(bits, fty))
        return result

    return p(p, t), codegen


# ---------------------------------------------------------------------------------------------
# float32
_F = np.float32
_LOG2E_F = _F(1.44269504088896341)
_LN2_HI_F = _F(0.693359375)
_LN2_LO_F = _F(-2.12194440e-4)
_EXP_HI_F = _F(89.0)      # e^89 > FLT_MAX: overflows to inf through the 2^n factors
_EXP_LO_F = _F(-104.0)    # e^-104 < smallest subnormal: underflows to 0
_ZERO_F, _ONE_F, _TWO_F = _F(0.0), _F(1.0), _F(2.0)
_P0_F, _P1_F, _P2_F = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3_F, _P4_F, _P5_F = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
# tanh: one rational function on the whole range, no exp (the exp-based form, two branches
# plus exp and a division, ran at 0.7-0.8x of NumPy's AVX-512 np.tanh; this one at ~1.3-1.5x).
# tanh(x) = x (1 + z N(z)) / (1 + z D(z)), z = x^2, x clamped to [-9, 9] (tanh(9) rounds to
# 1 - 1 ulp, beyond it to 1): N degree 4, D degree 4, i.e. odd numerator of degree 11 and even
# denominator of degree 8, fitted by the differential-correction algorithm (scipy linprog) for
# minimax relative error on (0, 9] with R(9) = 1 imposed: 4.1e-8 in exact arithmetic. N(0) = D(0)
# = 1 exactly, so tiny and subnormal x give x itself. Float32 evaluation, all float32 x in
# [0, 10] against float64 np.tanh: mean 0.50 ulp, max 5.6 ulp (near x = 8.4, where p and q
# ~1e5 each carry their rounding and the spacing below 1 is half that above); rounding can
# overshoot 1 near x = 8.1, so the result is clamped to [-1, 1].
_TANH_CLAMP_F = _F(9.0)
_TN1_F, _TN2_F = _F(0.13622638583183289), _F(0.0037977690808475018)
_TN3_F, _TN4_F = _F(2.6655729016056284e-05), _F(2.7612813369159994e-08)
_TN5_F = _F(-1.0240338091382917e-11)
_TD1_F, _TD2_F = _F(0.46955958008766174), _F(0.026984481140971184)
_TD3_F, _TD4_F = _F(0.0003816811367869377), _F(1.1966753845626954e-06)
# log1p on [0, 1]: log1p(t) = 2 atanh(s) = 2s (1 + z R(z)), s = t/(2+t) in [0, 1/3], z = s^2; R
# is mpmath's chebyfit of (atanh(s)/s - 1)/z on z in [0, 1/9] (float32: degree 4, |z R| error
# < 5e-10; float64 below: degree 9, < 6e-18), so no range reduction and no select is needed.
# s itself is carried as s + c: u = 2 + t rounds, but e_u = t - (u - 2) is its exact error, and
# t - s*u is exact as one fma (``contract``), so c = ((t - s*u) - s*e_u)/u restores the bits the
# division lost (without c: up to 2 ulp; with it: float32 exhaustive max 0.71 ulp, float64
# <= 0.63 ulp against mpmath; subnormal t excepted, where s = t/2 itself is subnormal).
_L0_F, _L1_F, _L2_F = _F(0.3333333366026371), _F(0.1999985316596486), _F(0.14296178997151418)
_L3_F, _L4_F = _F(0.10853287900440187), _F(0.11612164612011674)


@njit(**_INLINE)
def _exp_f32(x):
    if x > _EXP_HI_F:
        x = _EXP_HI_F
    if x < _EXP_LO_F:
        x = _EXP_LO_F
    t = np.rint(x * _LOG2E_F)
    t = t if x == x else _ZERO_F
    r = x - t * _LN2_HI_F
    r = r - t * _LN2_LO_F
    p = _P0_F * r + _P1_F
    p = p * r + _P2_F
    p = p * r + _P3_F
    p = p * r + _P4_F
    p = p * r + _P5_F
    p = p * (r * r) + r + _ONE_F
    return _ldexp(p, t)


@njit(**_INLINE)
def _tanh_f32(x):
    if x > _TANH_CLAMP_F:          # comparisons are False for NaN: NaN goes through
        x = _TANH_CLAMP_F
    if x < -_TANH_CLAMP_F:
        x = -_TANH_CLAMP_F
    z = x * x
    p = ((((_TN5_F * z + _TN4_F) * z + _TN3_F) * z + _TN2_F) * z + _TN1_F) * z
    q = (((_TD4_F * z + _TD3_F) * z + _TD2_F) * z + _TD1_F) * z + _ONE_F
    r = (x + x * p) / q
    if r > _ONE_F:
        r = _ONE_F
    if r < -_ONE_F:
        r = -_ONE_F
    return r


@njit(**_INLINE)
def _log1p_unit_f32(t):
    u = _TWO_F + t
    e_u = t - (u - _TWO_F)          # 2 + t = u + e_u exactly
    rcp = _ONE_F / u
    s = t * rcp
    c = ((t - s * u) - s * e_u) * rcp   # t/(2+t) - s (t - s*u is one fma: exact)
    z = s * s
    r = (((_L4_F * z + _L3_F) * z + _L2_F) * z + _L1_F) * z + _L0_F
    s2 = s + s
    return s2 + ((c + c) + s2 * (z * r))


# ---------------------------------------------------------------------------------------------
# float64
_D = np.float64
_LOG2E_D = _D(1.44269504088896341)
_LN2_HI_D = _D(6.93145751953125e-1)
_LN2_LO_D = _D(1.42860682030941723212e-6)
_EXP_HI_D = _D(710.0)     # e^710 > DBL_MAX
_EXP_LO_D = _D(-746.0)    # e^-746 < smallest subnormal
_ZERO_D, _ONE_D, _TWO_D = _D(0.0), _D(1.0), _D(2.0)
_C = [_D(1.0 / np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(14)]
_C2, _C3, _C4, _C5, _C6, _C7 = _C[2:8]
_C8, _C9, _C10, _C11, _C12, _C13 = _C[8:14]
# tanh on |x| < 0.625: Cephes tanh's rational approximation (relative error ~2e-16 there).
_TANH_SMALL_D = _D(0.625)
_TP0, _TP1, _TP2 = _D(-9.64399179425052238628e-1), _D(-9.92877231001918586564e1), \
    _D(-1.61468768441708447952e3)
_TQ0, _TQ1, _TQ2 = _D(1.12811678491632931402e2), _D(2.23548839060100448583e3), \
    _D(4.84406305325125486048e3)
_L0_D, _L1_D, _L2_D = _D(0.3333333333333333), _D(0.20000000000007292), _D(0.1428571428355438)
_L3_D, _L4_D, _L5_D = _D(0.11111111358713932), _D(0.09090894718066429), _D(0.07692785032479312)
_L6_D, _L7_D, _L8_D = _D(0.06657072104827468), _D(0.06000536404795356), _D(0.04400369243072337)
_L9_D = _D(0.08082022805971766)


@njit(**_INLINE)
def _exp_f64(x):
    if x > _EXP_HI_D:
        x = _EXP_HI_D
    if x < _EXP_LO_D:
        x = _EXP_LO_D
    t = np.rint(x * _LOG2E_D)
    t = t if x == x else _ZERO_D
    r = x - t * _LN2_HI_D
    r = r - t * _LN2_LO_D
    p = _C13 * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * (r * r) + r + _ONE_D
    return _ldexp(p, t)


@njit(**_INLINE)
def _tanh_f64(x):
    ax = abs(x)
    z = x * x
    small = x + x * z * (((_TP0 * z + _TP1) * z + _TP2)
                         / (((z + _TQ0) * z + _TQ1) * z + _TQ2))
    large = _ONE_D - _TWO_D / (_exp_f64(ax + ax) + _ONE_D)
    large = large if x >= _ZERO_D else -large
    return small if ax < _TANH_SMALL_D else large


@njit(**_INLINE)
def _log1p_unit_f64(t):
    u = _TWO_D + t
    e_u = t - (u - _TWO_D)          # 2 + t = u + e_u exactly
    rcp = _ONE_D / u
    s = t * rcp
    c = ((t - s * u) - s * e_u) * rcp   # t/(2+t) - s (t - s*u is one fma: exact)
    z = s * s
    r = _L9_D * z + _L8_D
    r = r * z + _L7_D
    r = r * z + _L6_D
    r = r * z + _L5_D
    r = r * z + _L4_D
    r = r * z + _L3_D
    r = r * z + _L2_D
    r = r * z + _L1_D
    r = r * z + _L0_D
    s2 = s + s
    return s2 + ((c + c) + s2 * (z * r))


# ---------------------------------------------------------------------------------------------
# dtype-generic entry points, resolved at compile time from the argument's type

def exp(x):
    """e^x, about 1 ulp, vectorizable; NaN -> NaN, large -> inf, very negative -> 0."""
    raise NotImplementedError("only callable from Numba-compiled code")


def tanh(x):
    """tanh(x), a few ulp, vectorizable."""
    raise NotImplementedError("only callable from Numba-compiled code")


def sigmoid(x):
    """1 / (1 + e^{-x}) from e^{-|x|}: no overflow for any x."""
    raise NotImplementedError("only callable from Numba-compiled code")


def log1p_unit(t):
    """log(1 + t) for t in [0, 1] only (e.g. t = e^{-|z|}), < 1 ulp, vectorizable. Outside
    [0, 1] the polynomial is not fitted (t = 3: ~1e3 ulp off in float32); NaN -> NaN."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(exp, jit_options=_OVERLOAD, inline="always")
def _exp_ol(x):
    if x == types.float32:
        return lambda x: _exp_f32(x)
    if x == types.float64:
        return lambda x: _exp_f64(x)
    return None


@overload(tanh, jit_options=_OVERLOAD, inline="always")
def _tanh_ol(x):
    if x == types.float32:
        return lambda x: _tanh_f32(x)
    if x == types.float64:
        return lambda x: _tanh_f64(x)
    return None


@overload(log1p_unit, jit_options=_OVERLOAD, inline="always")
def _log1p_unit_ol(t):
    if t == types.float32:
        return lambda t: _log1p_unit_f32(t)
    if t == types.float64:
        return lambda t: _log1p_unit_f64(t)
    return None


@overload(sigmoid, jit_options=_OVERLOAD, inline="always")
def _sigmoid_ol(x):
    if x == types.float32:
        def impl(x):
            e = _exp_f32(-abs(x))
            return (_ONE_F if x >= _ZERO_F else e) / (_ONE_F + e)
        return impl
    if x == types.float64:
        def impl(x):
            e = _exp_f64(-abs(x))
            return (_ONE_D if x >= _ZERO_D else e) / (_ONE_D + e)
        return impl
    return None


def like(value, ref):
    """``value`` converted to the float type of ``ref`` (a float scalar or an array of floats):
    a Python float argument becomes float32 in a float32 kernel, as NumPy 2 casts it."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(like, jit_options=_OVERLOAD, inline="always")
def _like_ol(value, ref):
    if isinstance(ref, types.Array):
        ref = ref.dtype
    if ref == types.float32:
        return lambda value, ref: np.float32(value)
    if ref == types.float64:
        return lambda value, ref: np.float64(value)
    return None


@njit(fastmath=SUM_FASTMATH, error_model="numpy", cache=True)
def sum_span(x):
    """float64 sum of the 1-D x (vectorized: reassociated in a fixed order)."""
    s = 0.0
    for i in range(x.size):
        s += np.float64(x[i])
    return s


@njit(fastmath=SUM_FASTMATH, error_model="numpy", cache=True)
def dot_span(x, y):
    """float64 sum of x·y over two 1-D arrays of one length (vectorized, fixed order)."""
    s = 0.0
    for i in range(x.size):
        s += np.float64(x[i]) * np.float64(y[i])
    return s
