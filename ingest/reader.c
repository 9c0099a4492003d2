/* reader.c: ingest's reader: walks the input paths, opens each file through
 * libarchive (archives, compressed files, plain files), streams every entry
 * through UTF-16 decoding and UTF-8 cleaning into a format parser (plain
 * text, JSONL, MediaWiki XML with Expat) and hands documents to the pipeline
 * in batches.
 *
 * Outcome of a file (its source row):
 *   complete  every entry read to its end (malformed records skipped, counted)
 *   partial   stopped early: truncated or corrupt archive, XML cut off or
 *             malformed, a limit hit; complete documents before it are kept
 *   (running) interrupted; the next ingest of the same bytes completes it
 * Severity of a problem: record (skip it), entry (skip the rest of the entry),
 * file (stop the file, partial). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/internal.h"

#define BATCH_DOCS_MAX 4096
#define BATCH_BYTES_MAX ((size_t)8 << 20)
#define READ_BLOCK ((size_t)1 << 20)
#define RATIO_FLOOR ((uint64_t)64 << 20)

/* ---- the reader's state ---------------------------------------------------- */

typedef struct reader {
    pipeline *p;
    const kingest_opts *o;
    kingest_summary *sum;
    /* current file */
    const char *path;         /* as found */
    int64_t source_id;
    batch *b;                 /* open batch, NULL if none */
    uint64_t errors;          /* malformed records/entries in this file */
    kbuf first_error;         /* message of the first one */
    char *partial;            /* why the file stopped early, NULL if it did not */
    char fatal[1024];         /* the last fatal libarchive error of an entry */
    int oom;                  /* libarchive ran out of memory in this file: it stops, interrupted */
    int formats_seen;         /* bit per format */
    /* progress */
    uint64_t bytes_done_before; /* on-disk bytes of the files finished */
    uint64_t bytes_total;
    double t_start, t_last;
} reader;

static void progress(reader *r, uint64_t in_file)
{
    if (!r->o->progress) return;
    double now = know_seconds();
    if (now - r->t_last < 0.2) return;
    r->t_last = now;
    kingest_progress pr = {
        .bytes_done = r->bytes_done_before + in_file,
        .bytes_total = r->bytes_total,
        .documents = pl_documents(r->p),
        .bytes_in = r->sum->bytes_in,
        .seconds = now - r->t_start,
        .current = r->path,
    };
    r->o->progress(&pr, r->o->progress_ctx);
}

static void flush_batch(reader *r)
{
    if (!r->b) return;
    pl_submit(r->p, r->b);
    r->b = NULL;
}

static batch *cur_batch(reader *r)
{
    if (!r->b) r->b = pl_batch_new(r->p, r->source_id);
    return r->b;
}

static void emit(reader *r, const char *entry, const char *ext_id, const char *title,
                 const char *url, const char *loc, const char *text, size_t len, int flags)
{
    batch *b = cur_batch(r);
    batch_add_doc(b, entry, ext_id, title, url, loc, text, len, flags);
    if (b->n >= BATCH_DOCS_MAX || b->arena.len >= BATCH_BYTES_MAX) flush_batch(r);
}

static void count_skip(reader *r)
{
    cur_batch(r)->delta.skipped++;
    r->sum->skipped++;
}

/* A malformed record or entry: warn with its location, count it. */
static void bad(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(reader *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kwarn("%s", msg);
    if (r->errors++ == 0) kbuf_puts(&r->first_error, msg);
    r->sum->errors++;
}

/* The file stops early: keep the first reason. */
static void set_partial(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_partial(reader *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kwarn("%s", msg);
    if (!r->partial) r->partial = xstrdup(msg);
}

/* ---- entry parsers ----------------------------------------------------------- */

enum { PE_NONE, PE_PAGE, PE_TITLE, PE_NS, PE_ID, PE_REDIRECT, PE_REVISION, PE_TEXT, PE_SITEINFO,
       PE_BASE, PE_OTHER };
#define XML_STACK 64

typedef struct eparser {
    reader *r;
    int format;               /* KFMT_TEXT, KFMT_JSONL, KFMT_MEDIAWIKI */
    const char *loc;          /* "file" or "file:entry", for messages */
    const char *entry;        /* stored as documents.entry */
    const char *title;        /* plain text: the document title */
    int dead;                 /* a fatal parse error: ignore further input */
    /* line framing */
    uint64_t lineno;          /* lines completed */
    kbuf line;
    int line_long;            /* the current line passed max_line_bytes */
    /* plain text documents */
    kbuf doc;
    uint64_t doc_line;        /* first line of the open document */
    int doc_long;
    /* MediaWiki */
    XML_Parser xp;
    int depth;
    int stack[XML_STACK];
    kbuf title_b, ns_b, id_b, text_b, base_b;
    int redirect, have_id, text_long, in_page;
    char url_prefix[512];
} eparser;

static void text_doc_end(eparser *e)
{
    reader *r = e->r;
    if (e->doc_long) {
        bad(r, "%s:%llu: document longer than --max-doc-bytes (%llu): skipped", e->loc,
            (unsigned long long)e->doc_line, (unsigned long long)r->o->max_doc_bytes);
    } else if (e->doc.len) {
        char id[32];
        snprintf(id, sizeof id, "%llu", (unsigned long long)e->doc_line);
        int flags = DOC_CLEAN | (r->o->split == KSPLIT_BLANK_LINE ? DOC_LINES : 0);
        emit(r, e->entry, r->o->split == KSPLIT_DOC ? NULL : id, e->title, NULL, NULL, e->doc.data,
             e->doc.len, flags);
    }
    kbuf_clear(&e->doc);
    e->doc_long = 0;
}

static void doc_append(eparser *e, const char *s, size_t n)
{
    if (e->doc_long) return;
    if (e->doc.len + n > e->r->o->max_doc_bytes) { e->doc_long = 1; kbuf_free(&e->doc); return; }
    kbuf_append(&e->doc, s, n);
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* A JSONL line goes to the workers as is: they parse it (in parallel) and
 * report malformed lines with the location recorded here. */
static void jsonl_line(eparser *e, const char *s, size_t n)
{
    if (is_blank(s, n)) return;
    char loc[64];
    snprintf(loc, sizeof loc, ":%llu", (unsigned long long)e->lineno);
    kbuf l = {0};
    kbuf_puts(&l, e->loc);
    kbuf_puts(&l, loc);
    emit(e->r, e->entry, NULL, NULL, NULL, l.data, s, n, DOC_JSON);
    kbuf_free(&l);
}

/* One complete line (without '\n') of a line-framed format. */
static void on_line(eparser *e, const char *s, size_t n)
{
    e->lineno++;
    if (e->format == KFMT_JSONL) { jsonl_line(e, s, n); return; }
    int split = e->r->o->split;
    if (split == KSPLIT_LINE) {
        if (is_blank(s, n)) return;
        e->doc_line = e->lineno;
        doc_append(e, s, n);
        text_doc_end(e);
    } else { /* blank-line */
        if (is_blank(s, n)) {
            if (e->doc.len || e->doc_long) text_doc_end(e);
            return;
        }
        if (!e->doc.len && !e->doc_long) e->doc_line = e->lineno;
        doc_append(e, s, n);
        doc_append(e, "\n", 1);
    }
}

static void line_feed(eparser *e, const char *s, size_t n)
{
    const char *end = s + n;
    uint64_t max = e->r->o->max_line_bytes;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t k = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (!e->line_long) {
            if (e->line.len + k > max) { e->line_long = 1; kbuf_free(&e->line); }
            else if (nl && e->line.len == 0) { on_line(e, s, k); s += k + 1; continue; }
            else kbuf_append(&e->line, s, k);
        }
        if (!nl) break;
        if (e->line_long) {
            e->lineno++;
            bad(e->r, "%s:%llu: line longer than --max-line-bytes (%llu): skipped", e->loc,
                (unsigned long long)e->lineno, (unsigned long long)max);
            e->line_long = 0;
        } else {
            on_line(e, e->line.data ? e->line.data : "", e->line.len);
        }
        kbuf_clear(&e->line);
        s = nl + 1;
    }
}

/* MediaWiki: Expat callbacks. */
static int xml_top(eparser *e) { return e->depth > 0 && e->depth <= XML_STACK ? e->stack[e->depth - 1] : PE_OTHER; }

static void XMLCALL xml_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    eparser *e = ud;
    int parent = e->depth == 0 ? PE_NONE : xml_top(e);
    int id = PE_OTHER;
    if (!strcmp(name, "page")) {
        id = PE_PAGE;
        e->in_page = 1;
        kbuf_clear(&e->title_b); kbuf_clear(&e->ns_b); kbuf_clear(&e->id_b); kbuf_clear(&e->text_b);
        e->redirect = e->have_id = e->text_long = 0;
    } else if (parent == PE_PAGE && !strcmp(name, "title")) id = PE_TITLE;
    else if (parent == PE_PAGE && !strcmp(name, "ns")) id = PE_NS;
    else if (parent == PE_PAGE && !strcmp(name, "id") && !e->have_id) id = PE_ID;
    else if (parent == PE_PAGE && !strcmp(name, "redirect")) { id = PE_REDIRECT; e->redirect = 1; }
    else if (parent == PE_PAGE && !strcmp(name, "revision")) id = PE_REVISION;
    else if (parent == PE_REVISION && !strcmp(name, "text")) { id = PE_TEXT; kbuf_clear(&e->text_b); }
    else if (!strcmp(name, "siteinfo")) id = PE_SITEINFO;
    else if (parent == PE_SITEINFO && !strcmp(name, "base")) { id = PE_BASE; kbuf_clear(&e->base_b); }
    (void)atts;
    if (e->depth < XML_STACK) e->stack[e->depth] = id;
    e->depth++;
}

static void page_end(eparser *e)
{
    reader *r = e->r;
    const char *title = e->title_b.data ? e->title_b.data : "";
    long ns = e->ns_b.len ? strtol(e->ns_b.data, NULL, 10) : 0;
    e->in_page = 0;
    if ((ns != 0 && !r->o->all_namespaces) || (e->redirect && !r->o->keep_redirects)) {
        count_skip(r);
        return;
    }
    if (e->text_long) {
        bad(r, "%s: page \"%s\" longer than --max-doc-bytes (%llu): skipped", e->loc, title,
            (unsigned long long)r->o->max_doc_bytes);
        return;
    }
    kbuf url = {0};
    if (e->url_prefix[0]) {
        kbuf_puts(&url, e->url_prefix);
        for (const char *c = title; *c; c++) kbuf_putc(&url, *c == ' ' ? '_' : *c);
    }
    emit(r, e->entry, e->id_b.len ? e->id_b.data : NULL, title, url.data, NULL, e->text_b.data ? e->text_b.data : "",
         e->text_b.len, DOC_WIKITEXT);
    kbuf_free(&url);
}

static void XMLCALL xml_end(void *ud, const XML_Char *name)
{
    eparser *e = ud;
    (void)name;
    int id = xml_top(e);
    e->depth--;
    if (id == PE_ID) e->have_id = 1;
    else if (id == PE_PAGE) page_end(e);
    else if (id == PE_BASE && e->base_b.len) {
        /* https://en.wikipedia.org/wiki/Main_Page -> https://en.wikipedia.org/wiki/ */
        char *slash = strrchr(e->base_b.data, '/');
        size_t n = slash ? (size_t)(slash - e->base_b.data) + 1 : 0;
        if (n < sizeof e->url_prefix) {
            memcpy(e->url_prefix, e->base_b.data, n);
            e->url_prefix[n] = '\0';
        }
    }
}

static void XMLCALL xml_chars(void *ud, const XML_Char *s, int len)
{
    eparser *e = ud;
    kbuf *b = NULL;
    size_t max = 4096;
    switch (xml_top(e)) {
    case PE_TITLE: b = &e->title_b; break;
    case PE_NS: b = &e->ns_b; break;
    case PE_ID: b = &e->id_b; break;
    case PE_BASE: b = &e->base_b; break;
    case PE_TEXT:
        if (e->text_long) return;
        if (e->text_b.len + (size_t)len > e->r->o->max_doc_bytes) {
            e->text_long = 1;
            kbuf_free(&e->text_b);
            return;
        }
        kbuf_append(&e->text_b, s, (size_t)len);
        return;
    default: return;
    }
    if (b->len + (size_t)len <= max) kbuf_append(b, s, (size_t)len);
}

static void xml_feed(eparser *e, const char *s, size_t n, int final)
{
    while (!e->dead && (n > 0 || final)) {
        int k = n > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)n;
        if (XML_Parse(e->xp, s, k, final && (size_t)k == n) == XML_STATUS_ERROR) {
            e->dead = 1;
            set_partial(e->r, "%s: XML error at line %lu, column %lu: %s%s", e->loc,
                        (unsigned long)XML_GetCurrentLineNumber(e->xp),
                        (unsigned long)XML_GetCurrentColumnNumber(e->xp),
                        XML_ErrorString(XML_GetErrorCode(e->xp)),
                        e->in_page ? " (the page it cuts off is dropped)" : "");
            return;
        }
        s += k;
        n -= (size_t)k;
        if (final && n == 0) break;
    }
}

static void parser_init(eparser *e, reader *r, int format, const char *loc, const char *entry,
                        const char *title)
{
    memset(e, 0, sizeof *e);
    e->r = r;
    e->format = format;
    e->loc = loc;
    e->entry = entry;
    e->title = title;
    if (format == KFMT_MEDIAWIKI) {
        e->xp = XML_ParserCreate("UTF-8");
        XML_SetUserData(e->xp, e);
        XML_SetElementHandler(e->xp, xml_start, xml_end);
        XML_SetCharacterDataHandler(e->xp, xml_chars);
    }
}

static void parser_feed(eparser *e, const char *s, size_t n)
{
    if (e->dead) return;
    switch (e->format) {
    case KFMT_MEDIAWIKI: xml_feed(e, s, n, 0); break;
    case KFMT_JSONL: line_feed(e, s, n); break;
    default:
        if (e->r->o->split == KSPLIT_DOC) doc_append(e, s, n);
        else line_feed(e, s, n);
    }
}

/* End of the entry: complete = the entry was read to its end. */
static void parser_end(eparser *e, int complete)
{
    if (complete && !e->dead) {
        switch (e->format) {
        case KFMT_MEDIAWIKI: xml_feed(e, "", 0, 1); break;
        case KFMT_JSONL:
            if (e->line.len || e->line_long) line_feed(e, "\n", 1);
            break;
        default:
            if (e->r->o->split == KSPLIT_DOC) { e->doc_line = 1; text_doc_end(e); }
            else {
                if (e->line.len || e->line_long) line_feed(e, "\n", 1);
                if (e->doc.len || e->doc_long) text_doc_end(e);
            }
        }
    }
    if (e->xp) XML_ParserFree(e->xp);
    kbuf_free(&e->line); kbuf_free(&e->doc);
    kbuf_free(&e->title_b); kbuf_free(&e->ns_b); kbuf_free(&e->id_b);
    kbuf_free(&e->text_b); kbuf_free(&e->base_b);
}

/* ---- format detection -------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcasecmp(s + n - m, suf) == 0;
}

static int detect_format(const char *name, const char *head, size_t n)
{
    if (ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json"))
        return KFMT_JSONL;
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    if (i < n && head[i] == '{') return KFMT_JSONL;
    if (i < n && head[i] == '<') {
        size_t m = n < 8192 ? n : 8192;
        for (size_t k = i; k + 10 <= m; k++)
            if (memcmp(head + k, "<mediawiki", 10) == 0) return KFMT_MEDIAWIKI;
    }
    if (ends_with(name, ".xml")) return KFMT_MEDIAWIKI; /* Expat says what is wrong */
    return KFMT_TEXT;
}

static const char *format_name(int f)
{
    switch (f) {
    case KFMT_TEXT: return "text";
    case KFMT_JSONL: return "jsonl";
    case KFMT_MEDIAWIKI: return "mediawiki";
    }
    return "";
}

/* ---- streaming decode and clean ---------------------------------------------- */

/* What ends a line. ktext_clean_utf8 turns CR LF, a lone CR, NEL (U+0085),
 * LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) into '\n' (and
 * drops VT and FF as controls): right for a document's text, wrong for the
 * framing of a line-based file, where only '\n' ends a line. So the stream
 * is cleaned per format (clean_framed):
 *   CLEAN_STREAM  MediaWiki XML, a plain text file that is one document:
 *                 ktext_clean_utf8 as is (a U+2028 in a document is a soft
 *                 line break, as a '\n' is)
 *   CLEAN_JSONL   only '\n' (with a CR before it) ends a line: a raw U+2028,
 *                 U+2029, NEL or lone CR is passed to the JSON scanner as
 *                 is, so the line means what RFC 8259 says (the first three
 *                 are legal inside a string and an error outside one; a lone
 *                 CR is white space between tokens and an error inside a
 *                 string). The workers clean the decoded text as usual (a
 *                 U+2028 in it becomes a soft line break).
 *   CLEAN_LINES   plain text with --split line / blank-line: lines end at
 *                 '\n', CR LF or a lone CR (universal newlines, as Python's
 *                 open() reads text); U+2028, U+2029 and NEL inside a line
 *                 are white space: a line stays one document (one sentence
 *                 with --split blank-line).
 *   CLEAN_PROBE   the format is not known yet (first block, --format auto):
 *                 everything is held back and only a copy of the head is
 *                 cleaned, for detect_format. */
enum { CLEAN_STREAM, CLEAN_JSONL, CLEAN_LINES, CLEAN_PROBE };
#define PROBE_BYTES ((size_t)64 << 10)

static int clean_mode(int format, int split)
{
    if (format == KFMT_JSONL) return CLEAN_JSONL;
    if (format == KFMT_TEXT && split != KSPLIT_DOC) return CLEAN_LINES;
    return CLEAN_STREAM;
}

typedef struct decoder {
    ktext_u16 *u16;     /* non-NULL for UTF-16 input */
    ktext_conv *conv;   /* non-NULL for a legacy charset */
    kbuf utf8;          /* UTF-16 converted */
    kbuf hold;          /* bytes held back: an incomplete sequence or a final '\r'
                           (CLEAN_PROBE: everything so far) */
    kbuf clean;
    ktext_counts counts;
    int mode;           /* CLEAN_* */
} decoder;

/* Length of the tail of s[0..n) that must wait for more bytes. */
static size_t holdback(const unsigned char *s, size_t n)
{
    if (n && s[n - 1] == '\r') return 1;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = s[n - k];
        if (c < 0x80) return 0;
        if (c >= 0xC0) {
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            return need > k ? k : 0;
        }
    }
    return 0;
}

/* Appends to out the clean text of s[0..n) for a line-framed format (mode
 * CLEAN_JSONL or CLEAN_LINES; see the enum): ktext_clean_utf8 between the
 * characters that must not end a line, which are kept (JSONL) or become a
 * space (plain text). A lead byte is never part of another sequence, so
 * matching the separators here agrees with the cleaner's own decoding,
 * invalid bytes around them included. s never ends with a CR that may be
 * followed by '\n' (holdback keeps it). */
static void clean_framed(const char *s, size_t n, int mode, kbuf *out, ktext_counts *c)
{
    if (mode != CLEAN_JSONL && mode != CLEAN_LINES) {
        ktext_clean_utf8(s, n, out, c);
        return;
    }
    const unsigned char *p = (const unsigned char *)s, *e = p + n, *run = p;
    while (p < e) {
        unsigned char ch = *p;
        if (ch != 0xE2 && ch != 0xC2 && ch != '\r') { p++; continue; }
        size_t len;
        if (ch == 0xE2 && e - p >= 3 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) len = 3;
        else if (ch == 0xC2 && e - p >= 2 && p[1] == 0x85) len = 2;
        else if (ch == '\r' && mode == CLEAN_JSONL && !(e - p >= 2 && p[1] == '\n')) len = 1;
        else {
            p++;
            continue;
        }
        ktext_clean_utf8((const char *)run, (size_t)(p - run), out, c);
        if (mode == CLEAN_JSONL) kbuf_append(out, p, len);
        else kbuf_putc(out, ' ');
        p += len;
        run = p;
    }
    ktext_clean_utf8((const char *)run, (size_t)(e - run), out, c);
}

/* Cleans s[0..n) (with held bytes) into d->clean, as d->mode says. */
static void decode_feed(decoder *d, const char *s, size_t n, int final)
{
    if (d->u16 || d->conv) {
        kbuf_clear(&d->utf8);
        if (d->u16) ktext_u16_feed(d->u16, s, n, final, &d->utf8);
        else ktext_conv_feed(d->conv, s, n, final, &d->utf8);
        s = d->utf8.data ? d->utf8.data : "";
        n = d->utf8.len;
    }
    kbuf_clear(&d->clean);
    const char *p = s;
    size_t len = n;
    if (d->hold.len) {
        kbuf_append(&d->hold, s, n);
        p = d->hold.data;
        len = d->hold.len;
    }
    if (d->mode == CLEAN_PROBE) {
        if (p != d->hold.data) kbuf_append(&d->hold, p, len);
        ktext_clean_utf8(d->hold.data, d->hold.len < PROBE_BYTES ? d->hold.len : PROBE_BYTES, &d->clean, NULL);
        return;
    }
    size_t keep = final ? 0 : holdback((const unsigned char *)p, len);
    clean_framed(p, len - keep, d->mode, &d->clean, &d->counts);
    if (keep) {
        char tmp[4];
        memcpy(tmp, p + len - keep, keep);
        kbuf_clear(&d->hold);
        kbuf_append(&d->hold, tmp, keep);
    } else {
        kbuf_clear(&d->hold);
    }
}

static void decoder_free(decoder *d)
{
    ktext_u16_free(d->u16);
    ktext_conv_free(d->conv);
    kbuf_free(&d->utf8);
    kbuf_free(&d->hold);
    kbuf_free(&d->clean);
}

/* The entry's charset (no UTF-16 BOM): --encoding NAME, or in auto mode
 * UTF-8 unless the first block is mostly invalid UTF-8 (more invalid than
 * valid multi-byte sequences), then ICU's guess. A UTF-8 text with a few bad
 * bytes stays UTF-8 (they become U+FFFD). */
static void choose_charset(reader *r, decoder *d, const char *loc, const char *buf, size_t n)
{
    const char *enc = r->o->encoding;
    char name[64], err[256];
    if (enc && strcasecmp(enc, "auto") && strcasecmp(enc, "utf-8") && strcasecmp(enc, "utf8")) {
        d->conv = ktext_conv_new(enc, err, sizeof err);
        if (!d->conv) kwarn("%s: %s: read as UTF-8", loc, err);
        return;
    }
    if (enc && strcasecmp(enc, "auto")) return;
    size_t valid, invalid;
    ktext_utf8_census(buf, n, &valid, &invalid);
    if (invalid == 0 || invalid <= valid) return;
    if (!ktext_detect_charset(buf, n, 10, name, sizeof name) || !strcasecmp(name, "UTF-8")) return;
    d->conv = ktext_conv_new(name, err, sizeof err);
    if (d->conv) kinfo("%s: not UTF-8, decoded as %s (detected; --encoding overrides)", loc, name);
}

/* ---- one file --------------------------------------------------------------- */

static int has_nul(const char *s, size_t n) { return memchr(s, 0, n) != NULL; }

/* 1 when libarchive failed for lack of memory: the file then stops as
 * interrupted (exit 71, its source row left running, taken over by a
 * rerun), not recorded as corrupt or partial, which a rerun would keep. */
static int archive_oom(struct archive *a) { return archive_errno(a) == ENOMEM; }

/* Reads one entry's data into a parser. Returns 0 if the entry was read to
 * its end, 1 if the entry is skipped (corrupt, limit), 2 if the file must
 * stop, 3 if the archive handle failed (message in r->fatal). */
static int read_entry(reader *r, struct archive *a, const char *loc, const char *name,
                      const char *entry, uint64_t *file_unc, uint64_t disk_size)
{
    const kingest_opts *o = r->o;
    eparser e;
    decoder d = {0};
    int started = 0, ret = 0;
    uint64_t entry_bytes = 0;
    char title[256];
    {
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        snprintf(title, sizeof title, "%.255s", base);
        char *dot = strrchr(title, '.');
        if (dot && dot != title) *dot = '\0';
    }
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        double t0 = know_seconds();
        int rc = archive_read_data_block(a, &buf, &n, &off);
        r->sum->t_read += know_seconds() - t0;
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN && archive_oom(a)) {
            r->oom = 1;
            ret = 2;
            break;
        }
        if (rc == ARCHIVE_WARN) kwarn("%s: %s", loc, archive_error_string(a));
        else if (rc == ARCHIVE_FAILED || rc == ARCHIVE_RETRY) {
            bad(r, "%s: corrupt entry at offset %lld (+%llu bytes into it): %s: rest of entry skipped",
                loc, (long long)archive_read_header_position(a), (unsigned long long)entry_bytes,
                archive_error_string(a));
            ret = 1;
            break;
        } else if (rc != ARCHIVE_OK) {
            /* fatal for the handle: the caller decides between skipping the
             * entry (seekable containers) and stopping the file */
            snprintf(r->fatal, sizeof r->fatal, "%s (at offset %lld, %llu bytes into the entry)",
                     archive_error_string(a) ? archive_error_string(a) : "read error",
                     (long long)archive_read_header_position(a), (unsigned long long)entry_bytes);
            ret = 3;
            break;
        }
        entry_bytes += n;
        *file_unc += n;
        r->sum->bytes_in += n;
        cur_batch(r)->delta.bytes_in += (int64_t)n;
        if (entry_bytes > o->max_entry_bytes) {
            bad(r, "%s: entry larger than --max-entry-size (%llu bytes): rest skipped", loc,
                (unsigned long long)o->max_entry_bytes);
            ret = 1;
            break;
        }
        int64_t comp = archive_filter_bytes(a, -1);
        if (*file_unc > RATIO_FLOOR && comp > 0 && (double)*file_unc > o->max_ratio * (double)comp) {
            set_partial(r, "%s: expands more than --max-ratio %.0f times (%llu bytes from %lld): "
                        "stopped as a likely decompression bomb", loc, o->max_ratio,
                        (unsigned long long)*file_unc, (long long)comp);
            ret = 2;
            break;
        }
        if (!started) {
            started = 1;
            int bom = ktext_utf16_bom(buf, n);
            if (bom) d.u16 = ktext_u16_new(bom);
            else if (has_nul(buf, n < 8192 ? n : 8192)) {
                kinfo("%s: binary data, skipped", loc);
                count_skip(r);
                decoder_free(&d);
                return 1;
            } else {
                choose_charset(r, &d, loc, buf, n);
            }
            int fmt = o->format;
            if (fmt == KFMT_AUTO) {
                double tp = know_seconds();
                d.mode = CLEAN_PROBE; /* the block is held back, its head cleaned to detect the format */
                decode_feed(&d, buf, n, 0);
                fmt = detect_format(name, d.clean.data ? d.clean.data : "", d.clean.len);
                d.mode = clean_mode(fmt, o->split);
                decode_feed(&d, "", 0, 0); /* the held block, cleaned for its format */
                r->sum->t_parse += know_seconds() - tp;
                parser_init(&e, r, fmt, loc, entry, title);
                r->formats_seen |= 1 << fmt;
                tp = know_seconds();
                parser_feed(&e, d.clean.data ? d.clean.data : "", d.clean.len);
                r->sum->t_parse += know_seconds() - tp;
                progress(r, (uint64_t)comp > disk_size ? disk_size : (uint64_t)comp);
                continue;
            }
            d.mode = clean_mode(fmt, o->split);
            parser_init(&e, r, fmt, loc, entry, title);
            r->formats_seen |= 1 << fmt;
        }
        double tp = know_seconds();
        decode_feed(&d, buf, n, 0);
        parser_feed(&e, d.clean.data ? d.clean.data : "", d.clean.len);
        r->sum->t_parse += know_seconds() - tp;
        progress(r, (uint64_t)comp > disk_size ? disk_size : (uint64_t)comp);
        if (o->stop && *o->stop) { ret = 2; break; }
        if (pl_failed(r->p)) { ret = 2; break; }
    }
    if (!started) { /* an empty entry */
        decoder_free(&d);
        if (ret == 0) count_skip(r);
        return ret;
    }
    if (ret == 0) {
        double tp = know_seconds();
        decode_feed(&d, "", 0, 1);
        parser_feed(&e, d.clean.data ? d.clean.data : "", d.clean.len);
        r->sum->t_parse += know_seconds() - tp;
    }
    parser_end(&e, ret == 0);
    r->sum->invalid_utf8 += d.counts.invalid_utf8;
    decoder_free(&d);
    return ret;
}

/* *oom is set when a reader or filter could not be set up for lack of memory. */
static struct archive *open_archive(const char *path, int *oom)
{
    struct archive *a = archive_read_new();
    if (!a) koom(0);
    *oom = 0;
    /* By name: no helper that may spawn external programs. */
    int (*const support[])(struct archive *) = {
        archive_read_support_filter_gzip,  archive_read_support_filter_bzip2,   archive_read_support_filter_xz,
        archive_read_support_filter_lzma,  archive_read_support_filter_zstd,    archive_read_support_filter_lz4,
        archive_read_support_filter_compress, archive_read_support_format_tar,  archive_read_support_format_zip,
        archive_read_support_format_7zip,  archive_read_support_format_cpio,    archive_read_support_format_empty,
        archive_read_support_format_raw};
    for (size_t i = 0; i < sizeof support / sizeof *support; i++)
        if (support[i](a) == ARCHIVE_FATAL && archive_oom(a)) *oom = 1; /* not a format fewer */
    if (archive_read_open_filename(a, path, READ_BLOCK) != ARCHIVE_OK && archive_oom(a)) *oom = 1;
    return a;
}

static int skip_entry_name(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    return strncmp(name, "__MACOSX/", 9) == 0 || strncmp(base, "._", 2) == 0 ||
           strcmp(base, ".DS_Store") == 0;
}

/* Ingests one file. Returns 0 or EX_*. */
static int ingest_file(reader *r, const char *path, const struct stat *st)
{
    const kingest_opts *o = r->o;
    r->path = path;
    if (st->st_size == 0) {
        kwarn("%s: empty file, nothing to ingest", path);
        r->sum->skipped++;
        return 0;
    }
    /* content hash of the file (its identity: re-ingesting the same bytes is a no-op) */
    uint8_t hash[KHASH_LEN];
    int64_t size = 0;
    double t0 = know_seconds();
    int rerr = khash_file(path, hash, &size);
    r->sum->t_read += know_seconds() - t0;
    if (rerr) {
        kerr("%s: cannot read: %s", path, strerror(rerr));
        r->sum->missing++;
        return EX_NOINPUT;
    }
    char abspath[PATH_MAX];
    if (!realpath(path, abspath)) snprintf(abspath, sizeof abspath, "%s", path);
    int already = 0;
    int rc = pl_register_source(r->p, abspath, hash, size, &r->source_id, &already);
    if (rc) return rc;
    if (already) {
        kinfo("%s: already ingested (same content), nothing to do", path);
        r->sum->already++;
        return 0;
    }
    r->errors = 0;
    kbuf_clear(&r->first_error);
    free(r->partial);
    r->partial = NULL;
    r->formats_seen = 0;

    r->oom = 0;
    struct archive *a = open_archive(path, &r->oom);
    uint64_t file_unc = 0;
    int stop = r->oom;
    if (!stop && (archive_errno(a) != 0 || archive_error_string(a))) {
        set_partial(r, "%s: cannot open: %s", path,
                    archive_error_string(a) ? archive_error_string(a) : strerror(archive_errno(a)));
        stop = 1;
    }
    struct archive_entry *ent;
    uint64_t index = 0; /* headers read so far */
    int reopens = 0;
    while (!stop) {
        double th = know_seconds();
        int hr = archive_read_next_header(a, &ent);
        r->sum->t_read += know_seconds() - th;
        if (hr == ARCHIVE_EOF) break;
        if (hr != ARCHIVE_OK && hr != ARCHIVE_WARN && archive_oom(a)) {
            r->oom = 1;
            break;
        }
        if (hr == ARCHIVE_WARN) kwarn("%s: %s", path, archive_error_string(a));
        else if (hr == ARCHIVE_RETRY) continue;
        else if (hr == ARCHIVE_FAILED) {
            bad(r, "%s: corrupt entry header at offset %lld: %s: entry skipped", path,
                (long long)archive_read_header_position(a), archive_error_string(a));
            continue;
        } else if (hr != ARCHIVE_OK) {
            set_partial(r, "%s: %s (at offset %lld)", path,
                        archive_error_string(a) ? archive_error_string(a) : "read error",
                        (long long)archive_read_header_position(a));
            break;
        }
        index++;
        int raw = archive_format(a) == ARCHIVE_FORMAT_RAW;
        const char *ename = archive_entry_pathname_utf8(ent);
        if (!ename) ename = archive_entry_pathname(ent);
        if (!ename) ename = "";
        if (!raw && (archive_entry_filetype(ent) != AE_IFREG || skip_entry_name(ename))) continue;
        char name[PATH_MAX];
        const char *base = strrchr(path, '/');
        snprintf(name, sizeof name, "%s", raw ? (base ? base + 1 : path) : ename);
        if (raw) kpath_strip_compression(name);
        kbuf loc = {0};
        kbuf_puts(&loc, path);
        if (!raw) { kbuf_putc(&loc, ':'); kbuf_puts(&loc, ename); }
        if (!raw && archive_entry_size_is_set(ent) &&
            (uint64_t)archive_entry_size(ent) > o->max_entry_bytes) {
            bad(r, "%s: entry of %lld bytes is larger than --max-entry-size (%llu): skipped",
                loc.data, (long long)archive_entry_size(ent), (unsigned long long)o->max_entry_bytes);
            kbuf_free(&loc);
            continue;
        }
        int er = read_entry(r, a, loc.data, name, raw ? "" : ename, &file_unc, (uint64_t)size);
        if (er == 3) {
            int base = archive_format(a) & ARCHIVE_FORMAT_BASE_MASK;
            if ((base == ARCHIVE_FORMAT_ZIP || base == ARCHIVE_FORMAT_7ZIP) && reopens < 100) {
                /* entries are independent in these containers: reopen and
                 * skip past the bad one */
                bad(r, "%s: corrupt entry: %s: entry skipped", loc.data, r->fatal);
                reopens++;
                archive_read_free(a);
                a = open_archive(path, &r->oom);
                if (r->oom) stop = 1;
                for (uint64_t k = 0; k < index && !stop; k++)
                    if (archive_read_next_header(a, &ent) < ARCHIVE_WARN) {
                        set_partial(r, "%s: cannot reopen past the corrupt entry: %s", path,
                                    archive_error_string(a) ? archive_error_string(a) : "error");
                        stop = 1;
                    }
            } else {
                set_partial(r, "%s: %s", loc.data, r->fatal);
                stop = 1;
            }
        }
        kbuf_free(&loc);
        if (er == 2) stop = 1;
        if (o->stop && *o->stop) stop = 1;
    }
    archive_read_free(a);
    flush_batch(r);

    batch *end = pl_batch_new(r->p, r->source_id);
    end->kind = BATCH_SOURCE_END;
    int fmts = r->formats_seen, nf = __builtin_popcount((unsigned)fmts);
    snprintf(end->format, sizeof end->format, "%s",
             nf == 1 ? format_name(__builtin_ctz((unsigned)fmts)) : nf ? "mixed" : "");
    int interrupted = (o->stop && *o->stop) || pl_failed(r->p) || r->oom;
    if (interrupted) {
        snprintf(end->status, sizeof end->status, "running"); /* reported as interrupted */
        end->error = xstrdup(r->oom ? "interrupted: out of memory" : "interrupted");
    } else if (r->partial) {
        snprintf(end->status, sizeof end->status, "partial");
        end->error = xstrdup(r->partial);
        r->sum->partial++;
    } else {
        snprintf(end->status, sizeof end->status, "complete");
    }
    end->errors = r->errors;
    if (r->errors) end->first_error = xstrdup(r->first_error.data);
    pl_submit(r->p, end);
    r->sum->bytes_read += (uint64_t)size;
    r->bytes_done_before += (uint64_t)size;
    if (r->oom) {
        kerr("%s: out of memory in libarchive: stopped (a rerun takes the file over)", path);
        return EX_OSERR;
    }
    if (interrupted) return 0;
    return (r->partial || r->errors) ? EX_DATAERR : 0;
}

/* ---- walking the paths ------------------------------------------------------ */

typedef struct fileent { char *path; struct stat st; } fileent;
typedef struct filelist { fileent *v; size_t n, cap; } filelist;

typedef struct dirstack { dev_t dev[256]; ino_t ino[256]; int n; } dirstack;

static void add_file(filelist *fl, const char *path, const struct stat *st)
{
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? fl->cap * 2 : 64;
        fl->v = xrealloc(fl->v, fl->cap * sizeof *fl->v);
    }
    fl->v[fl->n].path = xstrdup(path);
    fl->v[fl->n].st = *st;
    fl->n++;
}

static int walk(reader *r, const char *path, filelist *fl, dirstack *ds, int top)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        struct stat lst;
        if (e == ELOOP || (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)))
            kerr("%s: %s (broken or looping symbolic link)", path, strerror(e));
        else kerr("%s: %s", path, strerror(e));
        r->sum->missing++;
        return EX_NOINPUT;
    }
    if (S_ISREG(st.st_mode)) {
        if (access(path, R_OK) != 0) {
            kerr("%s: cannot read: %s", path, strerror(errno));
            r->sum->missing++;
            return EX_NOINPUT;
        }
        add_file(fl, path, &st);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        kwarn("%s: not a regular file or directory, skipped", path);
        return top ? EX_NOINPUT : 0;
    }
    for (int i = 0; i < ds->n; i++)
        if (ds->dev[i] == st.st_dev && ds->ino[i] == st.st_ino) {
            kwarn("%s: directory loop (a symbolic link back to an enclosing directory), skipped", path);
            return 0;
        }
    if (ds->n >= 256) {
        kwarn("%s: directories nested deeper than 256, skipped", path);
        return 0;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        kerr("%s: cannot read directory: %s", path, strerror(errno));
        r->sum->missing++;
        return EX_NOINPUT;
    }
    ds->dev[ds->n] = st.st_dev;
    ds->ino[ds->n] = st.st_ino;
    ds->n++;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (nm[0] != '.') {
            kbuf child = {0};
            kbuf_printf(&child, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", nm);
            int c = walk(r, child.data, fl, ds, 0);
            if (c && !rc) rc = c;
            kbuf_free(&child);
        }
        free(names[i]);
    }
    free(names);
    ds->n--;
    return rc;
}

int reader_run(pipeline *p, const char *const *paths, int npaths)
{
    reader r = {0};
    r.p = p;
    r.o = pl_opts(p);
    r.sum = pl_summary(p);
    r.t_start = know_seconds();
    filelist fl = {0};
    int rc = 0;
    for (int i = 0; i < npaths; i++) {
        dirstack ds = {.n = 0};
        int c = walk(&r, paths[i], &fl, &ds, 1);
        if (c == EX_NOINPUT) rc = EX_NOINPUT;
    }
    for (size_t i = 0; i < fl.n; i++) r.bytes_total += (uint64_t)fl.v[i].st.st_size;
    r.sum->files = fl.n;
    for (size_t i = 0; i < fl.n; i++) {
        if ((r.o->stop && *r.o->stop) || pl_failed(p)) break;
        int c = ingest_file(&r, fl.v[i].path, &fl.v[i].st);
        if (c == EX_NOINPUT) rc = EX_NOINPUT;
        else if (c == EX_DATAERR && rc != EX_NOINPUT) rc = EX_DATAERR;
        else if (c && c != EX_DATAERR && c != EX_NOINPUT) { rc = c; break; }
    }
    if (r.o->stop && *r.o->stop) {
        r.sum->interrupted = 1;
        rc = EX_SOFTWARE;
    }
    for (size_t i = 0; i < fl.n; i++) free(fl.v[i].path);
    free(fl.v);
    kbuf_free(&r.first_error);
    free(r.partial);
    return rc;
}
