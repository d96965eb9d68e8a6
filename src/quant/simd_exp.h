/* Vectorised float32 exp with correct underflow: results go through the
 * denormal range and reach exactly 0 below ln(2^-150), as libm's expf does,
 * so the default Sinkhorn path underflows where the reference does.
 * Accuracy: about 1 ulp (Cephes polynomial, FMA range reduction). */
#ifndef OPTVQ_QUANT_SIMD_EXP_H
#define OPTVQ_QUANT_SIMD_EXP_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define OPTVQ_EXP_HI 88.7228394f   /* above: +inf */
#define OPTVQ_EXP_LO -103.972084f  /* below: 0 (exp rounds to zero)   */

static inline float optvq_expf_scalar(float x)
{
    if (x > OPTVQ_EXP_HI)
        return INFINITY;
    if (!(x >= OPTVQ_EXP_LO)) /* also NaN -> NaN below */
        return isnan(x) ? x : 0.0f;
    float n = floorf(fmaf(x, 1.44269504088896341f, 0.5f));
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p, r * r, r) + 1.0f;
    int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1;
    int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return y * s1 * s2;
}

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 optvq_expf_avx2(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(OPTVQ_EXP_HI), lo = _mm256_set1_ps(OPTVQ_EXP_LO);
    __m256 too_small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 too_big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    y = _mm256_andnot_ps(too_small, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), too_big);
    /* NaN in -> NaN out */
    __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(y, x, is_nan);
}
#endif

/* out[i] = exp(-(in[i] * eps)) — the reference's torch.exp(-cost * epsilon). */
static inline void optvq_exp_neg_scaled(float *out, const float *in, int64_t n, float eps)
{
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 e = _mm256_set1_ps(eps), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, optvq_expf_avx2(_mm256_xor_ps(_mm256_mul_ps(_mm256_loadu_ps(in + i), e), sign)));
#endif
    for (; i < n; i++)
        out[i] = optvq_expf_scalar(-(in[i] * eps));
}

#endif
