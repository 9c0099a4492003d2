/* trainer/registry.c: the manifest of a model's parameter registry (the JSON
 * format of registry.h) and its aliases.
 *
 * What it is: a reader of kmodel_params and the model's config and spec that
 * writes them out for tools outside kiln (the PyTorch reference reads it).
 * What it is not: a second name table; every name comes from the builder in
 * model.c, except the tied decoder's alias, which is written here once. */
#include "trainer/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "trainer/model.h"

/* heads bit -> manifest name, in manifest order */
static const struct {
    int bit;
    const char *name;
} head_names[] = {
    {KHEAD_MLM, "mlm"}, {KHEAD_SENTENCE, "sentence"}, {KHEAD_CLASSIFY, "classify"},
    {KHEAD_TOKEN, "token"}, {KHEAD_LM, "lm"}, {KHEAD_DEA, "dea"},
};

static const char *init_name(int init)
{
    switch (init) {
    case KINIT_ONE: return "one";
    case KINIT_ZERO: return "zero";
    case KINIT_NORMAL_RESID: return "normal_resid";
    default: return "normal";
    }
}

int kregistry_aliases_of(int type, int heads, int with_bias, kalias *out, int max)
{
    int n = 0;
    if ((heads & KHEAD_MLM) && type == KMODEL_ELECTRA) {
        /* the generator's decoder (its bias is a tensor of its own); the pair names it with "generator." */
        if (n < max) {
            snprintf(out[n].name, sizeof out[n].name, "%sgenerator_lm_head.weight",
                     (heads & KHEAD_TOKEN) ? "generator." : "");
            snprintf(out[n].target, sizeof out[n].target, "electra.embeddings.word_embeddings.weight");
        }
        return 1;
    }
    if ((heads & KHEAD_LM) && type == KMODEL_GPT2) { /* GPT2LMHeadModel: the head is the word embeddings */
        if (n < max) {
            snprintf(out[n].name, sizeof out[n].name, "lm_head.weight");
            snprintf(out[n].target, sizeof out[n].target, "transformer.wte.weight");
        }
        return 1;
    }
    if ((heads & KHEAD_MLM) && type == KMODEL_DISTILBERT) {
        /* DistilBertForMaskedLM: vocab_projector's weight is the word embeddings (its bias is its own) */
        if (n < max) {
            snprintf(out[n].name, sizeof out[n].name, "vocab_projector.weight");
            snprintf(out[n].target, sizeof out[n].target, "distilbert.embeddings.word_embeddings.weight");
        }
        return 1;
    }
    if (heads & KHEAD_MLM) {
        const int albert = type == KMODEL_ALBERT;
        const char *pre = albert ? "" : "cls.";
        if (n < max) {
            snprintf(out[n].name, sizeof out[n].name, "%spredictions.decoder.weight", pre);
            snprintf(out[n].target, sizeof out[n].target, "%s",
                     albert ? "albert.embeddings.word_embeddings.weight" : "bert.embeddings.word_embeddings.weight");
        }
        n++;
        if (with_bias) {
            if (n < max) {
                snprintf(out[n].name, sizeof out[n].name, "%spredictions.decoder.bias", pre);
                snprintf(out[n].target, sizeof out[n].target, "%spredictions.bias", pre);
            }
            n++;
        }
    }
    return n;
}

int kregistry_aliases(const kmodel *m, kalias *out, int max)
{
    return kregistry_aliases_of(kmodel_get_config(m)->type, kmodel_get_spec(m)->heads, 0, out, max);
}

/* Appends s to *b (len *n, capacity *cap); 0 or -1 when out of memory. */
static int append(char **b, size_t *n, size_t *cap, const char *s)
{
    size_t k = strlen(s);
    if (*n + k + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *n + k + 1) c *= 2;
        char *p = realloc(*b, c);
        if (!p) return -1;
        *b = p, *cap = c;
    }
    memcpy(*b + *n, s, k + 1);
    *n += k;
    return 0;
}

/* root as JSON text: one top-level key per line, and one element per line in
 * its arrays of objects ("tensors", "aliases"). malloc'd, NULL when out of memory. */
static char *dump_lines(json_t *root)
{
    char *b = NULL;
    size_t n = 0, cap = 0;
    int fail = append(&b, &n, &cap, "{");
    const char *key;
    json_t *v;
    int first = 1;
    json_object_foreach(root, key, v) {
        json_t *ks = json_string(key);
        char *k = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL; /* the key, escaped */
        json_decref(ks);
        fail |= !k || append(&b, &n, &cap, first ? "\n " : ",\n ") || append(&b, &n, &cap, k) ||
                append(&b, &n, &cap, ": ");
        free(k);
        first = 0;
        int rows = json_is_array(v) && json_array_size(v) > 0 && json_is_object(json_array_get(v, 0));
        if (!rows) {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            fail |= !s || append(&b, &n, &cap, s);
            free(s);
            continue;
        }
        size_t i;
        json_t *e;
        fail |= append(&b, &n, &cap, "[");
        json_array_foreach(v, i, e) {
            char *s = json_dumps(e, JSON_COMPACT);
            fail |= !s || append(&b, &n, &cap, i ? ",\n  " : "\n  ") || append(&b, &n, &cap, s);
            free(s);
        }
        fail |= append(&b, &n, &cap, "]");
    }
    fail |= append(&b, &n, &cap, "\n}\n");
    if (fail) {
        free(b);
        return NULL;
    }
    return b;
}

char *kregistry_manifest(const kmodel *m)
{
    const kmodel_config *c = kmodel_get_config(m);
    const kmodel_spec *s = kmodel_get_spec(m);
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    json_t *root = json_object(), *heads = json_array(), *tensors = json_array(), *aliases = json_array();
    int fail = !root || !heads || !tensors || !aliases;
    if (!fail) {
        fail |= json_object_set_new(root, "format", json_string(KREGISTRY_FORMAT));
        fail |= json_object_set_new(root, "version", json_integer(KREGISTRY_VERSION));
        fail |= json_object_set_new(root, "model_type", json_string(c->type == KMODEL_ALBERT    ? "albert"
                                                                    : c->type == KMODEL_ELECTRA ? "electra"
                                                                    : c->type == KMODEL_GPT2    ? "gpt2"
                                                                    : c->type == KMODEL_DISTILBERT
                                                                        ? "distilbert"
                                                                        : "bert"));
        for (size_t i = 0; i < sizeof head_names / sizeof head_names[0]; i++)
            if (s->heads & head_names[i].bit) fail |= json_array_append_new(heads, json_string(head_names[i].name));
        fail |= json_object_set(root, "heads", heads);
        fail |= json_object_set_new(root, "num_labels", json_integer(s->heads & KHEAD_CLASSIFY ? s->num_labels : 0));
        fail |= json_object_set_new(root, "pre_ln", json_integer(s->pre_ln ? 1 : 0));
        fail |= json_object_set_new(root, "causal", json_integer(s->causal ? 1 : 0));
    }
    for (int i = 0; i < nt && !fail; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim && shape; d++) fail |= json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_t *e = shape ? json_pack("{s:s, s:o, s:i, s:i, s:s, s:i}", "name", t[i].name, "shape", shape, "decay",
                                      t[i].decay, "frozen", t[i].frozen, "init", init_name(t[i].init), "transpose",
                                      t[i].transpose)
                          : NULL;
        fail |= !e || json_array_append_new(tensors, e);
    }
    kalias al[KREGISTRY_MAX_ALIASES];
    int na = kregistry_aliases(m, al, KREGISTRY_MAX_ALIASES);
    for (int i = 0; i < na && i < KREGISTRY_MAX_ALIASES && !fail; i++) {
        json_t *e = json_pack("{s:s, s:s}", "name", al[i].name, "target", al[i].target);
        fail |= !e || json_array_append_new(aliases, e);
    }
    if (!fail) fail |= json_object_set(root, "tensors", tensors) || json_object_set(root, "aliases", aliases);
    char *out = fail ? NULL : dump_lines(root);
    json_decref(heads), json_decref(tensors), json_decref(aliases), json_decref(root);
    return out;
}
