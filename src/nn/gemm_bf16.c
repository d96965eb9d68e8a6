/* bf16 GEMM, fp32 accumulation (see gemm_bf16.h).
 *
 * Layout. A K pair (k, k+1) of bf16 values fills one 32-bit lane, the even k
 * in the low half: the operand layout of vdpbf16ps, which adds both products
 * of a lane pair to one fp32 lane. Packed A: panels of MR rows; in a panel,
 * pair p of row i is element pair (p * MR + i). Packed B block: sub-panels of
 * NR columns, pair p of column j at element pair (p * NR + j).
 *
 * Blocking. Work units are (NC-column chunk, group of A panels); a unit packs
 * B for one K block (at most KCP pairs x NC columns, 384 KiB: stays in L2)
 * and runs the MR x NR microkernel over its A panels and the chunk's
 * sub-panels: the A micro-panel (MR x KCP pairs, 9 KiB) stays in L1 while the
 * B sub-panels stream from L2. The first K block overwrites C, later ones add
 * to it.
 *
 * Every C element is the sum over K blocks, in order, of a microkernel's sum
 * over pairs, in order: the same arithmetic whatever the thread count or the
 * unit split, and the scalar kernel performs the instruction's two roundings
 * per pair in its order (odd product first), so both kernels agree. */
#include "nn/gemm_bf16.h"

#include "core/error.h"
#include "core/parallel.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 11 : __GNUC__ >= 10)
#define HAVE_AVX512BF16_KERNEL 1
#include <immintrin.h>
#define TARGET_BF16 __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#else
#define HAVE_AVX512BF16_KERNEL 0
#endif

enum {
    MR = 12,   /* rows of the register tile: 2 x 12 zmm accumulators */
    NR = 32,   /* columns: two 16-lane fp32 vectors */
    KCP = 192, /* K pairs per block (384 k) */
    NC = 512,  /* columns per work unit */
    PREFETCH_PAIRS = 4, /* B rows packed ahead of the reads: one row pair is 1 KiB, one DRAM latency or so */
};

/* Largest dimension accepted: keeps every index product far inside int64. */
#define MAX_DIM ((int64_t)1 << 31)

static int force_scalar;

void nn_gemm_bf16_force_scalar(int on) { force_scalar = on != 0; }

int nn_bf16_available(void)
{
#if HAVE_AVX512BF16_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static int use_avx512(void) { return !force_scalar && nn_bf16_available(); }

void nn_f32_to_bf16(const float *in, uint16_t *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &in[i], sizeof u);
        /* round to nearest even: add 0x7fff plus the lowest kept bit; a carry
         * into the exponent is the correct rounding (up to Inf at the top) */
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t quiet_nan = (u >> 16) | 0x40u; /* NaN payloads may round to Inf: keep NaN */
        out[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
    }
}

void nn_bf16_to_f32(const uint16_t *in, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = nn_bf16_value(in[i]);
}

/* ---- planning: the split into K blocks and work units, shared by the
 * workspace size and the GEMM so both agree ---- */

typedef struct gemm_plan {
    int64_t kp;        /* K pairs */
    int64_t nkb, kcp;  /* K blocks, pairs per block (last may be shorter) */
    int64_t nc, n_chunks;
    int64_t m_panels, panels_per_group, m_groups;
    int nt;
    size_t ws_per_thread; /* bytes, multiple of 64 */
} gemm_plan;

static gemm_plan make_plan(int64_t M, int64_t N, int64_t K)
{
    gemm_plan p = {0};
    p.kp = (K + 1) / 2;
    p.nkb = p.kp > 0 ? (p.kp + KCP - 1) / KCP : 0;
    p.kcp = p.nkb > 0 ? (p.kp + p.nkb - 1) / p.nkb : 0; /* balanced blocks */
    int64_t n_round = (N + NR - 1) / NR * NR;
    p.nc = n_round < NC ? n_round : NC;
    p.n_chunks = p.nc > 0 ? (N + p.nc - 1) / p.nc : 0;
    p.m_panels = (M + MR - 1) / MR;
    int nt = optvq_threads_for(2.0 * (double)M * (double)N * (double)K);
    /* Split M as well when there are too few column chunks to keep the threads
     * busy (each group repacks B: worth it only then). */
    int64_t groups = 1;
    while (p.n_chunks * groups < 4 * (int64_t)nt && groups < p.m_panels)
        groups *= 2;
    if (groups > p.m_panels)
        groups = p.m_panels > 0 ? p.m_panels : 1;
    p.panels_per_group = p.m_panels > 0 ? (p.m_panels + groups - 1) / groups : 0;
    p.m_groups = p.panels_per_group > 0 ? (p.m_panels + p.panels_per_group - 1) / p.panels_per_group : 0;
    int64_t units = p.n_chunks * p.m_groups;
    p.nt = units < nt ? (int)(units > 0 ? units : 1) : nt;
    p.ws_per_thread = ((size_t)p.kcp * 2 * (size_t)p.nc * sizeof(uint16_t) + 63) / 64 * 64;
    return p;
}

size_t nn_gemm_bf16_packed_a_elems(int64_t M, int64_t K)
{
    if (M <= 0 || K <= 0)
        return 0;
    return (size_t)((M + MR - 1) / MR) * (size_t)((K + 1) / 2) * MR * 2;
}

size_t nn_gemm_bf16_packed_workspace(int64_t M, int64_t N, int64_t K)
{
    if (M <= 0 || N <= 0 || K <= 0 || M > MAX_DIM || N > MAX_DIM || K > MAX_DIM)
        return 0;
    gemm_plan p = make_plan(M, N, K);
    return (size_t)p.nt * p.ws_per_thread;
}

size_t nn_gemm_bf16_workspace(int64_t M, int64_t N, int64_t K)
{
    size_t packed = nn_gemm_bf16_packed_workspace(M, N, K);
    if (packed == 0)
        return 0;
    return (nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t) + 63) / 64 * 64 + packed;
}

optvq_status nn_gemm_bf16_pack_a(int64_t M, int64_t K, const uint16_t *A, int64_t lda, uint16_t *packed)
{
    if (M < 0 || K < 0 || M > MAX_DIM || K > MAX_DIM || lda < K)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16 pack A: bad sizes M %lld K %lld lda %lld",
                          (long long)M, (long long)K, (long long)lda);
    if (M == 0 || K == 0)
        return OPTVQ_OK;
    if (!A || !packed)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16 pack A: NULL matrix");
    const int64_t kp = (K + 1) / 2, panels = (M + MR - 1) / MR;
    for (int64_t r = 0; r < panels; r++) {
        uint16_t *dst = packed + r * kp * MR * 2;
        for (int64_t i = 0; i < MR; i++) {
            const int64_t row = r * MR + i;
            const uint16_t *src = row < M ? A + row * lda : NULL;
            for (int64_t p = 0; p < kp; p++) {
                dst[(p * MR + i) * 2] = src ? src[2 * p] : 0;
                dst[(p * MR + i) * 2 + 1] = src && 2 * p + 1 < K ? src[2 * p + 1] : 0;
            }
        }
    }
    return OPTVQ_OK;
}

/* ---- packing B: columns n0 .. n0 + ncols, pairs p0 .. p0 + kc of K ---- */

static void pack_b_scalar(const uint16_t *B, int64_t ldb, int64_t K, int64_t p0, int64_t kc, int64_t n0,
                          int64_t ncols, uint16_t *dst)
{
    for (int64_t s = 0; s * NR < ncols; s++) {
        const int64_t j0 = n0 + s * NR, nn = ncols - s * NR < NR ? ncols - s * NR : NR;
        uint16_t *sub = dst + s * kc * NR * 2;
        for (int64_t p = 0; p < kc; p++) {
            const int64_t k = 2 * (p0 + p);
            const uint16_t *r0 = B + k * ldb + j0, *r1 = k + 1 < K ? B + (k + 1) * ldb + j0 : NULL;
            uint16_t *d = sub + p * NR * 2;
            for (int64_t j = 0; j < NR; j++) {
                d[2 * j] = j < nn ? r0[j] : 0;
                d[2 * j + 1] = j < nn && r1 ? r1[j] : 0;
            }
        }
    }
}

#if HAVE_AVX512BF16_KERNEL
TARGET_BF16 static void pack_b_avx512(const uint16_t *B, int64_t ldb, int64_t K, int64_t p0, int64_t kc,
                                      int64_t n0, int64_t ncols, uint16_t *dst)
{
    /* pair-major: each row segment is read front to back (B is usually far
     * bigger than the caches; sequential reads let the prefetchers stream it) */
    for (int64_t p = 0; p < kc; p++) {
        const int64_t k = 2 * (p0 + p);
        const int has_r1 = k + 1 < K;
        const uint16_t *r0 = B + k * ldb + n0, *r1 = has_r1 ? B + (k + 1) * ldb + n0 : r0;
        for (int64_t s = 0; s * NR < ncols; s++) {
            const int64_t nn = ncols - s * NR < NR ? ncols - s * NR : NR;
            /* valid columns of each 16-column half (masked loads read nothing past N) */
            const __mmask16 m0 = nn >= 16 ? 0xffff : (__mmask16)((1u << nn) - 1);
            const __mmask16 m1 = nn >= 32 ? 0xffff : nn > 16 ? (__mmask16)((1u << (nn - 16)) - 1) : 0;
            uint16_t *d = dst + s * kc * NR * 2 + p * NR * 2;
            if (p + PREFETCH_PAIRS < kc && k + 2 * PREFETCH_PAIRS + 1 < K) {
                _mm_prefetch((const char *)(r0 + 2 * PREFETCH_PAIRS * ldb + s * NR), _MM_HINT_T0);
                _mm_prefetch((const char *)(r0 + (2 * PREFETCH_PAIRS + 1) * ldb + s * NR), _MM_HINT_T0);
            }
            for (int h = 0; h < 2; h++) {
                const __mmask16 m = h ? m1 : m0, m_odd = has_r1 ? m : 0;
                const int64_t j = s * NR + 16 * h;
                __m512i even = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + j));
                __m512i odd = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m_odd, r1 + j));
                _mm512_storeu_si512(d + 32 * h, _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
            }
        }
    }
}

/* c[MR x NR] (=, or += when accumulate) a_panel (kc pairs) * b_sub (kc pairs). */
TARGET_BF16 static void kernel_avx512(int64_t kc, const uint16_t *a, const uint16_t *b, float *c, int64_t ldc,
                                      int accumulate)
{
    __m512 lo[MR], hi[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        lo[i] = accumulate ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
        hi[i] = accumulate ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < kc; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * NR * 2);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * NR * 2 + 32);
        const uint16_t *ap = a + p * MR * 2;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            int32_t pair;
            memcpy(&pair, ap + 2 * i, sizeof pair);
            const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
            lo[i] = _mm512_dpbf16_ps(lo[i], av, b0);
            hi[i] = _mm512_dpbf16_ps(hi[i], av, b1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * ldc, lo[i]);
        _mm512_storeu_ps(c + i * ldc + 16, hi[i]);
    }
}
#endif

/* The same sums as vdpbf16ps: per pair, the odd product then the even one,
 * each added with one rounding (bf16 products are exact in fp32). */
static void kernel_scalar(int64_t kc, const uint16_t *a, const uint16_t *b, float *c, int64_t ldc, int accumulate)
{
    float t[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            t[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t p = 0; p < kc; p++) {
        const uint16_t *ap = a + p * MR * 2, *bp = b + p * NR * 2;
        float b_even[NR], b_odd[NR];
        for (int j = 0; j < NR; j++) {
            b_even[j] = nn_bf16_value(bp[2 * j]);
            b_odd[j] = nn_bf16_value(bp[2 * j + 1]);
        }
        for (int i = 0; i < MR; i++) {
            const float a_even = nn_bf16_value(ap[2 * i]), a_odd = nn_bf16_value(ap[2 * i + 1]);
            for (int j = 0; j < NR; j++) {
                float s = t[i][j] + a_odd * b_odd[j];
                t[i][j] = s + a_even * b_even[j];
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * ldc + j] = t[i][j];
}

typedef void (*kernel_fn)(int64_t, const uint16_t *, const uint16_t *, float *, int64_t, int);
typedef void (*pack_fn)(const uint16_t *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint16_t *);

/* One tile of C (rows x cols <= MR x NR); partial tiles go through a full
 * temporary so the kernel always does the same work. */
static void run_tile(kernel_fn kernel, int64_t kc, const uint16_t *a, const uint16_t *b, float *c, int64_t ldc,
                     int64_t rows, int64_t cols, int accumulate)
{
    if (rows == MR && cols == NR) {
        kernel(kc, a, b, c, ldc, accumulate);
        return;
    }
    float t[MR * NR];
    memset(t, 0, sizeof t);
    if (accumulate)
        for (int64_t i = 0; i < rows; i++)
            memcpy(t + i * NR, c + i * ldc, (size_t)cols * sizeof(float));
    kernel(kc, a, b, t, NR, accumulate);
    for (int64_t i = 0; i < rows; i++)
        memcpy(c + i * ldc, t + i * NR, (size_t)cols * sizeof(float));
}

static void run_unit(const gemm_plan *pl, int64_t unit, int64_t M, int64_t N, int64_t K,
                     const uint16_t *packed_a, const uint16_t *B, int64_t ldb, float *C, int64_t ldc,
                     uint16_t *bpack, kernel_fn kernel, pack_fn pack)
{
    const int64_t chunk = unit / pl->m_groups, group = unit % pl->m_groups;
    const int64_t n0 = chunk * pl->nc, ncols = N - n0 < pl->nc ? N - n0 : pl->nc;
    const int64_t r_begin = group * pl->panels_per_group;
    const int64_t r_end = r_begin + pl->panels_per_group < pl->m_panels ? r_begin + pl->panels_per_group
                                                                        : pl->m_panels;
    for (int64_t kb = 0; kb < pl->nkb; kb++) {
        const int64_t p0 = kb * pl->kcp, kc = pl->kp - p0 < pl->kcp ? pl->kp - p0 : pl->kcp;
        pack(B, ldb, K, p0, kc, n0, ncols, bpack);
        for (int64_t r = r_begin; r < r_end; r++) {
            const int64_t rows = M - r * MR < MR ? M - r * MR : MR;
            const uint16_t *a = packed_a + (r * pl->kp + p0) * MR * 2;
            for (int64_t s = 0; s * NR < ncols; s++) {
                const int64_t cols = ncols - s * NR < NR ? ncols - s * NR : NR;
                run_tile(kernel, kc, a, bpack + s * kc * NR * 2, C + r * MR * ldc + n0 + s * NR, ldc, rows, cols,
                         kb > 0);
            }
        }
    }
}

static optvq_status check_dims(const char *fn, int64_t M, int64_t N, int64_t K, int64_t ldb, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0 || M > MAX_DIM || N > MAX_DIM || K > MAX_DIM || ldb < N || ldc < N)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad sizes M %lld N %lld K %lld ldb %lld ldc %lld", fn,
                          (long long)M, (long long)N, (long long)K, (long long)ldb, (long long)ldc);
    return OPTVQ_OK;
}

optvq_status nn_gemm_bf16_packed(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a, const uint16_t *B,
                                 int64_t ldb, float *C, int64_t ldc, void *ws, size_t ws_bytes)
{
    OPTVQ_TRY(check_dims("gemm_bf16", M, N, K, ldb, ldc));
    if (M == 0 || N == 0)
        return OPTVQ_OK;
    if (!C)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: NULL output");
    if (K == 0) { /* the empty sum */
        for (int64_t i = 0; i < M; i++)
            memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return OPTVQ_OK;
    }
    if (!packed_a || !B)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: NULL input");
    const gemm_plan pl = make_plan(M, N, K);
    const size_t need = (size_t)pl.nt * pl.ws_per_thread;
    void *own = NULL;
    if (!ws) {
        ws = own = aligned_alloc(64, need);
        if (!own)
            return optvq_fail(OPTVQ_ERR_NOMEM, "gemm_bf16: cannot allocate %zu bytes of workspace", need);
    } else if (ws_bytes < need) {
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: workspace of %zu bytes, %zu needed", ws_bytes, need);
    }
    kernel_fn kernel = kernel_scalar;
    pack_fn pack = pack_b_scalar;
#if HAVE_AVX512BF16_KERNEL
    if (use_avx512()) {
        kernel = kernel_avx512;
        pack = pack_b_avx512;
    }
#endif
    const int64_t units = pl.n_chunks * pl.m_groups;
    char *base = ws;
#pragma omp parallel num_threads(pl.nt)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        uint16_t *bpack = (uint16_t *)(base + (size_t)tid * pl.ws_per_thread);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; u++)
            run_unit(&pl, u, M, N, K, packed_a, B, ldb, C, ldc, bpack, kernel, pack);
    }
    free(own);
    return OPTVQ_OK;
}

optvq_status nn_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda, const uint16_t *B,
                          int64_t ldb, float *C, int64_t ldc, void *ws, size_t ws_bytes)
{
    OPTVQ_TRY(check_dims("gemm_bf16", M, N, K, ldb, ldc));
    if (lda < K)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: lda %lld < K %lld", (long long)lda, (long long)K);
    if (M == 0 || N == 0 || K == 0)
        return nn_gemm_bf16_packed(M, N, K, NULL, B, ldb, C, ldc, NULL, 0);
    if (!A)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: NULL input");
    const size_t a_bytes = (nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t) + 63) / 64 * 64;
    const size_t need = nn_gemm_bf16_workspace(M, N, K);
    void *own = NULL;
    if (!ws) {
        ws = own = aligned_alloc(64, need);
        if (!own)
            return optvq_fail(OPTVQ_ERR_NOMEM, "gemm_bf16: cannot allocate %zu bytes of workspace", need);
        ws_bytes = need;
    } else if (ws_bytes < need) {
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: workspace of %zu bytes, %zu needed", ws_bytes, need);
    }
    uint16_t *packed_a = ws;
    optvq_status st = nn_gemm_bf16_pack_a(M, K, A, lda, packed_a);
    if (st == OPTVQ_OK)
        st = nn_gemm_bf16_packed(M, N, K, packed_a, B, ldb, C, ldc, (char *)ws + a_bytes, ws_bytes - a_bytes);
    free(own);
    return st;
}
