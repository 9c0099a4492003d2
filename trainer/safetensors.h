/* trainer/safetensors.h: reading and writing safetensors files
 * (docs/train.md; format: 8-byte LE header length, JSON header,
 * tensor bytes). The writer is atomic (temp file, fsync, rename, fsync of
 * the folder); the reader enforces every validity rule of the format before
 * handing out a tensor, so a damaged file is refused, never half-loaded. */
#ifndef KILN_TRAINER_SAFETENSORS_H
#define KILN_TRAINER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define KST_MAX_DIMS 8

typedef struct kst_tensor {
    const char *name;
    const char *dtype;            /* "F32", "I32", "I64", "U8", ... (format's names) */
    int ndim;
    int64_t shape[KST_MAX_DIMS];
    const void *data;             /* row-major little-endian bytes */
    size_t nbytes;                /* must equal numel * dtype size */
} kst_tensor;

/* Writes tensors (in the given order) and string metadata pairs
 * meta[2k] = key, meta[2k+1] = value into path atomically. Returns 0, or
 * EX_CANTCREAT / EX_IOERR / EX_SOFTWARE (bad argument) with err filled. */
int kst_write(const char *path, const kst_tensor *t, int n, const char *const *meta, int n_meta,
              char *err, size_t errlen);

typedef struct kst_file kst_file;
/* Opens and validates a whole file. Returns NULL with err filled (names the
 * file and what is wrong) on a missing, truncated or invalid file.
 * The handle owns everything kst_get returns; kst_close frees it. */
kst_file *kst_open(const char *path, char *err, size_t errlen);
int kst_count(const kst_file *f);
const kst_tensor *kst_get(const kst_file *f, int i);        /* in header order */
const kst_tensor *kst_find(const kst_file *f, const char *name); /* NULL if absent */
const char *kst_meta(const kst_file *f, const char *key);   /* NULL if absent */
void kst_close(kst_file *f);
const char *kst_path(const kst_file *f);                    /* as given to kst_open */

/* Bytes per element of a dtype name, 0 for an unknown name. */
size_t kst_dtype_size(const char *dtype);
/* Atomic write of any bytes (the JSON and text files written next to
 * tensors), the way kst_write writes: path.tmp, fsync, rename, fsync of the
 * folder. Returns 0, or EX_CANTCREAT / EX_IOERR with err filled. */
int kst_write_bytes(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* fsync of a folder (after a rename in it). Returns 0 or EX_IOERR. */
int kst_fsync_dir(const char *dir, char *err, size_t errlen);

#endif
