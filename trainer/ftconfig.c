/* trainer/ftconfig.c: the fine-tuning config reader (ftconfig.h). The
 * JSON is read with Jansson; every key is looked up in one table of known
 * keys first, so an unknown or misspelt key is refused by name. */
#include "trainer/ftconfig.h"
#include "trainer/config.h" /* KPRECISION_* */

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

/* known keys: "section.key" ("init", "threads", "precision" at the top) */
static const char *const KEYS[] = {
    "init", "threads", "precision",
    "task.type", "task.train", "task.dev", "task.text_column", "task.text_pair_column", "task.label_column",
    "task.num_labels", "task.format",
    "data.seq_len", "data.batch_size", "data.seed", "data.eval_every",
    "model.classifier_dropout", "model.hidden_dropout_prob", "model.attention_probs_dropout_prob",
    "optimizer.type", "optimizer.lr", "optimizer.betas", "optimizer.eps", "optimizer.weight_decay",
    "optimizer.warmup_steps", "optimizer.schedule", "optimizer.min_lr_ratio", "optimizer.clip_norm",
    "optimizer.accumulation", "optimizer.max_nonfinite_steps",
    "budget.epochs", "budget.steps", "budget.seconds",
    "checkpoint.dir", "checkpoint.keep",
    "distill.teacher", "distill.temperature", "distill.alpha_ce", "distill.alpha_gold",
    NULL};

static int known(const char *section, const char *key)
{
    char k[320];
    if (section)
        snprintf(k, sizeof k, "%s.%s", section, key);
    else
        snprintf(k, sizeof k, "%s", key);
    for (int i = 0; KEYS[i]; i++)
        if (!strcmp(KEYS[i], k)) return 1;
    return 0;
}
static int is_section(const char *k)
{
    static const char *const S[] = {"task", "data", "model", "optimizer", "budget", "checkpoint", "distill", NULL};
    for (int i = 0; S[i]; i++)
        if (!strcmp(S[i], k)) return 1;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return EX_CONFIG;
}

/* root[section][key] = v (steals v); section NULL = top level */
static int put(json_t *root, const char *section, const char *key, json_t *v)
{
    json_t *o = root;
    if (section) {
        o = json_object_get(root, section);
        if (!o) {
            o = json_object();
            json_object_set_new(root, section, o);
        }
        if (!json_is_object(o)) {
            json_decref(v);
            return -1;
        }
    }
    return json_object_set_new(o, key, v);
}

static json_t *get(json_t *root, const char *section, const char *key)
{
    json_t *o = section ? json_object_get(root, section) : root;
    return o ? json_object_get(o, key) : NULL;
}

static int get_str(json_t *root, const char *sec, const char *key, char *out, size_t n, int nullable, char *err,
                   size_t errlen)
{
    json_t *v = get(root, sec, key);
    if (!v) return 0;
    if (json_is_null(v) && nullable) {
        out[0] = 0;
        return 0;
    }
    if (!json_is_string(v) || (!nullable && !json_string_length(v)))
        return fail(err, errlen, "%s%s%s: expected a %sstring", sec ? sec : "", sec ? "." : "", key,
                    nullable ? "" : "non-empty ");
    if (json_string_length(v) >= n) return fail(err, errlen, "%s.%s: longer than %zu bytes", sec, key, n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return 0;
}

static int get_num(json_t *root, const char *sec, const char *key, double *out, double lo, double hi, int integer,
                   int nullable, char *err, size_t errlen)
{
    json_t *v = get(root, sec, key);
    if (!v) return 0;
    if (json_is_null(v) && nullable) {
        *out = -1;
        return 0;
    }
    const char *name_sep = sec ? "." : "";
    if (!json_is_number(v)) return fail(err, errlen, "%s%s%s: expected a number", sec ? sec : "", name_sep, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi) || (integer && x != floor(x)))
        return fail(err, errlen, "%s%s%s: %g is not %s in [%g, %g]", sec ? sec : "", name_sep, key, x,
                    integer ? "an integer" : "a number", lo, hi);
    *out = x;
    return 0;
}

int kft_config_parse(kft_config *c, const char *json, size_t len, const char *const *sets, int n_sets, char *err,
                     size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->text_column, sizeof c->text_column, "sentence");
    snprintf(c->label_column, sizeof c->label_column, "label");
    c->task = KFT_CLASSIFICATION;
    c->seq_len = 128;
    c->batch_size = 32;
    c->seed = 1;
    c->classifier_dropout = c->hidden_dropout = c->attention_dropout = -1;
    c->epochs = 3;
    c->ckpt_keep = 1;
    c->kd_temperature = 2.0;
    c->kd_alpha_ce = c->kd_alpha_gold = 0.5;
    json_error_t je;
    json_t *root = json && len ? json_loadb(json, len, 0, &je) : json_object();
    if (!root || !json_is_object(root)) {
        if (root) json_decref(root);
        snprintf(err, errlen, "not a JSON object%s%s", root ? "" : ": ", root ? "" : je.text);
        return EX_DATAERR;
    }
    int rc = 0;
    /* overrides */
    for (int i = 0; i < n_sets && !rc; i++) {
        const char *eq = strchr(sets[i], '=');
        if (!eq) {
            rc = fail(err, errlen, "--set %s: expected section.key=value", sets[i]);
            break;
        }
        char path[160];
        snprintf(path, sizeof path, "%.*s", (int)(eq - sets[i]), sets[i]);
        char *dot = strchr(path, '.');
        if (dot) *dot = 0;
        const char *sec = dot ? path : NULL, *key = dot ? dot + 1 : path;
        if (!known(sec, key)) {
            rc = fail(err, errlen, "--set %s: unknown key %s%s%s", sets[i], sec ? sec : "", sec ? "." : "", key);
            break;
        }
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (!v) v = json_string(eq + 1);
        if (put(root, sec, key, v)) rc = fail(err, errlen, "--set %s: %s is not an object", sets[i], sec);
    }
    /* unknown keys */
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (rc) break;
        if (is_section(k)) {
            if (!json_is_object(v)) {
                rc = fail(err, errlen, "%s: expected an object", k);
                break;
            }
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                if (!known(k, k2)) {
                    rc = fail(err, errlen, "%s.%s: unknown key", k, k2);
                    break;
                }
            }
        } else if (!known(NULL, k)) {
            rc = fail(err, errlen, "%s: unknown key", k);
        }
    }
    double x;
    char s[64] = "";
    if (!rc) rc = get_str(root, NULL, "init", c->init, sizeof c->init, 0, err, errlen);
    if (!rc && !c->init[0]) rc = fail(err, errlen, "init: required (a kiln checkpoint or a Hugging Face folder)");
    x = 0;
    if (!rc) rc = get_num(root, NULL, "threads", &x, 0, 1024, 1, 0, err, errlen);
    c->threads = (int)x;
    if (!rc) rc = get_str(root, NULL, "precision", s, sizeof s, 1, err, errlen);
    if (!rc) {
        c->precision = s[0] ? kprecision_parse(s) : KPRECISION_AUTO;
        if (c->precision < 0) rc = fail(err, errlen, "precision: \"%s\" is not \"auto\", \"fp32\" or \"bf16\"", s);
    }
    s[0] = '\0';
    if (!rc) rc = get_str(root, "task", "type", s, sizeof s, 0, err, errlen);
    if (!rc && s[0]) {
        if (!strcmp(s, "classification")) c->task = KFT_CLASSIFICATION;
        else if (!strcmp(s, "regression")) c->task = KFT_REGRESSION;
        else rc = fail(err, errlen, "task.type: \"%s\" is not \"classification\" or \"regression\"", s);
    }
    if (!rc) rc = get_str(root, "task", "train", c->train, sizeof c->train, 0, err, errlen);
    if (!rc && !c->train[0]) rc = fail(err, errlen, "task.train: required (a GLUE TSV or JSONL file)");
    if (!rc) rc = get_str(root, "task", "dev", c->dev, sizeof c->dev, 1, err, errlen);
    if (!rc) rc = get_str(root, "task", "text_column", c->text_column, sizeof c->text_column, 0, err, errlen);
    if (!rc)
        rc = get_str(root, "task", "text_pair_column", c->text_pair_column, sizeof c->text_pair_column, 1, err,
                     errlen);
    if (!rc) rc = get_str(root, "task", "label_column", c->label_column, sizeof c->label_column, 0, err, errlen);
    x = c->task == KFT_REGRESSION ? 1 : 0;
    if (!rc) rc = get_num(root, "task", "num_labels", &x, 0, 65536, 1, 0, err, errlen);
    c->num_labels = (int)x;
    if (!rc && c->task == KFT_REGRESSION && c->num_labels != 1)
        rc = fail(err, errlen, "task.num_labels: regression has 1 output, got %d", c->num_labels);
    if (!rc && c->task == KFT_CLASSIFICATION && c->num_labels == 1)
        rc = fail(err, errlen, "task.num_labels: classification needs 0 (from the data) or at least 2, got 1");
    s[0] = 0;
    if (!rc) rc = get_str(root, "task", "format", s, sizeof s, 0, err, errlen);
    if (!rc && s[0]) {
        if (!strcmp(s, "auto")) c->format = 0;
        else if (!strcmp(s, "tsv")) c->format = 1;
        else if (!strcmp(s, "jsonl")) c->format = 2;
        else rc = fail(err, errlen, "task.format: \"%s\" is not \"auto\", \"tsv\" or \"jsonl\"", s);
    }
    x = c->seq_len;
    if (!rc) rc = get_num(root, "data", "seq_len", &x, 3, 65536, 1, 0, err, errlen);
    c->seq_len = (int)x;
    x = c->batch_size;
    if (!rc) rc = get_num(root, "data", "batch_size", &x, 1, 65536, 1, 0, err, errlen);
    c->batch_size = (int)x;
    x = (double)c->seed;
    if (!rc) rc = get_num(root, "data", "seed", &x, 0, 9007199254740992.0, 1, 0, err, errlen);
    c->seed = (uint64_t)x;
    x = 0;
    if (!rc) rc = get_num(root, "data", "eval_every", &x, 0, INT_MAX, 1, 0, err, errlen);
    c->eval_every = (int)x;
    if (!rc) rc = get_num(root, "model", "classifier_dropout", &c->classifier_dropout, 0, 0.999, 0, 1, err, errlen);
    if (!rc) rc = get_num(root, "model", "hidden_dropout_prob", &c->hidden_dropout, 0, 0.999, 0, 1, err, errlen);
    if (!rc)
        rc = get_num(root, "model", "attention_probs_dropout_prob", &c->attention_dropout, 0, 0.999, 0, 1, err,
                     errlen);
    if (!rc) rc = get_num(root, "budget", "epochs", &c->epochs, 0, 1e6, 0, 0, err, errlen);
    x = 0;
    if (!rc) rc = get_num(root, "budget", "steps", &x, 0, 1e15, 1, 0, err, errlen);
    c->steps = (int64_t)x;
    if (!rc) rc = get_num(root, "budget", "seconds", &c->seconds, 0, 1e9, 0, 0, err, errlen);
    if (!rc && get(root, "budget", "epochs") == NULL && (c->steps > 0 || c->seconds > 0))
        c->epochs = 0; /* a budget of steps or seconds alone */
    if (!rc && c->epochs <= 0 && c->steps <= 0 && c->seconds <= 0)
        rc = fail(err, errlen, "budget: give epochs, steps or seconds");
    if (!rc) rc = get_str(root, "checkpoint", "dir", c->ckpt_dir, sizeof c->ckpt_dir, 0, err, errlen);
    if (!rc && !c->ckpt_dir[0]) rc = fail(err, errlen, "checkpoint.dir: required");
    x = c->ckpt_keep;
    if (!rc) rc = get_num(root, "checkpoint", "keep", &x, 1, 1e6, 1, 0, err, errlen);
    c->ckpt_keep = (int)x;
    json_t *tv = get(root, "distill", "teacher"); /* "" (no distillation) is a valid value */
    if (!rc && tv && (!json_is_string(tv) || json_string_length(tv) >= sizeof c->teacher))
        rc = fail(err, errlen, "distill.teacher: expected a path (a string of at most %zu bytes)", sizeof c->teacher - 1);
    if (!rc && tv) snprintf(c->teacher, sizeof c->teacher, "%s", json_string_value(tv));
    if (!rc) rc = get_num(root, "distill", "temperature", &c->kd_temperature, 1e-3, 1000, 0, 0, err, errlen);
    if (!rc) rc = get_num(root, "distill", "alpha_ce", &c->kd_alpha_ce, 0, 1e6, 0, 0, err, errlen);
    if (!rc) rc = get_num(root, "distill", "alpha_gold", &c->kd_alpha_gold, 0, 1e6, 0, 0, err, errlen);
    if (!rc && c->teacher[0] && c->task == KFT_REGRESSION)
        rc = fail(err, errlen, "distill.teacher: task-specific distillation takes classification tasks (soft labels)");
    if (!rc && c->teacher[0] && c->kd_alpha_ce + c->kd_alpha_gold <= 0)
        rc = fail(err, errlen, "distill.alpha_ce and distill.alpha_gold are both 0: no loss");
    if (!rc) {
        /* the optimizer section with the fine-tuning defaults under it */
        json_t *o = json_pack("{s:s, s:f, s:f, s:s, s:f, s:i}", "type", "adamw", "lr", 5e-5, "weight_decay", 0.01,
                              "schedule", "linear", "clip_norm", 1.0, "warmup_steps", -1);
        json_t *given = json_object_get(root, "optimizer");
        if (given) json_object_update(o, given);
        char *t = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        if (!t || strlen(t) >= sizeof c->optimizer_json) rc = fail(err, errlen, "optimizer: section too long");
        else snprintf(c->optimizer_json, sizeof c->optimizer_json, "%s", t);
        free(t);
    }
    json_decref(root);
    return rc;
}

char *kft_config_to_json(const kft_config *c)
{
    static const char *const fmts[] = {"auto", "tsv", "jsonl"};
    json_t *opt = json_loads(c->optimizer_json, 0, NULL);
    json_t *o = json_pack(
        "{s:s, s:i,"
        " s:{s:s, s:s, s:o, s:s, s:o, s:s, s:i, s:s},"
        " s:{s:i, s:i, s:I, s:i},"
        " s:{s:o, s:o, s:o},"
        " s:o,"
        " s:{s:f, s:I, s:f},"
        " s:{s:s, s:i}}",
        "init", c->init, "threads", c->threads,
        "task", "type", c->task == KFT_REGRESSION ? "regression" : "classification", "train", c->train, "dev",
        c->dev[0] ? json_string(c->dev) : json_null(), "text_column", c->text_column, "text_pair_column",
        c->text_pair_column[0] ? json_string(c->text_pair_column) : json_null(), "label_column", c->label_column,
        "num_labels", c->num_labels, "format", fmts[c->format >= 0 && c->format <= 2 ? c->format : 0],
        "data", "seq_len", c->seq_len, "batch_size", c->batch_size, "seed", (json_int_t)c->seed, "eval_every",
        c->eval_every,
        "model", "classifier_dropout", c->classifier_dropout >= 0 ? json_real(c->classifier_dropout) : json_null(),
        "hidden_dropout_prob", c->hidden_dropout >= 0 ? json_real(c->hidden_dropout) : json_null(),
        "attention_probs_dropout_prob", c->attention_dropout >= 0 ? json_real(c->attention_dropout) : json_null(),
        "optimizer", opt ? opt : json_object(),
        "budget", "epochs", c->epochs, "steps", (json_int_t)c->steps, "seconds", c->seconds,
        "checkpoint", "dir", c->ckpt_dir, "keep", c->ckpt_keep);
    const char *prec = kprecision_name(c->precision);
    if (o) json_object_set_new(o, "precision", json_string(prec ? prec : "auto"));
    if (o)
        json_object_set_new(o, "distill",
                            json_pack("{s:s, s:f, s:f, s:f}", "teacher", c->teacher, "temperature", c->kd_temperature,
                                      "alpha_ce", c->kd_alpha_ce, "alpha_gold", c->kd_alpha_gold));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}
