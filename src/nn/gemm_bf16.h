/* bf16 GEMM with fp32 accumulation: C = A * B, A (M x K) and B (K x N)
 * row-major bf16 (stored as uint16_t, the high half of an IEEE float), C
 * (M x N) row-major fp32, overwritten.
 *
 * On CPUs with AVX512-BF16 the inner product runs on vdpbf16ps (two bf16
 * products per fp32 lane per instruction: twice the multiply-adds of an fp32
 * FMA); elsewhere a portable scalar kernel computes the same sums in the same
 * order. Both pack A into MR-row panels and B into NR-column panels with
 * consecutive K pairs interleaved, blocked over K so a B panel stays in cache.
 * Each element of C is summed in the same order whatever the thread count, so
 * results do not depend on it. Threads: optvq_threads() (OpenMP).
 *
 * Weights reused across calls can be packed once (nn_gemm_bf16_pack_a) and
 * passed to nn_gemm_bf16_packed. */
#ifndef OPTVQ_NN_GEMM_BF16_H
#define OPTVQ_NN_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>
#include "optvq/optvq.h"

/* fp32 -> bf16, round to nearest even; NaN stays NaN (quiet, sign kept),
 * +-Inf stays +-Inf, finite values above the bf16 range round to +-Inf. */
void nn_f32_to_bf16(const float *in, uint16_t *out, int64_t n);
static inline uint16_t nn_bf16_round(float f)
{
    union { float f; uint32_t u; } v = {f};
    /* round to nearest even: add 0x7fff plus the lowest kept bit; a carry
     * into the exponent is the correct rounding (up to Inf at the top) */
    const uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (v.u >> 16) | 0x40u; /* NaN payloads may round to Inf: keep NaN */
    return (uint16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}
/* bf16 -> fp32 (exact). */
void nn_bf16_to_f32(const uint16_t *in, float *out, int64_t n);
static inline float nn_bf16_value(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* 1 when the vdpbf16ps kernel is compiled in and this CPU has AVX512-BF16. */
int nn_bf16_available(void);
/* Test hook: nonzero forces the scalar kernel (and scalar packing) even where
 * AVX512-BF16 is available; 0 restores the default. Not thread-safe: set it
 * between calls. */
void nn_gemm_bf16_force_scalar(int on);

/* uint16_t elements of A packed for nn_gemm_bf16_packed. */
size_t nn_gemm_bf16_packed_a_elems(int64_t M, int64_t K);
/* Packs A (M x K, row stride lda >= K) into `packed`
 * (nn_gemm_bf16_packed_a_elems(M, K) elements). */
optvq_status nn_gemm_bf16_pack_a(int64_t M, int64_t K, const uint16_t *A, int64_t lda, uint16_t *packed);
/* The same from fp32 A, each element rounded as nn_f32_to_bf16 does. */
optvq_status nn_gemm_bf16_pack_a_f32(int64_t M, int64_t K, const float *A, int64_t lda, uint16_t *packed);

/* Workspace bytes nn_gemm_bf16_packed needs at the current optvq_threads();
 * nn_gemm_bf16 needs this plus packed A (nn_gemm_bf16_workspace). */
size_t nn_gemm_bf16_packed_workspace(int64_t M, int64_t N, int64_t K);
size_t nn_gemm_bf16_workspace(int64_t M, int64_t N, int64_t K);

/* C = packed_A * B. B is K x N with row stride ldb >= N, C has row stride
 * ldc >= N. ws: NULL (allocated and freed here) or ws_bytes >=
 * nn_gemm_bf16_packed_workspace(M, N, K), 64-byte aligned. */
optvq_status nn_gemm_bf16_packed(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a, const uint16_t *B,
                                 int64_t ldb, float *C, int64_t ldc, void *ws, size_t ws_bytes);
/* C = packed_A * B for a gathered B: B(k, n) = base[row_off[k] + col_off[n]]
 * (offsets in elements, K and N entries). A convolution passes the offsets of
 * its taps (row_off) and of its output positions (col_off) in a padded input:
 * im2col without the copy. Columns whose offsets run consecutively 16 at a time
 * are packed with vector loads, the others element by element. C row stride
 * ldc >= N; ws as for nn_gemm_bf16_packed. */
optvq_status nn_gemm_bf16_packed_gather(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a,
                                        const uint16_t *base, const int64_t *row_off, const int64_t *col_off,
                                        float *C, int64_t ldc, void *ws, size_t ws_bytes);
/* C = A * B with A packed here (row strides lda >= K, ldb >= N, ldc >= N).
 * ws: NULL or ws_bytes >= nn_gemm_bf16_workspace(M, N, K), 64-byte aligned. */
optvq_status nn_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda, const uint16_t *B,
                          int64_t ldb, float *C, int64_t ldc, void *ws, size_t ws_bytes);

#endif
