/* Image sets (internal module): what `optvq train`, `optvq eval` and the model
 * commands (encode, reconstruct) read, with one set of rules and messages.
 * Images come out as float32 (C, H, W) in [-1, 1].
 *
 *   fashion-mnist[:train|:test]  the IDX files of Debian's dataset-fashion-mnist
 *                                (plain "fashion-mnist": the split options.train_split
 *                                names)
 *   PATH.gz, PATH*idx3-ubyte*    an IDX images file (grey): the reference's plain
 *                                preprocessing to the resolution (bilinear)
 *   PATH.npy                     (B, C, H, W): float32/float64 used as they are,
 *                                uint8 mapped as (x/255 - 0.5)/0.5 (from_u8 says so);
 *                                integer arrays refused; NaN/Inf refused; the span of
 *                                the values is kept (dataset_check_range)
 *   a folder                     its PNG/JPEG files sorted by name, or
 *   any other file               one image file: the reference's validation
 *                                preprocessing to the resolution (short side, centre
 *                                crop), colour turned to grey or grey replicated to
 *                                fit the channels
 *
 * Checked when the set is opened: the path exists, a folder holds images, the
 * channels fit (C of a .npy; IDX images are grey), IDX images resize to the
 * resolution, .npy sides are multiples of options.multiple (and square with
 * options.square), the set is not empty and fits in memory. Image files are
 * decoded when read: a file that does not decode fails its read, named.
 *
 * dataset_open keeps the set ready to read a batch at a time (a .npy is in
 * memory; IDX bytes are decoded per image; files are read per image);
 * dataset_load reads every image into `images` (training). */
#ifndef OPTVQ_IO_DATASET_H
#define OPTVQ_IO_DATASET_H
#include <stdint.h>

#include "core/rng.h"
#include "io/image.h"
#include "optvq/optvq.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A .npy value beyond [-1, 1] by more than this is out of range. */
#define DATASET_RANGE_SLACK 1e-3

typedef enum dataset_kind { DATASET_IDX = 0, DATASET_NPY = 1, DATASET_FILES = 2 } dataset_kind;

typedef struct dataset_options {
    int64_t channels;   /* the model's input channels (1 or 3)                            */
    int64_t resolution; /* IDX and image files are brought to resolution x resolution      */
    int64_t multiple;   /* .npy sides must be multiples of it (the model's downsampling); 0: any */
    int square;         /* .npy images must be square                                      */
    int64_t limit;      /* > 0: only the first `limit` images                              */
    int train_split;    /* plain "fashion-mnist" is the training split (else the test one) */
} dataset_options;

typedef struct dataset {
    float *images;      /* (n, c, h, w) when in memory (a .npy, or after dataset_load); else NULL */
    int64_t n, c, r;    /* r: the side when h == w, else 0                                 */
    int64_t h, w;
    char **paths;       /* image files: their paths (n_paths of them, n used)             */
    int64_t n_paths;
    dataset_kind kind;
    char what[4096];    /* the file or folder read (fashion-mnist: its IDX file)          */
    int from_u8;        /* a uint8 .npy, mapped to [-1, 1]                                 */
    double lo, hi;      /* a .npy: the smallest and largest value of the n images          */
    optvq_idx idx;      /* an IDX set until dataset_load has decoded it                    */
} dataset;

/* Opens `spec` (see above). On failure *out is empty (dataset_free is safe). */
optvq_status dataset_open(const char *spec, const dataset_options *options, dataset *out);

/* Images [first, first + count) into dst (count, c, h, w). */
optvq_status dataset_read(dataset *d, int64_t first, int64_t count, float *dst);
/* Image i into chw; file_channels (may be NULL) receives the channels of its
 * file (1 grey, 3 colour; c for other kinds), so a caller can say when a
 * conversion happened. */
optvq_status dataset_read_one(dataset *d, int64_t i, float *chw, int *file_channels);
/* The file of image i (an image set), else NULL. */
const char *dataset_file(const dataset *d, int64_t i);
/* OPTVQ_ERR_FORMAT, "WHAT: values span [lo, hi]; images must lie in [-1, 1] ...",
 * when a .npy's values leave [-1, 1] (a command that compares with the
 * originals needs them there; the model itself runs on any values). */
optvq_status dataset_check_range(const dataset *d);

/* Training and held-out data, all in memory: dataset_open with
 * {channels, resolution, square .npy images, limit, train_split = train},
 * then every image read. */
optvq_status dataset_load(const char *spec, int train, int64_t resolution, int channels, int64_t limit,
                          dataset *out);
/* Training: image i with the reference's augmentation (image files: a random
 * crop and flip of the file, drawn from rng; other kinds: as loaded). */
optvq_status dataset_augment(dataset *d, int64_t i, optvq_rng *rng, float *chw);
void dataset_free(dataset *d);

#endif
