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
    /* asked per row by the conversions: look once (every thread finds the
     * same answer, so the race is benign) */
    static int known = -1;
    int v;
#pragma omp atomic read
    v = known;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl");
#pragma omp atomic write
        known = v;
    }
    return v;
#else
    return 0;
#endif
}

static int use_avx512(void) { return !force_scalar && nn_bf16_available(); }

#if HAVE_AVX512BF16_KERNEL
/* nn_bf16_round on 16 lanes at a time, the same integer arithmetic (so the
 * same bits, denormals and NaN included; vcvtneps2bf16 would flush denormals). */
TARGET_BF16 static int64_t f32_to_bf16_avx512(const float *in, uint16_t *out, int64_t n)
{
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512(in + i);
        const __m512i hi = _mm512_srli_epi32(u, 16);
        const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
        const __m512i r = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(hi, quiet));
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(r));
    }
    return i;
}
#endif

void nn_f32_to_bf16(const float *in, uint16_t *out, int64_t n)
{
    int64_t i = 0;
#if HAVE_AVX512BF16_KERNEL
    if (use_avx512())
        i = f32_to_bf16_avx512(in, out, n);
#endif
    for (; i < n; i++)
        out[i] = nn_bf16_round(in[i]);
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

/* Packs A (M x K, row stride lda) given as bf16 (a16) or as fp32 to round
 * (a32, when a16 is NULL); panels in parallel. */
static optvq_status pack_a(int64_t M, int64_t K, const uint16_t *a16, const float *a32, int64_t lda,
                           uint16_t *packed)
{
    if (M < 0 || K < 0 || M > MAX_DIM || K > MAX_DIM || lda < K)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16 pack A: bad sizes M %lld K %lld lda %lld",
                          (long long)M, (long long)K, (long long)lda);
    if (M == 0 || K == 0)
        return OPTVQ_OK;
    if ((!a16 && !a32) || !packed)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16 pack A: NULL matrix");
    const int64_t kp = (K + 1) / 2, panels = (M + MR - 1) / MR;
#pragma omp parallel for schedule(static) num_threads(optvq_threads_for(20.0 * (double)M * (double)K))
    for (int64_t r = 0; r < panels; r++) {
        uint16_t *dst = packed + r * kp * MR * 2;
        for (int64_t i = 0; i < MR; i++) {
            const int64_t row = r * MR + i;
            for (int64_t k = 0; k < 2 * kp; k++) {
                const int64_t at = row * lda + k;
                const uint16_t v = row >= M || k >= K ? 0 : a16 ? a16[at] : nn_bf16_round(a32[at]);
                dst[((k / 2) * MR + i) * 2 + (k & 1)] = v;
            }
        }
    }
    return OPTVQ_OK;
}

optvq_status nn_gemm_bf16_pack_a(int64_t M, int64_t K, const uint16_t *A, int64_t lda, uint16_t *packed)
{
    return pack_a(M, K, A, NULL, lda, packed);
}

optvq_status nn_gemm_bf16_pack_a_f32(int64_t M, int64_t K, const float *A, int64_t lda, uint16_t *packed)
{
    return pack_a(M, K, NULL, A, lda, packed);
}

/* ---- packing B: columns n0 .. n0 + ncols, pairs p0 .. p0 + kc of K ----
 *
 * B is a view: element (k, n) at base[row(k) + col(n)], row(k) = k * ldb or
 * row_off[k], col(n) = n or col_off[n]. A dense matrix has no tables; a
 * convolution passes the offsets of its taps and output positions (im2col
 * without the copy). */

typedef struct b_view {
    const uint16_t *base;
    int64_t ldb;
    const int64_t *row_off, *col_off; /* NULL: k * ldb, n */
} b_view;

static inline int64_t row_of(const b_view *b, int64_t k) { return b->row_off ? b->row_off[k] : k * b->ldb; }
static inline int64_t col_of(const b_view *b, int64_t n) { return b->col_off ? b->col_off[n] : n; }

/* Bit h of the result: the 16 columns n0 + 16 h .. + 15 are all inside the
 * chunk and consecutive in memory (one vector load per row). ncols <= 1024. */
static uint64_t contiguous_halves(const b_view *b, int64_t n0, int64_t ncols)
{
    uint64_t bits = 0;
    for (int64_t h = 0; 16 * (h + 1) <= ncols; h++) {
        const int64_t j = n0 + 16 * h;
        int ok = 1;
        for (int64_t t = 1; ok && t < 16 && b->col_off; t++)
            ok = b->col_off[j + t] == b->col_off[j] + t;
        bits |= (uint64_t)ok << h;
    }
    return bits;
}

static void pack_b_scalar(const b_view *b, int64_t K, int64_t p0, int64_t kc, int64_t n0, int64_t ncols,
                          uint64_t contiguous, uint16_t *dst)
{
    (void)contiguous;
    for (int64_t s = 0; s * NR < ncols; s++) {
        const int64_t j0 = n0 + s * NR, nn = ncols - s * NR < NR ? ncols - s * NR : NR;
        uint16_t *sub = dst + s * kc * NR * 2;
        for (int64_t p = 0; p < kc; p++) {
            const int64_t k = 2 * (p0 + p);
            const uint16_t *r0 = b->base + row_of(b, k), *r1 = k + 1 < K ? b->base + row_of(b, k + 1) : NULL;
            uint16_t *d = sub + p * NR * 2;
            for (int64_t j = 0; j < NR; j++) {
                const int64_t c = j < nn ? col_of(b, j0 + j) : 0;
                d[2 * j] = j < nn ? r0[c] : 0;
                d[2 * j + 1] = j < nn && r1 ? r1[c] : 0;
            }
        }
    }
}

#if HAVE_AVX512BF16_KERNEL
TARGET_BF16 static void pack_b_avx512(const b_view *b, int64_t K, int64_t p0, int64_t kc, int64_t n0,
                                      int64_t ncols, uint64_t contiguous, uint16_t *dst)
{
    /* pair-major: each row segment is read front to back (B is usually far
     * bigger than the caches; sequential reads let the prefetchers stream it) */
    for (int64_t p = 0; p < kc; p++) {
        const int64_t k = 2 * (p0 + p);
        const int has_r1 = k + 1 < K;
        const uint16_t *r0 = b->base + row_of(b, k), *r1 = has_r1 ? b->base + row_of(b, k + 1) : r0;
        const uint16_t *pf0 = NULL, *pf1 = NULL;
        if (p + PREFETCH_PAIRS < kc && k + 2 * PREFETCH_PAIRS + 1 < K) {
            pf0 = b->base + row_of(b, k + 2 * PREFETCH_PAIRS);
            pf1 = b->base + row_of(b, k + 2 * PREFETCH_PAIRS + 1);
        }
        for (int64_t s = 0; s * NR < ncols; s++) {
            const int64_t nn = ncols - s * NR < NR ? ncols - s * NR : NR;
            uint16_t *d = dst + s * kc * NR * 2 + p * NR * 2;
            if (pf0) {
                const int64_t c = col_of(b, n0 + s * NR);
                _mm_prefetch((const char *)(pf0 + c), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf1 + c), _MM_HINT_T0);
            }
            for (int h = 0; h < 2; h++) {
                const int64_t jl = s * NR + 16 * h, valid = nn - 16 * h; /* columns of this half */
                if (valid <= 0) {
                    _mm512_storeu_si512(d + 32 * h, _mm512_setzero_si512());
                    continue;
                }
                if (!b->col_off || ((contiguous >> (jl / 16)) & 1)) {
                    /* masked loads read nothing past the chunk's last column */
                    const __mmask16 m = valid >= 16 ? 0xffff : (__mmask16)((1u << valid) - 1);
                    const __mmask16 m_odd = has_r1 ? m : 0;
                    const int64_t c = col_of(b, n0 + jl);
                    __m512i even = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + c));
                    __m512i odd = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m_odd, r1 + c));
                    _mm512_storeu_si512(d + 32 * h, _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
                } else {
                    for (int64_t t = 0; t < 16; t++) {
                        const int64_t c = t < valid ? col_of(b, n0 + jl + t) : 0;
                        d[32 * h + 2 * t] = t < valid ? r0[c] : 0;
                        d[32 * h + 2 * t + 1] = t < valid && has_r1 ? r1[c] : 0;
                    }
                }
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
typedef void (*pack_fn)(const b_view *, int64_t, int64_t, int64_t, int64_t, int64_t, uint64_t, uint16_t *);

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
                     const uint16_t *packed_a, const b_view *B, float *C, int64_t ldc,
                     uint16_t *bpack, kernel_fn kernel, pack_fn pack)
{
    const int64_t chunk = unit / pl->m_groups, group = unit % pl->m_groups;
    const int64_t n0 = chunk * pl->nc, ncols = N - n0 < pl->nc ? N - n0 : pl->nc;
    const int64_t r_begin = group * pl->panels_per_group;
    const int64_t r_end = r_begin + pl->panels_per_group < pl->m_panels ? r_begin + pl->panels_per_group
                                                                        : pl->m_panels;
    const uint64_t contiguous = contiguous_halves(B, n0, ncols);
    for (int64_t kb = 0; kb < pl->nkb; kb++) {
        const int64_t p0 = kb * pl->kcp, kc = pl->kp - p0 < pl->kcp ? pl->kp - p0 : pl->kcp;
        pack(B, K, p0, kc, n0, ncols, contiguous, bpack);
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

/* C = packed_a * B for a checked B view. */
static optvq_status gemm_view(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a, const b_view *B, float *C,
                              int64_t ldc, void *ws, size_t ws_bytes)
{
    if (M == 0 || N == 0)
        return OPTVQ_OK;
    if (!C)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: NULL output");
    if (K == 0) { /* the empty sum */
        for (int64_t i = 0; i < M; i++)
            memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return OPTVQ_OK;
    }
    if (!packed_a || !B->base)
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
            run_unit(&pl, u, M, N, K, packed_a, B, C, ldc, bpack, kernel, pack);
    }
    free(own);
    return OPTVQ_OK;
}

optvq_status nn_gemm_bf16_packed(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a, const uint16_t *B,
                                 int64_t ldb, float *C, int64_t ldc, void *ws, size_t ws_bytes)
{
    OPTVQ_TRY(check_dims("gemm_bf16", M, N, K, ldb, ldc));
    const b_view view = {B, ldb, NULL, NULL};
    if (!B && M > 0 && N > 0 && K > 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16: NULL input");
    return gemm_view(M, N, K, packed_a, &view, C, ldc, ws, ws_bytes);
}

optvq_status nn_gemm_bf16_packed_gather(int64_t M, int64_t N, int64_t K, const uint16_t *packed_a,
                                        const uint16_t *base, const int64_t *row_off, const int64_t *col_off,
                                        float *C, int64_t ldc, void *ws, size_t ws_bytes)
{
    OPTVQ_TRY(check_dims("gemm_bf16 gather", M, N, K, N, ldc));
    if (M > 0 && N > 0 && K > 0 && (!base || !row_off || !col_off))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "gemm_bf16 gather: NULL input");
    const b_view view = {base, 0, row_off, col_off};
    return gemm_view(M, N, K, packed_a, &view, C, ldc, ws, ws_bytes);
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
