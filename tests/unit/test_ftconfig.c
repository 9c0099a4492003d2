/* test_ftconfig.c: unit tests of trainer/ftconfig.c, the fine-tuning config
 * reader: defaults, --set overrides, refusals named by field, and the JSON
 * Schema (schemas/finetune-config.schema.json) held to the reader: every
 * schema key is a key the reader takes, and every default the schema states
 * is the reader's (checked on kft_config_to_json). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/ftconfig.h"

static const char *MIN = "{\"init\": \"ck\", \"task\": {\"train\": \"t.tsv\"}, \"checkpoint\": {\"dir\": \"d\"}}";

static int parse(kft_config *c, const char *json, const char *set, char *err)
{
    const char *sets[1] = {set};
    return kft_config_parse(c, json, strlen(json), sets, set ? 1 : 0, err, 512);
}

static void test_defaults(void **state)
{
    (void)state;
    kft_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, MIN, NULL, err), 0);
    assert_string_equal(c.init, "ck");
    assert_string_equal(c.text_column, "sentence");
    assert_string_equal(c.label_column, "label");
    assert_int_equal(c.task, KFT_CLASSIFICATION);
    assert_int_equal(c.seq_len, 128);
    assert_int_equal(c.batch_size, 32);
    assert_true(c.epochs == 3 && c.steps == 0 && c.ckpt_keep == 1 && c.dev[0] == 0 && c.text_pair_column[0] == 0);
    json_t *o = json_loads(c.optimizer_json, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "adamw");
    assert_true(json_real_value(json_object_get(o, "lr")) == 5e-5);
    assert_int_equal(json_integer_value(json_object_get(o, "warmup_steps")), -1);
    json_decref(o);
}

static void test_sets_and_errors(void **state)
{
    (void)state;
    kft_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, MIN, "data.seq_len=64", err), 0);
    assert_int_equal(c.seq_len, 64);
    assert_int_equal(parse(&c, MIN, "task.text_pair_column=sentence2", err), 0);
    assert_string_equal(c.text_pair_column, "sentence2");
    assert_int_equal(parse(&c, MIN, "optimizer.lr=0.001", err), 0);
    assert_non_null(strstr(c.optimizer_json, "\"lr\":0.001"));
    /* a budget of steps alone turns the epochs off */
    assert_int_equal(parse(&c, MIN, "budget.steps=50", err), 0);
    assert_true(c.steps == 50 && c.epochs == 0);
    assert_int_equal(parse(&c, MIN, "task.txt=1", err), EX_CONFIG);
    assert_non_null(strstr(err, "task.txt"));
    assert_int_equal(parse(&c, "{\"init\": \"x\", \"tsk\": {}}", NULL, err), EX_CONFIG);
    assert_non_null(strstr(err, "tsk"));
    assert_int_equal(parse(&c, MIN, "data.seq_len=2", err), EX_CONFIG);
    assert_non_null(strstr(err, "data.seq_len"));
    assert_int_equal(parse(&c, MIN, "task.type=regression", err), 0);
    assert_int_equal(c.num_labels, 1);
    assert_int_equal(parse(&c, MIN, "task.num_labels=1", err), EX_CONFIG);
    assert_int_equal(parse(&c, "{\"task\": {\"train\": \"t\"}, \"checkpoint\": {\"dir\": \"d\"}}", NULL, err), EX_CONFIG);
    assert_non_null(strstr(err, "init"));
    assert_int_equal(parse(&c, "[1]", NULL, err), EX_DATAERR);
    assert_int_equal(parse(&c, MIN, "budget.epochs=0", err), EX_CONFIG);
    assert_non_null(strstr(err, "budget"));
    /* eval_every is an int: the largest is taken, one more is refused by name
     * (fuzz_ftconfig found 3e9 converted to int, undefined behaviour) */
    assert_int_equal(parse(&c, MIN, "data.eval_every=2147483647", err), 0);
    assert_int_equal(c.eval_every, 2147483647);
    assert_int_equal(parse(&c, MIN, "data.eval_every=3000000000", err), EX_CONFIG);
    assert_non_null(strstr(err, "data.eval_every"));
}

/* the schema's keys and defaults against the reader */
static void test_schema(void **state)
{
    (void)state;
    json_error_t je;
    json_t *s = json_load_file(KILN_SOURCE_DIR "/schemas/finetune-config.schema.json", JSON_REJECT_DUPLICATES, &je);
    assert_non_null(s);
    kft_config c;
    char err[512] = "";
    assert_int_equal(parse(&c, MIN, NULL, err), 0);
    char *dj = kft_config_to_json(&c);
    json_t *d = json_loads(dj, 0, NULL);
    free(dj);
    assert_non_null(d);
    int keys = 0, defaults = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(s, "properties"), k, v) {
        json_t *props = json_object_get(v, "properties");
        if (!props) { /* a top-level key */
            keys++;
            continue;
        }
        assert_true(json_is_false(json_object_get(v, "additionalProperties")));
        const char *k2;
        json_t *p;
        json_object_foreach(props, k2, p) {
            keys++;
            /* the reader takes the key (set to its default, or to a valid value) */
            json_t *dv = json_object_get(p, "default");
            char set[256];
            char *val = dv ? json_dumps(dv, JSON_ENCODE_ANY) : NULL;
            if (!strcmp(k, "optimizer") && !strcmp(k2, "betas")) snprintf(set, sizeof set, "optimizer.betas=[0.9,0.999]");
            else if (!strcmp(k2, "eps")) snprintf(set, sizeof set, "optimizer.eps=1e-8");
            else if (!strcmp(k2, "min_lr_ratio")) snprintf(set, sizeof set, "optimizer.min_lr_ratio=0");
            else if (!strcmp(k2, "train") || !strcmp(k2, "dir")) snprintf(set, sizeof set, "%s.%s=\"x\"", k, k2);
            else snprintf(set, sizeof set, "%s.%s=%s", k, k2, val ? val : "1");
            int rc = parse(&c, MIN, set, err);
            if (rc) fail_msg("schema key %s.%s: the reader says: %s", k, k2, err);
            /* the reader's default is the schema's (optimizer defaults are checked in test_defaults) */
            if (dv && strcmp(k, "optimizer")) {
                json_t *rv = json_object_get(json_object_get(d, k), k2);
                if (!json_equal(rv, dv) && !(json_is_number(rv) && json_is_number(dv) &&
                                             json_number_value(rv) == json_number_value(dv)))
                    fail_msg("%s.%s: schema default %s, reader %s", k, k2, val, json_dumps(rv, JSON_ENCODE_ANY));
                defaults++;
            }
            free(val);
        }
    }
    print_message("%d schema keys taken by the reader, %d defaults equal\n", keys, defaults);
    assert_true(keys >= 30 && defaults >= 15);
    json_decref(d);
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_defaults), cmocka_unit_test(test_sets_and_errors),
                                       cmocka_unit_test(test_schema)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
