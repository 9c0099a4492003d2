/* trainer/checkpoint.h: training checkpoints (format: docs/train.md,
 * "Checkpoints"). A checkpoint is a folder DIR/step-NNNNNNNNN/ holding
 * safetensors files (model.safetensors, optimizer.safetensors, ...),
 * state.json (counters, sampler position, RNG keys, the canonical run
 * config, the vocabulary's hash, the tensor lists, metrics) and the
 * vocabulary: vocab.txt (WordPiece) or vocab.json + merges.txt (byte-level
 * BPE, GPT-2's), each file's size and hash in state.json.
 *
 * Saving is atomic: the folder is built as DIR/.tmp-step-NNNNNNNNN/, every
 * file fsync'd, renamed into place, DIR fsync'd; then all but the last
 * `keep` step folders are deleted. A crash leaves either the previous set of
 * checkpoints or the new one, plus .tmp-* leftovers that kckpt_latest ignores
 * and the next save removes. One process saves into a DIR at a time (a
 * lock on DIR/.lock; a second one gets EX_TEMPFAIL).
 *
 * Loading validates everything (state.json, every file against the tensor
 * lists of state.json, the vocabulary's hash, then the caller's expected
 * tensors by name, dtype and shape) before the caller copies one byte, so a
 * damaged or foreign checkpoint is refused with a message, never half
 * loaded. No math, no SQL. */
#ifndef KILN_TRAINER_CHECKPOINT_H
#define KILN_TRAINER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/safetensors.h"

#define KCKPT_FORMAT "kiln-checkpoint"
#define KCKPT_VERSION 1
#define KCKPT_MAX_RNG 8

/* One safetensors file of a checkpoint. file is a plain name ending in
 * ".safetensors" (no '/', not starting with '.'). For kckpt_check the
 * tensors' data and nbytes are not looked at. */
typedef struct kckpt_part {
    const char *file;             /* "model.safetensors", "optimizer.safetensors" */
    const kst_tensor *tensors;    /* (n) */
    int n;
} kckpt_part;

typedef struct kckpt_metric {
    const char *name;
    double value;                 /* NaN/inf are stored as null and read back as NaN */
} kckpt_metric;

/* Everything of a checkpoint but the tensors and the vocabulary. */
typedef struct kckpt_state {
    int64_t step;                 /* optimizer steps done (the folder's number) */
    int64_t tokens;               /* tokens trained on so far */
    double seconds;               /* training seconds so far */
    int64_t epoch;                /* sampler position: completed passes over the data */
    int64_t next_index;           /* sampler position: next stream index to hand out */
    int n_rng;                    /* <= KCKPT_MAX_RNG */
    uint64_t rng[KCKPT_MAX_RNG];  /* the trainer's RNG keys / counters, in its order */
    const char *config_json;      /* the run config (ktrain_config_to_json), a JSON object */
    const char *vocab_name;       /* the store's vocabulary name ("" if none) */
    const kckpt_metric *metrics;  /* (n_metrics) at this step: loss, val_loss, lr, ... */
    int n_metrics;
    const char *extra_json;       /* NULL, or a JSON object of any other trainer state */
    /* The vocabulary's kind: KCKPT_VOCAB_WORDPIECE (the zero value: the
     * vocabulary is vocab.txt) or KCKPT_VOCAB_BPE (vocab.json and merges.txt,
     * merges_len > 0 bytes; state.json's vocab gets "kind": "bpe" and a
     * "merges" object). */
    int vocab_kind;
    const char *merges;
    size_t merges_len;
} kckpt_state;

enum { KCKPT_VOCAB_WORDPIECE = 0, KCKPT_VOCAB_BPE = 1 };

/* Writes DIR/step-NNNNNNNNN/ (NNNNNNNNN = st->step, 9 digits or more) with
 * the parts, the vocabulary (vocab_len bytes, required: vocab.txt, or for
 * st->vocab_kind BPE vocab.json plus st->merges as merges.txt) and
 * state.json, creating
 * DIR if needed; an existing folder of the same step is replaced. Then keeps
 * the `keep` highest steps (keep <= 0: all), never deleting the one just
 * written. path_out (path_len bytes, may be NULL) gets the folder's path.
 * Returns 0, or EX_SOFTWARE (bad argument: names, shapes, JSON texts),
 * EX_TEMPFAIL (another process is saving into DIR), EX_CANTCREAT / EX_IOERR,
 * with err filled. On failure the previous checkpoints are untouched, except
 * when only the pruning failed (EX_IOERR after the new folder is in place:
 * path_out is set then). */
int kckpt_save(const char *dir, const kckpt_state *st, const kckpt_part *parts, int n_parts,
               const char *vocab_txt, size_t vocab_len, int keep, char *path_out, size_t path_len,
               char *err, size_t errlen);

/* The highest step folder DIR/step-N/ holding a state.json (folders named
 * otherwise, .tmp-* included, are ignored): its path into path (len bytes)
 * and, if step is not NULL, its step. Returns 0, EX_NOINPUT when DIR is
 * missing or holds no checkpoint (path set to ""), EX_IOERR. */
int kckpt_latest(const char *dir, char *path, size_t len, int64_t *step);

typedef struct kckpt kckpt;

/* Opens a checkpoint folder and validates it whole: state.json (format,
 * version, types), every safetensors file it lists (kst_open's rules) with
 * exactly the tensors, dtypes and shapes listed, vocab.txt's size and hash.
 * Returns NULL with err filled (naming the file and what is wrong). The
 * handle owns everything its accessors return; kckpt_close frees it. */
kckpt *kckpt_open(const char *path, char *err, size_t errlen);
/* kckpt_open for a reader of the weights alone (inference, export, a run's
 * init): state.json checked whole, but of the files it lists only
 * model.safetensors is opened (kckpt_file of another one is NULL), so the
 * optimizer state (twice the model's bytes) is neither read nor held. */
kckpt *kckpt_open_model(const char *path, char *err, size_t errlen);

enum { KCKPT_ONLY_LISTED = 1 }; /* kckpt_check: files not in expect may exist */
/* Compares the checkpoint with what the caller will load into: each part's
 * file must exist and hold exactly its tensors (names, dtypes, shapes),
 * nothing missing, nothing extra; unless flags has KCKPT_ONLY_LISTED, the
 * checkpoint must have no other safetensors file. Returns 0 or EX_DATAERR
 * with err naming every difference it lists (the first few). */
int kckpt_check(const kckpt *c, const kckpt_part *expect, int n_expect, int flags, char *err, size_t errlen);
/* kckpt_open, then kckpt_check(expect, 0); NULL with err filled on failure. */
kckpt *kckpt_load(const char *path, const kckpt_part *expect, int n_expect, char *err, size_t errlen);

const char *kckpt_path(const kckpt *c);
/* The state; its strings and metrics live as long as the handle. The
 * config and extra JSON are compact texts (numbers exact). */
const kckpt_state *kckpt_state_of(const kckpt *c);
/* A tensor of one of the files, NULL if absent; data valid until kckpt_close. */
const kst_tensor *kckpt_tensor(const kckpt *c, const char *file, const char *name);
const kst_file *kckpt_file(const kckpt *c, const char *file); /* NULL if absent */
/* The vocabulary's bytes (NUL-terminated) and length: vocab.txt, or
 * vocab.json for a BPE vocabulary. */
const char *kckpt_vocab(const kckpt *c, size_t *len);
/* KCKPT_VOCAB_WORDPIECE or KCKPT_VOCAB_BPE (also in kckpt_state_of). */
int kckpt_vocab_kind(const kckpt *c);
/* merges.txt's bytes (NUL-terminated) and length; NULL (len 0) for WordPiece. */
const char *kckpt_merges(const kckpt *c, size_t *len);
void kckpt_close(kckpt *c);

/* ---- folder helpers (also used by export.c) ---------------------------- */
/* mkdir -p with mode 0755. Returns 0 or EX_CANTCREAT with err filled. */
int kckpt_mkdirs(const char *path, char *err, size_t errlen);
/* Where to build a folder before publishing it at path: *final = path
 * without trailing slashes, *parent = its folder ("." or "/" when it has
 * none), and the returned PARENT/.PREFIX-NAME.tmp. All three malloc'd;
 * the caller frees them. */
char *kckpt_tmp_sibling(const char *path, const char *prefix, char **final, char **parent);
/* rm -r of path (symbolic links are removed, not followed). Returns 0 or an
 * errno value; a missing path is 0. */
int kckpt_remove_tree(const char *path);
/* Moves the fully written folder tmp to final (same parent folder), then
 * fsyncs the parent. An existing final is refused (EX_CANTCREAT) unless
 * replace: then it is renamed to PARENT/.tmp-old-NAME first and deleted
 * after. Returns 0, EX_CANTCREAT or EX_IOERR with err filled. */
int kckpt_publish_dir(const char *tmp, const char *final, int replace, char *err, size_t errlen);

#endif
