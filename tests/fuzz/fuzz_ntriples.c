/* fuzz_ntriples.c: libFuzzer target of kg/parse.c's N-Triples line parser
 * (knt_parse_line), which reads every line of a .nt knowledge graph (kiln kg
 * import). The input is a file: it is cut at '\n' as kg/import.c does and
 * each line is parsed with one parser. Checks the header's promises: the
 * result is -1, 0 or 1; on 1 the terms have a kind, each string lies in the
 * parser's buffer and is NUL-terminated after its len bytes, the subject is
 * not a literal and the predicate is an IRI; on 0 and -1 the terms are
 * zeroed; on -1 the message is set and the column is within 1 .. n + 1. */
#include "tests/fuzz/fuzz_common.h"

#include "kg/parse.h"

static knt_parser *g_p;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    g_p = knt_parser_new();
    return 0;
}

static void check_term(const knt_term *t)
{
    FUZZ_CHECK(t->kind == KNT_IRI || t->kind == KNT_BNODE || t->kind == KNT_LITERAL);
    FUZZ_CHECK(t->value && t->value[t->len] == '\0');
    if (t->lang) {
        FUZZ_CHECK(t->kind == KNT_LITERAL && t->lang_len > 0 && t->lang[t->lang_len] == '\0');
        FUZZ_CHECK(!t->datatype);
    }
    if (t->datatype) FUZZ_CHECK(t->kind == KNT_LITERAL && t->datatype[t->dt_len] == '\0');
}

static int zeroed(const knt_term *t)
{
    return t->kind == 0 && !t->value && !t->len && !t->lang && !t->datatype;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i <= size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (!nl && e == i && i > 0) break; /* nothing after the last newline */
        size_t n = e - i;
        char *line = fuzz_dup(data + i, n);
        knt_term s, p, o;
        char err[256];
        err[0] = '\0';
        int col = -7;
        int rc = knt_parse_line(g_p, line, n, &s, &p, &o, err, sizeof err, &col);
        FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1);
        if (rc == 1) {
            check_term(&s);
            check_term(&p);
            check_term(&o);
            FUZZ_CHECK(s.kind != KNT_LITERAL);
            FUZZ_CHECK(p.kind == KNT_IRI);
        } else {
            FUZZ_CHECK(zeroed(&s) && zeroed(&p) && zeroed(&o));
        }
        if (rc == -1) {
            size_t m = n && line[n - 1] == '\r' ? n - 1 : n;
            FUZZ_CHECK(err[0] != '\0');
            FUZZ_CHECK(col >= 1 && (size_t)col <= m + 1);
        }
        /* without err and col (both optional) */
        int rc2 = knt_parse_line(g_p, line, n, &s, &p, &o, NULL, 0, NULL);
        FUZZ_CHECK(rc2 == rc);
        free(line);
        if (!nl) break;
        i = e + 1;
    }
    return 0;
}
