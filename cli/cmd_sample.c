/* cmd_sample.c: kiln sample (the sampler's stream as JSON lines, text, or
 * nothing, with statistics), and cli_sampling_open, the setup it shares with
 * kiln train: vocabulary, snapshot and sampler options from the store. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "sampler/sampler.h"
#include "text/tokenizer.h"
#include "text/wordpiece.h"

/* ---- shared setup --------------------------------------------------------------- */

int cli_objectives_parse(const char *s, int *bits)
{
    static const struct { const char *name; int bit; } names[] = {
        {"mlm", KOBJ_MLM}, {"wwm", KOBJ_WWM}, {"ngram", KOBJ_NGRAM}, {"sop", KOBJ_SOP},
        {"nsp", KOBJ_NSP}, {"rtd", KOBJ_RTD}, {"clm", KOBJ_CLM}, {"entities", KOBJ_ENTITIES}};
    *bits = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && !strncmp(p, names[i].name, n)) {
                *bits |= names[i].bit;
                found = 1;
            }
        if (!found) {
            kerr("unknown objective '%.*s' (mlm, wwm, ngram, sop, nsp, rtd, clm, entities)", (int)n, p);
            return EX_USAGE;
        }
        p += n;
        if (*p == ',') p++;
    }
    /* sop / nsp / entities alone mean token masking with them */
    if (*bits && !(*bits & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD | KOBJ_CLM)) &&
        (*bits & (KOBJ_SOP | KOBJ_NSP | KOBJ_ENTITIES)))
        *bits |= KOBJ_MLM;
    return *bits ? 0 : EX_USAGE;
}

void cli_sampling_close(cli_sampling *x)
{
    ksnapshot_close(x->snap);
    ktkz_free(x->tk);
    free(x->random_ids);
    kbuf_free(&x->vocab_text);
    kbuf_free(&x->merges_text);
    memset(x, 0, sizeof *x);
}

int cli_sampling_check_objectives(const cli_sampling *x, int objectives)
{
    if (x->kind == KVOCAB_BPE && objectives != KOBJ_CLM) {
        kerr("vocabulary '%s' is a byte-level BPE vocabulary (GPT-2's): it has no [CLS], [SEP] or [MASK], so it "
             "feeds only clm (causal windows, <|endoftext|> between documents); choose a WordPiece vocabulary "
             "for the other objectives",
             x->vocab_name);
        return EX_CONFIG;
    }
    return 0;
}

int cli_sampling_open(const cli_common *c, const char *vocab_name, const char *snapshot,
                      cli_sampling *x)
{
    memset(x, 0, sizeof *x);
    x->eot = -1;
    char err[1024];
    kstore *s;
    int rc = cli_open_store(c, KSTORE_READONLY, &s);
    if (rc) return rc;
    kvocab_row vr;
    kbuf meta = {0};
    rc = kstore_vocab_get(s, vocab_name, &vr, &x->vocab_text, &meta);
    if (rc) {
        kerr("%s", kstore_errmsg(s));
        kstore_close(s);
        kbuf_free(&meta);
        return rc;
    }
    x->kind = vr.kind;
    if (vr.merges) kbuf_append(&x->merges_text, vr.merges, vr.merges_len);
    x->vocab_id = vr.id;
    x->cased = vr.cased;
    x->mode = kvocab_row_mode(&vr);
    snprintf(x->vocab_name, sizeof x->vocab_name, "%s", vr.name);   /* vr.name points into meta */
    kbuf_free(&meta);
    vr.name = x->vocab_name;
    if (ktkz_load(vr.kind == KVOCAB_BPE ? KTKZ_BPE : KTKZ_WORDPIECE, x->vocab_text.data ? x->vocab_text.data : "",
                  x->vocab_text.len, x->merges_text.data ? x->merges_text.data : "", x->merges_text.len,
                  kvocab_row_mode(&vr), &x->tk, err, sizeof err)) {
        kerr("vocabulary %s: %s", vr.name, err);
        kstore_close(s);
        cli_sampling_close(x);
        return EX_DATAERR;
    }
    x->vocab = ktkz_wordpiece(x->tk);
    if (x->kind == KVOCAB_BPE) {
        x->eot = kbpe_vocab_eot(ktkz_bpe(x->tk));
        if (x->eot < 0) {
            kerr("vocabulary %s has no %s: causal windows need it between documents", vr.name, KBPE_EOT);
            kstore_close(s);
            cli_sampling_close(x);
            return EX_DATAERR;
        }
    }
    uint32_t V = (uint32_t)ktkz_size(x->tk);
    if (snapshot) {
        snprintf(x->snapshot_path, sizeof x->snapshot_path, "%s", snapshot);
    } else {
        kbuf dir = {0};
        kbuf_printf(&dir, "%s.snapshots", cli_db_path(c));
        rc = ksnapshot_build(s, vr.id, V, dir.data, x->snapshot_path, sizeof x->snapshot_path, err,
                             sizeof err);
        kbuf_free(&dir);
        if (rc) {
            kerr("snapshot: %s", err);
            kstore_close(s);
            cli_sampling_close(x);
            return rc;
        }
    }
    kstore_close(s);
    x->snap = ksnapshot_open(x->snapshot_path, err, sizeof err);
    if (!x->snap) {
        kerr("%s", err);
        rc = access(x->snapshot_path, R_OK) ? EX_NOINPUT : EX_DATAERR;
        cli_sampling_close(x);
        return rc;
    }
    ksnapshot_info info;
    ksnapshot_get_info(x->snap, &info);
    if (info.vocab_id != vr.id || info.vocab_size != V) {
        kerr("%s: made for vocabulary %lld (%u pieces), not %s", x->snapshot_path,
             (long long)info.vocab_id, info.vocab_size, vr.name);
        cli_sampling_close(x);
        return EX_DATAERR;
    }
    if (x->kind == KVOCAB_BPE) {
        /* GPT-2's one special: the separator of the causal windows (and the
         * padding no window has); no [CLS] / [MASK], no random branch */
        x->pad = x->sep = (int32_t)x->eot;
        x->cls = x->mask = -1;
        return 0;
    }
    /* specials and the random-replacement pool: every piece but [X]-style specials */
    x->pad = (int32_t)kwp_vocab_special(x->vocab, KWP_PAD);
    x->cls = (int32_t)kwp_vocab_special(x->vocab, KWP_CLS);
    x->sep = (int32_t)kwp_vocab_special(x->vocab, KWP_SEP);
    x->mask = (int32_t)kwp_vocab_special(x->vocab, KWP_MASK);
    if (x->pad < 0 || x->cls < 0 || x->sep < 0 || x->mask < 0) {
        kerr("vocabulary %s lacks one of [PAD] [CLS] [SEP] [MASK]", vr.name);
        cli_sampling_close(x);
        return EX_DATAERR;
    }
    x->random_ids = xmalloc(V * sizeof *x->random_ids);
    for (uint32_t id = 0; id < V; id++) {
        size_t n;
        const char *p = kwp_vocab_piece(x->vocab, id, &n);
        if (n >= 3 && p[0] == '[' && p[n - 1] == ']') continue;
        x->random_ids[x->n_random++] = (int32_t)id;
    }
    return 0;
}

void cli_sampling_apply(const cli_sampling *x, ksampler_opts *o)
{
    o->pad_id = x->pad;
    o->cls_id = x->cls;
    o->sep_id = x->sep;
    o->mask_id = x->mask;
    if (x->tk) o->vocab_size = (uint32_t)ktkz_size(x->tk); /* (without: a data-parallel rank's plan says) */
    o->random_ids = x->random_ids;
    o->n_random = x->n_random;
}

/* ---- kiln sample ---------------------------------------------------------------- */

static void put_int_array(kbuf *b, const char *key, const int32_t *a, int n)
{
    kbuf_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        char tmp[16];
        int k = snprintf(tmp, sizeof tmp, i ? ",%d" : "%d", a[i]);
        kbuf_append(b, tmp, (size_t)k);
    }
    kbuf_putc(b, ']');
}

static void row_jsonl(kbuf *o, const ksample_batch *b, int r, uint64_t epoch_size, uint64_t epoch0)
{
    int L = b->L, P = b->P, n = b->lengths[r];
    const int32_t *ids = b->input_ids + (size_t)r * L;
    uint64_t pos = (uint64_t)b->index[r];
    kbuf_printf(o, "{\"index\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"length\":%d", pos,
                epoch0 + pos / epoch_size, n);
    put_int_array(o, "input_ids", ids, n);
    if (!(b->objectives & KOBJ_CLM)) {
        kbuf_puts(o, ",\"token_type_ids\":[");
        for (int i = 0; i < n; i++) {
            if (i) kbuf_putc(o, ',');
            kbuf_putc(o, (char)('0' + b->token_type_ids[(size_t)r * L + i]));
        }
        kbuf_putc(o, ']');
    }
    if (b->objectives & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD)) {
        put_int_array(o, "masked_positions", b->masked_positions + (size_t)r * P, b->n_masked[r]);
        put_int_array(o, "masked_ids", b->masked_ids + (size_t)r * P, b->n_masked[r]);
    }
    if (b->objectives & KOBJ_SOP) kbuf_printf(o, ",\"sop_label\":%d", b->labels[r]);
    if (b->objectives & KOBJ_NSP) kbuf_printf(o, ",\"nsp_label\":%d", b->labels[r]);
    if (b->entity_ids) {
        put_int_array(o, "entity_ids", b->entity_ids + (size_t)r * L, n);
        put_int_array(o, "entity_labels", b->entity_labels + (size_t)r * L, n);
    }
    kbuf_puts(o, "}\n");
}

static void row_text(kbuf *o, const ksample_batch *b, int r, const ktkz *v)
{
    int L = b->L, P = b->P, n = b->lengths[r];
    const int32_t *ids = b->input_ids + (size_t)r * L;
    const int32_t *mp = b->masked_positions + (size_t)r * P, *mi = b->masked_ids + (size_t)r * P;
    kbuf_printf(o, "#%" PRId64 " length %d", b->index[r], n);
    if (b->labels[r] >= 0)
        kbuf_printf(o, " %s %d", (b->objectives & KOBJ_SOP) ? "sop" : "nsp", b->labels[r]);
    kbuf_printf(o, " masked %d\n", b->n_masked[r]);
    int k = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = ktkz_piece(v, (uint32_t)ids[i], &len);
        if (i) kbuf_putc(o, ' ');
        if (i && !(b->objectives & KOBJ_CLM) && b->token_type_ids[(size_t)r * L + i] !=
                                                     b->token_type_ids[(size_t)r * L + i - 1])
            kbuf_puts(o, "| ");
        if (k < b->n_masked[r] && mp[k] == i) {   /* shown{original} */
            size_t ol;
            const char *op = ktkz_piece(v, (uint32_t)mi[k], &ol);
            kbuf_append(o, p, len);
            kbuf_putc(o, '{');
            kbuf_append(o, op, ol);
            kbuf_putc(o, '}');
            k++;
        } else {
            kbuf_append(o, p, len);
        }
        if (b->entity_labels && b->entity_labels[(size_t)r * L + i]) {   /* @entity, @input(was label) */
            int32_t in = b->entity_ids[(size_t)r * L + i], lab = b->entity_labels[(size_t)r * L + i];
            if (in == lab) kbuf_printf(o, "@%d", lab);
            else kbuf_printf(o, "@%d(was %d)", in, lab);
        }
    }
    kbuf_puts(o, "\n\n");
}

static void stats_add(ksample_stats *a, const ksample_stats *b)
{
    const uint64_t *src = (const uint64_t *)b;
    uint64_t *dst = (uint64_t *)a;
    for (size_t i = 0; i < sizeof *a / sizeof(uint64_t); i++) dst[i] += src[i];
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0; }

static void print_stats(FILE *f, const ksample_stats *s, int L, double secs, int json, int objectives,
                        uint64_t epoch_size, uint64_t docs, const char *snapshot)
{
    uint64_t sp = s->spans[1] + s->spans[2] + s->spans[3];
    double rate = secs > 0 ? (double)s->rows / secs : 0;
    if (json) {
        kbuf sn = {0};
        kbuf_json_str(&sn, snapshot, strlen(snapshot));
        fprintf(f, "{\"snapshot\":%s,\"epoch_size\":%" PRIu64 ",\"split_documents\":%" PRIu64 ",",
                sn.data, epoch_size, docs);
        kbuf_free(&sn);
        fprintf(f,
                "\"sequences\":%" PRIu64 ",\"tokens\":%" PRIu64 ",\"mean_length\":%.3f,"
                "\"padding\":%.5f,\"masked\":%" PRIu64 ",\"masking_rate\":%.5f,"
                "\"masking_rate_maskable\":%.5f,\"mask_share\":%.5f,\"keep_share\":%.5f,"
                "\"random_share\":%.5f,\"special_masked\":%" PRIu64 ",\"labelled\":%" PRIu64 ","
                "\"label1_share\":%.5f,\"ngram_shares\":{\"1\":%.5f,\"2\":%.5f,\"3\":%.5f},\"entity_tokens\":%" PRIu64
                ",\"entity_rows_share\":%.5f,\"entity_token_share\":%.5f,\"dea_random_share\":%.5f,"
                "\"dea_dropped_share\":%.5f,\"entities_hidden_share\":%.5f,\"truncated_share\":%.5f,\"seconds\":%.3f,"
                "\"sequences_per_s\":%.1f}\n",
                s->rows, s->tokens, s->rows ? (double)s->tokens / (double)s->rows : 0,
                s->rows ? (double)s->pad / ((double)s->rows * L) : 0, s->masked,
                s->tokens ? (double)s->masked / (double)s->tokens : 0,
                s->maskable ? (double)s->masked / (double)s->maskable : 0,
                s->masked ? (double)s->masked_mask / (double)s->masked : 0,
                s->masked ? (double)s->masked_keep / (double)s->masked : 0,
                s->masked ? (double)s->masked_random / (double)s->masked : 0, s->special_masked,
                s->labelled, s->labelled ? (double)s->label1 / (double)s->labelled : 0,
                sp ? (double)s->spans[1] / (double)sp : 0, sp ? (double)s->spans[2] / (double)sp : 0,
                sp ? (double)s->spans[3] / (double)sp : 0, s->entity_tokens,
                s->rows ? (double)s->entity_rows / (double)s->rows : 0,
                s->tokens ? (double)s->entity_tokens / (double)s->tokens : 0,
                s->entity_tokens ? (double)s->dea_random / (double)s->entity_tokens : 0,
                s->entity_tokens ? (double)s->dea_dropped / (double)s->entity_tokens : 0,
                s->entity_tokens ? (double)s->entities_hidden / (double)s->entity_tokens : 0,
                s->rows ? (double)s->truncated_rows / (double)s->rows : 0, secs, rate);
        return;
    }
    char a[32], b[32];
    fprintf(f, "snapshot         %s\n", snapshot);
    fprintf(f, "epoch            %s sequences from %s documents\n", cli_num(epoch_size, a, sizeof a),
            cli_num(docs, b, sizeof b));
    fprintf(f, "sequences        %s (%.1f per second)\n", cli_num(s->rows, a, sizeof a), rate);
    fprintf(f, "mean length      %.1f of %d (padding %.1f%%, truncated rows %.1f%%)\n",
            s->rows ? (double)s->tokens / (double)s->rows : 0, L,
            s->rows ? 100.0 * (double)s->pad / ((double)s->rows * L) : 0,
            pct(s->truncated_rows, s->rows));
    if (objectives & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD)) {
        fprintf(f, "masking rate     %.2f%% of tokens (%.2f%% of maskable), specials masked %" PRIu64 "\n",
                pct(s->masked, s->tokens), pct(s->masked, s->maskable), s->special_masked);
        fprintf(f, "replacements     %.1f%% [MASK] / %.1f%% unchanged / %.1f%% random\n",
                pct(s->masked_mask, s->masked), pct(s->masked_keep, s->masked),
                pct(s->masked_random, s->masked));
    }
    if (sp && (objectives & KOBJ_NGRAM))
        fprintf(f, "n-gram spans     1: %.1f%%  2: %.1f%%  3: %.1f%%  (%s spans)\n", pct(s->spans[1], sp),
                pct(s->spans[2], sp), pct(s->spans[3], sp), cli_num(sp, a, sizeof a));
    if (objectives & (KOBJ_SOP | KOBJ_NSP))
        fprintf(f, "%s labels       %.1f%% label 1 over %s labelled rows\n",
                (objectives & KOBJ_SOP) ? "sop" : "nsp", pct(s->label1, s->labelled),
                cli_num(s->labelled, a, sizeof a));
    if (objectives & KOBJ_ENTITIES)
        fprintf(f, "entities         %.2f%% of tokens, %.1f%% of rows (dEA: %.1f%% random, %.1f%% dropped;"
                " hidden under a mask %.1f%%)\n",
                pct(s->entity_tokens, s->tokens), pct(s->entity_rows, s->rows),
                pct(s->dea_random, s->entity_tokens), pct(s->dea_dropped, s->entity_tokens),
                pct(s->entities_hidden, s->entity_tokens));
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') return -1;
    *v = x;
    return 0;
}

int cmd_sample(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln sample --objective O[,O...] [--seed S] [--epoch E] [--start I] [--count N]\n"
        "                   [--seq-len L] [--shard R/N] [--format jsonl|text|null] [--stats]\n"
        "                   [--split train|valid] [--valid-fraction F] [--max-predictions P]\n"
        "                   [--mask-prob P] [--short-seq-prob P] [--max-ngram N] [--dea]\n"
        "                   [--hide-masked-entities] [--vocab NAME] [--snapshot FILE]\n"
        "                   [--threads T] [--db PATH] [--json]\n\n"
        "Prints the pretraining samples at positions START .. START+COUNT-1 of the stream\n"
        "of epoch E (docs/sampler.md). Sample i is a pure function of (seed, epoch, i,\n"
        "snapshot): --start i gives the i-th sample of a stream from 0, any thread count\n"
        "gives the same bytes, shards R/N (0 <= R < N) take positions i*N + R.\n"
        "Objectives: mlm (token masking), wwm (whole words), ngram (ALBERT n-grams),\n"
        "sop, nsp, rtd (ELECTRA inputs), clm (causal windows), entities (KG mentions;\n"
        "--dea adds ERNIE's noise; --hide-masked-entities takes the entity input from\n"
        "mentions the masking touches, their labels kept). sop/nsp/entities alone imply mlm.\n"
        "The corpus is frozen in a snapshot file made on first use next to the store\n"
        "(STORE.snapshots/); --snapshot reuses a given one.\n"
        "--format jsonl (default): one object per sequence, without padding:\n"
        "  {\"index\", \"epoch\", \"length\", \"input_ids\", \"token_type_ids\",\n"
        "   \"masked_positions\", \"masked_ids\", \"sop_label\" | \"nsp_label\",\n"
        "   \"entity_ids\", \"entity_labels\"} (keys of the objectives asked);\n"
        "--format text: the pieces, masked ones as shown{original}, '|' between segments;\n"
        "--format null: only generates (for timing).\n"
        "--stats prints masking rate, replacement split, label balance, mean length,\n"
        "padding, entity coverage and sequences per second (stdout with --format null,\n"
        "else stderr; as one JSON object with --json).\n";
    enum { O_OBJ = 1, O_SEED, O_EPOCH, O_START, O_COUNT, O_LEN, O_SHARD, O_FORMAT, O_STATS, O_SPLIT,
           O_VFRAC, O_MAXPRED, O_MASKP, O_SHORT, O_NGRAM, O_DEA, O_HIDE, O_VOCAB, O_SNAP, O_THREADS };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"objective", required_argument, 0, O_OBJ}, {"seed", required_argument, 0, O_SEED},
        {"epoch", required_argument, 0, O_EPOCH}, {"start", required_argument, 0, O_START},
        {"count", required_argument, 0, O_COUNT}, {"seq-len", required_argument, 0, O_LEN},
        {"shard", required_argument, 0, O_SHARD}, {"format", required_argument, 0, O_FORMAT},
        {"stats", no_argument, 0, O_STATS}, {"split", required_argument, 0, O_SPLIT},
        {"valid-fraction", required_argument, 0, O_VFRAC},
        {"max-predictions", required_argument, 0, O_MAXPRED},
        {"mask-prob", required_argument, 0, O_MASKP}, {"short-seq-prob", required_argument, 0, O_SHORT},
        {"max-ngram", required_argument, 0, O_NGRAM}, {"dea", no_argument, 0, O_DEA},
        {"hide-masked-entities", no_argument, 0, O_HIDE},
        {"vocab", required_argument, 0, O_VOCAB}, {"snapshot", required_argument, 0, O_SNAP},
        {"threads", required_argument, 0, O_THREADS}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    ksampler_opts o;
    ksampler_opts_defaults(&o);
    uint64_t epoch = 0, start = 0, count = 10, shard = 0, n_shards = 1;
    int format = 0, stats = 0, threads = kcpu_count(), have_obj = 0;
    const char *vocab = NULL, *snapshot = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        uint64_t v;
        switch (opt) {
        case O_OBJ:
            if (cli_objectives_parse(optarg, &o.objectives)) return cli_usage_error("sample", "--objective");
            have_obj = 1;
            break;
        case O_SEED: if (parse_u64(optarg, &o.seed)) return cli_usage_error("sample", "--seed: a number"); break;
        case O_EPOCH: if (parse_u64(optarg, &epoch)) return cli_usage_error("sample", "--epoch: a number"); break;
        case O_START: if (parse_u64(optarg, &start)) return cli_usage_error("sample", "--start: a number"); break;
        case O_COUNT: if (parse_u64(optarg, &count)) return cli_usage_error("sample", "--count: a number"); break;
        case O_LEN:
            if (parse_u64(optarg, &v) || v < 8 || v > 65536) return cli_usage_error("sample", "--seq-len: 8 to 65536");
            o.seq_len = (int)v;
            break;
        case O_SHARD:
            if (sscanf(optarg, "%" SCNu64 "/%" SCNu64, &shard, &n_shards) != 2 || n_shards < 1 ||
                n_shards > 1 << 20 || shard >= n_shards)
                return cli_usage_error("sample", "--shard: R/N with 0 <= R < N");
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "jsonl")) format = 0;
            else if (!strcmp(optarg, "text")) format = 1;
            else if (!strcmp(optarg, "null")) format = 2;
            else return cli_usage_error("sample", "--format: jsonl, text or null");
            break;
        case O_STATS: stats = 1; break;
        case O_SPLIT:
            if (!strcmp(optarg, "train")) o.split = 0;
            else if (!strcmp(optarg, "valid")) o.split = 1;
            else return cli_usage_error("sample", "--split: train or valid");
            break;
        case O_VFRAC:
            o.valid_fraction = strtod(optarg, &end);
            if (*end || !(o.valid_fraction >= 0 && o.valid_fraction < 1))
                return cli_usage_error("sample", "--valid-fraction: in [0, 1)");
            break;
        case O_MAXPRED:
            if (parse_u64(optarg, &v) || v < 1 || v > 65536) return cli_usage_error("sample", "--max-predictions");
            o.max_predictions = (int)v;
            break;
        case O_MASKP:
            o.mask_prob = strtod(optarg, &end);
            if (*end || !(o.mask_prob > 0 && o.mask_prob < 1)) return cli_usage_error("sample", "--mask-prob: in (0, 1)");
            break;
        case O_SHORT:
            o.short_seq_prob = strtod(optarg, &end);
            if (*end || !(o.short_seq_prob >= 0 && o.short_seq_prob <= 1))
                return cli_usage_error("sample", "--short-seq-prob: in [0, 1]");
            break;
        case O_NGRAM:
            if (parse_u64(optarg, &v) || v < 1 || v > 3) return cli_usage_error("sample", "--max-ngram: 1 to 3");
            o.max_ngram = (int)v;
            break;
        case O_DEA: o.dea = 1; break;
        case O_HIDE: o.hide_masked_entities = 1; break;
        case O_VOCAB: vocab = optarg; break;
        case O_SNAP: snapshot = optarg; break;
        case O_THREADS:
            if (parse_u64(optarg, &v) || v < 1 || v > 256) return cli_usage_error("sample", "--threads: 1 to 256");
            threads = (int)v;
            break;
        default: return cli_usage_error("sample", "bad option");
        }
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (optind < argc) return cli_usage_error("sample", "unexpected argument '%s'", argv[optind]);
    if (!have_obj) return cli_usage_error("sample", "--objective is required");
    if (o.max_predictions > o.seq_len) return cli_usage_error("sample", "--max-predictions exceeds --seq-len");

    cli_sampling x;
    int rc = cli_sampling_open(&c, vocab, snapshot, &x);
    if (rc) return rc;
    if ((rc = cli_sampling_check_objectives(&x, o.objectives))) {
        cli_sampling_close(&x);
        return rc;
    }
    cli_sampling_apply(&x, &o);
    char err[512];
    ksampler *sp = ksampler_open(x.snap, &o, err, sizeof err);
    if (!sp) {
        kerr("%s", err);
        cli_sampling_close(&x);
        return EX_DATAERR;
    }
    cli_catch_stop_signals();
    /* the stream: batches of up to 64 rows; the last one is cut to count */
    int B = 64;
    ksampler_stream *st = count ? ksampler_stream_new(sp, epoch, start, B, (int)shard, (int)n_shards,
                                                      threads, 2 * threads + 2, err, sizeof err)
                                : NULL;
    if (count && !st) {
        kerr("%s", err);
        ksampler_close(sp);
        cli_sampling_close(&x);
        return EX_OSERR;
    }
    ksample_stats total;
    memset(&total, 0, sizeof total);
    kbuf out = {0};
    cli_progress pr;
    cli_progress_init(&pr, c.json || format != 2);
    double t0 = know_seconds(), last = t0;
    uint64_t done = 0;
    ksample_batch *part = NULL;   /* the last, partial batch: made here, not by the stream */
    while (done < count && !cli_stop) {
        ksample_stats bs;
        memset(&bs, 0, sizeof bs);
        const ksample_batch *b;
        int use = B;
        if (count - done >= (uint64_t)B) {
            b = ksampler_stream_next(st, &bs);
        } else {
            use = (int)(count - done);
            part = ksampler_batch_new(sp, use);
            ksampler_fill(sp, epoch, (start + done) * n_shards + shard, n_shards, use, part, &bs);
            b = part;
        }
        stats_add(&total, &bs);
        if (format != 2) {
            for (int r = 0; r < use; r++) {
                if (format == 0) row_jsonl(&out, b, r, ksampler_epoch_size(sp), epoch);
                else row_text(&out, b, r, x.tk);
            }
            if (out.len > (1 << 20)) {
                if (fwrite(out.data, 1, out.len, stdout) != out.len) break;
                kbuf_clear(&out);
            }
        }
        done += (uint64_t)use;
        double now = know_seconds();
        if (pr.on && now - last > 0.25) {
            last = now;
            char line[200], a[32], bb[32];
            double rate = (double)done / (now - t0), eta = rate > 0 ? (double)(count - done) / rate : 0;
            snprintf(line, sizeof line, "sampled %s / %s  %.0f seq/s  ETA %d:%02d", cli_num(done, a, sizeof a),
                     cli_num(count, bb, sizeof bb), rate, (int)(eta / 60), (int)eta % 60);
            cli_progress_line(&pr, line);
        }
    }
    double secs = know_seconds() - t0;
    cli_progress_done(&pr);
    if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len) rc = EX_IOERR;
    if (fflush(stdout)) rc = EX_IOERR;
    if (rc == EX_IOERR) kerr("writing the samples: %s", strerror(errno));
    kbuf_free(&out);
    ksampler_batch_free(part);
    ksampler_stream_free(st);
    if (stats && !rc) print_stats(format == 2 ? stdout : stderr, &total, o.seq_len, secs, c.json, o.objectives,
                    ksampler_epoch_size(sp), ksampler_split_docs(sp), x.snapshot_path);
    ksampler_close(sp);
    cli_sampling_close(&x);
    if (!rc && cli_stop) rc = 128 + cli_stop;
    return rc;
}
