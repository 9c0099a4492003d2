/* cmd_vocab.c: kiln vocab import | export | list | use | train. A
 * vocabulary is its pieces plus how it tokenizes: casing, accents
 * (transformers' strip_accents) and what a word is (BERT's or ICU's). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "text/bpe.h"
#include "text/wordpiece.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/safetensors.h"

static const char usage[] =
    "usage: kiln vocab COMMAND [options]\n"
    "\n"
    "  import FILE|DIR [--cased|--uncased] [--strip-accents|--no-strip-accents]\n"
    "        [--words bert|icu] [--name N] [--max-word-chars N]\n"
    "        store a vocab.txt (one piece a line, id = line number); uncased by\n"
    "        default, as bert-base-uncased; the name defaults to the file's name.\n"
    "        DIR: a Hugging Face tokenizer folder (vocab.txt, tokenizer_config.json):\n"
    "        its do_lower_case and strip_accents, unless flags say otherwise\n"
    "  import --bpe VOCAB_JSON MERGES | --bpe DIR [--name N]\n"
    "        store a byte-level BPE vocabulary (GPT-2's tokenizer): OpenAI's\n"
    "        encoder.json + vocab.bpe or Hugging Face's vocab.json + merges.txt, or a\n"
    "        folder holding either pair; the name defaults to the folder's name\n"
    "  export [--name N] OUT       write the vocabulary (default: the active one) as\n"
    "                              vocab.txt to OUT ('-' for standard output)\n"
    "  export --hf [--name N] [--force] DIR\n"
    "        write it as a Hugging Face tokenizer folder that AutoTokenizer loads:\n"
    "        vocab.txt, tokenizer_config.json (BertTokenizer, do_lower_case,\n"
    "        strip_accents), special_tokens_map.json; a BPE vocabulary as vocab.json,\n"
    "        merges.txt, tokenizer_config.json (GPT2Tokenizer),\n"
    "        special_tokens_map.json; --force replaces those files\n"
    "  list [--json]               the vocabularies: size, casing, accents, words,\n"
    "                              documents tokenized\n"
    "  use NAME                    make NAME the active vocabulary\n"
    "  train --size N [--cased] [--strip-accents|--no-strip-accents] [--words bert|icu]\n"
    "        [--min-frequency F] [--limit-alphabet A] [--name N] [--max-words W]\n"
    "        [--threads T]\n"
    "        train a WordPiece vocabulary on the stored corpus: BERT's basic tokenizer,\n"
    "        then BPE-style merges with ## continuation pieces (as Hugging Face's\n"
    "        WordPieceTrainer); [PAD] [UNK] [CLS] [SEP] [MASK] first, then the alphabet.\n"
    "        Deterministic; memory bounded by --max-words distinct words (default 4M).\n"
    "        It measures per script how many letters accent stripping would change or\n"
    "        drop; uncased without an accent flag, when that damages a script such as\n"
    "        Hangul, kana, Devanagari or Thai that is at least 1% of the letters, it\n"
    "        keeps accents and says so with the figures (docs/tokenizer.md).\n"
    "  train --bpe --size N [--min-frequency F] [--name N] [--max-words W] [--threads T]\n"
    "        train a byte-level BPE vocabulary (GPT-2's kind) on the stored corpus:\n"
    "        GPT-2's pre-tokens as words, the 256 byte tokens first, merged tokens in\n"
    "        merge order, <|endoftext|> last (N counts them all: N >= 257). The same\n"
    "        corpus gives the same bytes for any --threads; memory bounded by\n"
    "        --max-words (default 4M); export --hf writes vocab.json and merges.txt\n"
    "\n"
    "  --strip-accents      strip accents (NFD, drop combining marks), even when cased\n"
    "  --no-strip-accents   never strip them; uncased then only lowercases (Hangul\n"
    "                       syllables, kana voicing marks, Indic vowel signs stay)\n"
    "                       (neither: as transformers' strip_accents None, stripped\n"
    "                       exactly when uncased; train may keep them, see above)\n"
    "  --words bert|icu     what a word is for whole-word and n-gram masking: BERT's\n"
    "                       basic tokens (default: each CJK ideograph a word, a kana\n"
    "                       or Hangul run one word) or runs of ICU's words (its\n"
    "                       dictionary words for Japanese and Chinese); ids are the same\n"
    "\n"
    "common: --db PATH, --json, -q, -v, -h\n";

/* "strip_accents" as JSON for a KVOCAB_ACCENTS_* value. */
static const char *accents_json(int a)
{
    return a == KVOCAB_ACCENTS_STRIP ? "true" : a == KVOCAB_ACCENTS_KEEP ? "false" : "null";
}

/* Reads a Hugging Face tokenizer folder's tokenizer_config.json into the
 * casing and accents (those not given on the command line: *cased < 0,
 * *accents < 0). A missing file means BertTokenizer's defaults. Returns 0 or
 * EX_DATAERR (logged, file named). */
static int read_hf_config(const char *dir, int *cased, int *accents)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK)) {
        if (*cased < 0) *cased = 0;
        if (*accents < 0) *accents = KVOCAB_ACCENTS_CASING;
        return 0;
    }
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!json_is_object(j)) {
        kerr("%s: line %d: %s", path, je.line, j ? "not a JSON object" : je.text);
        json_decref(j);
        return EX_DATAERR;
    }
    json_t *lower = json_object_get(j, "do_lower_case"), *strip = json_object_get(j, "strip_accents"),
           *cjk = json_object_get(j, "tokenize_chinese_chars");
    int rc = 0;
    if ((lower && !json_is_boolean(lower)) || (strip && !json_is_boolean(strip) && !json_is_null(strip))) {
        kerr("%s: do_lower_case must be true or false, strip_accents true, false or null", path);
        rc = EX_DATAERR;
    } else if (json_is_false(cjk)) {
        kerr("%s: tokenize_chinese_chars is false; kiln's tokenizer always puts CJK ideographs apart", path);
        rc = EX_DATAERR;
    } else {
        if (*cased < 0) *cased = lower ? !json_is_true(lower) : 0;
        if (*accents < 0)
            *accents = json_is_true(strip) ? KVOCAB_ACCENTS_STRIP : json_is_false(strip) ? KVOCAB_ACCENTS_KEEP
                                                                                        : KVOCAB_ACCENTS_CASING;
    }
    json_decref(j);
    return rc;
}


/* cased, accents: -1 when not given (a folder's tokenizer_config.json, else
 * uncased and CASING). */
static int vocab_import(cli_common *c, const char *arg, int cased, int accents, int icu_words, const char *name,
                        long maxw)
{
    struct stat sb;
    char vpath[4096];
    const char *file = arg;
    int isdir = strcmp(arg, "-") && stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (isdir) {
        snprintf(vpath, sizeof vpath, "%s/vocab.txt", arg);
        file = vpath;
        int rc = read_hf_config(arg, &cased, &accents);
        if (rc) return rc;
    }
    if (cased < 0) cased = 0;
    if (accents < 0) accents = KVOCAB_ACCENTS_CASING;
    kbuf text = {0};
    int e = kbuf_read_file(&text, file);
    if (e) {
        kerr("%s: %s", file, strerror(e));
        kbuf_free(&text);
        return e == ENOENT || e == EACCES || e == EISDIR ? EX_NOINPUT : EX_IOERR;
    }
    char err[512];
    kwp_vocab *v;
    kvocab_row r = {0};
    r.cased = cased;
    r.accents = accents;
    r.icu_words = icu_words;
    if (kwp_vocab_load(text.data ? text.data : "", text.len, kvocab_row_mode(&r), &v, err, sizeof err)) {
        kerr("%s: %s", file, err);
        kbuf_free(&text);
        return EX_DATAERR;
    }
    /* canonical text: what kiln will export */
    kbuf canon = {0};
    kwp_vocab_text(v, &canon);
    size_t size = kwp_vocab_size(v);
    kwp_vocab_free(v);
    kbuf_free(&text);
    char defname[256];
    if (!name) {
        /* a file's name without its extension; a folder's own name */
        snprintf(defname, sizeof defname, "%s", arg);
        size_t l = strlen(defname);
        while (l > 1 && defname[l - 1] == '/') defname[--l] = '\0';
        const char *base = strrchr(defname, '/');
        memmove(defname, base ? base + 1 : defname, strlen(base ? base + 1 : defname) + 1);
        char *dot = strrchr(defname, '.');
        if (!isdir && dot && dot != defname) *dot = '\0';
        if (!strcmp(arg, "-")) snprintf(defname, sizeof defname, "stdin");
        name = defname;
    }
    kstore *s;
    int rc = cli_open_store(c, KSTORE_CREATE, &s);
    if (rc) { kbuf_free(&canon); return rc; }
    r.name = name;
    r.size = (int64_t)size;
    r.pieces = canon.data;
    r.pieces_len = canon.len;
    khash128(canon.data, canon.len, r.hash);
    r.max_word_chars = maxw;
    kbuf origin = {0}, other = {0};
    kbuf_printf(&origin, "import:%s", file);
    r.origin = origin.data;
    int64_t id = 0, same = 0;
    if ((rc = kstore_vocab_find_hash(s, &r, &same, &other))) kerr("%s", kstore_errmsg(s));
    else if (same && !strcmp(other.data, name)) {
        kinfo("vocabulary '%s' already imported with the same pieces: nothing to do", name);
    } else if ((rc = kstore_vocab_add(s, &r, &id))) {
        kerr("%s", kstore_errmsg(s));
    } else {
        if (same) kinfo("note: vocabulary '%s' has the same pieces", other.data);
        if (c->json) {
            kbuf j = {0};
            kbuf_printf(&j, "{\"id\": %lld, \"name\": ", (long long)id);
            kbuf_json_str(&j, name, strlen(name));
            kbuf_printf(&j, ", \"size\": %zu, \"cased\": %s, \"strip_accents\": %s, \"words\": \"%s\"}\n", size,
                        cased ? "true" : "false", accents_json(accents), icu_words ? "icu" : "bert");
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else {
            printf("imported vocabulary '%s': %zu pieces, %s%s%s\n", name, size, cased ? "cased" : "uncased",
                   accents == KVOCAB_ACCENTS_KEEP    ? ", accents kept"
                   : accents == KVOCAB_ACCENTS_STRIP ? ", accents stripped"
                                                     : "",
                   icu_words ? ", ICU words" : "");
        }
    }
    kbuf_free(&origin);
    kbuf_free(&other);
    kbuf_free(&canon);
    kstore_close(s);
    return rc;
}

/* The folder of path (".", "/" or "bpe" when it has none that names it). */
static void folder_name(const char *path, char *out, size_t n)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    size_t l = strlen(buf);
    while (l > 1 && buf[l - 1] == '/') buf[--l] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) { snprintf(out, n, "bpe"); return; }
    *slash = '\0';
    while ((slash = strrchr(buf, '/')) && slash[1] == '\0') *slash = '\0';
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    snprintf(out, n, "%s", *base && strcmp(base, ".") && strcmp(base, "..") ? base : "bpe");
}

/* kiln vocab import --bpe: files[0..nfiles) are a folder, or the vocab JSON
 * and the merges. */
static int vocab_import_bpe(cli_common *c, char *const *files, int nfiles, const char *name)
{
    char vpath[4096], mpath[4096], defname[256];
    struct stat sb;
    if (nfiles == 1) {
        if (stat(files[0], &sb) || !S_ISDIR(sb.st_mode)) {
            kerr("%s: --bpe takes a folder, or the vocab JSON and the merges file", files[0]);
            return EX_USAGE;
        }
        snprintf(vpath, sizeof vpath, "%s/vocab.json", files[0]);
        snprintf(mpath, sizeof mpath, "%s/merges.txt", files[0]);
        if (access(vpath, F_OK) || access(mpath, F_OK)) {
            snprintf(vpath, sizeof vpath, "%s/encoder.json", files[0]);
            snprintf(mpath, sizeof mpath, "%s/vocab.bpe", files[0]);
        }
        if (access(vpath, F_OK) || access(mpath, F_OK)) {
            kerr("%s: no vocab.json + merges.txt (Hugging Face) nor encoder.json + vocab.bpe (OpenAI)", files[0]);
            return EX_NOINPUT;
        }
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s/x", files[0]);
        folder_name(tmp, defname, sizeof defname);
    } else {
        snprintf(vpath, sizeof vpath, "%s", files[0]);
        snprintf(mpath, sizeof mpath, "%s", files[1]);
        folder_name(vpath, defname, sizeof defname);
    }
    if (!name) name = defname;
    kbuf vj = {0}, mt = {0};
    const char *paths[2] = {vpath, mpath};
    kbuf *bufs[2] = {&vj, &mt};
    for (int i = 0; i < 2; i++) {
        int e = kbuf_read_file(bufs[i], paths[i]);
        if (e) {
            kerr("%s: %s", paths[i], strerror(e));
            kbuf_free(&vj);
            kbuf_free(&mt);
            return e == ENOENT || e == EACCES || e == EISDIR ? EX_NOINPUT : EX_IOERR;
        }
    }
    char err[512];
    kbpe_vocab *v;
    if (kbpe_vocab_load(vj.data ? vj.data : "", vj.len, mt.data ? mt.data : "", mt.len, &v, err, sizeof err)) {
        const char *which = !strncmp(err, "merges", 6) ? mpath : vpath;
        kerr("%s: %s", which, err);
        kbuf_free(&vj);
        kbuf_free(&mt);
        return EX_DATAERR;
    }
    kbuf_free(&vj);
    kbuf_free(&mt);
    /* canonical texts: what kiln will export */
    kbuf canon = {0}, merges = {0};
    kvocab_row r;
    kvocab_bpe_row(v, &r, &canon, &merges);
    size_t size = kbpe_vocab_size(v), nmerges = kbpe_vocab_nmerges(v);
    int has_eot = kbpe_vocab_eot(v) >= 0;
    kbpe_vocab_free(v);
    kstore *s;
    int rc = cli_open_store(c, KSTORE_CREATE, &s);
    if (rc) {
        kbuf_free(&canon);
        kbuf_free(&merges);
        return rc;
    }
    r.name = name;
    kbuf origin = {0}, other = {0};
    kbuf_printf(&origin, "import:%s %s", vpath, mpath);
    r.origin = origin.data;
    int64_t id = 0, same = 0;
    if ((rc = kstore_vocab_find_hash(s, &r, &same, &other))) kerr("%s", kstore_errmsg(s));
    else if (same && !strcmp(other.data, name)) {
        kinfo("vocabulary '%s' already imported with the same tokens and merges: nothing to do", name);
    } else if ((rc = kstore_vocab_add(s, &r, &id))) {
        kerr("%s", kstore_errmsg(s));
    } else {
        if (same) kinfo("note: vocabulary '%s' has the same tokens and merges", other.data);
        if (c->json) {
            kbuf j = {0};
            kbuf_printf(&j, "{\"id\": %lld, \"name\": ", (long long)id);
            kbuf_json_str(&j, name, strlen(name));
            kbuf_printf(&j, ", \"kind\": \"bpe\", \"size\": %zu, \"merges\": %zu, \"endoftext\": %s}\n", size, nmerges,
                        has_eot ? "true" : "false");
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else {
            printf("imported BPE vocabulary '%s': %zu tokens, %zu merges%s\n", name, size, nmerges,
                   has_eot ? ", <|endoftext|>" : "");
        }
    }
    kbuf_free(&origin);
    kbuf_free(&other);
    kbuf_free(&canon);
    kbuf_free(&merges);
    kstore_close(s);
    return rc;
}

/* Writes DIR/NAME (atomically). Returns 0 or EX_* (logged). */
static int write_file(const char *dir, const char *fname, const char *data, size_t len)
{
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    int rc = kst_write_bytes(path, data, len, err, sizeof err);
    if (rc) kerr("%s", err);
    return rc;
}

/* kiln vocab export --hf DIR: vocab.txt, tokenizer_config.json,
 * special_tokens_map.json. */
/* Refuses (EX_CANTCREAT, logged) when one of files[0..n) exists in dir and
 * force is off. */
static int check_overwrite(const char *dir, const char *const *files, size_t n, int force)
{
    char path[4096];
    for (size_t i = 0; i < n && !force; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (!access(path, F_OK)) {
            kerr("%s exists: add --force to replace it", path);
            return EX_CANTCREAT;
        }
    }
    return 0;
}

/* kiln vocab export --hf DIR of a BPE vocabulary: vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json. */
static int vocab_export_hf_bpe(cli_common *c, const kvocab_row *r, const kbuf *pieces, const char *dir, int force)
{
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
    char err[1024];
    int rc = check_overwrite(dir, files, 4, force);
    if (rc) return rc;
    kbpe_vocab *v;
    if (kbpe_vocab_load(pieces->data ? pieces->data : "", pieces->len, r->merges ? r->merges : "", r->merges_len, &v,
                        err, sizeof err)) {
        kerr("vocabulary '%s': %s", r->name, err);
        return EX_DATAERR;
    }
    int has_eot = kbpe_vocab_eot(v) >= 0;
    kbpe_vocab_free(v);
    char *tok = kexport_bpe_tokenizer_config(has_eot, 0), *spm = kexport_bpe_special_tokens_map(has_eot);
    if ((rc = kckpt_mkdirs(dir, err, sizeof err))) kerr("%s", err);
    else if (!(rc = write_file(dir, "vocab.json", pieces->data ? pieces->data : "", pieces->len)) &&
             !(rc = write_file(dir, "merges.txt", r->merges ? r->merges : "", r->merges_len)) &&
             !(rc = write_file(dir, "tokenizer_config.json", tok, strlen(tok))) &&
             !(rc = write_file(dir, "special_tokens_map.json", spm, strlen(spm)))) {
        if (c->json) {
            kbuf j = {0};
            kbuf_puts(&j, "{\"name\": ");
            kbuf_json_str(&j, r->name, strlen(r->name));
            kbuf_puts(&j, ", \"dir\": ");
            kbuf_json_str(&j, dir, strlen(dir));
            kbuf_printf(&j, ", \"kind\": \"bpe\", \"size\": %lld}\n", (long long)r->size);
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else {
            kinfo("wrote '%s' to %s: vocab.json, merges.txt, tokenizer_config.json (GPT2Tokenizer), "
                  "special_tokens_map.json", r->name, dir);
        }
    }
    free(tok);
    free(spm);
    return rc;
}

static int vocab_export_hf(cli_common *c, const char *name, const char *dir, int force)
{
    static const char *const files[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"};
    char err[1024];
    kstore *s;
    int rc = cli_open_store(c, KSTORE_READONLY, &s);
    if (rc) return rc;
    kvocab_row r;
    kbuf pieces = {0}, meta = {0};
    kwp_vocab *v = NULL;
    char *tok = NULL, *spm = NULL;
    if ((rc = kstore_vocab_get(s, name, &r, &pieces, &meta))) {
        kerr("%s", kstore_errmsg(s));
        goto out;
    }
    if (r.kind == KVOCAB_BPE) {
        rc = vocab_export_hf_bpe(c, &r, &pieces, dir, force);
        goto out;
    }
    if ((rc = check_overwrite(dir, files, 3, force))) goto out;
    if (kwp_vocab_load(pieces.data ? pieces.data : "", pieces.len, kvocab_row_mode(&r), &v, err, sizeof err)) {
        kerr("vocabulary '%s': %s", r.name, err);
        rc = EX_DATAERR;
        goto out;
    }
    static const char *const sp[KWP_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int k = 0; k < KWP_NSPECIAL; k++)
        if (kwp_vocab_special(v, k) < 0)
            kwarn("vocabulary '%s' has no %s piece: transformers will add it past the vocabulary", r.name, sp[k]);
    if (r.icu_words)
        kinfo("vocabulary '%s' uses ICU words: the ids are BertTokenizer's; whole-word masking "
              "is kiln's own (nothing to write for it)", r.name);
    int bits = (r.cased ? 0 : KEXPORT_TOK_LOWER) | (r.accents == KVOCAB_ACCENTS_STRIP  ? KEXPORT_TOK_STRIP_ACCENTS
                                                    : r.accents == KVOCAB_ACCENTS_KEEP ? KEXPORT_TOK_KEEP_ACCENTS
                                                                                       : 0);
    tok = kexport_tokenizer_config(bits, 0);
    spm = kexport_special_tokens_map();
    if ((rc = kckpt_mkdirs(dir, err, sizeof err))) { kerr("%s", err); goto out; }
    if ((rc = write_file(dir, "vocab.txt", pieces.data ? pieces.data : "", pieces.len)) ||
        (rc = write_file(dir, "tokenizer_config.json", tok, strlen(tok))) ||
        (rc = write_file(dir, "special_tokens_map.json", spm, strlen(spm))))
        goto out;
    if (c->json) {
        kbuf j = {0};
        kbuf_puts(&j, "{\"name\": ");
        kbuf_json_str(&j, r.name, strlen(r.name));
        kbuf_puts(&j, ", \"dir\": ");
        kbuf_json_str(&j, dir, strlen(dir));
        kbuf_printf(&j, ", \"size\": %lld, \"do_lower_case\": %s, \"strip_accents\": %s}\n", (long long)r.size,
                    r.cased ? "false" : "true", accents_json(r.accents));
        fputs(j.data, stdout);
        kbuf_free(&j);
    } else {
        kinfo("wrote '%s' to %s: vocab.txt, tokenizer_config.json (do_lower_case %s, strip_accents %s), "
              "special_tokens_map.json", r.name, dir, r.cased ? "false" : "true", accents_json(r.accents));
    }
out:
    free(tok);
    free(spm);
    kwp_vocab_free(v);
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kstore_close(s);
    return rc;
}

static int vocab_export(cli_common *c, const char *name, const char *out)
{
    kstore *s;
    int rc = cli_open_store(c, KSTORE_READONLY, &s);
    if (rc) return rc;
    kvocab_row r;
    kbuf pieces = {0}, meta = {0};
    if ((rc = kstore_vocab_get(s, name, &r, &pieces, &meta))) {
        kerr("%s", kstore_errmsg(s));
    } else if (r.kind == KVOCAB_BPE) {
        kerr("'%s' is a BPE vocabulary, two files: kiln vocab export --hf DIR writes vocab.json and merges.txt",
             r.name);
        rc = EX_USAGE;
    } else {
        FILE *f = strcmp(out, "-") ? fopen(out, "wb") : stdout;
        if (!f) { kerr("%s: %s", out, strerror(errno)); rc = EX_CANTCREAT; }
        else {
            fwrite(pieces.data, 1, pieces.len, f);
            if ((f != stdout ? fclose(f) : fflush(f)) != 0) { kerr("%s: write error", out); rc = EX_IOERR; }
        }
    }
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kstore_close(s);
    return rc;
}

static int list_one(const kvocab_row *v, void *ctx)
{
    int json = *(int *)ctx;
    if (json) {
        kbuf b = {0};
        kbuf_printf(&b, "{\"id\": %lld, \"name\": ", (long long)v->id);
        kbuf_json_str(&b, v->name, strlen(v->name));
        kbuf_printf(&b, ", \"size\": %lld, \"cased\": %s, \"active\": %s, \"max_word_chars\": %lld, "
                        "\"documents\": %lld, \"tokens\": %lld, \"strip_accents\": %s, \"words\": \"%s\", "
                        "\"kind\": \"%s\", \"origin\": ",
                    (long long)v->size, v->cased ? "true" : "false", v->active ? "true" : "false",
                    (long long)v->max_word_chars, (long long)v->tokenized_docs, (long long)v->tokens,
                    accents_json(v->accents), v->icu_words ? "icu" : "bert",
                    v->kind == KVOCAB_BPE ? "bpe" : "wordpiece");
        kbuf_json_str(&b, v->origin, strlen(v->origin));
        kbuf_puts(&b, "}\n");
        fputs(b.data, stdout);
        kbuf_free(&b);
    } else {
        printf("%c %-24s %7lld pieces  %-8s %9lld docs tokenized  %s%s%s\n", v->active ? '*' : ' ',
               v->name, (long long)v->size, v->kind == KVOCAB_BPE ? "BPE" : v->cased ? "cased" : "uncased",
               (long long)v->tokenized_docs,
               v->accents == KVOCAB_ACCENTS_KEEP    ? "[accents kept] "
               : v->accents == KVOCAB_ACCENTS_STRIP ? "[accents stripped] "
                                                    : "",
               v->icu_words ? "[ICU words] " : "", v->origin);
    }
    return 0;
}

static void train_progress(const char *phase, uint64_t done, uint64_t total, void *ctx)
{
    cli_progress *p = ctx;
    char line[256], a[32], b[32];
    snprintf(line, sizeof line, "%s: %s / %s (%.0f%%)", phase, cli_num(done, a, sizeof a),
             cli_num(total, b, sizeof b), total ? 100.0 * (double)done / (double)total : 0.0);
    cli_progress_line(p, line);
}

int cmd_vocab(int argc, char **argv, const char *db)
{
    enum { O_CASED = 1, O_UNCASED, O_NAME, O_SIZE, O_MINF, O_ALPHA, O_MAXW, O_THREADS, O_MAXWC, O_STRIP,
           O_NOSTRIP, O_WORDS, O_HF, O_FORCE, O_BPE };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"cased", no_argument, 0, O_CASED},
        {"uncased", no_argument, 0, O_UNCASED},
        {"strip-accents", no_argument, 0, O_STRIP},
        {"no-strip-accents", no_argument, 0, O_NOSTRIP},
        {"words", required_argument, 0, O_WORDS},
        {"hf", no_argument, 0, O_HF},
        {"bpe", no_argument, 0, O_BPE},
        {"force", no_argument, 0, O_FORCE},
        {"name", required_argument, 0, O_NAME},
        {"size", required_argument, 0, O_SIZE},
        {"min-frequency", required_argument, 0, O_MINF},
        {"limit-alphabet", required_argument, 0, O_ALPHA},
        {"max-words", required_argument, 0, O_MAXW},
        {"max-word-chars", required_argument, 0, O_MAXWC},
        {"threads", required_argument, 0, O_THREADS},
        {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int cased = -1, accents = -1, icu_words = 0, hf = 0, force = 0, bpe = 0, words_set = 0, opt;
    const char *name = NULL;
    long size = 0, minf = 2, alpha = 0, maxw = 4000000, threads = 0, maxwc = KWP_DEFAULT_MAX_WORD_CHARS;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        long *dst = NULL;
        switch (opt) {
        case O_CASED: cased = 1; break;
        case O_UNCASED: cased = 0; break;
        case O_STRIP:
        case O_NOSTRIP: {
            int a = opt == O_STRIP ? KVOCAB_ACCENTS_STRIP : KVOCAB_ACCENTS_KEEP;
            if (accents >= 0 && accents != a)
                return cli_usage_error("vocab", "--strip-accents and --no-strip-accents: one or the other");
            accents = a;
            break;
        }
        case O_WORDS:
            if (!strcmp(optarg, "icu")) icu_words = 1;
            else if (!strcmp(optarg, "bert")) icu_words = 0;
            else return cli_usage_error("vocab", "--words: bert or icu, not '%s'", optarg);
            words_set = 1;
            break;
        case O_HF: hf = 1; break;
        case O_BPE: bpe = 1; break;
        case O_FORCE: force = 1; break;
        case O_NAME: name = optarg; break;
        case O_SIZE: dst = &size; break;
        case O_MINF: dst = &minf; break;
        case O_ALPHA: dst = &alpha; break;
        case O_MAXW: dst = &maxw; break;
        case O_MAXWC: dst = &maxwc; break;
        case O_THREADS: dst = &threads; break;
        default: return cli_usage_error("vocab", "bad option");
        }
        if (dst) {
            *dst = strtol(optarg, &end, 10);
            if (*end || *dst < 0) return cli_usage_error("vocab", "expected a number, not '%s'", optarg);
        }
    }
    if (c.help || optind >= argc) {
        fputs(usage, c.help ? stdout : stderr);
        return c.help ? 0 : EX_USAGE;
    }
    const char *sub = argv[optind++];
    int rest = argc - optind;
    if (bpe && strcmp(sub, "import") && strcmp(sub, "train"))
        return cli_usage_error("vocab", "--bpe is an option of import and train");
    if (bpe && (cased >= 0 || accents >= 0 || words_set))
        return cli_usage_error("vocab", "--bpe: a byte-level BPE vocabulary keeps every byte: no --cased, "
                                        "--uncased, --strip-accents, --no-strip-accents or --words");
    if (!strcmp(sub, "import") && bpe) {
        if (rest != 1 && rest != 2)
            return cli_usage_error("vocab", "import --bpe takes VOCAB_JSON MERGES, or a DIR");
        return vocab_import_bpe(&c, argv + optind, rest, name);
    }
    if (!strcmp(sub, "import")) {
        if (rest != 1) return cli_usage_error("vocab", "import takes one FILE");
        if (maxwc < 1) return cli_usage_error("vocab", "--max-word-chars must be >= 1");
        return vocab_import(&c, argv[optind], cased, accents, icu_words, name, maxwc);
    }
    if (!strcmp(sub, "export")) {
        if (rest != 1)
            return cli_usage_error("vocab", hf ? "export --hf takes one DIR"
                                               : "export takes one OUT path ('-' for stdout)");
        if (hf) return vocab_export_hf(&c, name, argv[optind], force);
        return vocab_export(&c, name, argv[optind]);
    }
    if (!strcmp(sub, "list")) {
        if (rest) return cli_usage_error("vocab", "list takes no argument");
        kstore *s;
        int rc = cli_open_store(&c, KSTORE_READONLY, &s);
        if (rc) return rc;
        rc = kstore_vocabs_foreach(s, list_one, &c.json);
        if (rc) kerr("%s", kstore_errmsg(s));
        kstore_close(s);
        return rc;
    }
    if (!strcmp(sub, "use")) {
        if (rest != 1) return cli_usage_error("vocab", "use takes one NAME");
        kstore *s;
        int rc = cli_open_store(&c, 0, &s);
        if (rc) return rc;
        rc = kstore_vocab_set_active(s, argv[optind]);
        if (rc) kerr("%s", kstore_errmsg(s));
        else if (!c.json) printf("active vocabulary: %s\n", argv[optind]);
        kstore_close(s);
        return rc;
    }
    if (!strcmp(sub, "train")) {
        if (rest) return cli_usage_error("vocab", "train takes no argument");
        if (bpe && size < 257)
            return cli_usage_error("vocab", "train --bpe needs --size N with N >= 257 (the 256 byte tokens and "
                                            "<|endoftext|>)%s", size ? "" : ": --size is missing");
        if (bpe && alpha)
            return cli_usage_error("vocab", "--limit-alphabet: a byte-level BPE's alphabet is the 256 bytes");
        if (size < 10) return cli_usage_error("vocab", "train needs --size N (N >= 10)");
        kvocab_train_opts o = {0};
        o.bpe = bpe;
        o.size = (size_t)size;
        o.cased = cased > 0;
        o.accents = accents < 0 ? KVOCAB_ACCENTS_CASING : accents;
        o.icu_words = icu_words;
        o.min_frequency = (uint64_t)(minf < 1 ? 1 : minf);
        o.limit_alphabet = (size_t)alpha;
        o.max_words = (size_t)maxw;
        o.name = name;
        o.threads = threads > 0 ? (int)threads : kcpu_count();
        cli_catch_stop_signals();
        o.stop = &cli_stop;
        cli_progress p;
        cli_progress_init(&p, c.json);
        if (p.on) { o.progress = train_progress; o.progress_ctx = &p; }
        kvocab_train_summary sum;
        const char *dbp = cli_db_path(&c);
        int rc = kvocab_train_run(dbp, &o, &sum);
        cli_progress_done(&p);
        if (sum.interrupted) { kwarn("interrupted: nothing stored"); return 128 + (int)cli_stop; }
        if (rc) return rc;
        if (bpe && c.json) {
            kbuf j = {0};
            kbuf_puts(&j, "{\"name\": ");
            kbuf_json_str(&j, sum.name, strlen(sum.name));
            kbuf_printf(&j, ", \"id\": %lld, \"kind\": \"bpe\", \"size\": %zu, \"merges\": %zu, "
                        "\"documents\": %llu, \"distinct_words\": %llu, \"pruned\": %llu, \"seconds\": %.3f, "
                        "\"count_seconds\": %.3f, \"merge_seconds\": %.3f}\n",
                        (long long)sum.vocab_id, sum.size, sum.merges, (unsigned long long)sum.documents,
                        (unsigned long long)sum.distinct_words, (unsigned long long)sum.pruned, sum.seconds,
                        sum.count_seconds, sum.merge_seconds);
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else if (bpe) {
            printf("trained BPE vocabulary '%s': %zu tokens (%zu merges) from %llu documents (%llu distinct "
                   "words) in %.1f s\n",
                   sum.name, sum.size, sum.merges, (unsigned long long)sum.documents,
                   (unsigned long long)sum.distinct_words, sum.seconds);
        } else if (c.json) {
            kbuf j = {0};
            kbuf_puts(&j, "{\"name\": ");
            kbuf_json_str(&j, sum.name, strlen(sum.name));
            kbuf_printf(&j, ", \"id\": %lld, \"size\": %zu, \"documents\": %llu, "
                        "\"distinct_words\": %llu, \"pruned\": %llu, \"seconds\": %.3f, "
                        "\"count_seconds\": %.3f, \"merge_seconds\": %.3f, \"cased\": %s, "
                        "\"strip_accents\": %s, \"accents_kept_by_census\": %s, \"words\": \"%s\", "
                        "\"letters\": %llu, \"scripts\": [",
                        (long long)sum.vocab_id, sum.size, (unsigned long long)sum.documents,
                        (unsigned long long)sum.distinct_words, (unsigned long long)sum.pruned, sum.seconds,
                        sum.count_seconds, sum.merge_seconds, o.cased ? "true" : "false", accents_json(sum.accents),
                        sum.auto_keep ? "true" : "false", o.icu_words ? "icu" : "bert",
                        (unsigned long long)sum.letters);
            for (size_t i = 0; i < sum.n_scripts; i++) {
                const kwp_script_count *x = &sum.scripts[i];
                kbuf_printf(&j, "%s{\"script\": \"%s\", \"letters\": %llu, \"changed\": %llu, \"dropped\": %llu}",
                            i ? ", " : "", x->name, (unsigned long long)x->letters, (unsigned long long)x->changed,
                            (unsigned long long)x->dropped);
            }
            kbuf_puts(&j, "]}\n");
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else
            printf("trained vocabulary '%s': %zu pieces from %llu documents (%llu distinct words) "
                   "in %.1f s%s\n",
                   sum.name, sum.size, (unsigned long long)sum.documents,
                   (unsigned long long)sum.distinct_words, sum.seconds,
                   sum.accents == KVOCAB_ACCENTS_KEEP    ? "; accents kept"
                   : sum.accents == KVOCAB_ACCENTS_STRIP ? "; accents stripped"
                                                         : "");
        return 0;
    }
    return cli_usage_error("vocab", "unknown command '%s'", sub);
}
