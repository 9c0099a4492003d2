/* fuzz_kgtsv.c: libFuzzer target of kg/parse.c's TSV triple and name-file
 * line parsers (ktsv_parse_line: FB15k-237 / WN18RR "head TAB relation TAB
 * tail"; kname_parse_line: entity2text / relation2text "id TAB name", with
 * and without WN18RR's ", gloss" split), which read every line of those
 * files (kiln kg import). The input is a file, cut at '\n' as kg/import.c
 * does. Checks the header's promises: results -1, 0 or 1; fields point into
 * the line, are non-empty and hold no tab; a message on -1. */
#include "tests/fuzz/fuzz_common.h"

#include "kg/parse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

static int inside(const char *line, size_t n, const char *p, size_t len)
{
    return p && p >= line && p + len <= line + n;
}

static int all_spaces(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') return 0;
    return 1;
}

static void one_line(const char *line, size_t n)
{
    char err[256];
    const char *f[3];
    size_t len[3];
    err[0] = '\0';
    int rc = ktsv_parse_line(line, n, f, len, err, sizeof err);
    FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1);
    if (rc == 1)
        for (int k = 0; k < 3; k++) {
            FUZZ_CHECK(inside(line, n, f[k], len[k]) && len[k] > 0);
            FUZZ_CHECK(!memchr(f[k], '\t', len[k]) && !all_spaces(f[k], len[k]));
        }
    if (rc == -1) FUZZ_CHECK(err[0] != '\0');
    FUZZ_CHECK(ktsv_parse_line(line, n, f, len, NULL, 0) == rc);

    for (int gloss = 0; gloss <= 1; gloss++) {
        const char *id, *label, *desc;
        size_t il, ll, dl;
        err[0] = '\0';
        rc = kname_parse_line(line, n, gloss, &id, &il, &label, &ll, &desc, &dl, err, sizeof err);
        FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1);
        if (rc == 1) {
            FUZZ_CHECK(inside(line, n, id, il) && il > 0 && !memchr(id, '\t', il));
            FUZZ_CHECK(inside(line, n, label, ll) && ll > 0 && !memchr(label, '\t', ll));
            if (desc) FUZZ_CHECK(gloss && inside(line, n, desc, dl));
            else FUZZ_CHECK(dl == 0);
        }
        if (rc == -1) FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(kname_parse_line(line, n, gloss, &id, &il, &label, &ll, &desc, &dl, NULL, 0) == rc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i <= size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (!nl && e == i && i > 0) break;
        char *line = fuzz_dup(data + i, e - i);
        one_line(line, e - i);
        free(line);
        if (!nl) break;
        i = e + 1;
    }
    return 0;
}
