/* The evaluation of a model on a set of images, sharded over ranks; see evaluate.h. */
#include "eval/evaluate.h"

#include "core/comm.h"
#include "core/error.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "quant/quantizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 8 /* images per perceptual network call: ~15 MB of activations each (Inception) */

optvq_status eval_perceptual_batch(lpips_alex *lpips, fid_inception *fid, fid_stats *fa, fid_stats *fb,
                                   const float *x0, const float *x1, int64_t n, int c, int64_t h, int64_t w,
                                   double *lpips_out)
{
    if ((lpips && !lpips_out) || (fid && (!fa || !fb)) || !x0 || !x1 || (c != 1 && c != 3))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "perceptual metrics: bad arguments");
    if (lpips && (h < LPIPS_ALEX_MIN_SIDE || w < LPIPS_ALEX_MIN_SIDE))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%lldx%lld images; LPIPS-Alex needs at least %dx%d", (long long)h,
                          (long long)w, LPIPS_ALEX_MIN_SIDE, LPIPS_ALEX_MIN_SIDE);
    const int64_t per = (int64_t)c * h * w, hw = h * w;
    float *rgb = NULL, *feats = NULL;
    optvq_status st = OPTVQ_OK;
    if (lpips && c == 1 && !(rgb = malloc(sizeof(float) * (size_t)(2 * CHUNK * 3 * hw))))
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for LPIPS on %lldx%lld images", (long long)h,
                          (long long)w);
    if (fid && !(feats = malloc(sizeof(float) * (size_t)(2 * CHUNK * FID_DIM)))) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for the FID features");
        goto done;
    }
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        const int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        const float *a = x0 + i0 * per, *b = x1 + i0 * per;
        if (lpips) {
            if (c == 1) { /* grey as RGB, as pyiqa reads a grey file (rgb=True) */
                for (int64_t k = 0; k < m; k++)
                    for (int ch = 0; ch < 3; ch++) {
                        memcpy(rgb + (k * 3 + ch) * hw, a + k * hw, sizeof(float) * (size_t)hw);
                        memcpy(rgb + ((CHUNK + k) * 3 + ch) * hw, b + k * hw, sizeof(float) * (size_t)hw);
                    }
                a = rgb;
                b = rgb + CHUNK * 3 * hw;
            }
            if ((st = lpips_alex_forward(lpips, a, b, m, h, w, lpips_out + i0, NULL)) != OPTVQ_OK)
                goto done;
        }
        if (fid) {
            if ((st = fid_inception_forward(fid, x0 + i0 * per, m, c, h, w, feats)) != OPTVQ_OK ||
                (st = fid_inception_forward(fid, x1 + i0 * per, m, c, h, w, feats + CHUNK * FID_DIM)) != OPTVQ_OK ||
                (st = fid_stats_add(fa, feats, m)) != OPTVQ_OK ||
                (st = fid_stats_add(fb, feats + CHUNK * FID_DIM, m)) != OPTVQ_OK)
                goto done;
        }
    }
done:
    free(rgb);
    free(feats);
    return st;
}

/* What one rank holds while it evaluates its batches. Arrays that cover the
 * whole set (per image, per batch, per code) are zero outside this rank's
 * part, so that their sum over the ranks is every rank's part exactly. */
typedef struct eval_state {
    int64_t n, per, per_tok, batch, n_batches, n_e;
    float *imgs, *recon, *unit0, *unit1;
    int64_t *tokens;
    double *psnr, *ssim, *lpips; /* (n)         */
    double *sq_sum, *sq_count;   /* (n_batches) */
    double *hist;                /* (n_e)       */
    fid_stats fa, fb;
} eval_state;

static void state_free(eval_state *s)
{
    free(s->imgs);
    free(s->recon);
    free(s->unit0);
    free(s->unit1);
    free(s->tokens);
    free(s->psnr);
    free(s->ssim);
    free(s->lpips);
    free(s->sq_sum);
    free(s->sq_count);
    free(s->hist);
    fid_stats_free(&s->fa);
    fid_stats_free(&s->fb);
}

/* The images of batch b: a pointer into the source, or read into s->imgs. */
static optvq_status batch_images(const eval_source *src, eval_state *s, int64_t i0, int64_t m, const float **x)
{
    if (src->images) {
        *x = src->images + i0 * s->per;
        return OPTVQ_OK;
    }
    OPTVQ_TRY(src->fill(src->ctx, i0, m, s->imgs));
    *x = s->imgs;
    return OPTVQ_OK;
}

/* Batch b of the set: reconstruction, metrics, histogram, perceptual metrics. */
static optvq_status eval_batch(optvq_model *m, const eval_source *src, const eval_options *o, eval_state *s,
                               int64_t b)
{
    const int64_t i0 = b * s->batch, n = s->n - i0 < s->batch ? s->n - i0 : s->batch;
    const float *x;
    OPTVQ_TRY(batch_images(src, s, i0, n, &x));
    int64_t cnt;
    optvq_status st = eval_model_batch(m, x, n, src->h, src->w, s->recon, s->tokens, &s->sq_sum[b], &cnt);
    if (st == OPTVQ_OK)
        st = metrics_batch_signed(x, s->recon, n, (int)src->c, (int)src->h, (int)src->w, s->psnr + i0, s->ssim + i0);
    if (st != OPTVQ_OK) {
        char msg[512]; /* the message is rewritten in place: copy it first */
        snprintf(msg, sizeof msg, "%s", optvq_last_error());
        return optvq_fail(st, "images %lld..%lld: %s", (long long)i0, (long long)(i0 + n - 1), msg);
    }
    s->sq_count[b] = (double)cnt;
    for (int64_t k = 0; k < n * s->per_tok; k++) {
        if (s->tokens[k] < 0 || s->tokens[k] >= s->n_e)
            return optvq_fail(OPTVQ_ERR_STATE, "code %lld outside [0, %lld)", (long long)s->tokens[k],
                              (long long)s->n_e);
        s->hist[s->tokens[k]] += 1.0; /* exact: counts stay far below 2^53 */
    }
    if (o->lpips || o->fid) { /* the reference's (x + 1) / 2, clamped, as for PSNR / SSIM */
        metrics_recover(x, n * s->per, s->unit0);
        metrics_recover(s->recon, n * s->per, s->unit1);
        OPTVQ_TRY(eval_perceptual_batch(o->lpips, o->fid, &s->fa, &s->fb, s->unit0, s->unit1, n, (int)src->c,
                                        src->h, src->w, o->lpips ? s->lpips + i0 : NULL));
    }
    if (o->first_recon && i0 < o->n_first) {
        const int64_t k = o->n_first - i0 < n ? o->n_first - i0 : n;
        memcpy(o->first_recon + i0 * s->per, s->recon, (size_t)(k * s->per) * sizeof(float));
    }
    return OPTVQ_OK;
}

/* The checks every rank makes alike before any work (so all fail together). */
static optvq_status check_inputs(const optvq_model_info *info, const eval_source *src, const eval_options *o)
{
    if (!src->name || src->n < 1 || (!src->images && !src->fill) || o->batch_size < 1 || o->n_first < 0 ||
        o->n_first > src->n || (o->n_first > 0 && !o->first_recon))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "evaluation: bad arguments");
    const int64_t f = info->downsample;
    if (src->c != info->in_channels)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %lld-channel images for a %lld-channel model", src->name,
                          (long long)src->c, (long long)info->in_channels);
    if (src->h % f || src->w % f || src->h < f || src->w < f)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "%s: %lldx%lld images; the model needs sides that are multiples of %lld", src->name,
                          (long long)src->h, (long long)src->w, (long long)f);
    if (src->h < METRICS_SSIM_WIN || src->w < METRICS_SSIM_WIN)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %lldx%lld images; SSIM needs at least %dx%d", src->name,
                          (long long)src->h, (long long)src->w, METRICS_SSIM_WIN, METRICS_SSIM_WIN);
    if (info->out_channels != info->in_channels)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "the model maps %lld channels to %lld; cannot compare",
                          (long long)info->in_channels, (long long)info->out_channels);
    return OPTVQ_OK;
}

static optvq_status state_alloc(eval_state *s, const eval_source *src, const eval_options *o, int want_lpips)
{
    const size_t n = (size_t)s->n, b = (size_t)s->batch, per = (size_t)s->per;
    if (!src->images && !(s->imgs = malloc(b * per * sizeof(float))))
        return optvq_fail(OPTVQ_ERR_NOMEM, "evaluation: out of memory for a batch of %lld images", (long long)s->batch);
    s->recon = malloc(b * per * sizeof(float));
    s->tokens = malloc(b * (size_t)s->per_tok * sizeof(int64_t));
    s->psnr = calloc(n, sizeof(double));
    s->ssim = calloc(n, sizeof(double));
    s->sq_sum = calloc((size_t)s->n_batches, sizeof(double));
    s->sq_count = calloc((size_t)s->n_batches, sizeof(double));
    s->hist = calloc((size_t)s->n_e, sizeof(double));
    int ok = s->recon && s->tokens && s->psnr && s->ssim && s->sq_sum && s->sq_count && s->hist;
    if (ok && want_lpips)
        ok = (s->lpips = calloc(n, sizeof(double))) != NULL;
    if (ok && (o->lpips || o->fid))
        ok = (s->unit0 = malloc(b * per * sizeof(float))) && (s->unit1 = malloc(b * per * sizeof(float)));
    if (!ok)
        return optvq_fail(OPTVQ_ERR_NOMEM, "evaluation: out of memory for a batch of %lld images",
                          (long long)s->batch);
    if (o->fid) {
        OPTVQ_TRY(fid_stats_init(&s->fa, FID_DIM));
        OPTVQ_TRY(fid_stats_init(&s->fb, FID_DIM));
    }
    return OPTVQ_OK;
}

/* FID statistics summed over the ranks in one reduction: the count, the
 * sums and the upper triangle of the outer products (all that is kept). */
static optvq_status reduce_fid(const optvq_comm *comm, fid_stats *st)
{
    if (comm_size(comm) == 1)
        return OPTVQ_OK;
    const size_t D = (size_t)st->dim, len = 1 + D + D * (D + 1) / 2;
    double *buf = malloc(len * sizeof(double));
    if (!buf)
        return optvq_fail(OPTVQ_ERR_NOMEM, "evaluation: out of memory for the FID statistics");
    size_t k = 0;
    buf[k++] = (double)st->count;
    for (size_t j = 0; j < D; j++)
        buf[k++] = st->sum[j];
    for (size_t i = 0; i < D; i++)
        for (size_t j = i; j < D; j++)
            buf[k++] = st->outer[i * D + j];
    optvq_status s = comm_sum(comm, buf, len, "FID statistics");
    if (s == OPTVQ_OK) {
        k = 0;
        st->count = (int64_t)buf[k++];
        for (size_t j = 0; j < D; j++)
            st->sum[j] = buf[k++];
        for (size_t i = 0; i < D; i++)
            for (size_t j = i; j < D; j++)
                st->outer[i * D + j] = buf[k++];
    }
    free(buf);
    return s;
}

/* Every rank's part in every rank. */
static optvq_status reduce_state(const optvq_comm *comm, eval_state *s, const eval_options *o)
{
    OPTVQ_TRY(comm_sum(comm, s->psnr, (size_t)s->n, "evaluation"));
    OPTVQ_TRY(comm_sum(comm, s->ssim, (size_t)s->n, "evaluation"));
    if (s->lpips)
        OPTVQ_TRY(comm_sum(comm, s->lpips, (size_t)s->n, "evaluation"));
    OPTVQ_TRY(comm_sum(comm, s->sq_sum, (size_t)s->n_batches, "evaluation"));
    OPTVQ_TRY(comm_sum(comm, s->sq_count, (size_t)s->n_batches, "evaluation"));
    OPTVQ_TRY(comm_sum(comm, s->hist, (size_t)s->n_e, "evaluation"));
    if (o->fid) {
        OPTVQ_TRY(reduce_fid(comm, &s->fa));
        OPTVQ_TRY(reduce_fid(comm, &s->fb));
    }
    return OPTVQ_OK;
}

/* The set-wide numbers from the reduced arrays, added up in image order. */
static optvq_status finish(const eval_state *s, const eval_options *o, eval_result *r)
{
    metrics_acc acc;
    metrics_acc_init(&acc);
    for (int64_t i = 0; i < s->n; i++)
        metrics_acc_add(&acc, s->psnr[i], s->ssim[i]);
    r->psnr = metrics_acc_psnr(&acc);
    r->psnr_min = acc.psnr_min;
    r->psnr_max = acc.psnr_max;
    r->ssim = metrics_acc_ssim(&acc);
    r->ssim_min = acc.ssim_min;
    r->ssim_max = acc.ssim_max;
    double sq = 0, cnt = 0;
    for (int64_t b = 0; b < s->n_batches; b++) {
        sq += s->sq_sum[b];
        cnt += s->sq_count[b];
    }
    r->quant_error = cnt > 0 ? sq / cnt : NAN;
    int64_t *hist = malloc((size_t)s->n_e * sizeof(int64_t));
    if (!hist)
        return optvq_fail(OPTVQ_ERR_NOMEM, "evaluation: out of memory");
    for (int64_t k = 0; k < s->n_e; k++)
        hist[k] = (int64_t)s->hist[k];
    optvq_status st = eval_usage_from_histogram(hist, s->n_e, &r->usage);
    free(hist);
    OPTVQ_TRY(st);
    if (s->lpips) {
        double sum = 0;
        for (int64_t i = 0; i < s->n; i++)
            sum += s->lpips[i];
        r->lpips = sum / (double)s->n;
    }
    if (o->fid) {
        if (s->fa.count < 2)
            snprintf(r->fid_skip, sizeof r->fid_skip, "%lld image(s); FID needs at least 2 per set",
                     (long long)s->fa.count);
        else
            OPTVQ_TRY(fid_from_stats(&s->fa, &s->fb, &r->fid));
    }
    return OPTVQ_OK;
}

optvq_status eval_run(optvq_model *m, const eval_source *src, const eval_options *opt, eval_result *out)
{
    if (!m || !src || !opt || !out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "evaluation: NULL argument");
    optvq_model_info info;
    OPTVQ_TRY(optvq_model_get_info(m, &info));
    OPTVQ_TRY(check_inputs(&info, src, opt));

    memset(out, 0, sizeof *out);
    out->lpips = out->fid = NAN;
    snprintf(out->lpips_skip, sizeof out->lpips_skip, "no --lpips weights given");
    snprintf(out->fid_skip, sizeof out->fid_skip, "no --fid-weights given");
    eval_options o = *opt;
    if (o.lpips && (src->h < LPIPS_ALEX_MIN_SIDE || src->w < LPIPS_ALEX_MIN_SIDE)) {
        snprintf(out->lpips_skip, sizeof out->lpips_skip, "%lldx%lld images; LPIPS-Alex needs at least %dx%d",
                 (long long)src->h, (long long)src->w, LPIPS_ALEX_MIN_SIDE, LPIPS_ALEX_MIN_SIDE);
        o.lpips = NULL;
    }
    if (o.lpips)
        out->lpips_skip[0] = '\0';
    if (o.fid)
        out->fid_skip[0] = '\0';

    const int64_t f = info.downsample;
    eval_state s;
    memset(&s, 0, sizeof s);
    s.n = src->n;
    s.per = src->c * src->h * src->w;
    s.per_tok = info.num_head * (src->h / f) * (src->w / f);
    s.batch = o.batch_size < src->n ? o.batch_size : src->n;
    s.n_batches = (s.n + s.batch - 1) / s.batch;
    s.n_e = info.n_e;
    out->images = s.n;
    out->tokens = s.n * s.per_tok;
    out->batch_size = s.batch;

    /* this rank's batches: a contiguous run of the set's, the first ranks one
       more when they do not divide evenly (rank 0 holds the first images) */
    const int size = comm_size(o.comm), rank = comm_rank(o.comm);
    const int64_t share = s.n_batches / size, extra = s.n_batches % size;
    const int64_t b_lo = rank * share + (rank < extra ? rank : extra), b_hi = b_lo + share + (rank < extra);
    const int64_t i_lo = b_lo * s.batch, i_hi = b_hi * s.batch < s.n ? b_hi * s.batch : s.n;
    /* a batch lives on one rank: Sinkhorn over it alone, whatever hook the
       quantizer holds for training (put back below) */
    optvq_quantizer *quant = optvq_model_quantizer(m);
    const optvq_quantizer_config *qc = optvq_quantizer_get_config(quant);
    const optvq_allreduce_fn q_reduce = qc->allreduce;
    void *const q_ctx = qc->allreduce_ctx;
    quantizer_set_allreduce(quant, NULL, NULL);
    optvq_status st = state_alloc(&s, src, &o, o.lpips != NULL);
    for (int64_t b = b_lo; st == OPTVQ_OK && b < b_hi; b++) {
        st = eval_batch(m, src, &o, &s, b);
        if (st == OPTVQ_OK && o.progress) {
            const int64_t done = (b + 1) * s.batch < s.n ? (b + 1) * s.batch : s.n;
            o.progress(o.progress_ctx, done - i_lo, i_hi - i_lo);
        }
    }
    /* rank 0's share may end before the first images the caller wants to see:
       it reconstructs those batches too, outside the statistics */
    if (rank == 0 && o.first_recon)
        for (int64_t b = b_hi; st == OPTVQ_OK && b * s.batch < o.n_first; b++) {
            const int64_t i0 = b * s.batch, n = s.n - i0 < s.batch ? s.n - i0 : s.batch;
            const int64_t k = o.n_first - i0 < n ? o.n_first - i0 : n;
            const float *x;
            double sq;
            int64_t cnt;
            if ((st = batch_images(src, &s, i0, n, &x)) == OPTVQ_OK &&
                (st = eval_model_batch(m, x, n, src->h, src->w, s.recon, s.tokens, &sq, &cnt)) == OPTVQ_OK)
                memcpy(o.first_recon + i0 * s.per, s.recon, (size_t)(k * s.per) * sizeof(float));
        }
    quantizer_set_allreduce(quant, q_reduce, q_ctx);
    if (comm_any(o.comm, st != OPTVQ_OK)) {
        if (st == OPTVQ_OK) {
            st = optvq_fail(OPTVQ_ERR_STATE, "%s: evaluation failed on another rank", src->name);
            out->failed_elsewhere = 1;
        }
    } else if ((st = reduce_state(o.comm, &s, &o)) == OPTVQ_OK) {
        st = finish(&s, &o, out);
    }
    state_free(&s);
    return st;
}
