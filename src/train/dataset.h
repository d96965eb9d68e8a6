/* Training and evaluation data as float32 images (N, C, R, R) in [-1, 1]:
 *   "fashion-mnist"            the Debian IDX files (train or test split),
 *                              the reference's plain preprocessing to R x R
 *   PATH.gz / PATH-idx3-ubyte  an IDX images file, the same preprocessing
 *   PATH.npy                   (N, C, H, W) already in [-1, 1]
 *   a folder                   PNG/JPEG images, the validation preprocessing
 * Training on a folder re-crops and flips each epoch (dataset_augment). */
#ifndef OPTVQ_TRAIN_DATASET_H
#define OPTVQ_TRAIN_DATASET_H
#include "core/rng.h"
#include "optvq/optvq.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct dataset {
    float *images;       /* (n, c, r, r) */
    int64_t n, c, r;
    char **paths;        /* folder datasets: the files, for augmentation */
    int64_t n_paths;
} dataset;

/* `train` picks the split of the named IDX sets; `limit` > 0 keeps the first
 * `limit` images; `channels` 1 or 3 for image folders. */
optvq_status dataset_load(const char *spec, int train, int64_t resolution, int channels, int64_t limit,
                          dataset *out);
/* Folder datasets: re-draws image i with the training augmentation. */
optvq_status dataset_augment(dataset *d, int64_t i, optvq_rng *rng, float *chw);
void dataset_free(dataset *d);

#endif
