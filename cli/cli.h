/* cli.h: shared pieces of the kiln command: common options, store opening,
 * number formatting and the terminal progress line. One cmd_*.c per family. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "kg/kg.h"
#include "store/store.h"

#define KILN_VERSION "0.1.0"

/* Options every command takes: --db, -q, -v, --json, --help. */
typedef struct cli_common {
    const char *db;  /* --db, else $KILN_DB, else ./kiln.db */
    int json;
    int help;
} cli_common;

/* getopt_long codes of the common options, and the table entries to append. */
enum { OPT_DB = 1000, OPT_JSON, OPT_HELP };
#define CLI_COMMON_LONGOPTS                                                                        \
    {"db", required_argument, 0, OPT_DB}, {"json", no_argument, 0, OPT_JSON},                      \
        {"help", no_argument, 0, 'h'}, {"quiet", no_argument, 0, 'q'},                             \
        {"verbose", no_argument, 0, 'v'}
#define CLI_COMMON_SHORT "hqv"

/* Handles a common option; returns 1 if c was one. */
int cli_common_opt(cli_common *c, int opt, const char *arg);
void cli_common_init(cli_common *c, const char *global_db);

/* The store's path: --db, else $KILN_DB, else ./kiln.db. */
const char *cli_db_path(const cli_common *c);

/* SIGINT/SIGTERM set cli_stop (to the signal number) for long commands to
 * stop cleanly at their next batch; a second signal exits at once (128 + sig). */
#include <signal.h>
extern volatile sig_atomic_t cli_stop;
void cli_catch_stop_signals(void);

/* Opens the store; on failure logs the message and returns the EX_* code. */
int cli_open_store(const cli_common *c, int flags, kstore **s);

/* "1,234,567" into buf. */
const char *cli_num(uint64_t v, char *buf, size_t n);
/* "12.3 MB" into buf. */
const char *cli_bytes(double v, char *buf, size_t n);
/* Parses "64M", "1G", "4096" (binary units); returns -1 on error. */
int cli_parse_size(const char *s, uint64_t *out);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Progress line on stderr when it is a terminal and not quiet/json. */
typedef struct cli_progress { int on; double last; int shown; } cli_progress;
void cli_progress_init(cli_progress *p, int json);
void cli_progress_line(cli_progress *p, const char *line);
void cli_progress_done(cli_progress *p);

/* Sampling setup shared by kiln sample and kiln train (cmd_sample.c). */
struct ksnapshot;
struct kwp_vocab;
struct ksampler_opts;
typedef struct cli_sampling {
    int64_t vocab_id;
    char vocab_name[256];
    int cased;
    int mode;                      /* the vocabulary's KWP_* bits (casing, accents, words) */
    int kind;                      /* KVOCAB_WORDPIECE or KVOCAB_BPE (store/store.h) */
    kbuf vocab_text;               /* vocab.txt bytes (WordPiece) or vocab.json (BPE) */
    kbuf merges_text;              /* merges.txt bytes (BPE), empty for WordPiece */
    struct ktkz *tk;               /* the tokenizer of either kind (owned) */
    const struct kwp_vocab *vocab; /* WordPiece: inside tk; NULL for BPE */
    int64_t eot;                   /* BPE: the <|endoftext|> id (also pad and the separator); -1 */
    char snapshot_path[4096];
    struct ksnapshot *snap;
    int32_t pad, cls, sep, mask;   /* BPE: pad = sep = <|endoftext|>, cls = mask = -1 */
    int32_t *random_ids;           /* (n_random) pieces the random branch draws: no [X] specials */
    size_t n_random;
} cli_sampling;
/* Loads the vocabulary (NULL: the active one) and opens the snapshot FILE, or
 * makes/finds the current one in STORE.snapshots/. Logs and returns EX_* on
 * failure; cli_sampling_close frees everything (also after a failure). A
 * byte-level BPE vocabulary must have <|endoftext|> (EX_DATAERR); it feeds
 * only clm (cli_sampling_check_objectives). */
int cli_sampling_open(const cli_common *c, const char *vocab_name, const char *snapshot,
                      cli_sampling *x);
void cli_sampling_close(cli_sampling *x);
/* EX_CONFIG (logged) when the objectives need specials the vocabulary lacks:
 * a BPE vocabulary has no [CLS] / [SEP] / [MASK], so only clm. */
int cli_sampling_check_objectives(const cli_sampling *x, int objectives);
/* Sets the special ids, vocabulary size and random pool in sampler options
 * (the size only when x holds the tokenizer: a data-parallel rank's x comes
 * from rank 0's plan, without it). */
void cli_sampling_apply(const cli_sampling *x, struct ksampler_opts *o);
/* "mlm,sop" into KOBJ_* bits; logs and returns EX_USAGE on an unknown name. */
int cli_objectives_parse(const char *s, int *bits);

/* Opens a checkpoint folder, or the latest checkpoint of a run folder, with
 * its run config and its vocabulary's tokenizer mode (KWP_* bits of
 * text/wordpiece.h, from state.json's extra: "cased", "strip_accents",
 * "icu_words") (cmd_train.c), for a reader of its weights: model.safetensors
 * only (kckpt_open_model; a resume opens the whole checkpoint itself). Logs
 * and returns EX_* on failure (*ck NULL then); the caller closes *ck with
 * kckpt_close. */
struct kckpt;
struct ktrain_config;
int cli_open_checkpoint(const char *arg, struct kckpt **ck, struct ktrain_config *cfg, int *mode);
/* The precision of the calling thread's matrix products from a config's
 * precision (KPRECISION_* of trainer/config.h; auto: bf16 where
 * kbf16_available, else fp32) (common.c): sets it (kset_precision), its
 * name ("fp32" / "bf16") in name, and in msg (n bytes) the start line to
 * log ("precision bf16 (auto): ..., CPU ..."). Returns 0, or EX_UNAVAILABLE
 * when bf16 was asked for where it cannot run, msg then saying why (what
 * the CPU or the build lacks, and the CPU). */
int cli_precision(int want, char name[8], char *msg, size_t n);
/* OpenMP threads for kiln's products (n <= 0: every core); omp_get_max_threads()
 * is n afterwards (cmd_finetune.c). */
void cli_set_threads(int n);
/* The weights of model m from checkpoint ck's model.safetensors, by name and
 * shape (every tensor of the model required). 0 or EX_DATAERR, said
 * (cmd_train.c). */
struct kmodel;
int cli_load_weights(struct kmodel *m, struct kckpt *ck);
/* The byte-level BPE vocabulary a GPT-2 checkpoint carries, loaded and
 * checked against the model's vocab_size (cmd_train.c). 0 and *out (owned:
 * kbpe_vocab_free), or EX_DATAERR with err filled. */
struct kbpe_vocab;
struct kmodel_config;
int cli_checkpoint_bpe(const struct kckpt *ck, const struct kmodel_config *mc, struct kbpe_vocab **out, char *err,
                       size_t errlen);
/* The tokenizer of a checkpoint's extra JSON object: "cased",
 * "strip_accents" (null = follows the casing), "icu_words", from KWP_* bits
 * (common.c). */
struct json_t;
void cli_tokenizer_json(struct json_t *extra, int mode);
/* KWP_* bits as the exporter's KEXPORT_TOK_* bits (do_lower_case, strip_accents). */
int cli_export_tok(int mode);
/* kiln export of an ERNIE checkpoint (cli/ernie_io.c): OUT/text (BertModel /
 * AlbertModel) and OUT/kiln (kiln's format, with entities.tsv from the
 * store of c). t (n): the checkpoint's tensors. 0 or EX_* with err filled. */
struct kst_tensor;
struct ktrain_config;
int cli_export_ernie(const cli_common *c, const char *out, const struct kckpt *ck, const struct ktrain_config *cfg,
                     const struct kst_tensor *t, int n, const char *vocab, size_t vlen, int tok, int force, char *err,
                     size_t errlen);
/* The entities of text that is not in the store, for an ERNIE model (kiln
 * finetune, eval, classify: cli/ernie_io.c): the store's linker (kiln kg
 * link's, over the store vocabulary whose pieces are the model's vocab.txt)
 * and the model's entity table (its pinned embedding, entity_rows rows; the
 * embedding's vectors must be the model's table when table is given, so
 * that a store with another embedding of that id is refused, not mapped).
 * cli_kg_link links each row of a filled batch into b->entity_ids (table
 * rows at the first token of a mention; 0 elsewhere and for entities without
 * a vector; allocated as the batch's own (capacity, L) when NULL, freed with
 * the batch); its counters give the coverage. Open logs and returns
 * EX_* on failure (k is then closed). */
typedef struct cli_kg {
    struct kkg_linker *linker;
    kkg_table kt;
    int V;
    uint8_t *piece;          /* (V) 0 word start, 1 "##" continuation, 2 special ([CLS] ...: a barrier) */
    int32_t *ids;            /* (cap >= L) scratch */
    uint8_t *ws;             /* (L) */
    int64_t *found;          /* (L) */
    size_t cap;
    uint64_t tokens, mentions, with_vector; /* linked so far */
} cli_kg;
int cli_kg_open(const cli_common *c, int64_t embedding, int entity_rows, const float *table, const char *vocab,
                size_t vlen, cli_kg *k);
/* Loads embedding `embedding` of s into *kt and checks that it is the model's
 * entity table: `rows` rows (and `dim` wide, dim > 0) and, table given (rows x
 * dim F32), the same vectors: only then do its rows mean the store's entities.
 * 0; EX_* with err (kt freed) on a load error or another shape; EX_DATAERR
 * with *differs = 1 (err empty) when the vectors differ. */
int cli_kg_table_match(kstore *s, int64_t embedding, int rows, int dim, const float *table, kkg_table *kt,
                       int *differs, char *err, size_t errlen);
/* The model's entity table (entity_rows x dim F32) as cli_kg_open compares it, from a
 * checkpoint's model.safetensors tensors (t, n), or NULL. */
struct kst_tensor;
const float *cli_kg_table_of(const struct kst_tensor *t, int n);
struct ksample_batch;
void cli_kg_link(cli_kg *k, struct ksample_batch *b);
void cli_kg_close(cli_kg *k);
/* What kiln import --from kiln did with the entity table (s given). */
typedef struct cli_ernie_map {
    const char *how;          /* "kept" (the store's embedding is the table), "mapped" (a new or
                               * earlier imported embedding, rows matched by KG key), "unmapped"
                               * (no store, or none of the keys in its KG) */
    int64_t embedding;        /* the embedding the checkpoint pins */
    int64_t origin_embedding; /* the one it was trained with */
    int64_t rows, mapped;     /* table rows 1..n, and those whose KG key the store has */
} cli_ernie_map;
/* kiln import --from kiln DIR: kiln's ERNIE format (what kiln export writes
 * as OUT/kiln) into the checkpoint OUT/step-000000000/ (path, plen bytes):
 * the run config, every tensor checked against the model it describes, the
 * vocabulary, the tokenizer, the pinned embedding. With a store s (may be
 * NULL) the entity table is tied to it (docs/ernie.md, "Import"): kept when
 * the pinned embedding is the table, else the table is stored as an
 * "imported" embedding whose rows are the store's entities of the same KG
 * keys (DIR/entities.tsv) and the checkpoint pins that; *map says which. 0
 * or EX_* with err. */
int cli_import_ernie(const char *dir, const char *out, int force, kstore *s, cli_ernie_map *map, char *path,
                     size_t plen, char *err, size_t errlen);
/* The store's WordPiece vocabulary whose pieces are exactly pieces (len
 * bytes of vocab.txt): *id (0 if none) and, when name is not NULL, its
 * name. 0 or a store error (kstore_errmsg). */
int cli_vocab_with_pieces(kstore *s, const char *pieces, size_t len, int64_t *id, char name[256]);
/* knowledge.embedding of a run config's JSON (a checkpoint's), 0 if none. */
int64_t cli_kg_embedding_of(const char *config_json);
/* The KWP_* bits of a Hugging Face tokenizer: do_lower_case, strip_accents (-1 null). */
int cli_hf_mode(int do_lower_case, int strip_accents);

/* JSON output (Jansson values; cli/common.c). */
struct json_t;
/* a number, or null when not finite (JSON has no NaN) */
struct json_t *cli_json_num(double v);
/* a string; bytes that are not UTF-8 pass as they are, as kbuf_json_str does */
struct json_t *cli_json_str(const char *s);
/* prints a JSON value on one line on stdout (strings escaped, reals with 6
 * significant digits unless full is set) and frees it */
void cli_json_print(struct json_t *o, int full);

int cmd_init(int argc, char **argv, const char *db);
int cmd_stats(int argc, char **argv, const char *db);
int cmd_sources(int argc, char **argv, const char *db);
int cmd_docs(int argc, char **argv, const char *db);
int cmd_ingest(int argc, char **argv, const char *db);
int cmd_vocab(int argc, char **argv, const char *db);
int cmd_tokenize(int argc, char **argv, const char *db);
int cmd_encode(int argc, char **argv, const char *db);
int cmd_decode(int argc, char **argv, const char *db);
int cmd_kg(int argc, char **argv, const char *db);
int cmd_sample(int argc, char **argv, const char *db);
int cmd_train(int argc, char **argv, const char *db);
int cmd_export(int argc, char **argv, const char *db);
int cmd_import(int argc, char **argv, const char *db);
int cmd_finetune(int argc, char **argv, const char *db);
int cmd_eval(int argc, char **argv, const char *db);
int cmd_eval_lm(int argc, char **argv, const char *db);   /* cmd_lm.c: --perplexity, --fewshot */
int cmd_eval_cloze(int argc, char **argv, const char *db); /* cmd_cloze.c: --cloze */
int cmd_generate(int argc, char **argv, const char *db);
int cmd_classify(int argc, char **argv, const char *db);
int cmd_predict(int argc, char **argv, const char *db);
int cmd_daemon(int argc, char **argv, const char *db);
int cmd_run(int argc, char **argv, const char *db);
int cmd_status(int argc, char **argv, const char *db);
int cmd_plot(int argc, char **argv, const char *db);
int cmd_metrics(int argc, char **argv, const char *db);

#endif
