/* fastmath.h — vectorizable exp, tanh and sigmoid for the Cython kernels.
 *
 * Why: libm's expf/tanhf are scalar calls, 4-40x slower per element than NumPy's SIMD loops, and a
 * call inside a loop stops the compiler from vectorizing it. These are straight-line functions
 * (no branches, no calls, no tables) that gcc/clang inline and vectorize at the baseline ISA
 * (SSE2 on x86-64; wider with NNFAST_NATIVE). Build without -ffast-math: the rounding trick below
 * depends on IEEE arithmetic, and NaN must propagate.
 *
 * exp(x): Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, with n = round(x / ln2) taken by
 * the magic-number trick (adding 1.5 * 2^23 / 2^52 rounds to an integer that sits in the low
 * mantissa bits, so n is read from the bits: no float->int conversion). e^r by a polynomial:
 * Cephes' degree-6 minimax for float (~1 ulp), the degree-13 Taylor polynomial for double
 * (truncation < 0.02 ulp on |r| <= ln2/2). 2^n is built by shifting n + bias into the exponent
 * field (memcpy, which compilers turn into a register move) and applied as 2^(n/2) * 2^(n - n/2)
 * so that results down to the subnormal range and up to overflow (inf) come out as libm's.
 * x is clamped (with NaN-preserving compares) to a range where n fits; NaN in gives NaN out.
 *
 * tanh(x): float, one rational function of x^2 on the whole range (as the Numba backend's);
 * double, for |x| < 0.625 Cephes' rational, accurate near 0 where 1 - 2/(e^{2|x|}+1) cancels,
 * otherwise 1 - 2/(e^{2|x|}+1) with the sign of x. Both are computed and one is selected, so the
 * loop has no branch.
 */
#ifndef NNFAST_FASTMATH_H
#define NNFAST_FASTMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float nn_f32_from_bits(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline int32_t nn_bits_f32(float f) { int32_t i; memcpy(&i, &f, sizeof i); return i; }
static inline double nn_f64_from_bits(int64_t i) { double f; memcpy(&f, &i, sizeof f); return f; }
static inline int64_t nn_bits_f64(double f) { int64_t i; memcpy(&i, &f, sizeof i); return i; }

/* ---- float ------------------------------------------------------------------------------- */

/* e^r for |r| <= ln2/2 (Cephes expf). */
static inline float nn_expf_poly(float r)
{
    float z = r * r;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    return p * z + r + 1.0f;
}

/* e^x for float x, any input: overflow gives inf, underflow subnormals/0, NaN gives NaN. */
static inline float nn_expf(float x)
{
    const float magic = 12582912.0f;              /* 1.5 * 2^23 */
    x = (x > 89.0f) ? 89.0f : x;                  /* NaN compares false and passes through */
    x = (x < -104.0f) ? -104.0f : x;
    float t = x * 1.44269504088896341f + magic;   /* round(x / ln2) in the low bits */
    int32_t n = nn_bits_f32(t) - nn_bits_f32(magic);
    float fn = t - magic;
    float r = x - fn * 0.693359375f;              /* Cody-Waite: ln2 = hi + lo, n*hi exact */
    r = r - fn * -2.12194440e-4f;
    float p = nn_expf_poly(r);
    int32_t n1 = n >> 1;
    float s1 = nn_f32_from_bits((int32_t)((uint32_t)(n1 + 127) << 23));
    float s2 = nn_f32_from_bits((int32_t)((uint32_t)(n - n1 + 127) << 23));
    return p * s1 * s2;
}

/* tanh(x) = x (1 + z N(z)) / (1 + z D(z)), z = x^2, x clamped to [-9, 9]: one rational function
 * on the whole range, no exp — nnfast/_numba/_fastmath.py's _tanh_f32, the same coefficients
 * (float32 of the same doubles) in the same order; its comment gives the fit and the error. */
static inline float nn_tanhf(float x)
{
    x = (x > 9.0f) ? 9.0f : x;                    /* NaN compares false and passes through */
    x = (x < -9.0f) ? -9.0f : x;
    float z = x * x;
    float p = (float)-1.0240338091382917e-11;
    p = p * z + (float)2.7612813369159994e-08;
    p = p * z + (float)2.6655729016056284e-05;
    p = p * z + (float)0.0037977690808475018;
    p = p * z + (float)0.13622638583183289;
    p = p * z;
    float q = (float)1.1966753845626954e-06;
    q = q * z + (float)0.0003816811367869377;
    q = q * z + (float)0.026984481140971184;
    q = q * z + (float)0.46955958008766174;
    q = q * z + 1.0f;
    float r = (x + x * p) / q;
    r = (r > 1.0f) ? 1.0f : r;                    /* rounding can overshoot 1 near x = 8.1 */
    r = (r < -1.0f) ? -1.0f : r;
    /* R(9) = 1 holds in exact arithmetic; without FMA (the baseline build) it rounds to
     * 1 - 2 ulp, so the clamped ends are set exactly: tanh(±9) rounds to ±1 in float. */
    r = (x == 9.0f) ? 1.0f : r;
    return (x == -9.0f) ? -1.0f : r;
}

/* 1 / (1 + e^{-x}) as (x >= 0 ? 1 : e) / (1 + e) with e = e^{-|x|}: no overflow, exact tails. */
static inline float nn_sigmoidf(float x)
{
    float e = nn_expf((x < 0.0f) ? x : -x);
    return ((x >= 0.0f) ? 1.0f : e) / (1.0f + e);
}

/* ---- double ------------------------------------------------------------------------------ */

/* e^r for |r| <= ln2/2: Taylor to degree 13, evaluated as 1 + r + r^2 (1/2 + r/6 + ...). */
static inline double nn_exp_poly(double r)
{
    double p = 1.0 / 6227020800.0;               /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return p * (r * r) + r + 1.0;
}

static inline double nn_exp(double x)
{
    const double magic = 6755399441055744.0;     /* 1.5 * 2^52 */
    x = (x > 710.0) ? 710.0 : x;
    x = (x < -746.0) ? -746.0 : x;
    double t = x * 1.4426950408889634074 + magic;
    int64_t n = nn_bits_f64(t) - nn_bits_f64(magic);
    double fn = t - magic;
    double r = x - fn * 6.93147180369123816490e-01;   /* fdlibm ln2_hi, ln2_lo */
    r = r - fn * 1.90821492927058770002e-10;
    double p = nn_exp_poly(r);
    int64_t n1 = n >> 1;
    double s1 = nn_f64_from_bits((int64_t)((uint64_t)(n1 + 1023) << 52));
    double s2 = nn_f64_from_bits((int64_t)((uint64_t)(n - n1 + 1023) << 52));
    return p * s1 * s2;
}

static inline double nn_exp_normal(double x)
{
    const double magic = 6755399441055744.0;
    double t = x * 1.4426950408889634074 + magic;
    int64_t n = nn_bits_f64(t) - nn_bits_f64(magic);
    double fn = t - magic;
    double r = x - fn * 6.93147180369123816490e-01;
    r = r - fn * 1.90821492927058770002e-10;
    return nn_exp_poly(r) * nn_f64_from_bits((int64_t)((uint64_t)(n + 1023) << 52));
}

static inline double nn_tanh(double x)
{
    double ax = (x < 0.0) ? -x : x;
    /* small |x|: Cephes tanh rational approximation x + x^3 P(x^2)/Q(x^2) */
    double z = x * x;
    double num = (-9.64399179425052238628E-1 * z - 9.92877231001918586564E1) * z
                 - 1.61468768441708447952E3;
    double den = ((z + 1.12811678491632931402E2) * z + 2.23548839060100448583E3) * z
                 + 4.84406305325125486048E3;
    double small = x + x * z * (num / den);
    /* tanh rounds to 1 in double for |x| > 19.1 */
    double a2 = 2.0 * ((ax > 40.0) ? 40.0 : ax);
    double big = 1.0 - 2.0 / (nn_exp_normal(a2) + 1.0);
    big = (x < 0.0) ? -big : big;
    return (ax < 0.625) ? small : big;
}

static inline double nn_sigmoid(double x)
{
    double e = nn_exp((x < 0.0) ? x : -x);
    return ((x >= 0.0) ? 1.0 : e) / (1.0 + e);
}

/* ---- loops with run-time CPU dispatch ----------------------------------------------------------
 * The transcendental loops are where vector width pays most (measured, 1e4 float32 on the EPYC:
 * sigmoid 2.4 -> 0.75 ns/element, tanh 2.7 -> 0.72, exp 1.4 -> 0.51 with AVX2+FMA over SSE2;
 * on a 2-core Xeon with AVX-512, the x86-64-v4 clone: tanh float32 1e4 0.72 -> 0.36 ns/element,
 * sigmoid 1.3x-1.8x faster again, so these loops have the three levels of NN_CLONES3).
 * A baseline build (the wheel) cannot assume AVX2, so on x86-64 Linux with gcc each loop is
 * compiled twice, for x86-64-v3 (AVX2, FMA) and the baseline, and the loader picks one per CPU
 * (target_clones / ifunc). Elsewhere, or with -march=native (NNFAST_NATIVE), there is one
 * version. FMA contracts a*b+c into one rounding: results can move by an ulp, never more. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(__AVX2__) && !defined(NNFAST_NO_CLONES)
#define NN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NN_CLONES
#endif

/* Three levels (x86-64-v4: AVX-512, v3, baseline) for loops bound by vector width where AVX-512
 * pays too (optim_loops.h's Adam/RMSprop, l2_loops.h). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(__AVX512F__) && !defined(NNFAST_NO_CLONES)
#define NN_CLONES3 \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NN_CLONES3
#endif

#define NN_LOOP(name, T, f) \
    NN_CLONES3 static void name(const T *x, T *out, ptrdiff_t n) \
    { for (ptrdiff_t i = 0; i < n; i++) out[i] = f(x[i]); }

NN_LOOP(nn_sigmoid_loop_f32, float, nn_sigmoidf)
NN_LOOP(nn_sigmoid_loop_f64, double, nn_sigmoid)
NN_LOOP(nn_tanh_loop_f32, float, nn_tanhf)
NN_LOOP(nn_tanh_loop_f64, double, nn_tanh)

/* out[i] = e^{x[i] - shift} (softmax numerators). */
NN_CLONES3 static void nn_exp_shift_loop_f32(const float *x, float shift, float *out, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) out[i] = nn_expf(x[i] - shift); }
NN_CLONES3 static void nn_exp_shift_loop_f64(const double *x, double shift, double *out,
                                             ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) out[i] = nn_exp(x[i] - shift); }

#endif /* NNFAST_FASTMATH_H */
