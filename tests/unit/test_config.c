/* test_config.c: unit tests of the run config (trainer/config.h): defaults,
 * the reader's messages for unknown keys, wrong types, out-of-range values
 * and cross-field rules, derived values, --set overrides, the canonical
 * writer's exact round trip, the example configs, and the agreement of
 * schemas/run-config.schema.json with the reader (same keys, same
 * defaults, same bounds). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/batch.h"
#include "trainer/config.h"
#include "util/util.h"

static char err[1024];

/* Parses text with sets; returns the code, err filled. */
static int parse(ktrain_config *c, const char *text, int n_sets, ...)
{
    const char *sets[16];
    va_list ap;
    va_start(ap, n_sets);
    for (int i = 0; i < n_sets; i++) sets[i] = va_arg(ap, const char *);
    va_end(ap);
    return ktrain_config_parse(c, text, text ? strlen(text) : 0, sets, n_sets, err, sizeof err);
}

/* Expects failure with code and every fragment in the message. */
static void expect_fail(int code, const char *text, const char *set, const char *frag1, const char *frag2)
{
    ktrain_config c;
    int rc = set ? parse(&c, text, 1, set) : parse(&c, text, 0);
    if (rc != code || !strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
        fail_msg("config %s (set %s): rc %d, message \"%s\"; expected %d with \"%s\"%s%s", text ? text : "(none)",
                 set ? set : "-", rc, err, code, frag1, frag2 ? " and " : "", frag2 ? frag2 : "");
}

#define BUDGET "\"budget\": {\"steps\": 1000}"

/* c's canonical JSON reads back as c, field for field. */
static void assert_round_trip(const ktrain_config *c)
{
    char *j1 = ktrain_config_to_json(c);
    ktrain_config d;
    int rc = ktrain_config_parse(&d, j1, strlen(j1), NULL, 0, err, sizeof err);
    if (rc) fail_msg("%s\n%s", err, j1);
    char *j2 = ktrain_config_to_json(&d);
    assert_string_equal(j1, j2);
    /* every field equal: the structs start zeroed and hold no pointers */
    assert_memory_equal(&c->model, &d.model, sizeof c->model);
    assert_memory_equal(&c->data, &d.data, sizeof c->data);
    assert_memory_equal(&c->optimizer, &d.optimizer, sizeof c->optimizer);
    assert_memory_equal(&c->budget, &d.budget, sizeof c->budget);
    assert_memory_equal(&c->checkpoint, &d.checkpoint, sizeof c->checkpoint);
    assert_int_equal(c->threads, d.threads);
    free(j1);
    free(j2);
}

/* ---- defaults and derived values ------------------------------------------ */

static void test_defaults(void **state)
{
    (void)state;
    ktrain_config c;
    assert_int_equal(parse(&c, "{" BUDGET "}", 0), 0);
    assert_int_equal(c.model.type, KMODEL_ALBERT);
    assert_int_equal(c.model.vocab_size, 0);
    assert_int_equal(c.model.embedding_size, 128);
    assert_int_equal(c.model.hidden_size, 256);
    assert_int_equal(c.model.num_hidden_layers, 4);
    assert_int_equal(c.model.num_attention_heads, 4);
    assert_int_equal(c.model.intermediate_size, 1024);
    assert_int_equal(c.model.max_position_embeddings, 512);
    assert_int_equal(c.model.hidden_act, KACT_GELU_NEW);
    assert_int_equal(c.model.num_hidden_groups, 1);
    assert_int_equal(c.data.objectives, KOBJ_MLM | KOBJ_SOP);
    assert_int_equal(c.data.seq_len, 128);
    assert_int_equal(c.data.batch_size, 16);
    assert_int_equal(c.data.max_predictions, 0); /* the sampler's default */
    assert_int_equal(c.optimizer.type, KOPT_ADAMW);
    assert_true(c.optimizer.lr == 5e-4 && c.optimizer.beta1 == 0.9 && c.optimizer.beta2 == 0.999);
    assert_true(c.optimizer.eps == 1e-6 && c.optimizer.weight_decay == 0.01);
    assert_int_equal(c.optimizer.warmup_steps, 100); /* 10% of 1000 steps */
    assert_int_equal(c.optimizer.schedule, KSCHED_LINEAR);
    assert_int_equal(c.budget.steps, 1000);
    assert_string_equal(c.checkpoint.dir, "checkpoints");
    assert_int_equal(c.checkpoint.keep, 3);
    assert_int_equal(c.threads, 0);
    /* empty text = {} */
    assert_int_equal(parse(&c, NULL, 1, "budget.seconds=60", NULL), EX_CONFIG); /* warmup -1 needs steps */
    assert_non_null(strstr(err, "optimizer.warmup_steps"));
    assert_int_equal(parse(&c, "", 2, "budget.seconds=60", "optimizer.warmup_steps=10"), 0);
    assert_true(c.budget.seconds == 60);
}

static void test_warmup_from_tokens(void **state)
{
    (void)state;
    ktrain_config c;
    /* 16 * 128 * 2 = 4096 tokens a step; 4,096,000 tokens = 1000 steps */
    assert_int_equal(parse(&c, "{\"budget\": {\"tokens\": 4096000}, \"optimizer\": {\"accumulation\": 2}}", 0), 0);
    assert_int_equal(c.optimizer.warmup_steps, 100);
    /* both axes: the smaller step count */
    assert_int_equal(parse(&c, "{\"budget\": {\"tokens\": 4096000, \"steps\": 50}, \"optimizer\": {\"accumulation\": 2}}", 0), 0);
    assert_int_equal(c.optimizer.warmup_steps, 5);
    /* 1e6 as a real is an integer */
    assert_int_equal(parse(&c, "{\"budget\": {\"tokens\": 1e6}}", 0), 0);
    assert_int_equal(c.budget.tokens, 1000000);
    expect_fail(EX_CONFIG, "{\"budget\": {\"tokens\": 1.5}}", NULL, "budget.tokens", "expected an integer");
    expect_fail(EX_CONFIG, "{\"budget\": {\"steps\": 100}, \"optimizer\": {\"warmup_steps\": 100}}", NULL,
                "optimizer.warmup_steps", "below budget.steps (100)");
}

static void test_bert_derives_e_and_groups(void **state)
{
    (void)state;
    ktrain_config c;
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"bert\", \"hidden_size\": 384, \"num_attention_heads\": 6,"
                               " \"num_hidden_layers\": 6}," BUDGET "}", 0), 0);
    assert_int_equal(c.model.embedding_size, 384);
    assert_int_equal(c.model.num_hidden_groups, 6);
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"bert\", \"embedding_size\": 128}," BUDGET "}", NULL,
                "model.embedding_size", "must equal hidden_size (256)");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"bert\", \"num_hidden_groups\": 1}," BUDGET "}", NULL,
                "model.num_hidden_groups", "num_hidden_layers (4)");
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"bert\", \"embedding_size\": 256, \"num_hidden_groups\": 4},"
                               BUDGET "}", 0), 0);
}

/* ---- messages ---------------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_fail(EX_CONFIG, "{\"model\": {\"hiden_size\": 3}}", NULL, "model.hiden_size: unknown key",
                "did you mean 'hidden_size'?");
    expect_fail(EX_CONFIG, "{\"modle\": {}}", NULL, "modle: unknown section or key", "'model'");
    expect_fail(EX_CONFIG, "{\"data\": {\"zzzzzzzzzz\": 1}}", NULL, "data.zzzzzzzzzz: unknown key", NULL);
    expect_fail(EX_CONFIG, "{\"model\": 3}", NULL, "model: expected an object", NULL);
    expect_fail(EX_CONFIG, "{\"threads\": {}}", NULL, "threads: expected an integer", NULL);
}

static void test_types_and_ranges(void **state)
{
    (void)state;
    expect_fail(EX_CONFIG, "{\"model\": {\"hidden_size\": \"big\"}}", NULL, "model.hidden_size: expected an integer from 1 to 65536",
                "the string \"big\"");
    expect_fail(EX_CONFIG, "{\"model\": {\"hidden_size\": 0}}", NULL, "model.hidden_size", "got 0");
    expect_fail(EX_CONFIG, "{\"model\": {\"hidden_size\": 12.5}}", NULL, "model.hidden_size", "got 12.5");
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"lr\": -1}}", NULL, "optimizer.lr: expected a number > 0 and <= 10, got -1",
                NULL);
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"lr\": \"1e-3\"}}", NULL, "optimizer.lr", "the string");
    expect_fail(EX_CONFIG, "{\"model\": {\"hidden_act\": \"relu\"}}", NULL,
                "model.hidden_act: expected \"gelu_new\" or \"gelu\", got the string \"relu\"", NULL);
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"schedule\": 1}}", NULL,
                "expected \"linear\", \"cosine\" or \"constant\", got 1", NULL);
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"betas\": [0.9]}}", NULL, "optimizer.betas: expected [beta1, beta2]",
                "[0.9]");
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"betas\": [0.9, 1]}}", NULL, "optimizer.betas", "< 1");
    expect_fail(EX_CONFIG, "{\"optimizer\": {\"betas\": 0.9}}", NULL, "optimizer.betas", "got 0.9");
    expect_fail(EX_CONFIG, "{\"data\": {\"mask_prob\": 1}}", NULL, "data.mask_prob", "< 1");
    expect_fail(EX_CONFIG, "{\"data\": {\"seed\": -1}}", NULL, "data.seed", "2^63-1");
    expect_fail(EX_CONFIG, "{\"data\": {\"vocab\": 12}}", NULL, "data.vocab: expected a string, got 12", NULL);
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": null}}", NULL, "model.type", "got null");
    char big[400];
    snprintf(big, sizeof big, "{\"data\": {\"vocab\": \"%0200d\"}}", 0);
    expect_fail(EX_CONFIG, big, NULL, "data.vocab: too long: 200 bytes, at most 127", NULL);
}

static void test_cross_checks(void **state)
{
    (void)state;
    expect_fail(EX_CONFIG, "{\"model\": {\"hidden_size\": 250}," BUDGET "}", NULL,
                "model.num_attention_heads: must divide hidden_size (250), got 4", NULL);
    expect_fail(EX_CONFIG, "{\"model\": {\"num_hidden_groups\": 3}," BUDGET "}", NULL,
                "model.num_hidden_groups: must divide num_hidden_layers (4), got 3", NULL);
    expect_fail(EX_CONFIG, "{\"launch\": {\"hostfile\": \"/etc/hosts\"}," BUDGET "}", NULL,
                "launch.hostfile: needs launch.ranks > 1 (mpirun's processes)", NULL);
    {
        ktrain_config c;
        assert_int_equal(parse(&c, "{\"launch\": {\"ranks\": 4, \"hostfile\": \"/h\"}," BUDGET "}", 0), 0);
        assert_int_equal(c.launch.ranks, 4);
        assert_string_equal(c.launch.hostfile, "/h");
        char *t = ktrain_config_to_json(&c);
        assert_non_null(strstr(t, "\"launch\""));
        free(t);
        assert_int_equal(parse(&c, "{" BUDGET "}", 0), 0);
        t = ktrain_config_to_json(&c);
        assert_null(strstr(t, "\"launch\"")); /* one process: no section */
        free(t);
    }
    expect_fail(EX_CONFIG, "{\"data\": {\"seq_len\": 1024}," BUDGET "}", NULL,
                "data.seq_len: at most model.max_position_embeddings (512), got 1024", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"seq_len\": 4}}", NULL, "data.seq_len: expected an integer from 8", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"max_predictions\": 200}," BUDGET "}", NULL,
                "data.max_predictions: at most seq_len (128)", NULL);
    expect_fail(EX_CONFIG, "{\"model\": {\"vocab_size\": 100, \"pad_token_id\": 100}," BUDGET "}", NULL,
                "model.pad_token_id: must be below vocab_size (100)", NULL);
    expect_fail(EX_CONFIG, "{\"model\": {\"vocab_size\": 7}," BUDGET "}", NULL,
                "model.vocab_size: 0 (the vocabulary's size) or at least 8, got 7", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"valid_fraction\": 0}," BUDGET "}", NULL, "data.valid_every",
                "valid_fraction");
    expect_fail(EX_CONFIG, "{}", NULL, "budget: set at least one of", NULL);
    ktrain_config c;
    assert_int_equal(parse(&c, "{\"data\": {\"valid_fraction\": 0, \"valid_every\": 0}," BUDGET "}", 0), 0);
}

static void test_objectives(void **state)
{
    (void)state;
    ktrain_config c;
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"mlm\", \"wwm\"]}," BUDGET "}", NULL,
                "data.objectives: one token-level objective at a time", "got mlm and wwm");
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"sop\"]}," BUDGET "}", NULL, "data.objectives",
                "needs one token-level objective");
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"mlm\", \"sop\", \"nsp\"]}," BUDGET "}", NULL,
                "sop and nsp exclude each other", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"clm\", \"nsp\"]}," BUDGET "}", NULL, "clm", "no sop or nsp");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"electra\"}, \"data\": {\"objectives\": [\"rtd\", \"entities\"]}," BUDGET "}",
                NULL, "entities", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"rtd\"]}," BUDGET "}", NULL, "data.objectives",
                "set model.type \"electra\"");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"electra\"}," BUDGET "}", NULL, "data.objectives", "[\"rtd\"]");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"electra\"}, \"data\": {\"objectives\": [\"rtd\", \"sop\"]}," BUDGET "}",
                NULL, "data.objectives", "no sentence-pair head");
    expect_fail(EX_CONFIG, "{\"model\": {\"generator_hidden_size\": 64}," BUDGET "}", NULL,
                "model.generator_hidden_size", "only for model.type \"electra\"");
    expect_fail(EX_CONFIG,
                "{\"model\": {\"type\": \"electra\", \"generator_hidden_size\": 60, \"generator_num_attention_heads\": 7},"
                " \"data\": {\"objectives\": [\"rtd\"]}," BUDGET "}",
                NULL, "model.generator_num_attention_heads", "must divide generator_hidden_size (60), got 7");
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": []}}", NULL, "data.objectives: no objective given", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"mlm\", \"mlm\"]}}", NULL, "'mlm' is listed twice", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"mlmx\"]}}", NULL, "unknown objective 'mlmx'", NULL);
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [1]}}", NULL, "expected objective names", NULL);
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"bert\"}, \"data\": {\"objectives\": \"wwm, nsp,entities\"},"
                               " \"knowledge\": {}," BUDGET "}", 0), 0);
    assert_int_equal(c.data.objectives, KOBJ_WWM | KOBJ_NSP | KOBJ_ENTITIES);
    assert_int_equal(c.model.fusion_layers, 2); /* half the default 4 layers */
    assert_int_equal(c.model.entity_attention_heads, 4);
    assert_int_equal(c.knowledge_embedding, 0); /* latest */
    assert_int_equal(c.knowledge_hide_masked, 1); /* kiln's default: masked mentions lose their entity input */
    /* the knowledge section (ERNIE) and the entities objective go together */
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}," BUDGET "}", NULL, "data.objectives",
                "add a knowledge section");
    expect_fail(EX_CONFIG, "{\"knowledge\": {\"fusion_layers\": 1}," BUDGET "}", NULL, "data.objectives",
                "needs \"entities\"");
    expect_fail(EX_CONFIG,
                "{\"model\": {\"num_hidden_layers\": 2}, \"data\": {\"objectives\": [\"mlm\", \"entities\"]},"
                " \"knowledge\": {\"fusion_layers\": 3}," BUDGET "}",
                NULL, "knowledge.fusion_layers", "at most model.num_hidden_layers (2)");
    expect_fail(EX_CONFIG,
                "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"embedding\": \"newest\"},"
                BUDGET "}",
                NULL, "knowledge.embedding", "expected \"latest\" or an embedding id");
    expect_fail(EX_CONFIG,
                "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"entity_hidden_size\": 10},"
                BUDGET "}",
                NULL, "knowledge.entity_attention_heads", "4 does not divide entity_hidden_size 10");
    expect_fail(EX_CONFIG,
                "{\"model\": {\"type\": \"distilbert\"}, \"data\": {\"objectives\": [\"mlm\", \"entities\"]},"
                " \"knowledge\": {}," BUDGET "}",
                NULL, "model.type", "bert or albert");
    assert_int_equal(parse(&c, "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"embedding\": 7,"
                               " \"fusion_layers\": 1, \"dea\": false}," BUDGET "}", 0), 0);
    assert_true(c.knowledge_embedding == 7 && c.model.fusion_layers == 1 && !c.model.dea);
    assert_int_equal(parse(&c, "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\":"
                               " {\"hide_masked_entities\": false}," BUDGET "}", 0), 0);
    assert_int_equal(c.knowledge_hide_masked, 0);
    assert_true(c.model.dea_weight == 1.0); /* upstream's MLM + dEA */
    assert_int_equal(parse(&c, "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\":"
                               " {\"dea_weight\": 0.3}," BUDGET "}", 0), 0);
    assert_true(c.model.dea_weight == 0.3 && c.model.dea);
    expect_fail(EX_CONFIG,
                "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"dea_weight\": 0},"
                BUDGET "}",
                NULL, "knowledge.dea_weight", NULL);
    expect_fail(EX_CONFIG,
                "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"dea\": false,"
                " \"dea_weight\": 0.5}," BUDGET "}",
                NULL, "knowledge.dea_weight", "\"dea\": false turns off");
    {   /* a run without dEA: its canonical JSON (every knowledge key, dea_weight 1 among them) reads back */
        assert_int_equal(parse(&c, "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\":"
                                   " {\"dea\": false}," BUDGET "}", 0), 0);
        assert_round_trip(&c);
        char *t1 = ktrain_config_to_json(&c);
        assert_non_null(strstr(t1, "\"dea_weight\": 1"));
        free(t1);
    }
    expect_fail(EX_CONFIG,
                "{\"data\": {\"objectives\": [\"mlm\", \"entities\"]}, \"knowledge\": {\"hide_masked_entities\": 1},"
                BUDGET "}",
                NULL, "knowledge.hide_masked_entities", NULL);
    /* clm trains the causal model only */
    expect_fail(EX_CONFIG, "{\"data\": {\"objectives\": [\"clm\"]}," BUDGET "}", NULL, "data.objectives",
                "model.type \"gpt2\"");
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"gpt2\"}, \"data\": {\"objectives\": [\"clm\"]}," BUDGET "}", 0), 0);
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"electra\"}, \"data\": {\"objectives\": [\"rtd\"]}," BUDGET "}", 0), 0);
    /* ELECTRA's derived generator: a quarter of the width, same depth, 4 G FFN */
    assert_int_equal(c.model.generator_hidden_size, 64);
    assert_int_equal(c.model.generator_num_hidden_layers, 4);
    assert_int_equal(c.model.generator_num_attention_heads, 1);
    assert_int_equal(c.model.generator_intermediate_size, 256);
    assert_int_equal(c.model.num_hidden_groups, 4);
    assert_true(c.model.disc_weight == 50.0);
    {   /* the canonical JSON of an ELECTRA config reads back as itself; other types do not write the keys */
        assert_round_trip(&c);
        char *t1 = ktrain_config_to_json(&c);
        assert_non_null(strstr(t1, "\"generator_hidden_size\": 64"));
        free(t1);
        assert_int_equal(parse(&c, "{\"data\": {\"objectives\": [\"mlm\"]}," BUDGET "}", 0), 0);
        t1 = ktrain_config_to_json(&c);
        assert_null(strstr(t1, "generator_"));
        free(t1);
    }
    assert_int_equal(
        parse(&c, "{\"data\": {\"objectives\": [\"ngram\", \"sop\", \"entities\"]}, \"knowledge\": {}," BUDGET "}", 0), 0);
    assert_int_equal(c.model.fusion_layers, 2);
}

static void test_json_errors(void **state)
{
    (void)state;
    expect_fail(EX_DATAERR, "{\n  \"model\": {\"hidden_size\": 3,}\n}", NULL, "line 2", NULL);
    expect_fail(EX_DATAERR, "[1, 2]", NULL, "must be a JSON object", NULL);
    expect_fail(EX_DATAERR, "{\"model\": {}, \"model\": {}}", NULL, "duplicate", NULL);
}

/* ---- --set ---------------------------------------------------------------------- */

static void test_sets(void **state)
{
    (void)state;
    ktrain_config c;
    assert_int_equal(parse(&c, "{\"model\": {\"hidden_size\": 128}," BUDGET "}", 7, "model.hidden_size=512",
                           "optimizer.betas=[0.9, 0.98]", "data.vocab=wiki-30k", "threads=2",
                           "data.objectives=wwm,nsp", "checkpoint.dir=\"123\"", "optimizer.lr=1e-3"),
                     0);
    assert_int_equal(c.model.hidden_size, 512);
    assert_true(c.optimizer.beta2 == 0.98);
    assert_string_equal(c.data.vocab, "wiki-30k");
    assert_int_equal(c.threads, 2);
    assert_int_equal(c.data.objectives, KOBJ_WWM | KOBJ_NSP);
    assert_string_equal(c.checkpoint.dir, "123");
    assert_true(c.optimizer.lr == 1e-3);
    /* a whole section, and later sets win */
    assert_int_equal(parse(&c, NULL, 3, "model={\"type\": \"bert\", \"hidden_size\": 64}", "budget.steps=10",
                           "model.hidden_size=32"), 0);
    assert_int_equal(c.model.type, KMODEL_BERT);
    assert_int_equal(c.model.hidden_size, 32);
    assert_int_equal(c.model.embedding_size, 32);
    expect_fail(EX_CONFIG, NULL, "nokey", "--set 'nokey': expected section.key=value", NULL);
    expect_fail(EX_CONFIG, NULL, "=3", "expected section.key=value", NULL);
    expect_fail(EX_CONFIG, NULL, "model.hiden_size=3", "--set 'model.hiden_size=3': model.hiden_size: unknown key",
                "hidden_size");
    expect_fail(EX_CONFIG, NULL, "modell.hidden_size=3", "modell: unknown section", "'model'");
    expect_fail(EX_CONFIG, NULL, "thread=3", "thread: unknown key", "'threads'");
    expect_fail(EX_CONFIG, NULL, "model.hidden_size=abc", "model.hidden_size: expected an integer",
                "(from --set)");
    expect_fail(EX_CONFIG, "{\"model\": []}", "model.hidden_size=3", "model: expected an object", NULL);
}

/* ---- canonical form ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}


static void test_round_trip(void **state)
{
    (void)state;
    ktrain_config c;
    assert_int_equal(parse(&c, "{" BUDGET "}", 0), 0);
    assert_round_trip(&c);
    assert_int_equal(parse(&c,
                           "{\"model\": {\"type\": \"bert\", \"hidden_act\": \"gelu\", \"vocab_size\": 30522,"
                           " \"layer_norm_eps\": 1e-5, \"hidden_dropout_prob\": 0.1},"
                           " \"knowledge\": {\"embedding\": 3, \"entity_vocab_size\": 101, \"entity_dim\": 100},"
                           " \"data\": {\"objectives\": [\"wwm\", \"nsp\", \"entities\"], \"vocab\": \"w\\\"x\\u00e9\","
                           "  \"seed\": 9223372036854775807},"
                           " \"optimizer\": {\"type\": \"lamb\", \"schedule\": \"cosine\", \"betas\": [0.9, 0.98]},"
                           " \"budget\": {\"steps\": 123456789012, \"tokens\": 5, \"seconds\": 0.30000000000000004},"
                           " \"checkpoint\": {\"dir\": \"/tmp/a b\"}, \"threads\": 7}",
                           0),
                     0);
    assert_round_trip(&c);
    /* doubles: the shortest text that reads back exactly */
    for (int i = 0; i < 2000; i++) {
        c.optimizer.lr = 10 * rnd() + 1e-300;
        c.optimizer.beta1 = rnd();
        c.optimizer.beta2 = rnd() * rnd();
        c.model.layer_norm_eps = pow(10, -20 * rnd()) * 0.99;
        c.model.initializer_range = rnd() * 1e-3 + 1e-9;
        c.data.mask_prob = rnd() * 0.98 + 0.01;
        c.budget.seconds = rnd() * 1e9;
        assert_round_trip(&c);
    }
    char num[32];
    ktrain_fmt_double(num, 0.1);
    assert_string_equal(num, "0.1");
    ktrain_fmt_double(num, 1e-12);
    assert_string_equal(num, "1e-12");
    ktrain_fmt_double(num, NAN);
    assert_string_equal(num, "null");
}

/* ---- the schema ----------------------------------------------------------------- */

static json_t *load_schema(void)
{
    json_error_t je;
    json_t *s = json_load_file(KILN_SOURCE_DIR "/schemas/run-config.schema.json", JSON_REJECT_DUPLICATES, &je);
    if (!s) fail_msg("schema: line %d: %s", je.line, je.text);
    return s;
}

/* The schema's leaf properties as "section.key" -> property object. */
static json_t *schema_leaves(json_t *schema)
{
    json_t *out = json_object();
    const char *k, *k2;
    json_t *v, *v2;
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    json_object_foreach(json_object_get(schema, "properties"), k, v) {
        if (json_object_get(v, "properties")) {
            assert_string_equal(json_string_value(json_object_get(v, "type")), "object");
            if (!json_is_false(json_object_get(v, "additionalProperties")))
                fail_msg("schema: %s has no \"additionalProperties\": false", k);
            json_object_foreach(json_object_get(v, "properties"), k2, v2) {
                char path[128];
                snprintf(path, sizeof path, "%s.%s", k, k2);
                json_object_set(out, path, v2);
            }
        } else {
            json_object_set(out, k, v);
        }
    }
    return out;
}

static void test_schema_keys(void **state)
{
    (void)state;
    json_t *schema = load_schema();
    json_t *leaves = schema_leaves(schema);
    char key[128];
    int n = 0;
    for (int i = 0; ktrain_config_key(i, key, sizeof key) == 0; i++, n++)
        if (!json_object_get(leaves, key)) fail_msg("the reader knows %s, the schema does not", key);
    const char *k;
    json_t *v;
    json_object_foreach(leaves, k, v) {
        int found = 0;
        for (int i = 0; ktrain_config_key(i, key, sizeof key) == 0 && !found; i++) found = !strcmp(key, k);
        if (!found) fail_msg("the schema has %s, the reader does not", k);
    }
    assert_int_equal(n, (int)json_object_size(leaves));
    /* the canonical JSON has the reader's keys in the reader's order: an
     * ELECTRA config writes every key but GPT-2's and DistilBERT's, a GPT-2
     * config GPT-2's and the shared ones, a DistilBERT config DistilBERT's;
     * together they write every key */
    unsigned char *seen = calloc((size_t)n, 1);
    assert_non_null(seen);
    for (int pass = 0; pass < 3; pass++) {
        ktrain_config c;
        ktrain_config_defaults(&c);
        c.model.type = pass == 2 ? KMODEL_DISTILBERT : pass ? KMODEL_GPT2 : KMODEL_ELECTRA;
        if (pass) snprintf(c.distill.teacher, sizeof c.distill.teacher, "t"); /* writes the distill section */
        if (pass) c.launch.ranks = 2;                                         /* and the launch section */
        if (pass) c.model.fusion_layers = 2;                                  /* and the knowledge section */
        c.distill.method = pass == 1 ? KDISTILL_TINYBERT : KDISTILL_DISTILBERT; /* each method's own keys */
        char *text = ktrain_config_to_json(&c);
        json_t *canon = json_loads(text, 0, NULL);
        assert_non_null(canon);
        json_t *cl = json_object();
        const char *s;
        json_t *sv;
        json_object_foreach(canon, s, sv) {
            if (json_is_object(sv)) {
                json_object_foreach(sv, k, v) {
                    snprintf(key, sizeof key, "%s.%s", s, k);
                    json_object_set(cl, key, v);
                }
            } else {
                json_object_set(cl, s, sv);
            }
        }
        int i = 0;
        json_object_foreach(cl, k, v) {
            while (ktrain_config_key(i, key, sizeof key) == 0 && strcmp(key, k)) i++;
            if (i >= n) fail_msg("canonical JSON (pass %d): %s out of the reader's order", pass, k);
            seen[i++] = 1;
        }
        json_decref(cl);
        json_decref(canon);
        free(text);
    }
    for (int i = 0; i < n; i++)
        if (!seen[i]) {
            ktrain_config_key(i, key, sizeof key);
            fail_msg("no canonical JSON writes %s", key);
        }
    free(seen);
    json_decref(leaves);
    json_decref(schema);
}

/* Numbers equal whatever their JSON type; arrays element-wise. */
static int same_value(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_value(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    return json_equal(a, b);
}

static void test_schema_defaults(void **state)
{
    (void)state;
    json_t *schema = load_schema();
    json_t *leaves = schema_leaves(schema);
    ktrain_config c;
    ktrain_config_defaults(&c);
    c.model.type = KMODEL_ELECTRA; /* writes the ELECTRA-only keys too (model.type checked below) */
    char *text = ktrain_config_to_json(&c);
    json_t *canon = json_loads(text, 0, NULL);
    json_object_set_new(json_object_get(canon, "model"), "type", json_string("albert"));
    /* GPT-2's keys: their defaults are what the reader makes of a bare gpt2 config */
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"gpt2\"}," BUDGET "}", 0), 0);
    char *gtext = ktrain_config_to_json(&c);
    json_t *gcanon = json_loads(gtext, 0, NULL);
    assert_non_null(gcanon);
    /* DistilBERT's likewise */
    assert_int_equal(parse(&c, "{\"model\": {\"type\": \"distilbert\"}," BUDGET "}", 0), 0);
    char *dtext = ktrain_config_to_json(&c);
    json_t *dcanon = json_loads(dtext, 0, NULL);
    assert_non_null(dcanon);
    /* the distill section: written only with a teacher; the rest are the struct's defaults */
    ktrain_config_defaults(&c);
    snprintf(c.distill.teacher, sizeof c.distill.teacher, "t");
    char *xtext = ktrain_config_to_json(&c);
    json_t *xcanon = json_loads(xtext, 0, NULL);
    assert_non_null(xcanon);
    json_object_set_new(json_object_get(xcanon, "distill"), "teacher", json_string(""));
    json_object_set(canon, "distill", json_object_get(xcanon, "distill"));
    json_decref(xcanon);
    free(xtext);
    c.distill.method = KDISTILL_TINYBERT; /* its own keys */
    xtext = ktrain_config_to_json(&c);
    xcanon = json_loads(xtext, 0, NULL);
    assert_non_null(xcanon);
    json_object_update_missing(json_object_get(canon, "distill"), json_object_get(xcanon, "distill"));
    json_decref(xcanon);
    free(xtext);
    /* the launch section: written only for ranks > 1 (the default is 1) */
    ktrain_config_defaults(&c);
    c.launch.ranks = 2;
    xtext = ktrain_config_to_json(&c);
    xcanon = json_loads(xtext, 0, NULL);
    assert_non_null(xcanon);
    json_object_set_new(json_object_get(xcanon, "launch"), "ranks", json_integer(1));
    json_object_set(canon, "launch", json_object_get(xcanon, "launch"));
    json_decref(xcanon);
    free(xtext);
    /* the knowledge section: written only with fusion layers (the default: half of the default 4) */
    ktrain_config_defaults(&c);
    c.model.fusion_layers = 2;
    xtext = ktrain_config_to_json(&c);
    xcanon = json_loads(xtext, 0, NULL);
    assert_non_null(xcanon);
    json_object_set(canon, "knowledge", json_object_get(xcanon, "knowledge"));
    json_decref(xcanon);
    free(xtext);
    const char *k;
    json_t *v;
    json_object_foreach(leaves, k, v) {
        json_t *def = json_object_get(v, "default");
        if (!def) fail_msg("schema: %s has no default", k);
        const char *dot = strchr(k, '.');
        json_t *cv;
        if (dot) {
            char sec[64];
            snprintf(sec, sizeof sec, "%.*s", (int)(dot - k), k);
            cv = json_object_get(json_object_get(canon, sec), dot + 1);
            if (!cv) cv = json_object_get(json_object_get(gcanon, sec), dot + 1);
            if (!cv) cv = json_object_get(json_object_get(dcanon, sec), dot + 1);
        } else {
            cv = json_object_get(canon, k);
        }
        if (!same_value(def, cv)) {
            char *a = json_dumps(def, JSON_ENCODE_ANY), *b = json_dumps(cv, JSON_ENCODE_ANY);
            fail_msg("%s: schema default %s, reader default %s", k, a, b);
        }
    }
    json_decref(canon);
    free(text);
    json_decref(gcanon);
    free(gtext);
    json_decref(dcanon);
    free(dtext);
    json_decref(leaves);
    json_decref(schema);
}

/* Values just outside the schema's bounds are refused by the reader, with
 * the field named. */
static void test_schema_bounds(void **state)
{
    (void)state;
    json_t *schema = load_schema();
    json_t *leaves = schema_leaves(schema);
    const char *k;
    json_t *v;
    int checked = 0;
    json_object_foreach(leaves, k, v) {
        const char *type = json_string_value(json_object_get(v, "type"));
        json_t *items = json_object_get(v, "items");
        if (type && !strcmp(type, "array") && items) v = items; /* betas: bounds of each element */
        char set[256], val[64];
        struct { const char *kw; double delta; } b[] = {
            {"minimum", -1}, {"maximum", +1}, {"exclusiveMinimum", 0}, {"exclusiveMaximum", 0}};
        for (int i = 0; i < 4; i++) {
            json_t *bound = json_object_get(v, b[i].kw);
            if (!bound) continue;
            double x = json_number_value(bound);
            int is_int = type && !strcmp(type, "integer");
            if (is_int) {
                if (fabs(x) > 1e15) continue; /* int64 bounds: not representable + 1 */
                snprintf(val, sizeof val, "%.0f", x + b[i].delta);
            } else {
                double y = b[i].delta ? x + b[i].delta * (fabs(x) > 1 ? fabs(x) * 1e-9 : 1e-9) : x;
                ktrain_fmt_double(val, y);
            }
            if (items) snprintf(set, sizeof set, "%s=[%s, %s]", k, val, val);
            else snprintf(set, sizeof set, "%s=%s", k, val);
            expect_fail(EX_CONFIG, "{" BUDGET "}", set, k, "expected");
            checked++;
        }
        json_t *ml = json_object_get(v, "maxLength");
        if (ml) {
            char *s = xmalloc((size_t)json_integer_value(ml) + 2 + strlen(k) + 1);
            sprintf(s, "%s=", k);
            size_t off = strlen(s);
            memset(s + off, 'a', (size_t)json_integer_value(ml) + 1);
            s[off + (size_t)json_integer_value(ml) + 1] = '\0';
            expect_fail(EX_CONFIG, "{" BUDGET "}", s, k, "too long");
            free(s);
            checked++;
        }
        json_t *en = json_object_get(v, "enum");
        if (en && !items) {
            snprintf(set, sizeof set, "%s=no-such-value", k);
            expect_fail(EX_CONFIG, "{" BUDGET "}", set, k, "expected");
            /* and every listed value is accepted as a value of the field */
            size_t i;
            json_t *e;
            json_array_foreach(en, i, e) {
                ktrain_config c;
                snprintf(set, sizeof set, "%s=%s", k, json_string_value(e));
                int rc = parse(&c, "{" BUDGET "}", 1, set);
                if (rc && strstr(err, "expected")) fail_msg("%s refused: %s", set, err);
            }
            checked++;
        }
    }
    assert_true(checked > 40);
    json_decref(leaves);
    json_decref(schema);
}

static void test_examples(void **state)
{
    (void)state;
    glob_t g;
    assert_int_equal(glob(KILN_SOURCE_DIR "/examples/configs/*.json", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        kbuf b = {0};
        assert_int_equal(kbuf_read_file(&b, g.gl_pathv[i]), 0);
        ktrain_config c;
        if (ktrain_config_parse(&c, b.data, b.len, NULL, 0, err, sizeof err))
            fail_msg("%s: %s", g.gl_pathv[i], err);
        assert_round_trip(&c);
        kbuf_free(&b);
    }
    globfree(&g);
}

/* ---- GPT-2 --------------------------------------------------------------------- */

#define GPT2 "\"model\": {\"type\": \"gpt2\""

static void test_gpt2(void **state)
{
    (void)state;
    ktrain_config c;
    /* GPT2Config's defaults where the config is silent; clm by default */
    assert_int_equal(parse(&c, "{" GPT2 "}," BUDGET "}", 0), 0);
    assert_int_equal(c.model.type, KMODEL_GPT2);
    assert_int_equal(c.model.hidden_size, 256);
    assert_int_equal(c.model.embedding_size, 256);
    assert_int_equal(c.model.intermediate_size, 1024); /* n_inner null = 4 n_embd */
    assert_int_equal(c.model.num_hidden_groups, 4);
    assert_int_equal(c.model.hidden_act, KACT_GELU_NEW);
    assert_true(c.model.layer_norm_eps == 1e-5);
    assert_true(c.model.hidden_dropout_prob == 0.1 && c.model.attention_probs_dropout_prob == 0.1);
    assert_true(c.model.embd_dropout_prob == 0.1);
    assert_int_equal(c.data.objectives, KOBJ_CLM);
    /* GPT2Config's names */
    assert_int_equal(parse(&c,
                           "{" GPT2 ", \"n_embd\": 64, \"n_layer\": 3, \"n_head\": 8, \"n_positions\": 128, "
                           "\"n_inner\": 100, \"activation_function\": \"gelu\", \"layer_norm_epsilon\": 1e-6, "
                           "\"resid_pdrop\": 0.2, \"embd_pdrop\": 0.3, \"attn_pdrop\": 0.05, \"initializer_range\": 0.01},"
                           " \"data\": {\"objectives\": [\"clm\"], \"seq_len\": 128}," BUDGET "}",
                           0),
                     0);
    assert_int_equal(c.model.hidden_size, 64);
    assert_int_equal(c.model.embedding_size, 64);
    assert_int_equal(c.model.num_hidden_layers, 3);
    assert_int_equal(c.model.num_hidden_groups, 3);
    assert_int_equal(c.model.num_attention_heads, 8);
    assert_int_equal(c.model.max_position_embeddings, 128);
    assert_int_equal(c.model.intermediate_size, 100);
    assert_int_equal(c.model.hidden_act, KACT_GELU);
    assert_true(c.model.layer_norm_eps == 1e-6 && c.model.hidden_dropout_prob == 0.2);
    assert_true(c.model.embd_dropout_prob == 0.3 && c.model.attention_probs_dropout_prob == 0.05);
    assert_true(c.model.initializer_range == 0.01);
    {   /* canonical JSON: GPT2Config's names only, reads back as itself */
        char *t1 = ktrain_config_to_json(&c);
        assert_non_null(strstr(t1, "\"n_embd\": 64"));
        assert_non_null(strstr(t1, "\"n_inner\": 100"));
        assert_null(strstr(t1, "hidden_size"));
        assert_null(strstr(t1, "pad_token_id"));
        assert_round_trip(&c);
        free(t1);
    }
    /* n_inner null (and the derived value) is written as null, as GPT2Config does */
    assert_int_equal(parse(&c, "{" GPT2 ", \"n_embd\": 32, \"n_inner\": null}," BUDGET "}", 0), 0);
    assert_int_equal(c.model.intermediate_size, 128);
    char *t = ktrain_config_to_json(&c);
    assert_non_null(strstr(t, "\"n_inner\": null"));
    free(t);
    assert_int_equal(parse(&c, "{" GPT2 "}," BUDGET "}", 1, "model.n_head=2"), 0);
    assert_int_equal(c.model.num_attention_heads, 2);
    /* BertConfig's names refused for gpt2, GPT2Config's for the others, each named */
    expect_fail(EX_CONFIG, "{" GPT2 ", \"hidden_size\": 64}," BUDGET "}", NULL, "model.hidden_size",
                "not a key of model.type \"gpt2\"");
    expect_fail(EX_CONFIG, "{" GPT2 ", \"type_vocab_size\": 2}," BUDGET "}", NULL, "model.type_vocab_size", "n_embd");
    expect_fail(EX_CONFIG, "{" GPT2 ", \"generator_hidden_size\": 2}," BUDGET "}", NULL, "model.generator_hidden_size",
                "electra");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"bert\", \"n_embd\": 64}," BUDGET "}", NULL, "model.n_embd",
                "only for model.type \"gpt2\"");
    expect_fail(EX_CONFIG, "{\"model\": {\"n_inner\": null}," BUDGET "}", NULL, "model.n_inner", "gpt2");
    expect_fail(EX_CONFIG, "{" GPT2 "}," BUDGET "}", "model.embd_pdrop=1", "model.embd_pdrop", "expected");
    expect_fail(EX_CONFIG, "{" GPT2 ", \"activation_function\": \"relu\"}," BUDGET "}", NULL,
                "model.activation_function", "expected");
    /* cross-field rules under GPT-2's names */
    expect_fail(EX_CONFIG, "{" GPT2 ", \"n_embd\": 30, \"n_head\": 4}," BUDGET "}", NULL, "model.n_head",
                "must divide n_embd (30)");
    expect_fail(EX_CONFIG, "{" GPT2 ", \"n_positions\": 64}," BUDGET "}", NULL, "data.seq_len", "model.n_positions (64)");
    expect_fail(EX_CONFIG, "{" GPT2 "}, \"data\": {\"objectives\": [\"mlm\"]}," BUDGET "}", NULL, "data.objectives",
                "[\"clm\"]");
}

/* ---- DistilBERT ------------------------------------------------------------------ */

#define DISTIL "\"model\": {\"type\": \"distilbert\""

static void test_distilbert(void **state)
{
    (void)state;
    ktrain_config c;
    /* DistilBertConfig's defaults where the config is silent; mlm by default */
    assert_int_equal(parse(&c, "{" DISTIL "}," BUDGET "}", 0), 0);
    assert_int_equal(c.model.type, KMODEL_DISTILBERT);
    assert_int_equal(c.model.hidden_size, 256);
    assert_int_equal(c.model.embedding_size, 256);
    assert_int_equal(c.model.num_hidden_groups, 4);
    assert_int_equal(c.model.hidden_act, KACT_GELU);
    assert_true(c.model.layer_norm_eps == 1e-12);
    assert_true(c.model.hidden_dropout_prob == 0.1 && c.model.attention_probs_dropout_prob == 0.1);
    assert_true(c.model.qa_dropout == 0.1 && c.model.seq_classif_dropout == 0.2);
    assert_int_equal(c.model.sinusoidal_pos_embds, 0);
    assert_int_equal(c.data.objectives, KOBJ_MLM);
    /* DistilBertConfig's names, and the BertConfig names it shares */
    assert_int_equal(parse(&c,
                           "{" DISTIL ", \"dim\": 64, \"n_layers\": 3, \"n_heads\": 8, \"hidden_dim\": 100, "
                           "\"activation\": \"gelu_new\", \"dropout\": 0.2, \"attention_dropout\": 0.05, "
                           "\"max_position_embeddings\": 128, \"pad_token_id\": 1, \"initializer_range\": 0.01, "
                           "\"sinusoidal_pos_embds\": false, \"qa_dropout\": 0.3, \"seq_classif_dropout\": 0.4},"
                           " \"data\": {\"objectives\": [\"wwm\"], \"seq_len\": 128}," BUDGET "}",
                           0),
                     0);
    assert_int_equal(c.model.hidden_size, 64);
    assert_int_equal(c.model.embedding_size, 64);
    assert_int_equal(c.model.num_hidden_layers, 3);
    assert_int_equal(c.model.num_hidden_groups, 3);
    assert_int_equal(c.model.num_attention_heads, 8);
    assert_int_equal(c.model.intermediate_size, 100);
    assert_int_equal(c.model.max_position_embeddings, 128);
    assert_int_equal(c.model.pad_token_id, 1);
    assert_int_equal(c.model.hidden_act, KACT_GELU_NEW);
    assert_true(c.model.hidden_dropout_prob == 0.2 && c.model.attention_probs_dropout_prob == 0.05);
    assert_true(c.model.initializer_range == 0.01 && c.model.qa_dropout == 0.3 && c.model.seq_classif_dropout == 0.4);
    assert_int_equal(c.data.objectives, KOBJ_WWM);
    {   /* canonical JSON: DistilBertConfig's names only, reads back as itself */
        char *t1 = ktrain_config_to_json(&c);
        assert_non_null(strstr(t1, "\"type\": \"distilbert\""));
        assert_non_null(strstr(t1, "\"dim\": 64"));
        assert_non_null(strstr(t1, "\"hidden_dim\": 100"));
        assert_non_null(strstr(t1, "\"sinusoidal_pos_embds\": false"));
        assert_non_null(strstr(t1, "\"max_position_embeddings\": 128"));
        assert_non_null(strstr(t1, "\"pad_token_id\": 1"));
        assert_null(strstr(t1, "hidden_size"));
        assert_null(strstr(t1, "type_vocab_size"));
        assert_null(strstr(t1, "layer_norm_eps"));
        assert_null(strstr(t1, "n_embd"));
        ktrain_config c2;
        assert_int_equal(ktrain_config_parse(&c2, t1, strlen(t1), NULL, 0, NULL, 0), 0);
        char *t2 = ktrain_config_to_json(&c2);
        assert_string_equal(t1, t2);
        free(t1);
        free(t2);
    }
    assert_int_equal(parse(&c, "{" DISTIL "}," BUDGET "}", 1, "model.n_heads=2"), 0);
    assert_int_equal(c.model.num_attention_heads, 2);
    /* BertConfig's names refused for distilbert (listing the right ones), DistilBertConfig's for the others */
    expect_fail(EX_CONFIG, "{" DISTIL ", \"hidden_size\": 64}," BUDGET "}", NULL, "model.hidden_size",
                "not a key of model.type \"distilbert\"");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"type_vocab_size\": 2}," BUDGET "}", NULL, "model.type_vocab_size", "dim, n_layers");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"layer_norm_eps\": 1e-6}," BUDGET "}", NULL, "model.layer_norm_eps", "distilbert");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"n_embd\": 64}," BUDGET "}", NULL, "model.n_embd", "only for model.type \"gpt2\"");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"bert\", \"dim\": 64}," BUDGET "}", NULL, "model.dim",
                "only for model.type \"distilbert\"");
    expect_fail(EX_CONFIG, "{\"model\": {\"type\": \"gpt2\", \"max_position_embeddings\": 64}," BUDGET "}", NULL,
                "model.max_position_embeddings", "gpt2");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"sinusoidal_pos_embds\": true}," BUDGET "}", NULL,
                "model.sinusoidal_pos_embds", "not implemented");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"sinusoidal_pos_embds\": 1}," BUDGET "}", NULL,
                "model.sinusoidal_pos_embds", "true or false");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"activation\": \"relu\"}," BUDGET "}", NULL, "model.activation", "expected");
    /* cross-field rules under DistilBERT's names; no sentence-pair head */
    expect_fail(EX_CONFIG, "{" DISTIL ", \"dim\": 30, \"n_heads\": 4}," BUDGET "}", NULL, "model.n_heads",
                "must divide dim (30)");
    expect_fail(EX_CONFIG, "{" DISTIL "}, \"data\": {\"objectives\": [\"mlm\", \"sop\"]}," BUDGET "}", NULL,
                "data.objectives", "no sentence-pair head");
    expect_fail(EX_CONFIG, "{" DISTIL "}, \"data\": {\"objectives\": [\"mlm\", \"nsp\"]}," BUDGET "}", NULL,
                "data.objectives", "no sentence-pair head");
    expect_fail(EX_CONFIG, "{" DISTIL "}, \"data\": {\"objectives\": [\"clm\"]}," BUDGET "}", NULL, "data.objectives",
                "gpt2");
}

/* The distill section's rules (docs/distill.md, "Config"): each refusal names
 * the key and says why. */
#define TEACHER(extra) "\"distill\": {\"teacher\": \"t\"" extra "}"
static void test_distill_rules(void **state)
{
    (void)state;
    ktrain_config c;
    /* accepted: each method's defaults */
    assert_int_equal(parse(&c, "{" DISTIL "}, " TEACHER("") ", " BUDGET "}", 0), 0);
    assert_true(c.distill.temperature == 2.0 && c.distill.init_from_teacher == 1);
    assert_int_equal(parse(&c, "{" DISTIL "}, " TEACHER(", \"method\": \"tinybert\"") ", " BUDGET "}", 0), 0);
    assert_true(c.distill.temperature == 1.0 && c.distill.init_from_teacher == 0 && c.distill.alpha_mlm == 0);
    /* a distill key without a teacher */
    expect_fail(EX_CONFIG, "{" DISTIL "}, \"distill\": {\"alpha_ce\": 1}, " BUDGET "}", NULL, "distill.alpha_ce",
                "needs distill.teacher");
    /* each method's own keys */
    expect_fail(EX_CONFIG, "{" DISTIL "}, " TEACHER(", \"method\": \"tinybert\", \"alpha_ce\": 1") ", " BUDGET "}",
                NULL, "distill.alpha_ce", "a DistilBERT key");
    expect_fail(EX_CONFIG, "{" DISTIL "}, " TEACHER(", \"alpha_att\": 1") ", " BUDGET "}", NULL, "distill.alpha_att",
                "a TinyBERT key");
    /* no loss at all */
    expect_fail(EX_CONFIG,
                "{" DISTIL "}, " TEACHER(", \"alpha_ce\": 0, \"alpha_mlm\": 0, \"alpha_cos\": 0") ", " BUDGET "}",
                NULL, "distill.alpha_ce", "all 0");
    /* TinyBERT's two stages in one run: a share strictly inside (0, 1), and a budget in steps or tokens */
    expect_fail(EX_CONFIG,
                "{" DISTIL "}, " TEACHER(", \"method\": \"tinybert\", \"stage\": \"both\", "
                                         "\"intermediate_fraction\": 1") ", " BUDGET "}",
                NULL, "distill.intermediate_fraction", "strictly between 0 and 1");
    expect_fail(EX_CONFIG,
                "{" DISTIL "}, " TEACHER(", \"method\": \"tinybert\", \"stage\": \"both\"") ", "
                "\"budget\": {\"seconds\": 60}, \"optimizer\": {\"warmup_steps\": 10}}",
                NULL, "distill.stage", "budget.steps or budget.tokens");
    assert_int_equal(parse(&c,
                           "{" DISTIL "}, " TEACHER(", \"method\": \"tinybert\", \"stage\": \"both\"") ", "
                           "\"budget\": {\"tokens\": 100000}}",
                           0),
                     0);
    /* students it cannot train; a layer list of the wrong length */
    expect_fail(EX_CONFIG,
                "{\"model\": {\"type\": \"electra\"}, \"data\": {\"objectives\": [\"rtd\"]}, " TEACHER("") ", " BUDGET "}",
                NULL, "model.type", "not electra");
    expect_fail(EX_CONFIG, "{" DISTIL ", \"n_layers\": 3}, " TEACHER(", \"student_layers\": [0, 2]") ", " BUDGET "}",
                NULL, "distill.student_layers", "the student has 3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_warmup_from_tokens),
        cmocka_unit_test(test_bert_derives_e_and_groups),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_types_and_ranges),
        cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_objectives),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_sets),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_schema_keys),
        cmocka_unit_test(test_schema_defaults),
        cmocka_unit_test(test_schema_bounds),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_distilbert),
        cmocka_unit_test(test_distill_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
