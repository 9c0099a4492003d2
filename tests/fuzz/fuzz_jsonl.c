/* fuzz_jsonl.c: libFuzzer target of ingest/jsonl.c, the validating one-pass
 * JSON scanner that reads every line of a JSONL file (kjson_extract). The
 * input is one line. Checks the header's promises: on success every
 * KJ_STRING / KJ_INTEGER buffer has data and an integer is digits with an
 * optional '-'; on failure every type is KJ_MISSING, the message is set and
 * the column is within 1 .. n + 1. And a differential check against jansson
 * (a full JSON parser): an object jansson accepts (nesting <= 512) the
 * scanner accepts too, with the same type and the same decoded string for
 * each field (last occurrence of a key wins in both). Inputs with a raw NUL
 * byte are left out of that comparison (jansson takes one for the end). */
#include "tests/fuzz/fuzz_common.h"

#include <jansson.h>

#include "ingest/jsonl.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

static int depth(json_t *v)
{
    int d = 0, k;
    size_t i;
    const char *key;
    json_t *x;
    if (json_is_object(v)) {
        json_object_foreach(v, key, x) if ((k = depth(x)) > d) d = k;
        return d + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, x) if ((k = depth(x)) > d) d = k;
        return d + 1;
    }
    return 0;
}

static int type_of(json_t *v)
{
    if (!v) return KJ_MISSING;
    if (json_is_string(v)) return KJ_STRING;
    if (json_is_integer(v)) return KJ_INTEGER;
    return KJ_OTHER;
}

#define NF 6
static const char *const KEYS[NF] = {"text", "id", "title", "url", "text", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_dup(data, size);
    kbuf b[NF - 1] = {{0}};
    /* the ingest's four fields, one twice (several fields may name one key), one without a buffer */
    kjson_field f[NF];
    for (int i = 0; i < NF; i++) f[i] = (kjson_field){KEYS[i], -1, i < NF - 1 ? &b[i] : NULL};
    char err[256];
    err[0] = '\0';
    int col = -7;
    int rc = kjson_extract(line, size, f, NF, err, sizeof err, &col);
    if (rc == 0) {
        for (int i = 0; i < NF; i++) {
            FUZZ_CHECK(f[i].type >= KJ_MISSING && f[i].type <= KJ_OTHER);
            if (f[i].value && (f[i].type == KJ_STRING || f[i].type == KJ_INTEGER)) FUZZ_CHECK(f[i].value->data);
            if (f[i].value && f[i].type == KJ_INTEGER) {
                const char *s = f[i].value->data;
                size_t k = s[0] == '-';
                FUZZ_CHECK(f[i].value->len > k);
                for (; k < f[i].value->len; k++) FUZZ_CHECK(s[k] >= '0' && s[k] <= '9');
            }
        }
        FUZZ_CHECK(f[0].type == f[4].type);
    } else {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(col >= 1 && (size_t)col <= size + 1);
        for (int i = 0; i < NF; i++) FUZZ_CHECK(f[i].type == KJ_MISSING);
    }
    /* jansson stops at a raw NUL byte as if the input ended there (kiln rejects one
     * outside a string, as RFC 8259 does): such inputs are not compared */
    json_error_t je;
    json_t *j = memchr(line, 0, size) ? NULL : json_loadb(line, size, JSON_ALLOW_NUL, &je);
    if (j && json_is_object(j) && depth(j) <= 512) {
        FUZZ_CHECK(rc == 0);
        for (int i = 0; i < NF; i++) {
            json_t *v = json_object_get(j, KEYS[i]);
            FUZZ_CHECK(f[i].type == type_of(v));
            if (f[i].value && f[i].type == KJ_STRING)
                FUZZ_CHECK(f[i].value->len == json_string_length(v) &&
                           memcmp(f[i].value->data, json_string_value(v), f[i].value->len) == 0);
        }
    }
    json_decref(j);
    for (int i = 0; i < NF - 1; i++) kbuf_free(&b[i]);
    free(line);
    return 0;
}
