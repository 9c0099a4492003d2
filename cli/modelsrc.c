/* cli/modelsrc.c: a model's weights from a kiln checkpoint or a Hugging
 * Face folder (cli/modelsrc.h). */
#define _GNU_SOURCE
#include "cli/modelsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/util.h"


void cli_msrc_free(cli_msrc *x)
{
    if (x->ck) kckpt_close(x->ck);
    if (x->is_hf) khf_free(&x->hf);
    free(x->t);
    for (int i = 0; i < x->num_labels && x->labels; i++) free(x->labels[i]);
    free(x->labels);
    json_decref(x->ft);
    memset(x, 0, sizeof *x);
}

static int is_file(const char *dir, const char *name)
{
    char p[8400];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return 0;
    return access(p, R_OK) == 0;
}

/* Opens path as a Hugging Face folder (config.json, no state.json), the
 * ELECTRA pair folder kiln export writes (discriminator/ and generator/: its
 * discriminator, the model fine-tuning and evaluation use) or a kiln
 * checkpoint (a step folder, or the latest of a checkpoint.dir). Logs and
 * returns EX_* on failure. */
int cli_msrc_open(const char *path, cli_msrc *x)
{
    memset(x, 0, sizeof *x);
    char err[2048], disc[4096];
    if (!is_file(path, "config.json") && !is_file(path, "state.json") && khf_is_electra_pair(path) &&
        snprintf(disc, sizeof disc, "%s/discriminator", path) < (int)sizeof disc) {
        kinfo("%s: an ELECTRA pair folder: its discriminator, %s", path, disc);
        path = disc;
    }
    if (is_file(path, "config.json") && !is_file(path, "state.json")) {
        x->is_hf = 1;
        snprintf(x->path, sizeof x->path, "%s", path);
        int rc = khf_load(path, &x->hf, err, sizeof err);
        if (rc) {
            kerr("%s", err);
            x->is_hf = 0;
            return rc;
        }
        x->mc = x->hf.config;
        x->vocab = x->hf.vocab;
        x->vocab_len = x->hf.vocab_len;
        x->mode = cli_hf_mode(x->hf.do_lower_case, x->hf.strip_accents);
        x->n = x->hf.n;
        x->t = xcalloc((size_t)x->n + 1, sizeof *x->t);
        memcpy(x->t, x->hf.tensors, (size_t)x->n * sizeof *x->t);
        if (x->hf.heads & KHF_CLASSIFY) {
            x->num_labels = x->hf.num_labels;
            x->regression = x->num_labels == 1 || !strcmp(x->hf.problem_type, "regression");
            if (x->hf.labels && !x->regression) {
                x->labels = xcalloc((size_t)x->num_labels, sizeof *x->labels);
                for (int i = 0; i < x->num_labels; i++) x->labels[i] = xstrdup(x->hf.labels[i]);
            }
        }
        return 0;
    }
    ktrain_config cfg;
    int rc = cli_open_checkpoint(path, &x->ck, &cfg, &x->mode);
    if (rc) return rc;
    snprintf(x->path, sizeof x->path, "%s", kckpt_path(x->ck));
    const kckpt_state *st = kckpt_state_of(x->ck);
    x->mc = cfg.model;
    x->vocab = kckpt_vocab(x->ck, &x->vocab_len);
    const kst_file *f = kckpt_file(x->ck, "model.safetensors");
    if (!f) {
        kerr("%s: no model.safetensors", x->path);
        return EX_DATAERR;
    }
    x->n = kst_count(f);
    x->t = xcalloc((size_t)x->n + 1, sizeof *x->t);
    for (int i = 0; i < x->n; i++) {
        x->t[i] = *kst_get(f, i);
        if (strcmp(x->t[i].dtype, "F32")) {
            kerr("%s: tensor %s is %s, not F32", x->path, x->t[i].name, x->t[i].dtype);
            return EX_DATAERR;
        }
    }
    json_t *ex = st->extra_json ? json_loads(st->extra_json, 0, NULL) : NULL;
    for (int i = 0; i < x->n; i++)
        if (!strcmp(x->t[i].name, "classifier.bias") || !strcmp(x->t[i].name, "classifier.out_proj.bias"))
            x->num_labels = (int)x->t[i].shape[0]; /* BERT / ALBERT, ELECTRA */
    if (x->num_labels) {
        const char *pt = json_string_value(json_object_get(ex, "problem_type"));
        x->regression = x->num_labels == 1 || (pt && !strcmp(pt, "regression"));
        json_t *names = json_object_get(ex, "id2label");
        if (!x->regression && json_is_array(names) && (int)json_array_size(names) == x->num_labels) {
            x->labels = xcalloc((size_t)x->num_labels, sizeof *x->labels);
            for (int i = 0; i < x->num_labels; i++) {
                const char *s = json_string_value(json_array_get(names, (size_t)i));
                x->labels[i] = xstrdup(s ? s : "");
            }
        }
    }
    json_t *ft = json_object_get(ex, "finetune");
    if (json_is_object(ft)) x->ft = json_incref(ft);
    json_decref(ex);
    return 0;
}

const kst_tensor *cli_msrc_find(const cli_msrc *x, const char *name)
{
    for (int i = 0; i < x->n; i++)
        if (!strcmp(x->t[i].name, name)) return &x->t[i];
    return NULL;
}

/* Copies the init's tensors into m by name and shape. `classifier` 0: the
 * classifier is new (kept as kmodel_init made it). Reports what was new and
 * what was dropped. Returns 0 or EX_DATAERR (a shape differs). */
int cli_msrc_copy(const cli_msrc *x, kmodel *m, int classifier, int verbose)
{
    int n, fresh = 0, rc = 0;
    const ktensor *tl = kmodel_params(m, &n);
    float *w = kmodel_param_data(m);
    char fresh_names[512] = "";
    int used = 0;
    for (int i = 0; i < n; i++) {
        const kst_tensor *t = cli_msrc_find(x, tl[i].name);
        int is_clf = !strncmp(tl[i].name, "classifier.", 11) || !strncmp(tl[i].name, "pre_classifier.", 15);
        if (!t || (is_clf && !classifier)) {
            fresh++;
            if (strlen(fresh_names) + strlen(tl[i].name) + 3 < sizeof fresh_names)
                snprintf(fresh_names + strlen(fresh_names), sizeof fresh_names - strlen(fresh_names), "%s%s",
                         fresh_names[0] ? ", " : "", tl[i].name);
            continue;
        }
        if (t->nbytes != tl[i].numel * sizeof(float)) {
            kerr("%s: tensor %s has %zu floats, the model wants %zu", x->path, tl[i].name, t->nbytes / 4,
                 tl[i].numel);
            rc = EX_DATAERR;
            break;
        }
        memcpy(w + tl[i].offset, t->data, t->nbytes);
        used++;
    }
    if (!rc && verbose) {
        if (fresh) kinfo("new (initialised from the seed): %s", fresh_names);
        if (x->n > used)
            kinfo("%d tensors of %s not used (pretraining heads dropped)", x->n - used, x->path);
    }
    return rc;
}


int cli_msrc_load_all(const cli_msrc *x, kmodel *m, char hash[33], char *err, size_t errlen)
{
    int nt;
    const ktensor *tl = kmodel_params(m, &nt);
    float *w = kmodel_param_data(m);
    khash_stream *h = khash_stream_new();
    for (int i = 0; i < nt; i++) {
        const kst_tensor *k = cli_msrc_find(x, tl[i].name);
        if (!k || k->nbytes != tl[i].numel * sizeof(float)) {
            kseterr(err, errlen, "%s has no tensor %s of %zu floats", x->path, tl[i].name, tl[i].numel);
            khash_stream_free(h);
            return EX_CONFIG;
        }
        memcpy(w + tl[i].offset, k->data, k->nbytes);
        khash_stream_update(h, tl[i].name, strlen(tl[i].name) + 1);
        khash_stream_update(h, k->data, k->nbytes);
    }
    uint8_t hv[KHASH_LEN];
    khash_stream_final(h, hv);
    khash_stream_free(h);
    khash_hex(hv, hash);
    return 0;
}
