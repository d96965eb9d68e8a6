/* rFID as the OptVQ paper reports it: pytorch-fid's (mseitzer/pytorch-fid)
 * InceptionV3 with the FID weights (pt_inception-2015-12-05-6726825d.pth), the
 * 2048-d pool features, and the Frechet distance between the feature
 * statistics of two image sets. Forward only.
 *
 * Features (fid_inception_forward), for images in [0, 1]:
 *   x   = F.interpolate(x, (299, 299), bilinear, align_corners=False); x = 2x - 1
 *   stem  Conv2d_1a_3x3 (/2), Conv2d_2a_3x3, Conv2d_2b_3x3 (pad 1), MaxPool 3/2,
 *         Conv2d_3b_1x1, Conv2d_4a_3x3, MaxPool 3/2
 *   Mixed_5b/5c/5d  FIDInceptionA (pool branch: avg 3x3/1 pad 1, count_include_pad=False)
 *   Mixed_6a        InceptionB;  Mixed_6b..6e  FIDInceptionC (same avg pool)
 *   Mixed_7a        InceptionD;  Mixed_7b  FIDInceptionE_1 (same avg pool)
 *   Mixed_7c        FIDInceptionE_2 (pool branch: max 3x3/1 pad 1)
 *   AdaptiveAvgPool2d(1) -> (B, 2048)
 *   every conv is torchvision's BasicConv2d: Conv2d (no bias), BatchNorm2d
 *   (eps 0.001, running statistics), ReLU. The batch norm is folded into the
 *   conv: w' = w * g / sqrt(v + eps), b' = beta - m * g / sqrt(v + eps).
 * Grey images are replicated to 3 channels (pytorch-fid reads files with
 * PIL's convert("RGB")).
 *
 * Weights: the pytorch-fid file (a torchvision Inception3 state dict, 1008
 * classes, no AuxLogits: Conv2d_1a_3x3.conv.weight, ...bn.weight/bias/
 * running_mean/running_var, Mixed_5b.branch1x1.conv.weight, ...), or any file
 * holding those names (a common prefix allowed); fc.* and num_batches_tracked
 * are ignored. .pth (zip or legacy) or .safetensors.
 *
 * Statistics (fid_stats) are sums in double: count, sum of features, sum of
 * outer products, so that batches (and ranks) combine by adding. Then
 *   mu = sum / n,  sigma = (outer - n mu mu^T) / (n - 1)     (numpy's cov, ddof 1)
 *   FID = |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr sqrt(s1 s2)
 * tr sqrt(s1 s2) is the sum of the square roots of the eigenvalues of
 * s1^(1/2) s2 s1^(1/2) (similar to s1 s2; LAPACK's dsyevd twice, negative
 * round-off eigenvalues count as 0, which is the real part scipy's sqrtm
 * gives). As pytorch-fid, when that fails (no convergence, non-finite values)
 * eps = 1e-6 is added to both covariance diagonals and it is recomputed. */
#ifndef OPTVQ_EVAL_FID_H
#define OPTVQ_EVAL_FID_H
#include <stdint.h>

#include "nn/nn.h"
#include "optvq/optvq.h"

#define FID_DIM 2048
#define FID_SIZE 299

typedef struct fid_inception fid_inception;

optvq_status fid_inception_load(const char *path, fid_inception **out);
/* Zero weights (batch-norm variances 1), to be filled through the params (tests). */
optvq_status fid_inception_create(fid_inception **out);
/* By pytorch-fid names (X.conv.weight, X.bn.weight, X.bn.bias, X.bn.running_mean,
 * X.bn.running_var). Changing them is seen by the next forward. */
nn_params *fid_inception_params(fid_inception *n);
void fid_inception_free(fid_inception *n);

/* feats (batch, 2048) <- images (batch, channels, height, width) in [0, 1],
 * channels 1 or 3, any size >= 1 (resized to 299x299). */
optvq_status fid_inception_forward(fid_inception *n, const float *images, int64_t batch, int channels,
                                   int64_t height, int64_t width, float *feats);

typedef struct fid_stats {
    int64_t count;
    int dim;
    double *sum;   /* (dim)                                   */
    double *outer; /* (dim, dim): sum of x x^T, upper triangle kept in the row-major upper part */
} fid_stats;

optvq_status fid_stats_init(fid_stats *s, int dim);
void fid_stats_free(fid_stats *s);
/* Adds n feature rows (n, dim). */
optvq_status fid_stats_add(fid_stats *s, const float *feats, int64_t n);
/* dst += src (same dim). */
optvq_status fid_stats_merge(fid_stats *dst, const fid_stats *src);
/* mu (dim), sigma (dim, dim, full symmetric); needs count >= 2. */
optvq_status fid_stats_moments(const fid_stats *s, double *mu, double *sigma);
/* Frechet distance between N(mu1, s1) and N(mu2, s2) (dim x dim, symmetric). */
optvq_status fid_frechet_distance(const double *mu1, const double *s1, const double *mu2, const double *s2, int dim,
                                  double *fid);
/* The Frechet distance of two sets' statistics. */
optvq_status fid_from_stats(const fid_stats *a, const fid_stats *b, double *fid);

#endif
