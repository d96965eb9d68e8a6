/* The evaluation (src/eval/evaluate.h): over a group of ranks (threads here,
 * summing through a barrier in rank order) it gives the single-process
 * numbers bit for bit, with unequal shares, a rank with nothing to do, and
 * the first reconstructions on rank 0 even when its share ends before them;
 * a failure on one rank fails every rank. */
#include "test.h"
#include "thread_group.h"

#include "eval/evaluate.h"
#include "optvq/optvq.h"
#include "quant/quantizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANKS 4 /* <= THREAD_GROUP_MAX */
#define N_IMAGES 7
#define SIDE 16
#define PER (3 * SIDE * SIDE)

typedef struct ev_rank {
    thread_member member;
    optvq_comm comm;
    const float *images;
    int use_fill, fail_at; /* fail_at >= 0: the fill callback fails on that image */
    int64_t batch;
    float first[N_IMAGES * PER];
    eval_result res;
    optvq_status st;
} ev_rank;

static optvq_status ev_fill(void *ctx, int64_t first, int64_t count, float *dst)
{
    ev_rank *k = ctx;
    if (k->fail_at >= first && k->fail_at < first + count)
        return OPTVQ_ERR_IO; /* the message is left as it was: the caller's job to set it */
    memcpy(dst, k->images + first * PER, (size_t)(count * PER) * sizeof(float));
    return OPTVQ_OK;
}

static optvq_model *ev_model(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model/taming_small/hf", test_ref_dir());
    optvq_model *m = NULL;
    return optvq_model_load(dir, NULL, &m) == OPTVQ_OK ? m : NULL;
}

static void ev_evaluate(ev_rank *k, optvq_model *m)
{
    eval_source src = {.name = "test images", .n = N_IMAGES, .c = 3, .h = SIDE, .w = SIDE};
    if (k->use_fill) {
        src.fill = ev_fill;
        src.ctx = k;
    } else {
        src.images = k->images;
    }
    eval_options o = {.batch_size = k->batch, .comm = &k->comm, .first_recon = k->first, .n_first = 5};
    k->st = eval_run(m, &src, &o, &k->res);
}

static void *ev_rank_main(void *p)
{
    ev_rank *k = p;
    optvq_model *m = ev_model(); /* a model per rank, as per process */
    if (!m) {
        k->st = OPTVQ_ERR_IO;
        return NULL;
    }
    ev_evaluate(k, m);
    optvq_model_free(m);
    return NULL;
}

/* n_ranks threads; returns 0 when they all ran */
static int ev_run_group(ev_rank *ranks, int n_ranks, const float *images, int64_t batch, int use_fill, int fail_at)
{
    thread_group gr;
    thread_group_init(&gr, n_ranks);
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < n_ranks; r++) {
        ev_rank *k = &ranks[r];
        memset(k, 0, sizeof *k);
        k->comm = thread_group_join(&gr, r, &k->member);
        k->images = images;
        k->use_fill = use_fill;
        k->fail_at = fail_at;
        k->batch = batch;
    }
    int ok = 1;
    for (int r = 0; r < n_ranks; r++)
        ok &= pthread_create(&th[r], NULL, ev_rank_main, &ranks[r]) == 0;
    for (int r = 0; r < n_ranks; r++)
        pthread_join(th[r], NULL);
    thread_group_destroy(&gr);
    return ok ? 0 : -1;
}

static void ev_images(float *x)
{
    uint64_t s = 12345;
    for (int64_t i = 0; i < N_IMAGES * PER; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1 << 23) - 1.0);
    }
}

static int same_result(const eval_result *a, const eval_result *b)
{
    return a->images == b->images && a->tokens == b->tokens && a->batch_size == b->batch_size &&
           a->psnr == b->psnr && a->psnr_min == b->psnr_min && a->psnr_max == b->psnr_max && a->ssim == b->ssim &&
           a->ssim_min == b->ssim_min && a->ssim_max == b->ssim_max && a->quant_error == b->quant_error &&
           a->usage.codes_used == b->usage.codes_used && a->usage.perplexity == b->usage.perplexity &&
           a->usage.dead_codes == b->usage.dead_codes && isnan(a->lpips) && isnan(b->lpips) && isnan(a->fid) &&
           isnan(b->fid);
}

TEST(evaluate_ranks_equal_one_process)
{
    const int saved = optvq_get_num_threads();
    optvq_set_num_threads(1); /* the same float32 sums in every rank and in the reference */
    static float images[N_IMAGES * PER];
    ev_images(images);
    optvq_model *m = ev_model();
    CHECK(m != NULL);
    if (!m)
        return;
    /* batch 2: 4 batches (the last of one image); batch 1: 7; batch 8: one for everybody */
    const int64_t batches[] = {2, 1, 8};
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        static ev_rank one;
        memset(&one, 0, sizeof one);
        one.images = images;
        one.batch = batches[bi];
        ev_evaluate(&one, m);
        CHECK_OK(one.st);
        CHECK(one.res.images == N_IMAGES && one.res.batch_size == (batches[bi] < N_IMAGES ? batches[bi] : N_IMAGES));
        CHECK(isfinite(one.res.psnr) && one.res.psnr_min <= one.res.psnr && one.res.psnr <= one.res.psnr_max);
        CHECK(one.res.usage.codes_used >= 1 && isfinite(one.res.quant_error) && one.res.quant_error > 0);
        for (int n_ranks = 2; n_ranks <= 3; n_ranks++)
            for (int use_fill = 0; use_fill <= 1; use_fill++) {
                static ev_rank ranks[MAX_RANKS];
                CHECK(ev_run_group(ranks, n_ranks, images, batches[bi], use_fill, -1) == 0);
                for (int r = 0; r < n_ranks; r++) {
                    CHECK_OK(ranks[r].st);
                    CHECK_MSG(same_result(&ranks[r].res, &one.res),
                              "batch %lld, %d ranks, rank %d: PSNR %.17g vs %.17g, SSIM %.17g vs %.17g, "
                              "quant error %.17g vs %.17g", (long long)batches[bi], n_ranks, r, ranks[r].res.psnr,
                              one.res.psnr, ranks[r].res.ssim, one.res.ssim, ranks[r].res.quant_error,
                              one.res.quant_error);
                }
                /* rank 0's share (2 images with batch 2 over 3 ranks) may end before the 5 first */
                CHECK_MSG(!memcmp(ranks[0].first, one.first, sizeof one.first),
                          "batch %lld, %d ranks: rank 0's first reconstructions differ", (long long)batches[bi],
                          n_ranks);
            }
    }
    optvq_model_free(m);
    optvq_set_num_threads(saved);
}

TEST(evaluate_failure_on_one_rank_fails_all)
{
    const int saved = optvq_get_num_threads();
    optvq_set_num_threads(1);
    static float images[N_IMAGES * PER];
    ev_images(images);
    static ev_rank ranks[MAX_RANKS];
    /* image 6 is in the last rank's share: it fails, the others hear of it */
    CHECK(ev_run_group(ranks, 2, images, 2, 1, 6) == 0);
    CHECK(ranks[1].st == OPTVQ_ERR_IO && !ranks[1].res.failed_elsewhere);
    CHECK(ranks[0].st == OPTVQ_ERR_STATE && ranks[0].res.failed_elsewhere);
    optvq_set_num_threads(saved);
}

TEST(evaluate_refuses_bad_input)
{
    optvq_model *m = ev_model();
    CHECK(m != NULL);
    if (!m)
        return;
    static float images[N_IMAGES * PER];
    ev_images(images);
    eval_result res;
    eval_options o = {.batch_size = 2};
    eval_source grey = {.name = "grey", .n = 2, .c = 1, .h = SIDE, .w = SIDE, .images = images};
    CHECK(eval_run(m, &grey, &o, &res) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "1-channel images for a 3-channel model") != NULL);
    eval_source odd = {.name = "odd", .n = 2, .c = 3, .h = 15, .w = 15, .images = images};
    CHECK(eval_run(m, &odd, &o, &res) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "multiples of") != NULL);
    eval_source none = {.name = "none", .n = 0, .c = 3, .h = SIDE, .w = SIDE, .images = images};
    CHECK(eval_run(m, &none, &o, &res) == OPTVQ_ERR_INVALID_ARG);
    optvq_model_free(m);
}

static int failing_reduce(double *values, size_t count, optvq_reduce_op op, void *ctx)
{
    (void)values, (void)count, (void)op, (void)ctx;
    return 1;
}

TEST(evaluate_keeps_sinkhorn_to_each_batch)
{
    optvq_model *m = ev_model();
    CHECK(m != NULL);
    if (!m)
        return;
    static float images[N_IMAGES * PER];
    ev_images(images);
    static ev_rank plain, hooked;
    memset(&plain, 0, sizeof plain);
    plain.images = images;
    plain.batch = 3;
    ev_evaluate(&plain, m);
    CHECK_OK(plain.st);
    /* a training hook on the quantizer (here one that fails if called) is not
       used by the evaluation, and is there again afterwards */
    optvq_quantizer *q = optvq_model_quantizer(m);
    quantizer_set_allreduce(q, failing_reduce, &hooked);
    memset(&hooked, 0, sizeof hooked);
    hooked.images = images;
    hooked.batch = 3;
    ev_evaluate(&hooked, m);
    CHECK_OK(hooked.st);
    CHECK(same_result(&plain.res, &hooked.res));
    CHECK(optvq_quantizer_get_config(q)->allreduce == failing_reduce &&
          optvq_quantizer_get_config(q)->allreduce_ctx == &hooked);
    optvq_model_free(m);
}
