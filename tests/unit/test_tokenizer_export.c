/* test_tokenizer_export.c: unit tests of the tokenizer files every Hugging
 * Face export writes (trainer/export.h: kexport_tokenizer_config,
 * kexport_special_tokens_map), used by kiln export and kiln vocab export
 * --hf: strip_accents true / false / null from the KEXPORT_TOK_* bits, the
 * file of the plain casings byte for byte as before issue #20, and valid
 * JSON with BertTokenizer's keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/export.h"

/* What kexport_hf wrote for do_lower_case = 1 before strip_accents existed:
 * models exported from plain vocabularies keep these bytes. */
static const char OLD_UNCASED_512[] =
    "{\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"do_lower_case\": true,\n"
    "  \"model_max_length\": 512,\n  \"tokenize_chinese_chars\": true,\n  \"strip_accents\": null,\n"
    "  \"clean_up_tokenization_spaces\": true,\n  \"pad_token\": \"[PAD]\",\n  \"unk_token\": \"[UNK]\",\n"
    "  \"cls_token\": \"[CLS]\",\n  \"sep_token\": \"[SEP]\",\n  \"mask_token\": \"[MASK]\"\n}\n";

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!j) fail_msg("not JSON (%s): %s", je.text, text);
    return j;
}

static void test_plain_casings_unchanged(void **state)
{
    (void)state;
    char *t = kexport_tokenizer_config(1, 512);
    assert_string_equal(t, OLD_UNCASED_512);
    free(t);
    t = kexport_tokenizer_config(0, 512);
    json_t *j = parse(t);
    assert_true(json_is_false(json_object_get(j, "do_lower_case")));
    assert_true(json_is_null(json_object_get(j, "strip_accents")));
    json_decref(j);
    free(t);
}

static void test_strip_accents_bits(void **state)
{
    (void)state;
    static const struct { int bits; int lower; const char *strip; } cases[] = {
        {KEXPORT_TOK_LOWER | KEXPORT_TOK_KEEP_ACCENTS, 1, "false"},
        {KEXPORT_TOK_LOWER | KEXPORT_TOK_STRIP_ACCENTS, 1, "true"},
        {KEXPORT_TOK_STRIP_ACCENTS, 0, "true"},
        {KEXPORT_TOK_KEEP_ACCENTS, 0, "false"},
        {KEXPORT_TOK_LOWER, 1, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = kexport_tokenizer_config(cases[i].bits, 0);
        json_t *j = parse(t);
        assert_string_equal(json_string_value(json_object_get(j, "tokenizer_class")), "BertTokenizer");
        assert_int_equal(json_is_true(json_object_get(j, "do_lower_case")), cases[i].lower);
        json_t *s = json_object_get(j, "strip_accents");
        assert_non_null(s);
        const char *got = json_is_true(s) ? "true" : json_is_false(s) ? "false" : json_is_null(s) ? "null" : "?";
        assert_string_equal(got, cases[i].strip);
        assert_true(json_is_true(json_object_get(j, "tokenize_chinese_chars")));
        /* model_max_length <= 0: left out (a vocabulary alone has no length limit) */
        assert_null(json_object_get(j, "model_max_length"));
        assert_string_equal(json_string_value(json_object_get(j, "mask_token")), "[MASK]");
        json_decref(j);
        free(t);
    }
}

static void test_special_tokens_map(void **state)
{
    (void)state;
    char *t = kexport_special_tokens_map();
    json_t *j = parse(t);
    static const char *const k[] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
    static const char *const v[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    assert_int_equal(json_object_size(j), 5);
    for (int i = 0; i < 5; i++) assert_string_equal(json_string_value(json_object_get(j, k[i])), v[i]);
    json_decref(j);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_casings_unchanged),
        cmocka_unit_test(test_strip_accents_bits),
        cmocka_unit_test(test_special_tokens_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
