/* Model weights I/O (internal): a store of named float32 tensors, read from
 * safetensors files or PyTorch .pth/.ckpt checkpoints (torch.save's zip
 * archive + a safe subset of pickle that executes nothing), written as
 * safetensors, and loaded strictly by name into model buffers.
 *
 * Every reader checks every size and offset against the file; a malformed
 * file gives OPTVQ_ERR_FORMAT with a one-line message naming the file. */
#ifndef OPTVQ_IO_WEIGHTS_H
#define OPTVQ_IO_WEIGHTS_H
#include <stddef.h>
#include <stdint.h>

#include "optvq/optvq.h"

typedef struct optvq_weights optvq_weights;

/* One tensor of the store. Float32, C order. `data` belongs to the store
 * (it may point into the memory-mapped file) and lives until
 * optvq_weights_free. */
typedef struct optvq_tensor {
    const char *name;
    int ndim;                        /* 0..OPTVQ_MAX_DIMS (0: a scalar) */
    int64_t shape[OPTVQ_MAX_DIMS];
    int64_t numel;                   /* product of shape (1 for a scalar) */
    const float *data;
} optvq_tensor;

/* An empty store. */
optvq_status optvq_weights_create(optvq_weights **out);
/* Reads a file, detecting its format by its first bytes: a zip archive
 * ("PK\3\4") or a pickle (0x80, legacy torch.save) is a PyTorch checkpoint,
 * anything else must be safetensors.
 * Tensors of other dtypes (F16, BF16, F64, integers, bool) are converted
 * to float32. */
optvq_status optvq_weights_load(const char *path, optvq_weights **out);
optvq_status optvq_weights_load_safetensors(const char *path, optvq_weights **out);
/* PyTorch checkpoint (torch >= 1.6 zip format, or the legacy non-zip format
 * of torch < 1.6 / _use_new_zipfile_serialization=False). The tensors are those of the
 * top-level dict's "model" entry when it is a dict, else of its "state_dict"
 * entry, else of the top-level dict itself; non-tensor values are skipped. A
 * file holding one bare tensor (torch.save(tensor)) gives one tensor named
 * "tensor". */
optvq_status optvq_weights_load_pth(const char *path, optvq_weights **out);
void optvq_weights_free(optvq_weights *w);

int64_t optvq_weights_count(const optvq_weights *w);
/* Tensors in file order (safetensors: sorted by name); NULL when out of range. */
const optvq_tensor *optvq_weights_get(const optvq_weights *w, int64_t i);
/* Exact name lookup; NULL when absent. */
const optvq_tensor *optvq_weights_find(const optvq_weights *w, const char *name);
/* Adds a copy of `data` (numel = product of shape floats) under `name`;
 * a duplicate name is an error. */
optvq_status optvq_weights_add(optvq_weights *w, const char *name, int ndim, const int64_t *shape,
                               const float *data);
/* String metadata, kept in the safetensors header's "__metadata__" object
 * (a checkpoint's integers: steps, seed, counters). "format" is reserved
 * (always "pt"); at most OPTVQ_WEIGHTS_MAX_META entries; setting a key again
 * replaces its value. The reader keeps every string-valued entry. */
#define OPTVQ_WEIGHTS_MAX_META 64
optvq_status optvq_weights_set_meta(optvq_weights *w, const char *key, const char *value);
/* The value, or NULL when absent. */
const char *optvq_weights_meta(const optvq_weights *w, const char *key);
int optvq_weights_meta_count(const optvq_weights *w);
const char *optvq_weights_meta_key(const optvq_weights *w, int i);

/* Writes all tensors as F32 safetensors, names sorted, header padded to a
 * multiple of 8 bytes, the metadata beside "format": "pt", atomically
 * (temporary file, fsync, rename). */
optvq_status optvq_weights_save_safetensors(const optvq_weights *w, const char *path);

/* Strict loading by name. */
typedef struct optvq_expected_tensor {
    const char *name;                /* PyTorch state-dict name, no prefix */
    int ndim;
    int64_t shape[OPTVQ_MAX_DIMS];
    float *dest;                     /* receives numel floats */
} optvq_expected_tensor;

/* Checkpoint names are normalised first: a leading "model." and a leading
 * "_orig_mod." are stripped (either order); names then starting with "loss."
 * are ignored. Every expected tensor must then be present exactly once with
 * the expected shape, and no other tensor may remain. On any problem nothing
 * is copied and the message (prefixed with `path_for_messages`) counts the
 * missing, unexpected, duplicate and mismatched tensors and names the first
 * few of each. */
optvq_status optvq_weights_load_into(const optvq_weights *w, const optvq_expected_tensor *expected, int64_t n,
                                     const char *path_for_messages);

/* The name a checkpoint tensor is matched under by optvq_weights_load_into
 * (a pointer into `name`), or NULL for a "loss." tensor, which is ignored. */
const char *optvq_weights_normalise_name(const char *name);

/* ---- internal to src/io (shared by weights.c, safetensors.c, pth.c) ---- */

/* Adds a tensor whose data the store takes over (`owned` = 1: freed with
 * the store, must come from malloc) or borrows (`owned` = 0: memory that
 * outlives the store, e.g. the store's own mapping). On failure an owned
 * buffer is freed. `numel` must equal the product of shape. */
optvq_status optvq_weights_add_raw(optvq_weights *w, const char *name, int ndim, const int64_t *shape,
                                   float *data, int owned, const char *path_for_messages);
/* Hands a read-only mapping to the store, which unmaps it when freed. */
void optvq_weights_keep_mapping(optvq_weights *w, void *map, size_t size);

/* Maps a whole file read-only. An empty file gives *map = NULL, *size = 0. */
optvq_status optvq_map_file(const char *path, void **map, size_t *size);

/* Element conversions (little-endian bit patterns). */
float optvq_half_to_float(uint16_t h);
float optvq_bf16_to_float(uint16_t h);

/* Storage/element types known to the readers. */
typedef enum optvq_wtype {
    OPTVQ_WT_F32, OPTVQ_WT_F16, OPTVQ_WT_BF16, OPTVQ_WT_F64,
    OPTVQ_WT_I64, OPTVQ_WT_I32, OPTVQ_WT_I16, OPTVQ_WT_I8, OPTVQ_WT_U8, OPTVQ_WT_BOOL
} optvq_wtype;
size_t optvq_wtype_size(optvq_wtype t);
/* dst[i] = (float)src[i] for n elements of type t at src (any alignment). */
void optvq_wtype_convert(float *dst, const unsigned char *src, optvq_wtype t, int64_t n);

#endif
