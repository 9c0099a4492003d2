/* cmd_import.c: kiln import (a Hugging Face BERT / ALBERT / ELECTRA folder as a kiln
 * checkpoint: trainer/hfimport.h reads it, trainer/checkpoint.h writes it). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "trainer/checkpoint.h"
#include "trainer/hfimport.h"

/* Writes the checkpoint OUT/step-000000000/ for m: built whole in
 * PARENT/.import-NAME.tmp/ by kckpt_save, then renamed to OUT (an existing
 * OUT replaced only when force). path gets the step folder. */
static int write_checkpoint(const khf_model *m, const char *from, const char *out, int force, char *path,
                            size_t plen, char *err, size_t errlen)
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
    kckpt_state st = {.step = 0, .config_json = cfg_json, .vocab_name = "", .extra_json = extra};
    kckpt_part part = {"model.safetensors", m->tensors, m->n};
    kckpt_remove_tree(tmp);
    rc = kckpt_save(tmp, &st, &part, 1, m->vocab, m->vocab_len, 0, NULL, 0, err, errlen);
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
        "usage: kiln import --from hf DIR --out CKPT [--force] [--json]\n\n"
        "Reads a Hugging Face model folder (config.json, model.safetensors, vocab.txt;\n"
        "model_type bert, albert or electra; BertForPreTraining, BertForMaskedLM,\n"
        "BertModel, BertForSequenceClassification or the Albert and Electra ones) and\n"
        "writes it as a kiln\n"
        "checkpoint folder CKPT/step-000000000/ (model.safetensors under kiln's tensor\n"
        "names, vocab.txt, state.json with a run config holding the model; no\n"
        "optimizer state, so it starts fine-tuning, it does not resume a run).\n"
        "A folder holding discriminator/ and generator/ (what kiln export writes for\n"
        "ELECTRA) is read as the pair: one checkpoint, whose discriminator kiln finetune\n"
        "starts from.\n"
        "Base-model names without the bert./albert. prefix are accepted; tied decoder\n"
        "copies are checked and dropped; F16/BF16 tensors become F32; any tensor kiln\n"
        "does not know is refused. `kiln export` gives the same tensors back.\n"
        "CKPT is written under a temporary name and renamed; --force replaces an\n"
        "existing CKPT. --json prints {\"checkpoint\", \"architecture\", \"tensors\"}.\n"
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
    if (!from) return cli_usage_error("import", "--from hf is required");
    if (strcmp(from, "hf")) return cli_usage_error("import", "--from: only hf (a Hugging Face folder)");
    if (optind >= argc) return cli_usage_error("import", "give the folder DIR to import");
    if (optind + 1 < argc) return cli_usage_error("import", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return cli_usage_error("import", "--out is required");
    const char *dir = argv[optind];
    if (access(out, F_OK) == 0 && !force) {
        kerr("%s exists: add --force to replace it", out);
        return EX_CANTCREAT;
    }
    char err[2048], path[4096];
    khf_model m;
    int rc = khf_is_electra_pair(dir) ? khf_load_electra_pair(dir, &m, err, sizeof err)
                                      : khf_load(dir, &m, err, sizeof err);
    if (rc) {
        kerr("%s", err);
        return rc;
    }
    if (m.n_converted) kinfo("%d tensors converted to F32", m.n_converted);
    rc = write_checkpoint(&m, dir, out, force, path, sizeof path, err, sizeof err);
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
        kinfo("imported %s (%s, %d tensors%s%s%s%s) into %s", dir, m.architecture, m.n,
              m.heads & KHF_MLM ? ", MLM head" : "", m.heads & KHF_SENTENCE ? ", sentence head" : "",
              m.heads & KHF_TOKEN ? ", replaced-token head" : "", m.heads & KHF_CLASSIFY ? ", classifier" : "", path);
    }
    khf_free(&m);
    return rc;
}
