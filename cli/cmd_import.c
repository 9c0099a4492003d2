/* cmd_import.c: kiln import (a Hugging Face BERT / ALBERT / ELECTRA / GPT-2
 * folder as a kiln checkpoint: trainer/hfimport.h reads it,
 * trainer/checkpoint.h writes it). A GPT-2 folder's vocab.json + merges.txt
 * are parsed here (text/bpe.h, which trainer/ does not include): loadable
 * by kbpe_vocab_load, as many tokens as config.json's vocab_size; the
 * checkpoint stores them as kbpe_vocab_json / kbpe_merges_text write them
 * (canonical: the bytes `kiln vocab import --bpe` of the same files keeps
 * in the store and `kiln export` writes back, so the three agree; a
 * folder kiln exported is stored byte for byte). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "text/bpe.h"
#include "trainer/checkpoint.h"
#include "trainer/hfimport.h"

/* GPT-2's vocabulary of m (vocab.json + merges.txt as read): loaded and
 * checked against config.json's vocab_size; m->eot_id set; *vj and *mg get
 * the canonical files. Returns 0 or EX_DATAERR with err filled. */
static int check_bpe(khf_model *m, const char *dir, kbuf *vj, kbuf *mg, char *err, size_t errlen)
{
    kbpe_vocab *v = NULL;
    char e[512];
    if (kbpe_vocab_load(m->vocab, m->vocab_len, m->merges, m->merges_len, &v, e, sizeof e)) {
        snprintf(err, errlen, "%s: vocab.json / merges.txt: %s", dir, e);
        return EX_DATAERR;
    }
    if ((int64_t)kbpe_vocab_size(v) != m->config.vocab_size) {
        snprintf(err, errlen, "%s: vocab.json has %zu tokens but config.json's vocab_size is %d (kiln's GPT-2 needs "
                 "them equal)", dir, kbpe_vocab_size(v), m->config.vocab_size);
        kbpe_vocab_free(v);
        return EX_DATAERR;
    }
    m->eot_id = kbpe_vocab_eot(v);
    kbpe_vocab_json(v, vj);
    kbpe_merges_text(v, mg);
    kbpe_vocab_free(v);
    return 0;
}

/* Writes the checkpoint OUT/step-000000000/ for m: built whole in
 * PARENT/.import-NAME.tmp/ by kckpt_save, then renamed to OUT (an existing
 * OUT replaced only when force). path gets the step folder. */
static int write_checkpoint(const khf_model *m, const char *from, const char *out, int force, const kbuf *vj,
                            const kbuf *mg, char *path, size_t plen, char *err, size_t errlen)
{
    char *final, *parent, *tmp = kckpt_tmp_sibling(out, "import", &final, &parent);

    ktrain_config rc_cfg;
    int rc = khf_run_config(m, &rc_cfg, err, errlen);
    if (rc) {
        free(tmp);
        free(parent);
        free(final);
        return rc;
    }
    snprintf(rc_cfg.checkpoint.dir, sizeof rc_cfg.checkpoint.dir, "%s", final);
    char *cfg_json = ktrain_config_to_json(&rc_cfg);
    char real[PATH_MAX];
    char *extra = khf_extra_json(m, realpath(from, real) ? real : from);
    const int bpe = m->vocab_kind == KCKPT_VOCAB_BPE;
    kckpt_state st = {.step = 0, .config_json = cfg_json, .vocab_name = "", .extra_json = extra,
                      .vocab_kind = m->vocab_kind, .merges = bpe ? mg->data : NULL, .merges_len = bpe ? mg->len : 0};
    kckpt_part part = {"model.safetensors", m->tensors, m->n};
    kckpt_remove_tree(tmp);
    rc = kckpt_save(tmp, &st, &part, 1, bpe ? vj->data : m->vocab, bpe ? vj->len : m->vocab_len, 0, NULL, 0, err,
                    errlen);
    if (!rc) rc = kckpt_publish_dir(tmp, final, force, err, errlen);
    if (rc) kckpt_remove_tree(tmp);
    else snprintf(path, plen, "%s/step-000000000", final);
    free(cfg_json);
    free(extra);
    free(tmp);
    free(parent);
    free(final);
    return rc;
}

int cmd_import(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln import --from hf|kiln DIR --out CKPT [--force] [--json]\n\n"
        "Reads a Hugging Face model folder (config.json, model.safetensors, vocab.txt;\n"
        "model_type bert, albert or electra; BertForPreTraining, BertForMaskedLM,\n"
        "BertModel, BertForSequenceClassification or the Albert and Electra ones) and\n"
        "writes it as a kiln\n"
        "checkpoint folder CKPT/step-000000000/ (model.safetensors under kiln's tensor\n"
        "names, vocab.txt, state.json with a run config holding the model; no\n"
        "optimizer state, so it starts fine-tuning, it does not resume a run).\n"
        "GPT-2 (model_type gpt2: GPT2LMHeadModel or GPT2Model, e.g. the hub's gpt2 or\n"
        "what kiln export writes) needs vocab.json and merges.txt, as many tokens as\n"
        "vocab_size; its Conv1D weights are transposed to kiln's [out, in], the\n"
        "attn.bias / attn.masked_bias buffers skipped, a tied lm_head.weight checked\n"
        "and dropped; kiln generate and kiln eval --perplexity / --fewshot read it.\n"
        "DistilBERT (model_type distilbert: DistilBertForMaskedLM, DistilBertModel or\n"
        "DistilBertForSequenceClassification) is read under DistilBertConfig's names,\n"
        "vocab_projector.weight checked against the word embeddings and dropped; kiln\n"
        "train (init), kiln predict, kiln finetune, eval and classify read it.\n"
        "A folder holding discriminator/ and generator/ (what kiln export writes for\n"
        "ELECTRA) is read as the pair: one checkpoint, whose discriminator kiln finetune\n"
        "starts from.\n"
        "Base-model names without the bert./albert. prefix are accepted; tied decoder\n"
        "copies are checked and dropped; F16/BF16 tensors become F32; any tensor kiln\n"
        "does not know is refused. `kiln export` gives the same tensors back.\n"
        "CKPT is written under a temporary name and renamed; --force replaces an\n"
        "existing CKPT. --json prints {\"checkpoint\", \"architecture\", \"tensors\"}.\n"
        "--from kiln DIR reads kiln's own ERNIE format (what kiln export writes as\n"
        "DIR/kiln: docs/ernie.md) back into a checkpoint: the run config with its\n"
        "knowledge section, every tensor checked against it, the vocabulary. With a\n"
        "store (--db) its entity table is tied to the store's KG: kept when the store\n"
        "has the embedding it was trained with, else stored as an \"imported\" embedding\n"
        "whose rows are the store's entities of the same KG keys (DIR/entities.tsv),\n"
        "which the checkpoint then pins (--json: \"entities\": {\"table\": kept |\n"
        "mapped | unmapped, \"embedding\", \"origin_embedding\", \"rows\", \"mapped\"}).\n"
        "Exit codes: 66 a file is missing, 65 the folder is not a model kiln imports.\n";
    enum { O_FROM = 1, O_OUT, O_FORCE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"from", required_argument, 0, O_FROM},
                                       {"out", required_argument, 0, O_OUT}, {"force", no_argument, 0, O_FORCE},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *from = NULL, *out = NULL;
    int force = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_FROM) from = optarg;
        else if (opt == O_OUT) out = optarg;
        else if (opt == O_FORCE) force = 1;
        else return cli_usage_error("import", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (!from) return cli_usage_error("import", "--from hf (or kiln) is required");
    if (strcmp(from, "hf") && strcmp(from, "kiln"))
        return cli_usage_error("import", "--from: hf (a Hugging Face folder) or kiln (kiln's ERNIE format)");
    if (optind >= argc) return cli_usage_error("import", "give the folder DIR to import");
    if (optind + 1 < argc) return cli_usage_error("import", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return cli_usage_error("import", "--out is required");
    const char *dir = argv[optind];
    if (access(out, F_OK) == 0 && !force) {
        kerr("%s exists: add --force to replace it", out);
        return EX_CANTCREAT;
    }
    char err[2048], path[4096];
    if (!strcmp(from, "kiln")) { /* kiln's own format: an ERNIE model (docs/ernie.md) */
        /* the entity table is tied to the store when there is one (never created here) */
        kstore *s = NULL;
        const char *dbp = cli_db_path(&c);
        int rk = access(dbp, F_OK) == 0 ? cli_open_store(&c, 0, &s) : 0;
        if (rk) return rk;
        cli_ernie_map mp;
        rk = cli_import_ernie(argv[optind], out, force, s, &mp, path, sizeof path, err, sizeof err);
        kstore_close(s);
        if (rk) {
            kerr("%s", err);
        } else if (c.json) {
            cli_json_print(json_pack("{s:s, s:s, s:{s:s, s:I, s:I, s:I, s:I}}", "checkpoint", path, "architecture",
                                     "kiln ERNIE", "entities", "table", mp.how, "embedding", (json_int_t)mp.embedding,
                                     "origin_embedding", (json_int_t)mp.origin_embedding, "rows", (json_int_t)mp.rows,
                                     "mapped", (json_int_t)mp.mapped),
                           1);
        } else {
            kinfo("imported %s (kiln ERNIE) into %s", argv[optind], path);
            if (!strcmp(mp.how, "kept"))
                kinfo("entity table: embedding %lld of %s, as trained", (long long)mp.embedding, dbp);
            else if (!strcmp(mp.how, "mapped"))
                kinfo("entity table: %lld of %lld rows matched %s's KG by key; stored as embedding %lld (imported),"
                      " which the checkpoint pins", (long long)mp.mapped, (long long)mp.rows, dbp,
                      (long long)mp.embedding);
            else
                kwarn("entity table: %s has neither embedding %lld nor a KG with the table's keys (DIR/entities.tsv):"
                      " kiln finetune, eval and predict will refuse the KG until it is there (kiln kg import, then"
                      " import again)", dbp, (long long)mp.embedding);
        }
        return rk;
    }
    khf_model m;
    int rc = khf_is_electra_pair(dir) ? khf_load_electra_pair(dir, &m, err, sizeof err)
                                      : khf_load(dir, &m, err, sizeof err);
    if (rc) {
        kerr("%s", err);
        return rc;
    }
    if (m.n_converted) kinfo("%d tensors converted to F32", m.n_converted);
    kbuf vj = {0}, mg = {0};
    if (m.vocab_kind == KCKPT_VOCAB_BPE) rc = check_bpe(&m, dir, &vj, &mg, err, sizeof err);
    if (!rc) rc = write_checkpoint(&m, dir, out, force, &vj, &mg, path, sizeof path, err, sizeof err);
    kbuf_free(&vj);
    kbuf_free(&mg);
    if (rc) {
        kerr("%s", err);
    } else if (c.json) {
        kbuf b = {0};
        kbuf_puts(&b, "{\"checkpoint\":");
        kbuf_json_str(&b, path, strlen(path));
        kbuf_puts(&b, ",\"architecture\":");
        kbuf_json_str(&b, m.architecture, strlen(m.architecture));
        kbuf_printf(&b, ",\"tensors\":%d}\n", m.n);
        fputs(b.data, stdout);
        kbuf_free(&b);
    } else {
        kinfo("imported %s (%s, %d tensors%s%s%s%s%s) into %s", dir, m.architecture, m.n,
              m.heads & KHF_MLM ? ", MLM head" : "", m.heads & KHF_SENTENCE ? ", sentence head" : "",
              m.heads & KHF_TOKEN ? ", replaced-token head" : "", m.heads & KHF_CLASSIFY ? ", classifier" : "",
              m.heads & KHF_LM ? ", tied LM head" : "", path);
    }
    khf_free(&m);
    return rc;
}
