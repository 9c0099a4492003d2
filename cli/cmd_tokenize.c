/* cmd_tokenize.c: kiln tokenize (the stored corpus into token ids), kiln
 * encode (text to ids or pieces, lines in, lines out) and kiln decode. */
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "text/tokenizer.h"


/* ---- kiln tokenize ------------------------------------------------------------- */

static void tok_progress(const ktokenize_progress *pr, void *ctx)
{
    cli_progress *p = ctx;
    char line[256], a[32], b[32];
    double rate = pr->seconds > 0 ? (double)pr->done / pr->seconds : 0;
    double eta = rate > 0 && pr->total > pr->done ? (double)(pr->total - pr->done) / rate : 0;
    snprintf(line, sizeof line, "tokenized %s / %s documents (%.0f%%)  %.0f docs/s  ETA %d:%02d",
             cli_num(pr->done, a, sizeof a), cli_num(pr->total, b, sizeof b),
             pr->total ? 100.0 * (double)pr->done / (double)pr->total : 100.0, rate, (int)(eta / 60),
             (int)eta % 60);
    cli_progress_line(p, line);
}

int cmd_tokenize(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln tokenize [--vocab NAME] [--threads T] [--db PATH] [--json]\n\n"
        "Tokenizes every stored document that has no token ids yet under the vocabulary\n"
        "(default: the active one) and stores them as packed blobs with sentence\n"
        "offsets and word starts (docs/store.md). Incremental: run it again after more\n"
        "ingests; an interruption loses at most the open batch.\n"
        "--json prints {\"vocab\", \"documents\", \"sentences\", \"tokens\", \"unk\",\n"
        "\"total_documents\", \"total_tokens\", \"seconds\"}.\n";
    enum { O_VOCAB = 1, O_THREADS };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"vocab", required_argument, 0, O_VOCAB},
                                       {"threads", required_argument, 0, O_THREADS}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    ktokenize_opts o = {0};
    o.threads = kcpu_count();
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_VOCAB) o.vocab = optarg;
        else if (opt == O_THREADS) {
            char *end;
            o.threads = (int)strtol(optarg, &end, 10);
            if (*end || o.threads < 1 || o.threads > 256) return cli_usage_error("tokenize", "--threads: 1 to 256");
        } else return cli_usage_error("tokenize", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (optind < argc) return cli_usage_error("tokenize", "unexpected argument '%s'", argv[optind]);
    cli_catch_stop_signals();
    o.stop = &cli_stop;
    cli_progress p;
    cli_progress_init(&p, c.json);
    if (p.on) { o.progress = tok_progress; o.progress_ctx = &p; }
    const char *dbp = cli_db_path(&c);
    ktokenize_summary s;
    int rc = ktokenize_run(dbp, &o, &s);
    cli_progress_done(&p);
    if (s.interrupted) { kwarn("interrupted: run kiln tokenize again to go on"); rc = 128 + (int)cli_stop; }
    if (rc && !s.interrupted) return rc;
    if (c.json) {
        kbuf j = {0};
        kbuf_puts(&j, "{\"vocab\": ");
        kbuf_json_str(&j, s.vocab, strlen(s.vocab));
        kbuf_printf(&j, ", \"documents\": %llu, \"sentences\": %llu, \"tokens\": %llu, \"unk\": %llu, "
                    "\"total_documents\": %lld, \"total_tokens\": %lld, \"seconds\": %.3f}\n",
                    (unsigned long long)s.documents, (unsigned long long)s.sentences, (unsigned long long)s.tokens,
                    (unsigned long long)s.unk, (long long)s.total_documents, (long long)s.total_tokens, s.seconds);
        fputs(j.data, stdout);
        kbuf_free(&j);
    } else if (klog_threshold >= KLOG_INFO) {
        char a[32], b[32], d[32];
        printf("tokenized %s document(s) with '%s': %s tokens (%.2f%% [UNK]) in %.1f s; %s documents "
               "tokenized in all\n",
               cli_num(s.documents, a, sizeof a), s.vocab, cli_num(s.tokens, b, sizeof b),
               s.tokens ? 100.0 * (double)s.unk / (double)s.tokens : 0.0, s.seconds,
               cli_num((uint64_t)s.total_documents, d, sizeof d));
    }
    return rc;
}

/* ---- vocabulary for encode/decode ------------------------------------------------- */

typedef struct vocab_sel {
    const char *name;  /* --vocab */
    const char *file;  /* --vocab-file */
    const char *merges;/* --merges: file is a BPE vocab.json / encoder.json */
    int cased;
    int accents;       /* --vocab-file: KVOCAB_ACCENTS_* (--strip-accents / --no-strip-accents) */
    long max_word_chars;
} vocab_sel;

/* Loads the selected vocabulary: a file, or one from the store. */
static int load_vocab(cli_common *c, const vocab_sel *sel, ktkz **v, long *maxw)
{
    char err[512];
    kbuf pieces = {0}, meta = {0}, merges = {0};
    int kind = sel->merges ? KTKZ_BPE : KTKZ_WORDPIECE;
    kvocab_row want = {0};
    want.cased = sel->cased;
    want.accents = sel->accents;
    int mode = kvocab_row_mode(&want), rc = 0;
    *maxw = sel->max_word_chars;
    if (sel->file) {
        int e = kbuf_read_file(&pieces, sel->file);
        if (e) {
            kerr("%s: %s", sel->file, strerror(e));
            kbuf_free(&pieces);
            return EX_NOINPUT;
        }
        if (sel->merges && (e = kbuf_read_file(&merges, sel->merges))) {
            kerr("%s: %s", sel->merges, strerror(e));
            kbuf_free(&pieces);
            kbuf_free(&merges);
            return EX_NOINPUT;
        }
    } else {
        kstore *s;
        if ((rc = cli_open_store(c, KSTORE_READONLY, &s))) return rc;
        kvocab_row r;
        rc = kstore_vocab_get(s, sel->name, &r, &pieces, &meta);
        if (rc) kerr("%s", kstore_errmsg(s));
        else {
            mode = kvocab_row_mode(&r);
            kind = r.kind;
            if (r.merges) kbuf_append(&merges, r.merges, r.merges_len);
            if (*maxw <= 0) *maxw = r.max_word_chars;
        }
        kstore_close(s);
        if (rc) { kbuf_free(&pieces); kbuf_free(&meta); return rc; }
    }
    if (*maxw <= 0) *maxw = KWP_DEFAULT_MAX_WORD_CHARS;
    if (ktkz_load(kind, pieces.data ? pieces.data : "", pieces.len, merges.data ? merges.data : "", merges.len, mode,
                  v, err, sizeof err)) {
        kerr("%s: %s", sel->file ? (sel->merges && !strncmp(err, "merges", 6) ? sel->merges : sel->file) : "vocabulary",
             err);
        rc = EX_DATAERR;
    }
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kbuf_free(&merges);
    return rc;
}

static void put_uint(kbuf *b, uint32_t v)
{
    char tmp[12];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    kbuf_reserve(b, (size_t)n);
    while (n) b->data[b->len++] = tmp[--n];
    b->data[b->len] = '\0';
}

/* Appends one output line for text s[0..n). */
static void encode_line(ktkz_tok *t, const ktkz *v, int tokens, const char *s, size_t n,
                        kwp_ids *ids, kbuf *out)
{
    kwp_ids_clear(ids);
    ktkz_encode(t, s, n, ids);
    for (size_t i = 0; i < ids->n; i++) {
        if (i) kbuf_putc(out, ' ');
        if (tokens) {
            size_t len;
            const char *p = ktkz_piece(v, ids->ids[i], &len);
            kbuf_append(out, p, len);
        } else {
            put_uint(out, ids->ids[i]);
        }
    }
    kbuf_putc(out, '\n');
}

#define CHUNK_BYTES ((size_t)4 << 20)

int cmd_encode(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln encode [--ids|--tokens] [--vocab NAME | --vocab-file FILE [--cased]\n"
        "                   [--strip-accents|--no-strip-accents] | --vocab-file VOCAB_JSON\n"
        "                   --merges MERGES] [--max-word-chars N] [--null]\n"
        "                   [--threads T] [TEXT...]\n\n"
        "Tokenizes like BERT's tokenizer (transformers' BertTokenizer): with TEXT, the\n"
        "words joined by spaces give one output line; without, every line of standard\n"
        "input gives one output line (so a file can be tokenized line by line). Output:\n"
        "space-separated ids (--ids, the default) or pieces (--tokens); no [CLS]/[SEP]\n"
        "is added. The vocabulary is the active one of the store, --vocab NAME (with its\n"
        "casing and accent setting), or a vocab.txt given with --vocab-file (uncased\n"
        "unless --cased; accents stripped exactly when uncased, as transformers'\n"
        "strip_accents None, unless --strip-accents or --no-strip-accents).\n"
        "A byte-level BPE vocabulary (kiln vocab import --bpe, or --vocab-file\n"
        "VOCAB_JSON --merges MERGES) encodes as GPT-2's tokenizer; --tokens then shows\n"
        "its tokens as the vocabulary file writes them (a space is \"\u0120\").\n"
        "--null: the texts of standard input end with NUL bytes instead of newlines\n"
        "(texts that hold newlines); the output stays one line per text.\n";
    enum { O_IDS = 1, O_TOKENS, O_VOCAB, O_VFILE, O_CASED, O_THREADS, O_MAXWC, O_STRIP, O_NOSTRIP, O_MERGES, O_NULL };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"ids", no_argument, 0, O_IDS},
        {"tokens", no_argument, 0, O_TOKENS},
        {"vocab", required_argument, 0, O_VOCAB},
        {"vocab-file", required_argument, 0, O_VFILE},
        {"merges", required_argument, 0, O_MERGES},
        {"null", no_argument, 0, O_NULL},
        {"cased", no_argument, 0, O_CASED},
        {"strip-accents", no_argument, 0, O_STRIP},
        {"no-strip-accents", no_argument, 0, O_NOSTRIP},
        {"threads", required_argument, 0, O_THREADS},
        {"max-word-chars", required_argument, 0, O_MAXWC},
        {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    vocab_sel sel = {0};
    int tokens = 0, nth = kcpu_count(), opt;
    char sep = '\n'; /* what ends an input text (--null: NUL) */
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end;
        switch (opt) {
        case O_IDS: tokens = 0; break;
        case O_TOKENS: tokens = 1; break;
        case O_VOCAB: sel.name = optarg; break;
        case O_VFILE: sel.file = optarg; break;
        case O_MERGES: sel.merges = optarg; break;
        case O_NULL: sep = '\0'; break;
        case O_CASED: sel.cased = 1; break;
        case O_STRIP:
        case O_NOSTRIP: {
            int a = opt == O_STRIP ? KVOCAB_ACCENTS_STRIP : KVOCAB_ACCENTS_KEEP;
            if (sel.accents && sel.accents != a)
                return cli_usage_error("encode", "--strip-accents and --no-strip-accents: one or the other");
            sel.accents = a;
            break;
        }
        case O_THREADS:
            nth = (int)strtol(optarg, &end, 10);
            if (*end || nth < 1 || nth > 256) return cli_usage_error("encode", "--threads: 1 to 256");
            break;
        case O_MAXWC:
            sel.max_word_chars = strtol(optarg, &end, 10);
            if (*end || sel.max_word_chars < 1) return cli_usage_error("encode", "--max-word-chars: >= 1");
            break;
        default: return cli_usage_error("encode", "bad option");
        }
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (sel.name && sel.file) return cli_usage_error("encode", "--vocab and --vocab-file exclude each other");
    if (sel.accents && !sel.file)
        return cli_usage_error("encode", "--strip-accents / --no-strip-accents go with --vocab-file (a stored "
                                         "vocabulary has its own: kiln vocab list)");
    if (sel.merges && (!sel.file || sel.cased || sel.accents))
        return cli_usage_error("encode", "--merges goes with --vocab-file VOCAB_JSON, without --cased or accent flags");
    ktkz *v;
    long maxw;
    int rc = load_vocab(&c, &sel, &v, &maxw);
    if (rc) return rc;
    ktkz_tok **toks = xcalloc((size_t)nth, sizeof *toks);
    for (int i = 0; i < nth; i++) toks[i] = ktkz_tok_new(v, (size_t)maxw);
    kwp_ids ids = {0};
    kbuf out = {0};
    if (optind < argc) {
        kbuf text = {0};
        for (int i = optind; i < argc; i++) {
            if (i > optind) kbuf_putc(&text, ' ');
            kbuf_puts(&text, argv[i]);
        }
        encode_line(toks[0], v, tokens, text.data, text.len, &ids, &out);
        fwrite(out.data, 1, out.len, stdout);
        kbuf_free(&text);
    } else {
        /* chunks of whole lines; each thread encodes a contiguous share into its
         * own buffer; the buffers are written in order */
        kbuf in = {0};
        kbuf *outs = xcalloc((size_t)nth, sizeof *outs);
        kwp_ids *tids = xcalloc((size_t)nth, sizeof *tids);
        size_t *lines = NULL, cap = 0;
        char *buf = xmalloc(CHUNK_BYTES);
        int eof = 0;
        while (!eof) {
            size_t got = fread(buf, 1, CHUNK_BYTES, stdin);
            if (got < CHUNK_BYTES) eof = 1;
            kbuf_append(&in, buf, got);
            size_t complete = in.len;
            if (!eof) {
                char *nl = in.len ? memrchr(in.data, sep, in.len) : NULL;
                if (!nl) continue;
                complete = (size_t)(nl - in.data) + 1;
            }
            /* line starts */
            size_t nl_count = 0;
            for (size_t p = 0; p < complete;) {
                if (nl_count + 2 > cap) { cap = cap ? cap * 2 : 4096; lines = xrealloc(lines, cap * sizeof *lines); }
                lines[nl_count++] = p;
                char *q = memchr(in.data + p, sep, complete - p);
                p = q ? (size_t)(q - in.data) + 1 : complete;
            }
            lines[nl_count] = complete;
            #pragma omp parallel num_threads(nth)
            {
                int t = omp_get_thread_num(), T = omp_get_num_threads();
                size_t lo = nl_count * (size_t)t / (size_t)T, hi = nl_count * (size_t)(t + 1) / (size_t)T;
                /* work on private copies: the arrays' neighbouring entries
                 * share cache lines (false sharing halves the speed) */
                kbuf o = outs[t];
                kwp_ids x = tids[t];
                kbuf_clear(&o);
                for (size_t i = lo; i < hi; i++) {
                    size_t a = lines[i], e = lines[i + 1];
                    if (e > a && in.data[e - 1] == sep) e--;
                    encode_line(toks[t], v, tokens, in.data + a, e - a, &x, &o);
                }
                outs[t] = o;
                tids[t] = x;
            }
            for (int t = 0; t < nth; t++)
                if (outs[t].len) fwrite(outs[t].data, 1, outs[t].len, stdout);
            memmove(in.data, in.data + complete, in.len - complete);
            in.len -= complete;
        }
        if (ferror(stdin)) { kerr("reading standard input failed"); rc = EX_IOERR; }
        for (int t = 0; t < nth; t++) { kbuf_free(&outs[t]); kwp_ids_free(&tids[t]); }
        free(outs);
        free(tids);
        free(lines);
        free(buf);
        kbuf_free(&in);
    }
    if (fflush(stdout) != 0) { kerr("writing standard output failed"); rc = EX_IOERR; }
    kbuf_free(&out);
    kwp_ids_free(&ids);
    for (int i = 0; i < nth; i++) ktkz_tok_free(toks[i]);
    free(toks);
    ktkz_free(v);
    return rc;
}

/* Parses space-separated ids; returns -1 on a bad one. */
static int parse_ids(const char *s, size_t n, size_t vsize, uint32_t **ids, size_t *cnt, size_t *cap)
{
    *cnt = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
        if (i >= n) break;
        uint64_t v = 0;
        size_t st = i;
        while (i < n && s[i] >= '0' && s[i] <= '9' && v <= UINT32_MAX) v = v * 10 + (uint64_t)(s[i++] - '0');
        if (i == st || (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r') || v >= vsize) return -1;
        if (*cnt == *cap) { *cap = *cap ? *cap * 2 : 256; *ids = xrealloc(*ids, *cap * sizeof **ids); }
        (*ids)[(*cnt)++] = (uint32_t)v;
    }
    return 0;
}

int cmd_decode(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln decode [--vocab NAME | --vocab-file FILE [--cased] |\n"
        "                   --vocab-file VOCAB_JSON --merges MERGES] [--null] [ID...]\n\n"
        "Joins pieces back into text as transformers' decode does (pieces joined by\n"
        "spaces, '##' continuations glued, spaces before punctuation removed); a BPE\n"
        "vocabulary gives the exact bytes back. With no ID, every line of standard\n"
        "input (space-separated ids) gives one line; --null ends each output text\n"
        "with a NUL byte instead of a newline (texts that hold newlines).\n";
    enum { O_VOCAB = 1, O_VFILE, O_CASED, O_MERGES, O_NULL };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"vocab", required_argument, 0, O_VOCAB},
                                       {"vocab-file", required_argument, 0, O_VFILE},
                                       {"merges", required_argument, 0, O_MERGES},
                                       {"null", no_argument, 0, O_NULL},
                                       {"cased", no_argument, 0, O_CASED}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    vocab_sel sel = {0};
    int opt;
    char osep = '\n'; /* what ends an output text (--null: NUL) */
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_VOCAB) sel.name = optarg;
        else if (opt == O_VFILE) sel.file = optarg;
        else if (opt == O_CASED) sel.cased = 1;
        else if (opt == O_MERGES) sel.merges = optarg;
        else if (opt == O_NULL) osep = '\0';
        else return cli_usage_error("decode", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (sel.merges && (!sel.file || sel.cased))
        return cli_usage_error("decode", "--merges goes with --vocab-file VOCAB_JSON, without --cased");
    ktkz *v;
    long maxw;
    int rc = load_vocab(&c, &sel, &v, &maxw);
    if (rc) return rc;
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    kbuf out = {0};
    if (optind < argc) {
        kbuf all = {0};
        for (int i = optind; i < argc; i++) { kbuf_puts(&all, argv[i]); kbuf_putc(&all, ' '); }
        if (parse_ids(all.data, all.len, ktkz_size(v), &ids, &n, &cap)) {
            kerr("decode: ids must be numbers below the vocabulary size (%zu)", ktkz_size(v));
            rc = EX_DATAERR;
        } else {
            ktkz_decode(v, ids, n, &out);
            kbuf_putc(&out, osep);
            fwrite(out.data, 1, out.len, stdout);
        }
        kbuf_free(&all);
    } else {
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;
        unsigned long long lineno = 0;
        while ((len = getline(&line, &lcap, stdin)) >= 0) {
            lineno++;
            if (len && line[len - 1] == '\n') len--;
            kbuf_clear(&out);
            if (parse_ids(line, (size_t)len, ktkz_size(v), &ids, &n, &cap)) {
                kerr("stdin:%llu: ids must be numbers below the vocabulary size (%zu)", lineno,
                     ktkz_size(v));
                rc = EX_DATAERR;
                kbuf_putc(&out, osep);
            } else {
                ktkz_decode(v, ids, n, &out);
                kbuf_putc(&out, osep);
            }
            fwrite(out.data, 1, out.len, stdout);
        }
        free(line);
    }
    if (fflush(stdout) != 0) { kerr("writing standard output failed"); rc = EX_IOERR; }
    free(ids);
    kbuf_free(&out);
    ktkz_free(v);
    return rc;
}
