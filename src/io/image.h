/* Image I/O and the reference's data preprocessing (internal module).
 *
 * Decoding: PNG (libpng) and JPEG (libjpeg). Corrupt, truncated or absurd
 * files return a non-OK status with a one-line message naming the file; the
 * decoders never abort, exit or print. Sizes are capped before allocating.
 *
 * Two pixel forms:
 *   optvq_image_u8   8-bit, HWC interleaved (what the reference's numpy/cv2
 *                    pipeline works on: PIL's Image.open(p).convert("RGB"))
 *   optvq_image_f32  float32, CHW planar (what the models consume)
 *
 * The reference's validation preprocessing (ImageNetDataset with
 * imagenet_preprocessor(resize, is_train=False)) is
 *   PIL open -> convert("RGB") -> np.uint8 ->
 *   albumentations SmallestMaxSize(resize) (cv2.resize INTER_LINEAR, new size
 *     round-half-even(side * resize / short_side)) ->
 *   albumentations CenterCrop(resize, resize) (offsets floor((H - h) / 2)) ->
 *   (x / 255).astype(float32) -> Normalize(0.5, 0.5) = (x - 0.5) / 0.5
 * optvq_image_preprocess_val() reproduces it bit for bit (cv2's fixed-point
 * bilinear arithmetic included, see image_proc.c).
 *
 * The reference's 'plain' preprocessing (MNIST / CIFAR configs) is
 *   ToTensor (x / 255) -> Normalize(0.5, 0.5) -> transforms.Resize(size)
 * on the tensor: bilinear, align_corners=False, short side to `size`, long
 * side int(size * long / short); see optvq_image_plain_preprocess(). */
#ifndef OPTVQ_IO_IMAGE_H
#define OPTVQ_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "optvq/optvq.h"

/* Largest accepted width or height, and largest width * height. */
#define OPTVQ_IMAGE_MAX_SIDE 32768
#define OPTVQ_IMAGE_MAX_PIXELS ((int64_t)1 << 27)

typedef struct optvq_image_u8 {
    int width, height, channels; /* channels: 1 or 3 */
    uint8_t *data;               /* height * width * channels, HWC interleaved */
    int file_channels;           /* the file's colour: 1 grey, 3 colour (0: not from a file) */
} optvq_image_u8;

typedef struct optvq_image_f32 {
    int width, height, channels; /* channels: 1 or 3 */
    float *data;                 /* channels * height * width, CHW planar */
} optvq_image_f32;

void optvq_image_u8_free(optvq_image_u8 *img);
void optvq_image_f32_free(optvq_image_f32 *img);
/* Allocates (zeroed) storage for the given size; caps as for decoding. */
optvq_status optvq_image_u8_alloc(optvq_image_u8 *img, int width, int height, int channels);
optvq_status optvq_image_f32_alloc(optvq_image_f32 *img, int width, int height, int channels);

/* ---- decoding / encoding -------------------------------------------------- */

/* Reads a PNG or JPEG (recognised by content, not by name) as 8-bit pixels
 * with `channels` 3 (grey replicated, as PIL's convert("RGB")) or 1 (colour
 * turned to luma with PIL's convert("L") weights 299/587/114). Alpha is
 * dropped (not composited), palettes expanded, bit depths below 8 scaled up,
 * 16-bit samples reduced to their high byte (what PIL does for 16-bit RGB). */
optvq_status optvq_image_read_u8(const char *path, int channels, optvq_image_u8 *out);
/* As optvq_image_read_u8, from a whole file already in memory (`len` bytes);
 * `name` stands for the path in messages. */
optvq_status optvq_image_decode_u8(const void *data, size_t len, const char *name, int channels,
                                   optvq_image_u8 *out);

/* Reads a PNG or JPEG as float32 CHW in [0, 1]: as optvq_image_read_u8, but
 * 16-bit PNG samples are scaled by 1/65535 instead of being reduced to 8 bits. */
optvq_status optvq_image_read(const char *path, int channels, optvq_image_f32 *out);

/* Writes an 8-bit grey (1 channel) or RGB (3 channels) PNG atomically
 * (temporary file, fsync, rename). */
optvq_status optvq_image_write_png_u8(const char *path, const optvq_image_u8 *img);

/* Writes float32 CHW in [0, 1] as an 8-bit PNG: clamped to [0, 1], then
 * round(x * 255). NaN is written as 0. */
optvq_status optvq_image_write_png(const char *path, const float *chw, int channels, int height,
                                   int width);

/* Writes float32 CHW in [-1, 1] (model space) as an 8-bit PNG: the
 * reference's recover map (x + 1) / 2, clamped, then rounded as above. */
optvq_status optvq_image_write_png_signed(const char *path, const float *chw, int channels,
                                          int height, int width);

/* ---- conversions between value ranges ------------------------------------ */

/* 8-bit HWC -> float32 CHW in [0, 1]: (float)(u / 255.0). */
void optvq_image_u8_to_unit(const optvq_image_u8 *src, float *chw);
/* 8-bit HWC -> float32 CHW in [-1, 1], bit-identical to the reference:
 * v = (float)(u / 255.0); (v - 0.5f) / 0.5f. */
void optvq_image_u8_to_signed(const optvq_image_u8 *src, float *chw);

typedef enum optvq_image_rounding {
    OPTVQ_IMAGE_ROUND = 0,   /* round(x * 255): exact inverse of u / 255            */
    OPTVQ_IMAGE_TRUNCATE = 1 /* (uint8)(x * 255): the reference's save_image()      */
} optvq_image_rounding;

/* float32 CHW -> 8-bit HWC. `signed_range`: input in [-1, 1], first mapped by
 * the recover map (x + 1) / 2; else input in [0, 1]. Values are clamped to
 * [0, 1] (NaN -> 0) before scaling. `out` must be allocated by the caller
 * with the given channels/height/width. */
optvq_status optvq_image_float_to_u8(const float *chw, int channels, int height, int width,
                                     int signed_range, optvq_image_rounding rounding,
                                     optvq_image_u8 *out);

/* ---- geometry (8-bit, HWC) ------------------------------------------------ */

/* cv2.resize(src, (out_width, out_height), interpolation=cv2.INTER_LINEAR)
 * for uint8, reproduced bit for bit (OpenCV 4.x: 11-bit fixed-point weights,
 * its SSE2 vertical-pass rounding, and the exact-2x INTER_AREA shortcut). */
optvq_status optvq_image_resize_linear(const optvq_image_u8 *src, int out_height, int out_width,
                                       optvq_image_u8 *dst);

/* The size albumentations' SmallestMaxSize(max_size) gives: each side times
 * max_size / min(height, width), rounded half to even, at least 1. */
void optvq_image_smallest_max_size_dims(int height, int width, int max_size, int *out_height,
                                        int *out_width);
/* SmallestMaxSize(max_size) with cv2 INTER_LINEAR (copy when the size holds). */
optvq_status optvq_image_smallest_max_size(const optvq_image_u8 *src, int max_size,
                                           optvq_image_u8 *dst);

/* Copies the window [y0, y0 + height) x [x0, x0 + width); it must lie inside. */
optvq_status optvq_image_crop(const optvq_image_u8 *src, int y0, int x0, int height, int width,
                              optvq_image_u8 *dst);
/* albumentations CenterCrop: y0 = (H - height) / 2, x0 = (W - width) / 2
 * (floor); the image must be at least height x width. */
optvq_status optvq_image_center_crop(const optvq_image_u8 *src, int height, int width,
                                     optvq_image_u8 *dst);
/* Mirrors left-right in place. */
void optvq_image_flip_horizontal(optvq_image_u8 *img);

/* JPEG outputs: quality 95 without chroma subsampling. */
#define OPTVQ_IMAGE_JPEG_QUALITY 95
/* Nonzero when the name ends in .jpg or .jpeg (any case). */
int optvq_image_path_is_jpeg(const char *path);
/* Writes an 8-bit grey or RGB image as a baseline JPEG, atomically. */
optvq_status optvq_image_write_jpeg_u8(const char *path, const optvq_image_u8 *img, int quality);
/* float32 CHW in [-1, 1] as optvq_image_write_png_signed, but JPEG when the
 * name ends in .jpg/.jpeg, PNG otherwise. */
optvq_status optvq_image_write_signed(const char *path, const float *chw, int channels, int height,
                                      int width);

/* ---- the reference's pipelines -------------------------------------------- */

/* Validation: SmallestMaxSize(size) -> CenterCrop(size) -> [-1, 1].
 * `chw` receives src->channels * size * size floats. */
optvq_status optvq_image_preprocess_val(const optvq_image_u8 *src, int size, float *chw);

/* optvq_image_read_u8 + optvq_image_preprocess_val. `file_channels` (may be
 * NULL) receives the file's colour channels (1 grey, 3 colour), so a caller
 * can say when a conversion happened. */
optvq_status optvq_image_load_val(const char *path, int size, int channels, float *chw);
optvq_status optvq_image_load_val_ex(const char *path, int size, int channels, float *chw,
                                     int *file_channels);

/* Training, the reference's augmentation "v1": SmallestMaxSize(size) ->
 * RandomCrop(size, size) (offsets uniform over every valid position) ->
 * HorizontalFlip(p = 0.5) -> [-1, 1]. Draws two crop offsets then one flip
 * decision from `rng`. */
optvq_status optvq_image_preprocess_train(const optvq_image_u8 *src, int size, optvq_rng *rng,
                                          float *chw);

/* The output size of torchvision's Resize(size) on an h x w image: the short
 * side becomes size, the long side int(size * long / short). */
void optvq_image_plain_dims(int height, int width, int size, int *out_height, int *out_width);

/* The reference's plain_preprocessor(size): x / 255 (float32), (x - 0.5) / 0.5,
 * then bilinear resize (PyTorch's upsample_bilinear2d, align_corners=False,
 * no antialiasing) of the short side to `size`. `chw` receives
 * channels * out_height * out_width floats (optvq_image_plain_dims). */
optvq_status optvq_image_plain_preprocess(const optvq_image_u8 *src, int size, float *chw);

/* PyTorch bilinear resize (align_corners=False, no antialias) of float32 CHW. */
optvq_status optvq_image_resize_bilinear_f32(const float *src, int channels, int height,
                                             int width, int out_height, int out_width,
                                             float *dst);

/* ---- folders -------------------------------------------------------------- */

/* Every regular file in `dir` named *.png, *.jpg or *.jpeg (any case; names
 * starting with "." are skipped, e.g. macOS "._x.jpg" side files), as
 * "dir/name", sorted by name (byte order, as Python's sorted()). An empty
 * folder gives count 0 and *paths NULL. */
optvq_status optvq_image_list_folder(const char *dir, char ***paths, int64_t *count);
void optvq_image_list_free(char **paths, int64_t count);

/* ---- IDX (MNIST / Fashion-MNIST) ------------------------------------------ */

typedef struct optvq_idx {
    int ndim;         /* 1 (labels) .. 3 (images) */
    int64_t dims[3];  /* e.g. N, 28, 28           */
    uint8_t *data;    /* product of dims bytes (of the items read) */
} optvq_idx;

/* Reads an unsigned-byte IDX file, gzip-compressed or not (zlib). Checks the
 * magic (0, 0, 0x08, ndim), that every dimension is positive, and that the
 * file holds exactly the data the header announces. `max_items` > 0 reads
 * only the first max_items along dims[0] (dims[0] is then reduced; the rest
 * of the file is not checked). */
optvq_status optvq_idx_read(const char *path, int64_t max_items, optvq_idx *out);
/* As optvq_idx_read, requiring 3 dims (images) or 1 dim (labels). */
optvq_status optvq_idx_read_images(const char *path, int64_t max_items, optvq_idx *out);
optvq_status optvq_idx_read_labels(const char *path, int64_t max_items, optvq_idx *out);
void optvq_idx_free(optvq_idx *idx);

/* Image i of an images IDX as a 1-channel optvq_image_u8 view (no copy). */
optvq_image_u8 optvq_idx_image(const optvq_idx *images, int64_t i);

#endif
