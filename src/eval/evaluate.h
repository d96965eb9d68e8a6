/* The evaluation of a model on a set of images (internal module): what
 * `optvq eval` reports and what training's held-out check records, computed
 * by one function.
 *
 * The images are cut into batches of batch_size (the last one shorter) and
 * each batch is reconstructed (eval_model_batch: encoder, quantizer,
 * decoder). Per image: PSNR and SSIM (metrics.h) and, when its network is
 * given, LPIPS-Alex; over the set: the code histogram (codebook usage,
 * perplexity, dead codes), the mean quantization error and, when its network
 * is given, the FID statistics of the originals and the reconstructions.
 *
 * Over a data-parallel group (optvq_comm with n_ranks > 1) each rank takes a
 * contiguous run of whole batches, so every batch (and Sinkhorn's assignment
 * over it) is the one a single process sees. Per-image values and per-batch
 * sums are placed in a set-wide array (zero elsewhere) and summed over the
 * ranks, which is exact, and then every rank adds them up in image order:
 * PSNR, SSIM, LPIPS, usage and the quantization error are bit for bit a
 * single process's. The FID statistics (sums of features and of their outer
 * products) are summed over the ranks: FID then agrees to rounding (about
 * 1e-9 relative). Every rank receives the same results. A batch lives on one
 * rank, so while eval_run works the model's quantizer does not reduce across
 * ranks (a training hook it holds is put back afterwards).
 *
 * A failure on one rank makes eval_run fail on every rank (the others with
 * "evaluation failed on another rank"), so none waits in a reduction. */
#ifndef OPTVQ_EVAL_EVALUATE_H
#define OPTVQ_EVAL_EVALUATE_H
#include <stdint.h>

#include "eval/fid.h"
#include "eval/lpips_alex.h"
#include "optvq/optvq.h"
#include "optvq/train.h"

/* Fills dst (count, c, h, w) with images [first, first + count) in [-1, 1]. */
typedef optvq_status (*eval_fill_fn)(void *ctx, int64_t first, int64_t count, float *dst);

typedef struct eval_source {
    const char *name;    /* for messages ("val_images/", "held-out images") */
    int64_t n, c, h, w;  /* n images of c x h x w                           */
    const float *images; /* all n images in memory, or NULL: fill           */
    eval_fill_fn fill;
    void *ctx;
} eval_source;

typedef struct eval_options {
    int64_t batch_size;      /* images per model call (>= 1; more than n: n)             */
    lpips_alex *lpips;       /* NULL: LPIPS skipped                                      */
    fid_inception *fid;      /* NULL: rFID skipped                                       */
    const optvq_comm *comm;  /* NULL: one process                                        */
    /* On rank 0: the reconstructions of images [0, n_first) (n_first <= n),
       those a single process makes (a picture of the first images). */
    float *first_recon;
    int64_t n_first;
    /* After each batch of this rank: images done of this rank's share. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} eval_options;

typedef struct eval_result {
    int64_t images, tokens, batch_size; /* the set, its tokens, the batch used */
    double psnr, psnr_min, psnr_max;    /* dB, mean over images                */
    double ssim, ssim_min, ssim_max;
    optvq_usage usage;                  /* over every token of the set         */
    double quant_error;                 /* mean (z - x_q)^2 per element        */
    double lpips, fid;                  /* NaN: skipped, the reason below      */
    char lpips_skip[160], fid_skip[160];
    int failed_elsewhere;               /* eval_run failed for another rank's problem */
} eval_result;

optvq_status eval_run(optvq_model *m, const eval_source *src, const eval_options *opt, eval_result *out);

/* LPIPS-Alex and the FID features of n image pairs (n, c, h, w) in [0, 1]
 * (c 1 or 3; grey is replicated to RGB), in chunks of 8 images (bounded
 * memory). lpips NULL: no LPIPS, else lpips_out (n) receives it per pair;
 * fid NULL: no FID, else the features of x0 are added to fa and those of x1
 * to fb. LPIPS needs h, w >= LPIPS_ALEX_MIN_SIDE. */
optvq_status eval_perceptual_batch(lpips_alex *lpips, fid_inception *fid, fid_stats *fa, fid_stats *fb,
                                   const float *x0, const float *x1, int64_t n, int c, int64_t h, int64_t w,
                                   double *lpips_out);

#endif
