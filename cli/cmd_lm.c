/* cmd_lm.c: the causal language model's commands (GPT-2 checkpoints):
 * `kiln generate` (prompting with a key/value cache, trainer/generate.h)
 * and `kiln eval --perplexity` / `kiln eval --fewshot` (sliding-window
 * perplexity of a text file; in-context classification and multiple
 * choice scored by the likelihood of each candidate answer, as GPT-3's
 * paper and lm-evaluation-harness do). docs/generate.md has the details.
 *
 * Every prompt and every text is encoded with the checkpoint's own
 * byte-level BPE vocabulary (vocab.json + merges.txt in the checkpoint). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "text/bpe.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/generate.h"
#include "trainer/kernels.h"
#include "trainer/model.h"
#include "util/util.h"

void openblas_set_num_threads(int);

/* ---- the model of a GPT-2 checkpoint ------------------------------------------------ */

typedef struct lm {
    kckpt *ck;
    ktrain_config cfg;
    kbpe_vocab *bv;
    kbpe_tok *tok;
    kmodel *m;
    kgen *g;
    int V, ctx;          /* vocabulary, positions (n_positions) */
    int64_t eot;         /* <|endoftext|>, -1 when the vocabulary has none */
} lm;

static void lm_close(lm *x)
{
    kgen_free(x->g);
    kmodel_free(x->m);
    kbpe_tok_free(x->tok);
    kbpe_vocab_free(x->bv);
    kckpt_close(x->ck);
    memset(x, 0, sizeof *x);
}

/* Opens checkpoint arg (a step folder or a run's checkpoint.dir) as a GPT-2
 * decoder. Logs and returns EX_* on failure (x then holds nothing). */
static int lm_open(const char *arg, lm *x)
{
    memset(x, 0, sizeof *x);
    int mode, rc = cli_open_checkpoint(arg, &x->ck, &x->cfg, &mode);
    if (rc) return rc;
    char err[1024];
    if (x->cfg.model.type != KMODEL_GPT2) {
        kerr("%s: not a causal model (model.type is not gpt2): generate and eval --perplexity / --fewshot need a "
             "GPT-2 checkpoint",
             kckpt_path(x->ck));
        lm_close(x);
        return EX_DATAERR;
    }
    if ((rc = cli_checkpoint_bpe(x->ck, &x->cfg.model, &x->bv, err, sizeof err))) {
        kerr("%s", err);
        lm_close(x);
        return rc;
    }
    x->tok = kbpe_tok_new(x->bv);
    x->V = x->cfg.model.vocab_size;
    x->ctx = x->cfg.model.max_position_embeddings;
    x->eot = kbpe_vocab_eot(x->bv);
    kmodel_spec sp = kmodel_spec_pretrain_of(&x->cfg.model, 1, 8, 0, 0);
    sp.inference = 1;
    x->m = kmodel_create(&x->cfg.model, &sp, err, sizeof err);
    if (!x->m) {
        kerr("%s: model: %s", kckpt_path(x->ck), err);
        rc = strstr(err, "out of memory") ? EX_OSERR : EX_DATAERR;
        lm_close(x);
        return rc;
    }
    if ((rc = cli_load_weights(x->m, x->ck))) {
        lm_close(x);
        return rc;
    }
    x->g = kgen_new(x->m, x->ctx, err, sizeof err);
    if (!x->g) {
        kerr("%s: %s", kckpt_path(x->ck), err);
        rc = strstr(err, "out of memory") ? EX_OSERR : EX_SOFTWARE;
        lm_close(x);
        return rc;
    }
    return 0;
}

/* text -> ids (appended to out) */
static void lm_encode(lm *x, const char *s, size_t n, kwp_ids *out) { kbpe_encode(x->tok, s, n, out); }

/* Appends id to a kwp_ids (word_start unused here). */
static void ids_push(kwp_ids *x, uint32_t id)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->ids = xrealloc(x->ids, x->cap * sizeof *x->ids);
        x->word_start = xrealloc(x->word_start, x->cap * sizeof *x->word_start);
    }
    x->word_start[x->n] = 1;
    x->ids[x->n++] = id;
}

/* ---- kiln generate ------------------------------------------------------------------ */

typedef struct gen_opts {
    kgen_sampling s;
    int max_new;
    uint64_t seed;
    const char **stops;   /* (n_stops) stop strings */
    int n_stops;
    const char *tmpl;     /* template text with {prompt}, or NULL */
    int json;
    /* timings over the prompts, for the closing info line: prefill = the
     * prompt's feed and the first draw, decode = every later token (its feed
     * and draw); as bench/gpt/torch_gpt.py times PyTorch */
    double prefill_s, decode_s;
    int64_t prefill_tokens, decode_tokens;
} gen_opts;

enum { STOP_LENGTH = 0, STOP_EOT, STOP_STRING, STOP_CONTEXT };
static const char *const stop_names[] = {"max_new_tokens", "eot", "stop_string", "context"};

/* Generates the continuation of one prompt; prints it. Returns 0 or EX_*. */
static int generate_one(lm *x, gen_opts *o, const char *prompt, void *scratch)
{
    kbuf full = {0};
    if (o->tmpl) {
        const char *at = strstr(o->tmpl, "{prompt}");
        kbuf_append(&full, o->tmpl, (size_t)(at - o->tmpl));
        kbuf_puts(&full, prompt);
        kbuf_puts(&full, at + 8);
    } else {
        kbuf_puts(&full, prompt);
    }
    kwp_ids ids = {0};
    if (full.len) lm_encode(x, full.data, full.len, &ids);
    if (ids.n == 0) { /* an empty prompt starts after <|endoftext|>, as GPT-2's unconditional samples */
        if (x->eot < 0) {
            kerr("an empty prompt needs <|endoftext|> in the vocabulary to start from");
            kbuf_free(&full);
            kwp_ids_free(&ids);
            return EX_DATAERR;
        }
        ids_push(&ids, (uint32_t)x->eot);
    }
    /* The context holds n_positions = C tokens, and the n-th new token needs
     * P + n - 1 <= C. A prompt of P tokens that leaves no room for
     * max_new_tokens N keeps its last max(C + 1 - N, C / 2) tokens (at most C):
     * room for the N new ones (lm-evaluation-harness's cut for generation), but
     * never less than half the context for the prompt. */
    const size_t C = (size_t)x->ctx, N = o->max_new > 1 ? (size_t)o->max_new : 1;
    size_t room = ids.n;
    if (ids.n + N - 1 > C) {
        room = N < C + 1 - C / 2 ? C + 1 - N : C / 2; /* max(C + 1 - N, C / 2), <= C as N >= 1 */
        if (room < 1) room = 1;
        if (room > ids.n) room = ids.n;
    }
    size_t skip = ids.n - room;
    if (skip)
        kwarn("prompt of %zu tokens: its first %zu are dropped (the model reads %d positions; %d new tokens asked)", ids.n,
              skip, x->ctx, o->max_new);
    kgen_reset(x->g);
    double t0 = know_seconds(), t1 = t0;
    int rc = kgen_feed(x->g, (const int32_t *)ids.ids + skip, (int)(ids.n - skip), NULL);
    if (rc) {
        kerr("%s", kgen_error(x->g));
        kbuf_free(&full);
        kwp_ids_free(&ids);
        return rc;
    }
    int32_t *out = xmalloc(((size_t)o->max_new + 1) * sizeof *out);
    double *lp = xmalloc(((size_t)o->max_new + 1) * sizeof *lp);
    int n = 0, why = STOP_LENGTH;
    kbuf text = {0};
    size_t cut = (size_t)-1;
    while (n < o->max_new) {
        int32_t id = kgen_sample(kgen_logits(x->g), x->V, &o->s, o->seed, (uint64_t)n, &lp[n], scratch);
        out[n++] = id;
        if (n == 1) t1 = know_seconds();
        if (id == x->eot) {
            why = STOP_EOT;
            break;
        }
        uint32_t u = (uint32_t)id;
        size_t before = text.len;
        kbpe_decode(x->bv, &u, 1, &text);
        if (o->n_stops) {
            /* a new match ends in the new token's bytes: search from there back */
            for (int k = 0; k < o->n_stops; k++) {
                size_t sl = strlen(o->stops[k]), from = before + 1 > sl ? before + 1 - sl : 0;
                const char *hit = text.len > from ? memmem(text.data + from, text.len - from, o->stops[k], sl) : NULL;
                if (hit && (size_t)(hit - text.data) < cut) cut = (size_t)(hit - text.data);
            }
            if (cut != (size_t)-1) {
                why = STOP_STRING;
                break;
            }
        }
        if (n == o->max_new) break;
        if (kgen_len(x->g) >= x->ctx) {
            why = STOP_CONTEXT;
            break;
        }
        if ((rc = kgen_feed(x->g, &id, 1, NULL))) {
            kerr("%s", kgen_error(x->g));
            break;
        }
        if (cli_stop) break;
    }
    const double t2 = know_seconds();
    o->prefill_s += t1 - t0;
    o->prefill_tokens += (int64_t)(ids.n - skip);
    if (n > 1) {
        o->decode_s += t2 - t1;
        o->decode_tokens += n - 1;
    }
    if (!rc) {
        size_t tl = cut == (size_t)-1 ? text.len : cut;
        kbuf line = {0};
        if (o->json) {
            kbuf rep = {0};
            kbuf_puts(&line, "{\"prompt\":");
            kbuf_put_utf8(&rep, prompt, strlen(prompt), 0); /* GPT2Tokenizer's errors="replace" */
            kbuf_json_str(&line, rep.data ? rep.data : "", rep.len);
            kbuf_puts(&line, ",\"ids\":[");
            for (int i = 0; i < n; i++) kbuf_printf(&line, i ? ",%d" : "%d", out[i]);
            kbuf_puts(&line, "],\"text\":");
            kbuf_clear(&rep);
            kbuf_put_utf8(&rep, text.data ? text.data : "", tl, 0);
            kbuf_json_str(&line, rep.data ? rep.data : "", rep.len);
            kbuf_puts(&line, ",\"logprobs\":[");
            for (int i = 0; i < n; i++) kbuf_printf(&line, i ? ",%.9g" : "%.9g", lp[i]);
            kbuf_printf(&line, "],\"prompt_tokens\":%zu,\"stop\":\"%s\"}\n", ids.n - skip, stop_names[why]);
            kbuf_free(&rep);
        } else {
            /* the prompt and its continuation, as bytes; a blank line between prompts */
            kbuf_puts(&line, full.data ? full.data : "");
            kbuf_append(&line, text.data ? text.data : "", tl);
            kbuf_puts(&line, "\n");
        }
        if (fwrite(line.data, 1, line.len, stdout) != line.len || fflush(stdout)) {
            kerr("writing the output: %s", strerror(errno));
            rc = EX_IOERR;
        }
        kbuf_free(&line);
    }
    free(out);
    free(lp);
    kbuf_free(&text);
    kbuf_free(&full);
    kwp_ids_free(&ids);
    return rc;
}

static int parse_num(const char *cmd, const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !(v >= lo && v <= hi)) return cli_usage_error(cmd, "%s: a number in [%g, %g]", name, lo, hi);
    *out = v;
    return 0;
}

int cmd_generate(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln generate --checkpoint C [--max-new-tokens N] [--temperature T]\n"
        "                     [--top-k K] [--top-p P] [--seed S] [--greedy] [--stop STR]...\n"
        "                     [--template FILE] [--prompt-file FILE] [--threads N]\n"
        "                     [--precision fp32|bf16] [--json] [PROMPT...]\n\n"
        "Continues each PROMPT (or each line of standard input when none is given, or the\n"
        "whole of --prompt-file) with a GPT-2 checkpoint's model: incremental decoding\n"
        "with a key/value cache, token by token, until <|endoftext|>, a --stop string,\n"
        "--max-new-tokens (default 50) or the model's n_positions.\n"
        "Sampling: softmax(logits / T) (T default 1), cut to the K most likely (--top-k,\n"
        "0 = off) and then to the smallest set of mass >= P (--top-p, 1 = off);\n"
        "--greedy takes the most likely token. Draw n of a prompt is a pure function\n"
        "of (--seed, n): the same seed gives the same text on any machine.\n"
        "--template FILE: the prompt is FILE's text with {prompt} replaced by each\n"
        "PROMPT (e.g. an article and \"\\nTL;DR:\" for a zero-shot summary). An empty\n"
        "prompt starts after <|endoftext|>. A prompt too long for the model's context\n"
        "and --max-new-tokens keeps its last tokens, leaving room for the new ones but\n"
        "at least half the context for itself (said on stderr).\n"
        "Output: the prompt and its continuation, one per line; --json: one object a\n"
        "prompt {\"prompt\", \"ids\", \"text\", \"logprobs\", \"prompt_tokens\", \"stop\"}: ids,\n"
        "text and log-probabilities (under the model at temperature 1) of the new\n"
        "tokens only; text ends before a stop string; stop is max_new_tokens, eot,\n"
        "stop_string or context.\n"
        "--precision bf16 (default fp32): the products' weights in bfloat16 and the CPU's\n"
        "VDPBF16PS dot products (AVX512_BF16; elsewhere refused, exit 69): about half\n"
        "the bytes read per token, logits within bf16 rounding of fp32's (greedy ids may\n"
        "then differ from fp32's and from transformers'). docs/generate.md.\n";
    enum { O_CKPT = 1, O_MAX, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_GREEDY, O_STOP, O_TMPL, O_PFILE, O_THREADS, O_PREC };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"checkpoint", required_argument, 0, O_CKPT},
                                       {"max-new-tokens", required_argument, 0, O_MAX},
                                       {"temperature", required_argument, 0, O_TEMP},
                                       {"top-k", required_argument, 0, O_TOPK},
                                       {"top-p", required_argument, 0, O_TOPP},
                                       {"seed", required_argument, 0, O_SEED},
                                       {"greedy", no_argument, 0, O_GREEDY},
                                       {"stop", required_argument, 0, O_STOP},
                                       {"template", required_argument, 0, O_TMPL},
                                       {"prompt-file", required_argument, 0, O_PFILE},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"precision", required_argument, 0, O_PREC},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int bf16 = 0;
    gen_opts o;
    memset(&o, 0, sizeof o);
    kgen_sampling_defaults(&o.s);
    o.max_new = 50;
    const char *ckpt = NULL, *tmpl_path = NULL, *pfile = NULL;
    const char **stops = xcalloc((size_t)argc + 1, sizeof *stops);
    int threads = 0, opt;
    double v = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        int bad = 0;
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_MAX: if (!(bad = parse_num("generate", "--max-new-tokens", optarg, 0, 1 << 20, &v))) o.max_new = (int)v; break;
        case O_TEMP:
            if (!(bad = parse_num("generate", "--temperature", optarg, 1e-6, 1e6, &v))) o.s.temperature = v;
            break;
        case O_TOPK: if (!(bad = parse_num("generate", "--top-k", optarg, 0, 1 << 30, &v))) o.s.top_k = (int)v; break;
        case O_TOPP: if (!(bad = parse_num("generate", "--top-p", optarg, 1e-9, 1, &v))) o.s.top_p = v; break;
        case O_SEED: {
            char *end;
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (*end || errno || *optarg == '-') bad = cli_usage_error("generate", "--seed: an integer >= 0");
            break;
        }
        case O_GREEDY: o.s.greedy = 1; break;
        case O_STOP:
            if (!*optarg) bad = cli_usage_error("generate", "--stop: a non-empty string");
            else stops[o.n_stops++] = optarg;
            break;
        case O_TMPL: tmpl_path = optarg; break;
        case O_PFILE: pfile = optarg; break;
        case O_THREADS: if (!(bad = parse_num("generate", "--threads", optarg, 1, 1024, &v))) threads = (int)v; break;
        case O_PREC: {
            int p = kprecision_parse(optarg); /* the run config's names; no auto here: fp32 is the default */
            if (p == KPRECISION_BF16 || p == KPRECISION_FP32) bf16 = p == KPRECISION_BF16;
            else bad = cli_usage_error("generate", "--precision: fp32 or bf16");
            break;
        }
        default: bad = cli_usage_error("generate", "bad option");
        }
        if (bad) {
            free(stops);
            return bad;
        }
    }
    if (c.help) {
        fputs(usage, stdout);
        free(stops);
        return 0;
    }
    if (!ckpt) {
        free(stops);
        return cli_usage_error("generate", "--checkpoint is required");
    }
    if (pfile && optind < argc) {
        free(stops);
        return cli_usage_error("generate", "--prompt-file or PROMPT arguments, not both");
    }
    o.stops = stops;
    o.json = c.json;
    kbuf tmpl = {0}, pf = {0};
    int rc = 0;
    if (tmpl_path) {
        int e = kbuf_read_file(&tmpl, tmpl_path);
        if (e) {
            kerr("%s: %s", tmpl_path, strerror(e));
            rc = EX_NOINPUT;
        } else if (!tmpl.data || !strstr(tmpl.data, "{prompt}")) {
            kerr("%s: a template must hold {prompt} where the prompt goes", tmpl_path);
            rc = EX_DATAERR;
        }
        o.tmpl = tmpl.data;
    }
    if (!rc && pfile) {
        int e = kbuf_read_file(&pf, pfile);
        if (e) {
            kerr("%s: %s", pfile, strerror(e));
            rc = EX_NOINPUT;
        } else if (pf.len && memchr(pf.data, 0, pf.len)) {
            kerr("%s: holds a NUL byte (a prompt is text)", pfile);
            rc = EX_DATAERR;
        }
    }
    lm x;
    if (!rc) rc = lm_open(ckpt, &x);
    if (!rc && bf16) {
        char err[256];
        if ((rc = kgen_use_bf16(x.g, err, sizeof err))) {
            kerr("--precision bf16: %s", err);
            lm_close(&x);
        } else {
            kinfo("precision bf16: weights and products in bfloat16 (VDPBF16PS), the rest in fp32");
        }
    }
    if (rc) {
        kbuf_free(&tmpl);
        kbuf_free(&pf);
        free(stops);
        return rc;
    }
    cli_set_threads(threads);
    cli_catch_stop_signals();
    void *scratch = xmalloc((size_t)x.V * (2 * sizeof(float) + sizeof(int)));
    if (pfile) {
        rc = generate_one(&x, &o, pf.data ? pf.data : "", scratch);
    } else if (optind < argc) {
        for (int i = optind; i < argc && !rc && !cli_stop; i++) rc = generate_one(&x, &o, argv[i], scratch);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        while (!rc && !cli_stop && (got = getline(&line, &cap, stdin)) >= 0) {
            if (got && line[got - 1] == '\n') line[--got] = '\0';
            if (got && line[got - 1] == '\r') line[--got] = '\0';
            rc = generate_one(&x, &o, line, scratch);
        }
        free(line);
    }
    free(scratch);
    lm_close(&x);
    const int nt = omp_get_max_threads();
    if (!rc && o.prefill_tokens)
        kinfo("prefill: %lld prompt tokens in %.3f s; decode: %lld tokens in %.3f s (%.1f tokens/s); %d thread%s",
              (long long)o.prefill_tokens, o.prefill_s, (long long)o.decode_tokens, o.decode_s,
              o.decode_s > 0 ? (double)o.decode_tokens / o.decode_s : 0.0, nt, nt == 1 ? "" : "s");
    kbuf_free(&tmpl);
    kbuf_free(&pf);
    free(stops);
    if (!rc && cli_stop) rc = 128 + cli_stop;
    return rc;
}

/* ---- kiln eval --perplexity ----------------------------------------------------------- */

/* Sum of -log p(ids[t] | ids[b..t)) over t in [from, e) for the window
 * ids[b..e), fed in pieces of at most `chunk` positions (same bytes as one
 * feed), added in t order; a row's log-probability and greedy id (both from
 * kgen_logprob) are computed by the threads, a row each. logits: (chunk,
 * V) scratch; lp: (chunk) doubles; best: (chunk) ids. */
static int window_nll(lm *x, const int32_t *ids, size_t b, size_t e, size_t from, int chunk, float *logits,
                      double *lp, int32_t *best, double *nll, int64_t *count, int64_t *correct)
{
    kgen_reset(x->g);
    for (size_t p = b; p < e; p += (size_t)chunk) {
        size_t q = p + (size_t)chunk < e ? p + (size_t)chunk : e;
        int rc = kgen_feed(x->g, ids + p, (int)(q - p), logits);
        if (rc) {
            kerr("%s", kgen_error(x->g));
            return rc;
        }
        const long n = (long)(q - p);
#pragma omp parallel for schedule(static) if (n > 1)
        for (long i = 0; i < n; i++) {
            const size_t target = p + (size_t)i + 1; /* row t = p + i predicts token t + 1 */
            if (target < from || target >= e) continue;
            const float *row = logits + (size_t)i * (size_t)x->V;
            lp[i] = kgen_logprob(row, x->V, ids[target], &best[i]);
        }
        for (size_t t = p; t < q; t++) {
            size_t target = t + 1;
            if (target < from || target >= e) continue;
            *nll -= lp[t - p];
            (*count)++;
            if (best[t - p] == ids[target]) (*correct)++;
        }
    }
    return 0;
}

static int eval_perplexity(lm *x, const char *path, int window, int stride, int json)
{
    kbuf text = {0};
    int e = kbuf_read_file(&text, path);
    if (e) {
        kerr("%s: %s", path, strerror(e));
        return EX_NOINPUT;
    }
    double t0 = know_seconds();
    kwp_ids ids = {0};
    if (text.len) lm_encode(x, text.data, text.len, &ids);
    size_t bytes = text.len;
    kbuf_free(&text);
    if (ids.n < 2) {
        kerr("%s: %zu token(s): perplexity needs at least 2", path, ids.n);
        kwp_ids_free(&ids);
        return EX_DATAERR;
    }
    double t_enc = know_seconds() - t0;
    if (window > x->ctx) kinfo("--window %d is more than the model's %d positions: windows of %d", window, x->ctx, x->ctx);
    if (window <= 0 || window > x->ctx) window = x->ctx;
    if (stride > window) kinfo("--stride %d is more than the window (%d): stride %d", stride, window, window);
    if (stride <= 0) stride = window / 2 > 0 ? window / 2 : 1;
    if (stride > window) stride = window;
    const int chunk = 64;
    float *logits = xmalloc((size_t)chunk * (size_t)x->V * sizeof *logits);
    double *lp = xmalloc((size_t)chunk * sizeof *lp);
    int32_t *best = xmalloc((size_t)chunk * sizeof *best);
    double nll = 0;
    int64_t count = 0, correct = 0, windows = 0;
    double fed = 0; /* positions the model read (windows overlap by window - stride) */
    const int32_t *id = (const int32_t *)ids.ids;
    size_t n = ids.n, prev_end = 0;
    int rc = 0;
    cli_progress pr;
    cli_progress_init(&pr, json);
    double t1 = know_seconds(), last = t1;
    /* HF's sliding window: windows start every `stride` tokens; each token is
     * scored once, in the first window that reaches it, with that window's
     * context (the first token of the file has none and is not scored) */
    for (size_t b = 0; !rc; b += (size_t)stride) {
        size_t end = b + (size_t)window < n ? b + (size_t)window : n;
        size_t from = prev_end > b + 1 ? prev_end : b + 1;
        rc = window_nll(x, id, b, end, from, chunk, logits, lp, best, &nll, &count, &correct);
        windows++;
        fed += (double)(end - b);
        prev_end = end;
        double now = know_seconds();
        if (pr.on && now - last > 0.25) {
            last = now;
            char line[160];
            double rate = (double)end / (now - t1), eta = rate > 0 ? (double)(n - end) / rate : 0;
            snprintf(line, sizeof line, "perplexity: %zu / %zu tokens  ppl %.2f  %.0f tokens/s  ETA %d:%02d", end, n,
                     exp(nll / (double)(count ? count : 1)), rate, (int)(eta / 60), (int)eta % 60);
            cli_progress_line(&pr, line);
        }
        if (end == n || cli_stop) break;
    }
    cli_progress_done(&pr);
    double secs = know_seconds() - t1;
    free(logits);
    free(lp);
    free(best);
    kwp_ids_free(&ids);
    if (rc) return rc;
    if (cli_stop) return 128 + cli_stop;
    double mean = nll / (double)count, ppl = exp(mean);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "file", cli_json_str(path));
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
        json_object_set_new(o, "tokens", json_integer((json_int_t)n));
        json_object_set_new(o, "scored", json_integer(count));
        json_object_set_new(o, "window", json_integer(window));
        json_object_set_new(o, "stride", json_integer(stride));
        json_object_set_new(o, "windows", json_integer(windows));
        json_object_set_new(o, "nll", cli_json_num(mean));
        json_object_set_new(o, "perplexity", cli_json_num(ppl));
        json_object_set_new(o, "bits_per_byte", cli_json_num(nll / log(2.0) / (double)bytes));
        json_object_set_new(o, "accuracy", cli_json_num((double)correct / (double)count));
        json_object_set_new(o, "seconds", cli_json_num(secs));
        json_object_set_new(o, "encode_seconds", cli_json_num(t_enc));
        json_object_set_new(o, "tokens_per_s", cli_json_num(fed / secs));
        cli_json_print(o, 1);
    } else {
        printf("%s: %zu tokens (%zu scored), window %d, stride %d: perplexity %.4f (mean NLL %.4f nats, %.4f bits "
               "per byte), next-token accuracy %.2f%%; %.0f tokens/s\n",
               path, n, (size_t)count, window, stride, ppl, mean, nll / log(2.0) / (double)bytes,
               100.0 * (double)correct / (double)count, fed / secs);
    }
    return 0;
}

/* ---- kiln eval --fewshot ---------------------------------------------------------------- */

/* A task file (JSON; docs/generate.md, "Few-shot tasks"):
 *   {"train": PATH, "eval": PATH,                 TSV (header), JSONL or a JSON array, relative to the task file
 *    "template": "Review: {sentence}\nSentiment:", fields in braces (a.b: field b of object a; a.0: a list's first)
 *    "separator": "\n\n",                         between the examples of the prompt
 *    "target_delimiter": "",                      between a prompt and its answer
 *    classification:   "label": "label", "choices": {"0": " negative", "1": " positive"}
 *                      (or a list of answers, the label their index)
 *    multiple choice:  "choices_field": "endings"  (each record's list of answers: strings, or objects with
 *                      "text" and "label"; or one object of two lists, "text" and "label")
 *                      or "choices": ["{sol1}", "{sol2}"]  (templates filled with the record)
 *                      and "gold_field": "label", "gold": "auto" | "index" | "index1" | "text" | "letter"
 *    "limit": N}                                  first N eval examples (0 = all) */
typedef struct fs_example {
    char *prompt;          /* the template filled */
    char **choices;        /* (n_choices) candidate answers (target_delimiter included) */
    int n_choices;
    int gold;              /* index into choices */
} fs_example;

typedef struct fs_task {
    char name[256];
    fs_example *train, *eval;
    size_t n_train, n_eval;
    char *separator;
} fs_task;

static void fs_free_examples(fs_example *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].prompt);
        for (int k = 0; k < e[i].n_choices; k++) free(e[i].choices[k]);
        free(e[i].choices);
    }
    free(e);
}

static void fs_free(fs_task *t)
{
    fs_free_examples(t->train, t->n_train);
    fs_free_examples(t->eval, t->n_eval);
    free(t->separator);
    memset(t, 0, sizeof *t);
}

/* The record's field NAME: the key itself when the record has it, else a
 * path of keys joined by dots ("question.stem"; a number indexes a list:
 * "choices.0"). Borrowed; NULL when absent. */
static json_t *field_get(json_t *rec, const char *name)
{
    json_t *v = json_object_get(rec, name);
    if (v || !strchr(name, '.')) return v;
    v = rec;
    for (const char *p = name; v && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char key[256];
        if (n == 0 || n >= sizeof key) return NULL;
        memcpy(key, p, n);
        key[n] = 0;
        if (json_is_object(v)) {
            v = json_object_get(v, key);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long i = strtoul(key, &end, 10);
            v = (*end || key[0] < '0' || key[0] > '9') ? NULL : json_array_get(v, i);
        } else {
            return NULL;
        }
        p += n + (dot != NULL);
    }
    return v;
}

/* A field's value as text (strings as they are, numbers and booleans as JSON
 * writes them), NULL when absent. Owned. */
static char *field_text(json_t *v)
{
    if (!v || json_is_null(v)) return NULL;
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
        return xstrdup(b);
    }
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* Fills template t with the record's fields ({name}; "{{" and "}}" are
 * literal braces). 0, or EX_DATAERR with err naming the missing field. */
static int fill_template(const char *t, json_t *rec, kbuf *out, char *err, size_t errlen)
{
    for (const char *p = t; *p;) {
        if (p[0] == '{' && p[1] == '{') { kbuf_putc(out, '{'); p += 2; continue; }
        if (p[0] == '}' && p[1] == '}') { kbuf_putc(out, '}'); p += 2; continue; }
        if (*p != '{') { kbuf_putc(out, *p++); continue; }
        const char *q = strchr(p, '}');
        if (!q) {
            snprintf(err, errlen, "the template has an unclosed {");
            return EX_DATAERR;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(q - p - 1), p + 1);
        char *v = field_text(field_get(rec, name));
        if (!v) {
            snprintf(err, errlen, "no field \"%s\" (the template names it)", name);
            return EX_DATAERR;
        }
        kbuf_puts(out, v);
        free(v);
        p = q + 1;
    }
    return 0;
}

/* Reads a TSV (header line, QUOTE_NONE), JSONL or JSON-array file (.jsonl,
 * .json, .ndjson; one whose first non-blank byte is "[" is one array of
 * records) as JSON objects (a TSV's fields as strings). Returns the array
 * (owned) or NULL with the error logged (*rc). */
static json_t *read_records(const char *path, int *rc)
{
    kbuf b = {0};
    int e = kbuf_read_file(&b, path);
    if (e) {
        kerr("%s: %s", path, strerror(e));
        *rc = EX_NOINPUT;
        return NULL;
    }
    if (b.len && !kutf8_valid(b.data, b.len)) {
        kerr("%s: not valid UTF-8", path);
        kbuf_free(&b);
        *rc = EX_DATAERR;
        return NULL;
    }
    size_t n = strlen(path);
    int jsonl = (n > 6 && !strcmp(path + n - 6, ".jsonl")) || (n > 5 && !strcmp(path + n - 5, ".json")) ||
                (n > 7 && !strcmp(path + n - 7, ".ndjson"));
    json_t *arr = json_array();
    char *s = b.data ? b.data : "", *end = s + b.len;
    if (b.len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3;
    json_t *header = NULL;
    int lineno = 0;
    *rc = 0;
    const char *first = s;
    while (first < end && (*first == ' ' || *first == '\t' || *first == '\r' || *first == '\n')) first++;
    if (jsonl && first < end && *first == '[') { /* one JSON array of records */
        json_error_t je;
        json_t *all = json_loadb(first, (size_t)(end - first), 0, &je);
        if (!all) {
            kerr("%s:%d:%d: %s", path, je.line, je.column, je.text);
            *rc = EX_DATAERR;
        }
        for (size_t i = 0; all && i < json_array_size(all) && !*rc; i++) {
            json_t *o = json_array_get(all, i);
            if (!json_is_object(o)) {
                kerr("%s: record %zu of the array: not a JSON object", path, i + 1);
                *rc = EX_DATAERR;
            } else {
                json_array_append(arr, o);
            }
        }
        json_decref(all);
        s = end;
    }
    while (s < end && !*rc) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *le = nl ? nl : end;
        lineno++;
        size_t len = (size_t)(le - s);
        if (len && s[len - 1] == '\r') len--;
        if (len == 0) {
            s = le + 1;
            continue;
        }
        if (jsonl) {
            json_error_t je;
            json_t *o = json_loadb(s, len, 0, &je);
            if (!json_is_object(o)) {
                kerr("%s:%d: not a JSON object%s%s", path, lineno, o ? "" : ": ", o ? "" : je.text);
                json_decref(o);
                *rc = EX_DATAERR;
            } else {
                json_array_append_new(arr, o);
            }
        } else {
            json_t *fields = json_array();
            for (size_t a = 0;;) {
                size_t z = a;
                while (z < len && s[z] != '\t') z++;
                json_array_append_new(fields, json_stringn(s + a, z - a));
                if (z >= len) break;
                a = z + 1;
            }
            if (!header) {
                header = fields;
            } else if (json_array_size(fields) != json_array_size(header)) {
                kerr("%s:%d: %zu fields, the header has %zu", path, lineno, json_array_size(fields),
                     json_array_size(header));
                json_decref(fields);
                *rc = EX_DATAERR;
            } else {
                json_t *o = json_object();
                for (size_t k = 0; k < json_array_size(fields); k++)
                    json_object_set(o, json_string_value(json_array_get(header, k)), json_array_get(fields, k));
                json_array_append_new(arr, o);
                json_decref(fields);
            }
        }
        s = le + 1;
    }
    json_decref(header);
    kbuf_free(&b);
    if (!*rc && json_array_size(arr) == 0) {
        kerr("%s: no examples", path);
        *rc = EX_DATAERR;
    }
    if (*rc) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

/* Where a multiple-choice record's gold answer is (the task's "gold"; the
 * names in enum order). */
enum { GOLD_AUTO, GOLD_INDEX, GOLD_INDEX1, GOLD_TEXT, GOLD_LETTER };
static const char *const gold_modes[] = {"auto", "index", "index1", "text", "letter"};

/* The mode named gm (NULL: auto), or -1 for an unknown name. */
static int gold_mode(const char *gm)
{
    for (int i = 0; i < (int)(sizeof gold_modes / sizeof *gold_modes); i++)
        if (!gm || !strcmp(gm, gold_modes[i])) return i;
    return -1;
}

/* delim + answer, owned: a candidate as it is scored. */
static char *with_delim(const char *delim, const char *answer)
{
    kbuf a = {0};
    kbuf_puts(&a, delim);
    kbuf_puts(&a, answer);
    return a.data ? a.data : xstrdup("");
}

/* The gold answer's index among the n answers (texts without the target
 * delimiter; labels: each answer's own label or NULL) for the gold field's
 * value g under mode, or -1.
 *   index / index1: a number or a string of digits, 0- or 1-based;
 *   text: a string equal to one answer; letter: "A" (or "a") is the first;
 *   auto: a JSON number is an index; a string is an answer's label, else an
 *   answer's text, else a 0-based index in digits, else a letter. */
static int gold_index(json_t *g, int mode, char **texts, char **labels, int n)
{
    char *v = field_text(g);
    if (!v) return -1;
    int found = -1;
    char *end;
    long long num = strtoll(v, &end, 10);
    int digits = v[0] >= '0' && v[0] <= '9' && !*end && num <= n; /* a larger index names no answer */
    int letter = ((v[0] >= 'A' && v[0] <= 'Z') || (v[0] >= 'a' && v[0] <= 'z')) && !v[1];
    int li = letter ? (v[0] >= 'a' ? v[0] - 'a' : v[0] - 'A') : -1;
    if (mode == GOLD_INDEX || mode == GOLD_INDEX1) {
        found = digits ? (int)num - (mode == GOLD_INDEX1) : -1;
    } else if (mode == GOLD_TEXT) {
        for (int k = 0; k < n && found < 0; k++)
            if (!strcmp(texts[k], v)) found = k;
    } else if (mode == GOLD_LETTER) {
        found = li;
    } else if (json_is_integer(g)) {
        found = json_integer_value(g) >= 0 && json_integer_value(g) < n ? (int)json_integer_value(g) : -1;
    } else {
        for (int k = 0; k < n && found < 0; k++)
            if (labels && labels[k] && !strcmp(labels[k], v)) found = k;
        for (int k = 0; k < n && found < 0; k++)
            if (!strcmp(texts[k], v)) found = k;
        if (found < 0) found = digits ? (int)num : li;
    }
    free(v);
    return found >= 0 && found < n ? found : -1;
}

/* The answers of a multiple-choice record, from its choices field (a list of
 * strings or of objects with "text" and "label", or an object of two lists
 * "text" and "label") or from the task's list of answer templates. Fills
 * texts and labels (each calloc'ed, n entries, owned by the caller; labels
 * NULL where none). 0, or EX_DATAERR with err. */
static int mc_answers(json_t *rec, const char *cfield, json_t *tmpls, char ***texts, char ***labels, int *n,
                      char *err, size_t errlen)
{
    *texts = NULL;
    *labels = NULL;
    *n = 0;
    json_t *list = NULL, *lab = NULL;
    if (tmpls) {
        list = tmpls;
    } else {
        json_t *cl = field_get(rec, cfield);
        if (json_is_object(cl)) { /* {"text": [...], "label": [...]} (ARC's) */
            list = json_object_get(cl, "text");
            lab = json_object_get(cl, "label");
            if (!json_is_array(lab) || json_array_size(lab) != json_array_size(list)) lab = NULL;
        } else {
            list = cl;
        }
        if (!json_is_array(list)) {
            snprintf(err, errlen, "\"%s\" is not a list of answers (or an object with a \"text\" list)", cfield);
            return EX_DATAERR;
        }
    }
    size_t m = json_array_size(list);
    if (m < 2 || m > 1000) {
        snprintf(err, errlen, "%zu answers (2 to 1,000 are needed)", m);
        return EX_DATAERR;
    }
    *texts = xcalloc(m, sizeof **texts);
    *labels = xcalloc(m, sizeof **labels);
    *n = (int)m; /* NULL entries until filled: free_strings frees them all */
    for (size_t k = 0; k < m; k++) {
        json_t *e = json_array_get(list, k);
        if (tmpls) {
            kbuf a = {0};
            int rc = fill_template(json_string_value(e), rec, &a, err, errlen);
            if (rc) {
                kbuf_free(&a);
                return rc;
            }
            (*texts)[k] = a.data ? a.data : xstrdup("");
            continue;
        }
        if (json_is_object(e)) {
            (*labels)[k] = field_text(json_object_get(e, "label"));
            e = json_object_get(e, "text");
        } else if (lab) {
            (*labels)[k] = field_text(json_array_get(lab, k));
        }
        (*texts)[k] = field_text(e);
        if (!(*texts)[k]) {
            snprintf(err, errlen, "answer %zu of \"%s\" has no text", k + 1, cfield);
            return EX_DATAERR;
        }
    }
    return 0;
}

static void free_strings(char **v, int n)
{
    for (int k = 0; v && k < n; k++) free(v[k]);
    free(v);
}

/* The examples of one file under the task's rules (validated by fs_load). */
static int fs_examples(const char *path, json_t *task, fs_example **out, size_t *n_out,
                       size_t limit)
{
    int rc;
    json_t *recs = read_records(path, &rc);
    if (!recs) return rc;
    const char *tmpl = json_string_value(json_object_get(task, "template"));
    const char *delim = json_string_value(json_object_get(task, "target_delimiter"));
    const char *label = json_string_value(json_object_get(task, "label"));
    json_t *choices = json_object_get(task, "choices");
    const char *cfield = json_string_value(json_object_get(task, "choices_field"));
    const char *gfield = json_string_value(json_object_get(task, "gold_field"));
    const char *gm = json_string_value(json_object_get(task, "gold"));
    int mode = gold_mode(gm); /* checked by fs_load */
    if (!delim) delim = "";
    size_t n = json_array_size(recs);
    if (limit && n > limit) n = limit;
    fs_example *ex = xcalloc(n ? n : 1, sizeof *ex);
    char err[512];
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *r = json_array_get(recs, i);
        kbuf p = {0};
        if ((rc = fill_template(tmpl, r, &p, err, sizeof err))) {
            kerr("%s: example %zu: %s", path, i + 1, err);
            kbuf_free(&p);
            break;
        }
        ex[i].prompt = p.data ? p.data : xstrdup("");
        if (label) { /* classification: the label's answer among the choices' (a list became {"0": .., ...}) */
            char *lv = field_text(field_get(r, label));
            size_t k = json_object_size(choices);
            ex[i].choices = xcalloc(k, sizeof *ex[i].choices);
            ex[i].gold = -1;
            const char *key;
            json_t *val;
            json_object_foreach(choices, key, val) {
                if (lv && !strcmp(key, lv)) ex[i].gold = ex[i].n_choices;
                ex[i].choices[ex[i].n_choices++] = with_delim(delim, json_string_value(val));
            }
            if (ex[i].gold < 0) {
                kerr("%s: example %zu: label %s%s%s is not one of the task's choices", path, i + 1, lv ? "\"" : "",
                     lv ? lv : "(missing)", lv ? "\"" : "");
                rc = EX_DATAERR;
            }
            free(lv);
        } else { /* multiple choice: the record's answers and the gold one */
            char **texts, **labels;
            int m;
            rc = mc_answers(r, cfield, cfield ? NULL : choices, &texts, &labels, &m, err, sizeof err);
            if (rc) {
                kerr("%s: example %zu: %s", path, i + 1, err);
            } else {
                json_t *g = field_get(r, gfield);
                ex[i].gold = gold_index(g, mode, texts, labels, m);
                if (ex[i].gold < 0) {
                    char *gs = field_text(g);
                    kerr("%s: example %zu: the gold answer \"%s\" = %s%s%s names none of its %d answers (\"gold\": %s)",
                         path, i + 1, gfield, gs ? "\"" : "", gs ? gs : "(missing)", gs ? "\"" : "", m, gm ? gm : "auto");
                    free(gs);
                    rc = EX_DATAERR;
                } else {
                    ex[i].choices = xcalloc((size_t)m, sizeof *ex[i].choices);
                    for (int k = 0; k < m; k++) ex[i].choices[ex[i].n_choices++] = with_delim(delim, texts[k]);
                }
            }
            free_strings(texts, m);
            free_strings(labels, m);
        }
    }
    json_decref(recs);
    if (rc) {
        fs_free_examples(ex, n);
        return rc;
    }
    *out = ex;
    *n_out = n;
    return 0;
}

static char *resolve(const char *base_file, const char *p)
{
    if (p[0] == '/') return xstrdup(p);
    const char *slash = strrchr(base_file, '/');
    if (!slash) return xstrdup(p);
    kbuf b = {0};
    kbuf_append(&b, base_file, (size_t)(slash - base_file) + 1);
    kbuf_puts(&b, p);
    return b.data;
}

static int fs_load(const char *path, size_t limit, fs_task *t)
{
    memset(t, 0, sizeof *t);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        kerr("%s: %s", path, je.text);
        return access(path, R_OK) ? EX_NOINPUT : EX_DATAERR;
    }
    const char *why = NULL;
    const char *tr = json_string_value(json_object_get(j, "train")), *ev = json_string_value(json_object_get(j, "eval"));
    json_t *ch = json_object_get(j, "choices");
    int cls = json_is_string(json_object_get(j, "label")), mc = json_is_string(json_object_get(j, "gold_field"));
    int cf = json_is_string(json_object_get(j, "choices_field"));
    const char *gm = json_string_value(json_object_get(j, "gold"));
    if (!json_is_object(j)) why = "not a JSON object";
    else if (!tr || !ev) why = "\"train\" and \"eval\" (file paths) are required";
    else if (!json_is_string(json_object_get(j, "template"))) why = "\"template\" (a string) is required";
    else if (cls == mc) why = "give either \"label\" with \"choices\" (classification) or \"gold_field\" with "
                              "\"choices_field\" or a list of answer templates in \"choices\" (multiple choice)";
    else if (cls && cf) why = "\"choices_field\" goes with \"gold_field\" (multiple choice), not with \"label\"";
    else if (cls && !((json_is_object(ch) && json_object_size(ch) >= 2) || (json_is_array(ch) && json_array_size(ch) >= 2)))
        why = "\"choices\" must map at least 2 labels to answers (an object, or a list: the label is the index)";
    else if (mc && cf == (ch != NULL))
        why = "multiple choice takes its answers from \"choices_field\" (each record's list) or from \"choices\" "
              "(a list of answer templates), one of the two";
    else if (mc && !cf && (!json_is_array(ch) || json_array_size(ch) < 2))
        why = "\"choices\" of a multiple-choice task must be a list of at least 2 answer templates";
    else if (json_object_get(j, "gold") && (!gm || gold_mode(gm) < 0))
        why = "\"gold\" is one of \"auto\", \"index\", \"index1\", \"text\", \"letter\"";
    if (ch && !why) {
        const char *k;
        json_t *v;
        size_t i;
        if (json_is_object(ch)) {
            json_object_foreach(ch, k, v) if (!json_is_string(v)) why = "every answer of \"choices\" must be a string";
        } else {
            json_array_foreach(ch, i, v) if (!json_is_string(v)) why = "every answer of \"choices\" must be a string";
        }
    }
    if (cls && !why && json_is_array(ch)) { /* a classification list: its index is the label, "0", "1", ... */
        json_t *map = json_object();
        size_t i;
        json_t *v;
        json_array_foreach(ch, i, v) {
            char key[32];
            snprintf(key, sizeof key, "%zu", i);
            json_object_set(map, key, v);
        }
        json_object_set_new(j, "choices", map);
    }
    if (why) {
        kerr("%s: %s", path, why);
        json_decref(j);
        return EX_DATAERR;
    }
    const char *sep = json_string_value(json_object_get(j, "separator"));
    t->separator = xstrdup(sep ? sep : "\n\n");
    const char *nm = json_string_value(json_object_get(j, "name"));
    snprintf(t->name, sizeof t->name, "%s", nm ? nm : path);
    json_t *lim = json_object_get(j, "limit");
    if (!limit && json_is_integer(lim) && json_integer_value(lim) > 0) limit = (size_t)json_integer_value(lim);
    char *tp = resolve(path, tr), *ep = resolve(path, ev);
    int rc = fs_examples(tp, j, &t->train, &t->n_train, 0);
    if (!rc) rc = fs_examples(ep, j, &t->eval, &t->n_eval, limit);
    free(tp);
    free(ep);
    json_decref(j);
    if (rc) fs_free(t);
    return rc;
}

/* The demonstrations of eval example i: the first k of a permutation of the
 * training examples keyed by (seed, i) (partial Fisher-Yates), so the k = 4
 * prompt's examples are the first four of the k = 8 one's. */
static void fs_demos(size_t n_train, uint64_t seed, size_t i, int k, size_t *idx, size_t *perm)
{
    for (size_t a = 0; a < n_train; a++) perm[a] = a;
    uint64_t key = kmix64(seed ^ kmix64(i + 0x5EED));
    for (int a = 0; a < k && (size_t)a < n_train; a++) {
        key = kmix64(key);
        size_t r = (size_t)a + (size_t)(key % (uint64_t)(n_train - (size_t)a));
        size_t tmp = perm[a];
        perm[a] = perm[r];
        perm[r] = tmp;
        idx[a] = perm[a];
    }
}

/* Log-likelihood of continuation `cont` after context `ctx` (both text),
 * tokenized as lm-evaluation-harness does: trailing spaces of the context
 * move to the continuation, whole = encode(ctx + cont), context ids =
 * encode(ctx), continuation ids = the rest of whole; at most n_positions + 1
 * tokens, cut from the left. The context is fed once per example and
 * each choice is scored from the cached state (kgen_truncate). */
typedef struct fs_score {
    double sum;           /* sum of log-probs of the continuation's tokens */
    int n_tokens;
} fs_score;

static int score_choices(lm *x, const char *ctx_text, const fs_example *e, fs_score *sc, float *saved,
                         FILE *dump, int k, size_t index)
{
    size_t cl = strlen(ctx_text);
    int rc = 0;
    /* the harness moves the context's trailing spaces into the continuation */
    size_t trail = 0;
    while (trail < cl && ctx_text[cl - 1 - trail] == ' ') trail++;
    kwp_ids cids = {0};
    if (cl - trail) lm_encode(x, ctx_text, cl - trail, &cids);
    int empty_ctx = cids.n == 0;
    if (empty_ctx) {
        if (x->eot < 0) {
            kerr("task example %zu: an empty prompt needs <|endoftext|> in the vocabulary", index + 1);
            return EX_DATAERR;
        }
        ids_push(&cids, (uint32_t)x->eot); /* an empty context starts at <|endoftext|>, as the harness */
    }
    kbuf whole = {0};
    int cached = 0; /* the whole context is in the cache (positions 0 .. cids.n - 1), its logits in saved */
    for (int c = 0; c < e->n_choices && !rc; c++) {
        kbuf_clear(&whole);
        kbuf_append(&whole, ctx_text, cl - trail);
        kbuf_append(&whole, ctx_text + cl - trail, trail);
        kbuf_puts(&whole, e->choices[c]);
        kwp_ids w = {0};
        lm_encode(x, whole.data, whole.len, &w);
        /* the continuation: whole's tokens after the context's */
        size_t nc = cids.n, start = empty_ctx ? 0 : cids.n;
        if (start > w.n) start = w.n;
        size_t ncont = w.n - start;
        int32_t *seq = xmalloc((nc + ncont + 1) * sizeof *seq);
        size_t ns = 0;
        for (size_t a = 0; a < nc; a++) seq[ns++] = (int32_t)cids.ids[a];
        for (size_t a = start; a < w.n; a++) seq[ns++] = (int32_t)w.ids[a];
        kwp_ids_free(&w);
        /* (context + continuation)[-(n_positions + 1):]: the last token is only predicted */
        size_t maxn = (size_t)x->ctx + 1, off = ns > maxn ? ns - maxn : 0;
        if (ncont == 0 || off >= nc) {
            kerr("task example %zu: answer %d %s", index + 1, c,
                 ncont ? "alone is longer than the model's context" : "is empty after tokenization");
            free(seq);
            rc = EX_DATAERR;
            break;
        }
        const int32_t *s = seq + off;
        size_t ctx_n = nc - off;
        sc[c] = (fs_score){0, (int)ncont};
        if (off == 0 && cached) {
            kgen_truncate(x->g, (int)ctx_n);
        } else {
            kgen_reset(x->g);
            cached = 0;
            if ((rc = kgen_feed(x->g, s, (int)ctx_n, NULL))) {
                kerr("%s", kgen_error(x->g));
                free(seq);
                break;
            }
            memcpy(saved, kgen_logits(x->g), (size_t)x->V * sizeof *saved);
            cached = off == 0;
        }
        /* score the continuation token by token; the last one is never fed */
        const float *row = saved;
        for (size_t t = 0; t < ncont && !rc; t++) {
            int32_t target = s[ctx_n + t];
            sc[c].sum += kgen_logprob(row, x->V, target, NULL);
            if (t + 1 < ncont) {
                if ((rc = kgen_feed(x->g, &target, 1, NULL))) kerr("%s", kgen_error(x->g));
                row = kgen_logits(x->g);
            }
        }
        if (dump && !rc) {
            fprintf(dump, "{\"k\":%d,\"index\":%zu,\"choice\":%d,\"gold\":%d,\"answer_bytes\":%zu,\"ids\":[", k, index, c,
                    e->gold, strlen(e->choices[c]));
            for (size_t a = 0; a < ns - off; a++) fprintf(dump, a ? ",%d" : "%d", s[a]);
            fprintf(dump, "],\"continuation_tokens\":%zu,\"logprob\":%.17g}\n", ncont, sc[c].sum);
        }
        free(seq);
    }
    kbuf_free(&whole);
    kwp_ids_free(&cids);
    return rc;
}

static int eval_fewshot(lm *x, const char *task_path, const int *ks, int n_ks, uint64_t seed, size_t limit,
                        const char *dump_path, int json)
{
    fs_task t;
    int rc = fs_load(task_path, limit, &t);
    if (rc) return rc;
    for (int a = 0; a < n_ks; a++)
        if ((size_t)ks[a] > t.n_train) {
            kerr("%s: k = %d but the training file has %zu examples", task_path, ks[a], t.n_train);
            fs_free(&t);
            return EX_DATAERR;
        }
    FILE *dump = NULL;
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        kerr("%s: %s", dump_path, strerror(errno));
        fs_free(&t);
        return EX_CANTCREAT;
    }
    int maxc = 0;
    for (size_t i = 0; i < t.n_eval; i++)
        if (t.eval[i].n_choices > maxc) maxc = t.eval[i].n_choices;
    fs_score *sc = xcalloc((size_t)maxc, sizeof *sc);
    float *saved = xmalloc((size_t)x->V * sizeof *saved);
    size_t *perm = xmalloc((t.n_train + 1) * sizeof *perm), *idx = xmalloc((t.n_train + 1) * sizeof *idx);
    int64_t *acc = xcalloc((size_t)n_ks, sizeof *acc), *accn = xcalloc((size_t)n_ks, sizeof *accn);
    double *secs = xcalloc((size_t)n_ks, sizeof *secs);
    cli_progress pr;
    cli_progress_init(&pr, json);
    double last = 0;
    kbuf ctx = {0};
    for (int a = 0; a < n_ks && !rc; a++) {
        double t0 = know_seconds();
        for (size_t i = 0; i < t.n_eval && !rc && !cli_stop; i++) {
            const fs_example *e = &t.eval[i];
            fs_demos(t.n_train, seed, i, ks[a], idx, perm);
            kbuf_clear(&ctx);
            for (int d = 0; d < ks[a]; d++) {
                const fs_example *de = &t.train[idx[d]];
                kbuf_puts(&ctx, de->prompt);
                kbuf_puts(&ctx, de->choices[de->gold]);
                kbuf_puts(&ctx, t.separator);
            }
            kbuf_puts(&ctx, e->prompt);
            if ((rc = score_choices(x, ctx.data, e, sc, saved, dump, ks[a], i))) break;
            int best = 0, bestn = 0;
            for (int c = 1; c < e->n_choices; c++) {
                if (sc[c].sum > sc[best].sum) best = c;
                /* length-normalised: per byte of the answer, as the harness's acc_norm */
                if (sc[c].sum / (double)strlen(e->choices[c]) > sc[bestn].sum / (double)strlen(e->choices[bestn]))
                    bestn = c;
            }
            acc[a] += best == e->gold;
            accn[a] += bestn == e->gold;
            double now = know_seconds();
            if (pr.on && now - last > 0.25) {
                last = now;
                char line[160];
                snprintf(line, sizeof line, "k = %d: %zu / %zu examples, accuracy %.1f%%", ks[a], i + 1, t.n_eval,
                         100.0 * (double)acc[a] / (double)(i + 1));
                cli_progress_line(&pr, line);
            }
        }
        secs[a] = know_seconds() - t0;
    }
    cli_progress_done(&pr);
    if (dump && fclose(dump)) {
        kerr("%s: %s", dump_path, strerror(errno));
        if (!rc) rc = EX_IOERR;
    }
    if (!rc && cli_stop) rc = 128 + cli_stop;
    if (!rc) {
        if (json) {
            json_t *o = json_object(), *rows = json_array();
            json_object_set_new(o, "task", cli_json_str(t.name));
            json_object_set_new(o, "examples", json_integer((json_int_t)t.n_eval));
            json_object_set_new(o, "train_examples", json_integer((json_int_t)t.n_train));
            json_object_set_new(o, "seed", json_integer((json_int_t)seed));
            for (int a = 0; a < n_ks; a++)
                json_array_append_new(
                    rows, json_pack("{s:i, s:o, s:o, s:o}", "k", ks[a], "accuracy",
                                    cli_json_num((double)acc[a] / (double)t.n_eval), "accuracy_norm",
                                    cli_json_num((double)accn[a] / (double)t.n_eval), "seconds",
                                    cli_json_num(secs[a])));
            json_object_set_new(o, "results", rows);
            cli_json_print(o, 1);
        } else {
            printf("%s: %zu examples, demonstrations from %zu (seed %llu)\n", t.name, t.n_eval, t.n_train,
                   (unsigned long long)seed);
            printf("%6s  %9s  %14s  %8s\n", "k", "accuracy", "accuracy_norm", "seconds");
            for (int a = 0; a < n_ks; a++)
                printf("%6d  %8.2f%%  %13.2f%%  %8.1f\n", ks[a], 100.0 * (double)acc[a] / (double)t.n_eval,
                       100.0 * (double)accn[a] / (double)t.n_eval, secs[a]);
        }
    }
    kbuf_free(&ctx);
    free(sc);
    free(saved);
    free(perm);
    free(idx);
    free(acc);
    free(accn);
    free(secs);
    fs_free(&t);
    return rc;
}

/* kiln eval with --perplexity or --fewshot (cmd_eval hands over). */
int cmd_eval_lm(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln eval --checkpoint C --perplexity FILE [--window N] [--stride S]\n"
        "                 [--threads N] [--json]\n"
        "       kiln eval --checkpoint C --fewshot K[,K...] --task TASK.json [--seed S]\n"
        "                 [--limit N] [--scores FILE] [--threads N] [--json]\n\n"
        "A GPT-2 checkpoint's language model on text it did not train on.\n"
        "--perplexity FILE: FILE's text encoded as one token sequence and scored with a\n"
        "sliding window of N positions (default the model's n_positions) moved by S\n"
        "(default N / 2): every token after the first is scored once, with up to N - 1\n"
        "tokens of context (Hugging Face's perplexity recipe). Prints perplexity, mean\n"
        "NLL, bits per byte, next-token accuracy and tokens/s; --json: {\"perplexity\",\n"
        "\"nll\", \"bits_per_byte\", \"accuracy\", \"tokens\", \"scored\", \"tokens_per_s\", ...}.\n"
        "--fewshot K --task TASK.json: in-context learning. Each evaluation example is\n"
        "preceded by K solved examples drawn from the task's training file (a pure\n"
        "function of --seed and the example's index), and each candidate answer is\n"
        "scored by the sum of its tokens' log-probabilities after that prompt (as\n"
        "GPT-3's paper and lm-evaluation-harness): accuracy takes the best sum,\n"
        "accuracy_norm the best sum per byte of answer. K may list several values\n"
        "(0,4,8): one row each. --scores FILE writes every scored sequence as JSON\n"
        "lines (ids, continuation length, log-probability). A task file (JSON) names\n"
        "a TSV, JSONL or JSON-array file of examples, a template and either\n"
        "classification answers (\"label\" + \"choices\") or each record's own answers\n"
        "(\"gold_field\" + \"choices_field\" or answer templates), the gold one given as\n"
        "an index, a label, a letter or its text: docs/generate.md, \"Task files\";\n"
        "examples/tasks/sst2.json is SST-2 with \" negative\" / \" positive\".\n";
    enum { O_CKPT = 1, O_PPL, O_WINDOW, O_STRIDE, O_FEW, O_TASK, O_SEED, O_LIMIT, O_SCORES, O_THREADS, O_DATA };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"checkpoint", required_argument, 0, O_CKPT},
                                       {"perplexity", required_argument, 0, O_PPL},
                                       {"window", required_argument, 0, O_WINDOW},
                                       {"stride", required_argument, 0, O_STRIDE},
                                       {"fewshot", required_argument, 0, O_FEW},
                                       {"task", required_argument, 0, O_TASK},
                                       {"seed", required_argument, 0, O_SEED},
                                       {"limit", required_argument, 0, O_LIMIT},
                                       {"scores", required_argument, 0, O_SCORES},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"data", required_argument, 0, O_DATA},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *ckpt = NULL, *ppl = NULL, *task = NULL, *scores = NULL, *few = NULL;
    int window = 0, stride = 0, threads = 0, opt, ks[64], n_ks = 0;
    double v = 0;
    uint64_t seed = 1234;
    size_t limit = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        int bad = 0;
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_PPL: ppl = optarg; break;
        case O_WINDOW: if (!(bad = parse_num("eval", "--window", optarg, 2, 1 << 20, &v))) window = (int)v; break;
        case O_STRIDE: if (!(bad = parse_num("eval", "--stride", optarg, 1, 1 << 20, &v))) stride = (int)v; break;
        case O_FEW: few = optarg; break;
        case O_TASK: task = optarg; break;
        case O_SEED: if (!(bad = parse_num("eval", "--seed", optarg, 0, 9.0e15, &v))) seed = (uint64_t)v; break;
        case O_LIMIT: if (!(bad = parse_num("eval", "--limit", optarg, 1, 1e12, &v))) limit = (size_t)v; break;
        case O_SCORES: scores = optarg; break;
        case O_THREADS: if (!(bad = parse_num("eval", "--threads", optarg, 1, 1024, &v))) threads = (int)v; break;
        case O_DATA: bad = cli_usage_error("eval", "--data is for classifiers; a causal model takes --perplexity or --fewshot"); break;
        default: bad = cli_usage_error("eval", "bad option");
        }
        if (bad) return bad;
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (!ckpt) return cli_usage_error("eval", "--checkpoint is required");
    if (!!ppl == !!few) return cli_usage_error("eval", "--perplexity FILE or --fewshot K --task TASK (one of them)");
    if (few && !task) return cli_usage_error("eval", "--fewshot needs --task TASK.json");
    if (!few && (task || scores || limit)) return cli_usage_error("eval", "--task, --scores and --limit go with --fewshot");
    if (stride && window && stride > window) return cli_usage_error("eval", "--stride must not exceed --window");
    if (few) {
        for (const char *p = few; *p;) {
            char *end;
            long k = strtol(p, &end, 10);
            if (end == p || k < 0 || k > 1000 || n_ks == 64 || (*end && *end != ','))
                return cli_usage_error("eval", "--fewshot: K or a list K,K,... of integers in [0, 1000]");
            ks[n_ks++] = (int)k;
            p = *end ? end + 1 : end;
        }
        if (!n_ks) return cli_usage_error("eval", "--fewshot: K or a list K,K,...");
    }
    lm x;
    int rc = lm_open(ckpt, &x);
    if (rc) return rc;
    cli_set_threads(threads);
    cli_catch_stop_signals();
    if (ppl) rc = eval_perplexity(&x, ppl, window, stride, c.json);
    else rc = eval_fewshot(&x, task, ks, n_ks, seed, limit, scores, c.json);
    lm_close(&x);
    return rc;
}
