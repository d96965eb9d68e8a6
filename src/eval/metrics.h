/* Image-quality metrics as the OptVQ paper reports them (internal module).
 *
 * The paper's evaluation (zbr17/OptVQ eval.py) runs pyiqa (chaofengc/IQA-PyTorch):
 *     psnr = pyiqa.create_metric("psnr", test_y_channel=True, data_range=1.0,
 *                                color_space="ycbcr")
 *     ssim = pyiqa.create_metric("ssim")  -> SSIM(downsample=False,
 *                                test_y_channel=True, color_space="yiq"), data range 255
 * per image, on x = (x + 1) / 2 and x_rec = ((x_rec + 1) / 2).clamp(0, 1) (float32
 * tensors; the recover map is torchvision's Normalize(mean=-1, std=2)), then the
 * mean over the evaluation set. crop_border is 0 for both. These functions
 * compute the same, per image, in double precision:
 *
 * Inputs: float32 CHW images of 1 or 3 (RGB) channels. Both images are clamped
 * to [0, 1] first (a no-op for a valid original; the reference clamps the
 * reconstruction). NaN is an error (OPTVQ_ERR_NUMERIC).
 *
 * PSNR (pyiqa psnr_arch.psnr, color_util.rgb2ycbcr):
 *     3 channels: Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255   (BT.601 Y,
 *                 in [16/255, 235/255]; the constants are pyiqa's float32
 *                 values, promoted to double)
 *     1 channel:  Y = the pixel value
 *     mse  = mean over pixels of (Y_x - Y_y)^2
 *     PSNR = 10 log10(1 / (mse + 1e-8))   [dB]
 *   pyiqa adds eps = 1e-8, so identical images give exactly 80 dB (never inf).
 *   pyiqa itself runs this in float32; the double result differs from it by
 *   about 1e-7 relative (tests/test_metrics.c prints both).
 *
 * SSIM (pyiqa ssim_arch.SSIM / ssim, func_util.preprocess_rgb, color_util):
 *     3 channels: Y = round(255 * (0.299 R + 0.587 G + 0.114 B))   (Y of YIQ)
 *     1 channel:  Y = round(255 * v)
 *       formed in float32 exactly as pyiqa does on float32 tensors:
 *       ((R*0.299f + G*0.587f) + B*0.114f) * 255f, each step rounded to float32,
 *       then rounded half to even (torch.round) to an integer 0..255, then float64.
 *     window w: 11 x 11 Gaussian, sigma 1.5, exp(-(i^2 + j^2) / 4.5) normalised
 *       to sum 1 in float64 and then rounded to float32 (pyiqa's fspecial()).
 *     "valid" filtering (no padding): the maps are (H - 10) x (W - 10); images
 *       need H, W >= 11. No downsampling (downsample=False).
 *     mu_x = w * Y_x, mu_y = w * Y_y, s_xx = w * Y_x^2 - mu_x^2,
 *     s_yy = w * Y_y^2 - mu_y^2, s_xy = w * (Y_x Y_y) - mu_x mu_y,
 *     C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2,
 *     cs   = max(0, (2 s_xy + C2) / (s_xx + s_yy + C2))
 *     map  = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) * cs
 *     SSIM = mean of map.
 *   Identical images give exactly 1.
 *
 * Where others differ: a plain 10 log10(1/mse) has no eps (inf for identical
 * images), and skimage does not round SSIM's Y to integers.
 * skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=255) on the same rounded Y agrees to
 * ~3e-7 relative (its window stays in float64) except that it does not clip cs
 * at 0; skimage's peak_signal_noise_ratio has no eps. */
#ifndef OPTVQ_EVAL_METRICS_H
#define OPTVQ_EVAL_METRICS_H
#include <stdint.h>

#include "optvq/optvq.h"

#define METRICS_PSNR_EPS 1e-8
#define METRICS_SSIM_WIN 11
#define METRICS_SSIM_SIGMA 1.5

/* x: the original, y: the reconstruction, both float32 CHW in [0, 1] (clamped
 * here), `channels` 1 or 3. */
optvq_status metrics_psnr(const float *x, const float *y, int channels, int height, int width, double *psnr);
optvq_status metrics_ssim(const float *x, const float *y, int channels, int height, int width, double *ssim);

/* pyiqa's SSIM window (fspecial(11, 1.5) as float32), row-major 11 x 11. */
void metrics_ssim_window(float window[METRICS_SSIM_WIN * METRICS_SSIM_WIN]);

/* The reference's recover map on model-space values: (v + 1) / 2 in float32,
 * clamped to [0, 1]. NaN stays NaN (the metrics then refuse it). */
void metrics_recover(const float *src, int64_t count, float *dst);

/* PSNR and SSIM of `batch` image pairs in model space ([-1, 1], NCHW): each
 * image goes through metrics_recover() first. psnr / ssim receive one value
 * per image (either may be NULL). Images run in parallel; results do not
 * depend on the thread count. */
optvq_status metrics_batch_signed(const float *originals, const float *recons, int64_t batch, int channels,
                                  int height, int width, double *psnr, double *ssim);

/* Running mean over images (compensated sums). */
typedef struct metrics_acc {
    int64_t count;
    double psnr_sum, psnr_c, ssim_sum, ssim_c;
    double psnr_min, psnr_max, ssim_min, ssim_max;
} metrics_acc;

void metrics_acc_init(metrics_acc *a);
void metrics_acc_add(metrics_acc *a, double psnr, double ssim);
/* Means over the images added so far (NaN when none). */
double metrics_acc_psnr(const metrics_acc *a);
double metrics_acc_ssim(const metrics_acc *a);

#endif
