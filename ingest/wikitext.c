/* wikitext.c: MediaWiki wikitext -> plain text converter (see wikitext.h).
 *
 * One forward pass over the bytes. Constructs whose end must be found first
 * (templates, tables, file links, extension tags, comments) are skipped by
 * bounded scanners; their searches are cached or charged to a budget so the
 * whole pass stays linear, and nesting is tracked with counters and a capped
 * stack, never with recursion. Rules, in the order they are tried:
 *
 *  1. "#REDIRECT" at the start of the page: no output at all.
 *  2. At a source line start: a whitespace-only line ends the paragraph;
 *     "=..=" is a heading (its own block; a heading named "References",
 *     "See also", "External links", ... mutes everything up to the next
 *     heading of the same or a higher level); "*#:;" list markers are stripped
 *     and the item becomes a block; "{|" (possibly after ':' indents) starts a
 *     table, dropped up to its matching line-start "|}" (a heading line or the
 *     end closes it too); "----" is dropped; a leading space starts a
 *     preformatted block (kept as trimmed text). A heading left with no text
 *     before the next heading of its level or higher (a section of tables) is
 *     taken back out.
 *  3. "{{" / "{{{": template / parameter / parser function, dropped with
 *     MediaWiki's brace-run matching (stack capped, deeper levels counted).
 *     Unclosed: dropped to the next blank line while the budget for failed
 *     scans lasts, then to the end. Exception: a short list of templates
 *     whose text readers see inline (ndash, lang, nihongo, nowrap, convert,
 *     quote, ...) yields that text; their shown parameter is parsed in place
 *     (a frame stack of WT_FRAMES says where it stops), not recursively.
 *  4. "[[": internal link. File/Image/Media/Category/interlanguage links are
 *     dropped with the nested [[..]] of their captions (an unclosed one drops
 *     the rest of its paragraph). Otherwise the target or the label is kept,
 *     "[[T|]]" applies the pipe trick, and a closing "]]" is dropped wherever
 *     it appears (so link trails just attach). A "[[" with no "|" or "]]"
 *     after a plausible target is dropped.
 *  5. "[url label]" keeps the label; "[url]" is dropped; bare URLs stay text.
 *  6. Runs of 2, 3 or 5 apostrophes (italic/bold) vanish; 4 and 6+ leave the
 *     extra apostrophes, as MediaWiki does.
 *  7. "<!-- -->" comments vanish (unterminated: to the end). Tags: ref, math,
 *     gallery, ... vanish with their content; nowiki, pre, syntaxhighlight
 *     keep their content unparsed; br becomes a newline; other known HTML
 *     tags (and unknown tag-shaped ones) vanish, keeping the text between.
 *  8. "&name;", "&#N;", "&#xH;" entities are decoded to UTF-8.
 *  9. "__MAGICWORD__" vanishes; stray "}}" vanish.
 * 10. Every visible byte goes through the emitter, which collapses spaces,
 *     trims lines, drops empty lines, writes the "\n" / "\n\n" separators
 *     lazily (so there are never leading or trailing blank lines) and, right
 *     after a removed construct, drops a space before ",.;:)!?", a ","/";"
 *     right after "(" or another ","/";", a ", " before ")", "()" pairs and
 *     a lone "," ";" "." ":" opening a line.
 *
 * All state lives in one struct on the caller's stack (thread-safe); output
 * goes only to `out`, which the emitter also rewinds to take back a dropped
 * heading or an emptied "(". */
#include "ingest/wikitext.h"

#include <stdint.h>
#include <string.h>

#define WT_NONE ((size_t)-1)
#define WT_BRACE_STACK 64    /* brace runs tracked exactly; deeper ones are counted */
#define WT_TARGET_MAX 512    /* longest link target considered */
#define WT_TAG_MAX 2048      /* longest tag (name + attributes) considered */
#define WT_FAIL_BUDGET_MIN 65536
#define WT_FRAMES 4          /* nesting of expanded templates (deeper ones are dropped) */
#define WT_TPL_PARAMS 8      /* positional template parameters looked at */

/* ---- emitter ------------------------------------------------------------- */

typedef struct {
    kbuf  *out;
    size_t base;     /* out->len on entry: bytes before it are never touched */
    size_t line_off; /* out->len where the current output line starts */
    int    pend_nl;  /* separator owed before the next visible byte: 0, 1 "\n", 2 "\n\n" */
    int    pend_sp;  /* a space is owed before the next visible byte */
    int    line_has; /* the current output line has visible bytes */
    int    removed;  /* a construct was dropped since the last visible byte */
    int    mute;     /* inside a dropped section: emit nothing */
} emitter;

static int is_tidy_punct(unsigned char c)
{
    return c == ',' || c == '.' || c == ';' || c == ':' || c == ')' || c == '!' || c == '?';
}

/* Writes k > 0 visible (non-whitespace) bytes. */
static void em_put(emitter *e, const char *p, size_t k)
{
    kbuf *o = e->out;
    if (e->mute || k == 0)
        return;
    if (e->removed && (e->pend_nl || !e->line_has)) { /* "{{x}}, foo" at a line start */
        if (k == 1 && (p[0] == '.' || p[0] == ':'))
            return;
        if (p[0] == ',' || p[0] == ';') {
            if (--k == 0)
                return;
            p++;
        }
    }
    if (e->pend_nl) {
        if (o->len > e->base)
            kbuf_append(o, "\n\n", (size_t)e->pend_nl);
        e->pend_nl = 0;
        e->pend_sp = 0;
        e->line_has = 0;
        e->line_off = o->len;
    }
    if (e->removed) {
        unsigned char c = (unsigned char)p[0];
        if (e->line_has) {
            if (c == ')') { /* "(Akhilleus, {{IPA}})": drop the dangling ", " */
                while (o->len > e->line_off + 1 &&
                       (o->data[o->len - 1] == ',' || o->data[o->len - 1] == ';' ||
                        o->data[o->len - 1] == ':'))
                    o->len--;
                o->data[o->len] = '\0';
                e->pend_sp = 0;
            }
            if (o->data[o->len - 1] == '(') {
                if (c == ',' || c == ';') { /* "({{IPA}}; born" */
                    e->pend_sp = 0;
                    if (--k == 0)
                        return;
                    p++;
                    c = (unsigned char)p[0];
                }
                if (c == ')') { /* "X ({{IPA}}) is": drop " (" and ")" */
                    o->len--;
                    if (o->len > e->line_off && o->data[o->len - 1] == ' ')
                        o->len--;
                    e->pend_sp = 0;
                    e->line_has = o->len > e->line_off;
                    if (!e->line_has) { /* the line is empty again: take back its separator */
                        while (o->len > e->base && o->data[o->len - 1] == '\n' && e->pend_nl < 2) {
                            o->len--;
                            e->pend_nl++;
                        }
                    }
                    o->data[o->len] = '\0';
                    if (--k == 0)
                        return;
                    if (!e->line_has) {
                        em_put(e, p + 1, k); /* once: the line is empty now */
                        return;
                    }
                    p++;
                    c = (unsigned char)p[0];
                }
                if (e->line_has && o->data[o->len - 1] == '(')
                    e->pend_sp = 0;
            }
            if ((c == ',' || c == ';') && e->line_has &&
                (o->data[o->len - 1] == ',' || o->data[o->len - 1] == ';')) {
                if (--k == 0) /* "born X, {{lang-ru|..}};" */
                    return;
                p++;
            }
            if (e->pend_sp && is_tidy_punct((unsigned char)p[0]))
                e->pend_sp = 0;
        }
    }
    if (e->pend_sp) {
        if (e->line_has)
            kbuf_putc(o, ' ');
        e->pend_sp = 0;
    }
    kbuf_append(o, p, k);
    e->line_has = 1;
    e->removed = 0;
}

static void em_space(emitter *e)
{
    if (!e->mute && e->line_has)
        e->pend_sp = 1;
}

/* A newline inside a block. */
static void em_line(emitter *e)
{
    if (e->mute)
        return;
    if (e->line_has) {
        if (e->pend_nl < 1)
            e->pend_nl = 1;
        e->line_has = 0;
    }
    e->pend_sp = 0;
}

/* End of a block (paragraph, heading, list item). */
static void em_block(emitter *e)
{
    if (e->mute)
        return;
    if (e->line_has || e->pend_nl || e->out->len > e->base)
        e->pend_nl = 2;
    e->line_has = 0;
    e->pend_sp = 0;
    e->removed = 0;
}

static void em_cp(emitter *e, uint32_t cp)
{
    char b[4];
    size_t k;
    if (cp == ' ' || cp == '\t' || cp == '\r') {
        em_space(e);
        return;
    }
    if (cp == '\n') {
        em_line(e);
        return;
    }
    if (cp < 0x80) {
        b[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    em_put(e, b, k);
}

/* ---- static tables ------------------------------------------------------- */

/* HTML 4 named entities plus &apos;, sorted by strcmp for binary search. */
typedef struct {
    const char *name;
    uint32_t    cp;
} entity;

static const entity ENTITIES[] = {
    {"AElig",0xC6},{"Aacute",0xC1},{"Acirc",0xC2},{"Agrave",0xC0},{"Alpha",0x391},
    {"Aring",0xC5},{"Atilde",0xC3},{"Auml",0xC4},{"Beta",0x392},{"Ccedil",0xC7},{"Chi",0x3A7},
    {"Dagger",0x2021},{"Delta",0x394},{"ETH",0xD0},{"Eacute",0xC9},{"Ecirc",0xCA},
    {"Egrave",0xC8},{"Epsilon",0x395},{"Eta",0x397},{"Euml",0xCB},{"Gamma",0x393},
    {"Iacute",0xCD},{"Icirc",0xCE},{"Igrave",0xCC},{"Iota",0x399},{"Iuml",0xCF},
    {"Kappa",0x39A},{"Lambda",0x39B},{"Mu",0x39C},{"Ntilde",0xD1},{"Nu",0x39D},
    {"OElig",0x152},{"Oacute",0xD3},{"Ocirc",0xD4},{"Ograve",0xD2},{"Omega",0x3A9},
    {"Omicron",0x39F},{"Oslash",0xD8},{"Otilde",0xD5},{"Ouml",0xD6},{"Phi",0x3A6},
    {"Pi",0x3A0},{"Prime",0x2033},{"Psi",0x3A8},{"Rho",0x3A1},{"Scaron",0x160},
    {"Sigma",0x3A3},{"THORN",0xDE},{"Tau",0x3A4},{"Theta",0x398},{"Uacute",0xDA},
    {"Ucirc",0xDB},{"Ugrave",0xD9},{"Upsilon",0x3A5},{"Uuml",0xDC},{"Xi",0x39E},
    {"Yacute",0xDD},{"Yuml",0x178},{"Zeta",0x396},{"aacute",0xE1},{"acirc",0xE2},
    {"acute",0xB4},{"aelig",0xE6},{"agrave",0xE0},{"alefsym",0x2135},{"alpha",0x3B1},
    {"amp",0x26},{"and",0x2227},{"ang",0x2220},{"apos",0x27},{"aring",0xE5},{"asymp",0x2248},
    {"atilde",0xE3},{"auml",0xE4},{"bdquo",0x201E},{"beta",0x3B2},{"brvbar",0xA6},
    {"bull",0x2022},{"cap",0x2229},{"ccedil",0xE7},{"cedil",0xB8},{"cent",0xA2},{"chi",0x3C7},
    {"circ",0x2C6},{"clubs",0x2663},{"cong",0x2245},{"copy",0xA9},{"crarr",0x21B5},
    {"cup",0x222A},{"curren",0xA4},{"dArr",0x21D3},{"dagger",0x2020},{"darr",0x2193},
    {"deg",0xB0},{"delta",0x3B4},{"diams",0x2666},{"divide",0xF7},{"eacute",0xE9},
    {"ecirc",0xEA},{"egrave",0xE8},{"empty",0x2205},{"emsp",0x2003},{"ensp",0x2002},
    {"epsilon",0x3B5},{"equiv",0x2261},{"eta",0x3B7},{"eth",0xF0},{"euml",0xEB},{"euro",0x20AC},
    {"exist",0x2203},{"fnof",0x192},{"forall",0x2200},{"frac12",0xBD},{"frac14",0xBC},
    {"frac34",0xBE},{"frasl",0x2044},{"gamma",0x3B3},{"ge",0x2265},{"gt",0x3E},{"hArr",0x21D4},
    {"harr",0x2194},{"hearts",0x2665},{"hellip",0x2026},{"iacute",0xED},{"icirc",0xEE},
    {"iexcl",0xA1},{"igrave",0xEC},{"image",0x2111},{"infin",0x221E},{"int",0x222B},
    {"iota",0x3B9},{"iquest",0xBF},{"isin",0x2208},{"iuml",0xEF},{"kappa",0x3BA},{"lArr",0x21D0},
    {"lambda",0x3BB},{"lang",0x2329},{"laquo",0xAB},{"larr",0x2190},{"lceil",0x2308},
    {"ldquo",0x201C},{"le",0x2264},{"lfloor",0x230A},{"lowast",0x2217},{"loz",0x25CA},
    {"lrm",0x200E},{"lsaquo",0x2039},{"lsquo",0x2018},{"lt",0x3C},{"macr",0xAF},{"mdash",0x2014},
    {"micro",0xB5},{"middot",0xB7},{"minus",0x2212},{"mu",0x3BC},{"nabla",0x2207},{"nbsp",0xA0},
    {"ndash",0x2013},{"ne",0x2260},{"ni",0x220B},{"not",0xAC},{"notin",0x2209},{"nsub",0x2284},
    {"ntilde",0xF1},{"nu",0x3BD},{"oacute",0xF3},{"ocirc",0xF4},{"oelig",0x153},{"ograve",0xF2},
    {"oline",0x203E},{"omega",0x3C9},{"omicron",0x3BF},{"oplus",0x2295},{"or",0x2228},
    {"ordf",0xAA},{"ordm",0xBA},{"oslash",0xF8},{"otilde",0xF5},{"otimes",0x2297},{"ouml",0xF6},
    {"para",0xB6},{"part",0x2202},{"permil",0x2030},{"perp",0x22A5},{"phi",0x3C6},{"pi",0x3C0},
    {"piv",0x3D6},{"plusmn",0xB1},{"pound",0xA3},{"prime",0x2032},{"prod",0x220F},
    {"prop",0x221D},{"psi",0x3C8},{"quot",0x22},{"rArr",0x21D2},{"radic",0x221A},{"rang",0x232A},
    {"raquo",0xBB},{"rarr",0x2192},{"rceil",0x2309},{"rdquo",0x201D},{"real",0x211C},{"reg",0xAE},
    {"rfloor",0x230B},{"rho",0x3C1},{"rlm",0x200F},{"rsaquo",0x203A},{"rsquo",0x2019},
    {"sbquo",0x201A},{"scaron",0x161},{"sdot",0x22C5},{"sect",0xA7},{"shy",0xAD},{"sigma",0x3C3},
    {"sigmaf",0x3C2},{"sim",0x223C},{"spades",0x2660},{"sub",0x2282},{"sube",0x2286},
    {"sum",0x2211},{"sup",0x2283},{"sup1",0xB9},{"sup2",0xB2},{"sup3",0xB3},{"supe",0x2287},
    {"szlig",0xDF},{"tau",0x3C4},{"there4",0x2234},{"theta",0x3B8},{"thetasym",0x3D1},
    {"thinsp",0x2009},{"thorn",0xFE},{"tilde",0x2DC},{"times",0xD7},{"trade",0x2122},
    {"uArr",0x21D1},{"uacute",0xFA},{"uarr",0x2191},{"ucirc",0xFB},{"ugrave",0xF9},{"uml",0xA8},
    {"upsih",0x3D2},{"upsilon",0x3C5},{"uuml",0xFC},{"weierp",0x2118},{"xi",0x3BE},
    {"yacute",0xFD},{"yen",0xA5},{"yuml",0xFF},{"zeta",0x3B6},{"zwj",0x200D},{"zwnj",0x200C},
};

enum {
    TG_KEEP,     /* drop the tag, keep what is between */
    TG_BLOCK,    /* same, and the tag separates blocks */
    TG_BR,       /* line break */
    TG_DROP,     /* drop the tag and its content */
    TG_LIT,      /* keep the content unparsed (inline) */
    TG_LITBLOCK, /* keep the content unparsed, as its own block */
};

typedef struct {
    const char   *name;
    unsigned char len;
    unsigned char kind;
    signed char   cache; /* index into wt.tagc for tags whose closer is searched, else -1 */
} tagdef;

#define T(n, k, c) {n, (unsigned char)(sizeof(n) - 1), k, c}
static const tagdef TAGS[] = {
    /* tags whose content matters: each has its own close-search cache slot */
    T("ref", TG_DROP, 0), T("references", TG_DROP, 1), T("math", TG_DROP, 2),
    T("chem", TG_DROP, 3), T("ce", TG_DROP, 4), T("score", TG_DROP, 5),
    T("timeline", TG_DROP, 6), T("imagemap", TG_DROP, 7), T("gallery", TG_DROP, 8),
    T("hiero", TG_DROP, 9), T("graph", TG_DROP, 10), T("mapframe", TG_DROP, 11),
    T("maplink", TG_DROP, 12), T("templatedata", TG_DROP, 13), T("templatestyles", TG_DROP, 14),
    T("section", TG_DROP, 15), T("indicator", TG_DROP, 16), T("inputbox", TG_DROP, 17),
    T("categorytree", TG_DROP, 18), T("includeonly", TG_DROP, 19), T("table", TG_DROP, 20),
    T("rss", TG_DROP, 21), T("charinsert", TG_DROP, 22), T("style", TG_DROP, 23),
    T("nowiki", TG_LIT, 24), T("pre", TG_LITBLOCK, 25), T("syntaxhighlight", TG_LITBLOCK, 26),
    T("source", TG_LITBLOCK, 27),
    /* markup only */
    T("br", TG_BR, -1),
    T("p", TG_BLOCK, -1), T("div", TG_BLOCK, -1), T("blockquote", TG_BLOCK, -1),
    T("li", TG_BLOCK, -1), T("ul", TG_BLOCK, -1), T("ol", TG_BLOCK, -1), T("dl", TG_BLOCK, -1),
    T("dd", TG_BLOCK, -1), T("dt", TG_BLOCK, -1), T("hr", TG_BLOCK, -1), T("poem", TG_BLOCK, -1),
    T("center", TG_BLOCK, -1), T("h1", TG_BLOCK, -1), T("h2", TG_BLOCK, -1),
    T("h3", TG_BLOCK, -1), T("h4", TG_BLOCK, -1), T("h5", TG_BLOCK, -1), T("h6", TG_BLOCK, -1),
    T("caption", TG_BLOCK, -1), T("tr", TG_BLOCK, -1), T("figure", TG_BLOCK, -1),
    T("abbr", TG_KEEP, -1), T("b", TG_KEEP, -1), T("bdi", TG_KEEP, -1), T("bdo", TG_KEEP, -1),
    T("big", TG_KEEP, -1), T("cite", TG_KEEP, -1), T("code", TG_KEEP, -1),
    T("data", TG_KEEP, -1), T("del", TG_KEEP, -1), T("dfn", TG_KEEP, -1), T("em", TG_KEEP, -1),
    T("font", TG_KEEP, -1), T("i", TG_KEEP, -1), T("ins", TG_KEEP, -1), T("kbd", TG_KEEP, -1),
    T("mark", TG_KEEP, -1), T("q", TG_KEEP, -1), T("rb", TG_KEEP, -1), T("rp", TG_KEEP, -1),
    T("rt", TG_KEEP, -1), T("rtc", TG_KEEP, -1), T("ruby", TG_KEEP, -1), T("s", TG_KEEP, -1),
    T("samp", TG_KEEP, -1), T("small", TG_KEEP, -1), T("span", TG_KEEP, -1),
    T("strike", TG_KEEP, -1), T("strong", TG_KEEP, -1), T("sub", TG_KEEP, -1),
    T("sup", TG_KEEP, -1), T("time", TG_KEEP, -1), T("tt", TG_KEEP, -1), T("u", TG_KEEP, -1),
    T("var", TG_KEEP, -1), T("wbr", TG_KEEP, -1), T("td", TG_KEEP, -1), T("th", TG_KEEP, -1),
    T("noinclude", TG_KEEP, -1), T("onlyinclude", TG_KEEP, -1), T("link", TG_KEEP, -1),
    T("meta", TG_KEEP, -1), T("tbody", TG_KEEP, -1), T("thead", TG_KEEP, -1),
};
#undef T
#define WT_TAG_CACHES 28

/* Sections dropped with their heading (compared case-insensitively). */
static const char *const DROPPED_SECTIONS[] = {
    "references", "external links", "see also", "further reading", "notes",
    "footnotes", "citations", "sources", "notes and references", "references and notes",
    "works cited", "external link", "reference", "bibliography and references",
    "notes and citations", "sources and references",
};

/* Link namespaces whose links are not shown in the text. */
static const char *const DROPPED_NS[] = {"file", "image", "media", "category"};

/* Interwiki prefixes of 2-3 letters that are not language codes. */
static const char *const NOT_LANG[] = {"mw", "wp", "voy", "wmf", "doi", "irc"};

/* URL schemes that make "[scheme..." an external link. */
static const char *const SCHEMES[] = {
    "http://", "https://", "//", "ftp://", "ftps://", "sftp://", "mailto:", "news:",
    "nntp://", "irc://", "ircs://", "gopher://", "telnet://", "git://", "svn://",
    "ssh://", "mms://", "urn:", "worldwind://", "xmpp:", "sip:", "sips:", "sms:",
    "tel:", "geo:", "magnet:", "bitcoin:", "redis://", "matrix:",
};

/* Bytes the main loop must look at; everything else is copied in runs. */
static const unsigned char SPECIAL[256] = {
    ['\n'] = 1, [' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\f'] = 1, ['\v'] = 1,
    ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, ['\''] = 1, ['<'] = 1, ['&'] = 1, ['_'] = 1,
};

/* ---- converter state ----------------------------------------------------- */

enum { LK_TEXT, LK_PRE, LK_LIST, LK_HEAD };

/* A heading already written; dropped again if nothing follows it before the
 * next heading of the same or a higher level (e.g. sections of tables only). */
typedef struct {
    size_t  out_start, out_end;
    emitter saved;
    int     level;
} headrec;

/* An expanded template: its shown parameter ends at stop, the template at resume. */
typedef struct {
    size_t stop, resume;
    int    block;
} frame;

/* A cached forward search: the first hit at or after `from` is `at` (n: none). */
typedef struct {
    size_t from, at;
} wt_cache;

typedef struct {
    const char *s;
    size_t      n;
    emitter     e;
    int         bol;       /* at the start of a source line */
    int         kind;      /* LK_* of the current source line */
    int         prev_kind; /* LK_* of the previous one */
    /* heading in progress */
    int     head_level;    /* 0: none */
    size_t  head_end;      /* end of the title text */
    size_t  head_eol;      /* end of the heading line */
    size_t  head_out;      /* out->len when the heading started */
    emitter head_saved;    /* emitter state when the heading started */
    int     skip_level;    /* > 0: muted inside a dropped section of this level */
    headrec hs[6];         /* kept headings with no text after them yet, by level */
    int     nhs;
    frame   fr[WT_FRAMES]; /* expanded templates whose parameter is being read */
    int     nfr;
    size_t  ext_close;     /* position of the ']' that closes the current [url label] */
    size_t  budget;        /* bytes that failed template scans may still spend */
    wt_cache tagc[WT_TAG_CACHES];
    wt_cache cmt;          /* "-->" */
    wt_cache rbr;          /* ']' or '\n' */
} wt;

/* ---- small helpers ------------------------------------------------------- */

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hspace(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Case-insensitive: does s[0..n) equal the lowercase NUL-terminated word w? */
static int eq_word(const char *s, size_t n, const char *w)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (w[i] == '\0' || lower((unsigned char)s[i]) != w[i])
            return 0;
    return w[n] == '\0';
}

/* Case-insensitive: does s[i..n) start with the lowercase word w? */
static int starts_with(const char *s, size_t n, size_t i, const char *w)
{
    size_t k;
    for (k = 0; w[k]; k++)
        if (i + k >= n || lower((unsigned char)s[i + k]) != w[k])
            return 0;
    return 1;
}

static size_t run_of(const char *s, size_t n, size_t i, char c)
{
    size_t j = i;
    while (j < n && s[j] == c)
        j++;
    return j - i;
}

static size_t eol_from(const char *s, size_t n, size_t i)
{
    const char *p = i < n ? memchr(s + i, '\n', n - i) : NULL;
    return p ? (size_t)(p - s) : n;
}

/* Does a whitespace-only line start at i (i just after a '\n')? */
static int blank_line_at(const char *s, size_t n, size_t i)
{
    while (i < n && is_hspace((unsigned char)s[i]))
        i++;
    return i >= n || s[i] == '\n';
}

/* Index of the first blank line after i (the '\n' ending the paragraph), or n. */
static size_t para_end(const char *s, size_t n, size_t i)
{
    for (;;) {
        i = eol_from(s, n, i);
        if (i >= n)
            return n;
        if (blank_line_at(s, n, i + 1))
            return i;
        i++;
    }
}

static void trim_range(const char *s, size_t *a, size_t *b)
{
    while (*a < *b && (is_hspace((unsigned char)s[*a]) || s[*a] == '\n'))
        (*a)++;
    while (*b > *a && (is_hspace((unsigned char)s[*b - 1]) || s[*b - 1] == '\n'))
        (*b)--;
}

/* Cached search: f finds the first hit in [from, lim) or returns lim. */
typedef size_t (*scan_fn)(const char *s, size_t n, size_t from, size_t lim, const void *arg);

static size_t cached_find(wt *w, wt_cache *c, size_t from, scan_fn f, const void *arg)
{
    size_t lim = w->n, hit;
    if (c->from != WT_NONE && from >= c->from && from <= c->at)
        return c->at;
    if (c->from != WT_NONE && from < c->from)
        lim = c->from; /* [c->from, c->at) is known to hold no hit */
    hit = f(w->s, w->n, from, lim, arg);
    if (hit == lim && lim != w->n)
        hit = c->at;
    c->from = from;
    c->at = hit;
    return hit;
}

static size_t scan_cmt_end(const char *s, size_t n, size_t from, size_t lim, const void *arg)
{
    size_t i = from;
    (void)arg;
    while (i < lim) {
        const char *p = memchr(s + i, '-', lim - i);
        if (!p)
            return lim;
        i = (size_t)(p - s);
        if (i + 2 < n && s[i + 1] == '-' && s[i + 2] == '>')
            return i;
        i++;
    }
    return lim;
}

static size_t scan_rbr(const char *s, size_t n, size_t from, size_t lim, const void *arg)
{
    size_t i;
    (void)n;
    (void)arg;
    for (i = from; i < lim; i++)
        if (s[i] == ']' || s[i] == '\n')
            return i;
    return lim;
}

/* If s[i..] is "</name\s*>" (case-insensitive), the index after '>', else 0. */
static size_t close_tag_end(const char *s, size_t n, size_t i, const tagdef *t)
{
    size_t j = i + 2, k;
    if (j + t->len > n || s[i] != '<' || s[i + 1] != '/')
        return 0;
    for (k = 0; k < t->len; k++)
        if (lower((unsigned char)s[j + k]) != t->name[k])
            return 0;
    j += t->len;
    while (j < n && (is_hspace((unsigned char)s[j]) || s[j] == '\n'))
        j++;
    return (j < n && s[j] == '>') ? j + 1 : 0;
}

static size_t scan_close_tag(const char *s, size_t n, size_t from, size_t lim, const void *arg)
{
    const tagdef *t = arg;
    size_t i = from;
    while (i < lim) {
        const char *p = memchr(s + i, '<', lim - i);
        if (!p)
            return lim;
        i = (size_t)(p - s);
        if (close_tag_end(s, n, i, t))
            return i;
        i++;
    }
    return lim;
}

/* "-->" at or after from, or WT_NONE. */
static size_t find_cmt_end(wt *w, size_t from)
{
    size_t at = cached_find(w, &w->cmt, from, scan_cmt_end, NULL);
    return at >= w->n ? WT_NONE : at;
}

/* Closing tag of t at or after from: returns its index after '>', or WT_NONE. */
static size_t find_close(wt *w, const tagdef *t, size_t from)
{
    size_t at = cached_find(w, &w->tagc[(int)t->cache], from, scan_close_tag, t);
    return at >= w->n ? WT_NONE : close_tag_end(w->s, w->n, at, t);
}

/* ---- tags ---------------------------------------------------------------- */

typedef struct {
    const tagdef *def; /* NULL: unknown name */
    size_t        end; /* index after '>' */
    int           closing, selfclose;
} tagtok;

/* Parses a tag at s[i] == '<'. Returns 0 if it does not look like one. */
static int parse_tag(const char *s, size_t n, size_t i, tagtok *t)
{
    size_t j = i + 1, nb, ne, g, lim, k;
    char name[20];
    t->def = NULL;
    t->closing = 0;
    if (j < n && s[j] == '/') {
        t->closing = 1;
        j++;
    }
    nb = j;
    if (j >= n || !is_alpha((unsigned char)s[j]))
        return 0;
    while (j < n && (is_alpha((unsigned char)s[j]) || (s[j] >= '0' && s[j] <= '9')))
        j++;
    ne = j;
    if (j < n && !(s[j] == '>' || s[j] == '/' || is_hspace((unsigned char)s[j]) || s[j] == '\n'))
        return 0;
    lim = n - j > WT_TAG_MAX ? j + WT_TAG_MAX : n;
    for (g = j; g < lim && s[g] != '>' && s[g] != '<'; g++)
        ;
    if (g >= lim || s[g] != '>')
        return 0;
    t->end = g + 1;
    t->selfclose = s[g - 1] == '/';
    if (ne - nb < sizeof name) {
        for (k = 0; k < ne - nb; k++)
            name[k] = (char)lower((unsigned char)s[nb + k]);
        for (k = 0; k < sizeof TAGS / sizeof TAGS[0]; k++)
            if (TAGS[k].len == ne - nb && memcmp(TAGS[k].name, name, ne - nb) == 0) {
                t->def = &TAGS[k];
                return 1;
            }
    }
    /* Unknown name: a tag only if it has no attributes or attribute-like '=' ones
     * (so "if a<b and c>d" stays text). */
    {
        size_t a = ne, b = g - (size_t)t->selfclose;
        while (a < b && (is_hspace((unsigned char)s[a]) || s[a] == '\n'))
            a++;
        if (a < b && !memchr(s + a, '=', b - a))
            return 0;
    }
    return 1;
}

/* ---- templates, tables, file links ---------------------------------------- */

static size_t skip_cmt(wt *w, size_t i)
{
    size_t e = find_cmt_end(w, i + 4);
    return e == WT_NONE ? w->n : e + 3;
}

/* At s[j] == '<' inside a skipped region: skips a comment or a tag whose
 * content is opaque to the preprocessor (ref, nowiki, math, ...). */
static size_t skip_opaque(wt *w, size_t j)
{
    tagtok t;
    if (j + 3 < w->n && w->s[j + 1] == '!' && w->s[j + 2] == '-' && w->s[j + 3] == '-')
        return skip_cmt(w, j);
    if (parse_tag(w->s, w->n, j, &t) && t.def && t.def->cache >= 0 && !t.closing &&
        !t.selfclose) {
        size_t e = find_close(w, t.def, t.end);
        if (e != WT_NONE)
            return e;
    }
    return j + 1;
}

/* s[i..] starts with a run of >= 2 '{'. Returns the index just after the
 * braces that close it (MediaWiki matching: runs pair off 3 or 2 at a time),
 * or WT_NONE if it never closes. */
static size_t match_braces(wt *w, size_t i)
{
    const char *s = w->s;
    size_t n = w->n, j = i, deep = 0;
    size_t stk[WT_BRACE_STACK];
    int sp = 0;
    while (j < n) {
        unsigned char c = (unsigned char)s[j];
        if (c == '{') {
            size_t k = run_of(s, n, j, '{');
            if (k >= 2) {
                if (sp < WT_BRACE_STACK)
                    stk[sp++] = k;
                else
                    deep++;
            }
            j += k;
        } else if (c == '}') {
            size_t k = run_of(s, n, j, '}'), m = k;
            while (m >= 2 && (sp || deep)) {
                if (deep) {
                    deep--;
                    m -= 2;
                } else {
                    size_t use = (stk[sp - 1] >= 3 && m >= 3) ? 3 : 2;
                    stk[sp - 1] -= use;
                    m -= use;
                    if (stk[sp - 1] < 2)
                        sp--;
                }
                if (!sp && !deep)
                    return j + (k - m);
            }
            j += k;
        } else if (c == '<') {
            j = skip_opaque(w, j);
        } else {
            /* fast path to the next byte of interest */
            j++;
            while (j < n && s[j] != '{' && s[j] != '}' && s[j] != '<')
                j++;
        }
    }
    return WT_NONE;
}

/* An unclosed template at i is dropped to the next blank line while the
 * failed-scan budget lasts, then to the end. Returns where to continue. */
static size_t skip_unclosed_template(wt *w, size_t i)
{
    if (w->budget < w->n - i) {
        w->budget = 0;
        return w->n;
    }
    w->budget -= w->n - i;
    return para_end(w->s, w->n, i);
}

/* Heading level (1-6) of the line s[i..eol), with the title bounds, or 0. */
static int heading_at(const char *s, size_t i, size_t eol, size_t *tb, size_t *te)
{
    size_t a = 0, b = 0, e = eol, lvl;
    int strip;
    while (i + a < eol && s[i + a] == '=')
        a++;
    if (a == 0)
        return 0;
    for (strip = 0; strip < 4; strip++) { /* trailing spaces and comments */
        size_t k;
        while (e > i && is_hspace((unsigned char)s[e - 1]))
            e--;
        if (!(e >= i + a + 7 && s[e - 1] == '>' && s[e - 2] == '-' && s[e - 3] == '-'))
            break;
        for (k = e - 3; k > i + a; k--)
            if (s[k - 1] == '<' && k + 2 < e && s[k] == '!' && s[k + 1] == '-' && s[k + 2] == '-')
                break;
        if (k <= i + a)
            break;
        e = k - 1;
    }
    while (e - b > i + a && s[e - 1 - b] == '=')
        b++;
    if (b == 0)
        return 0;
    lvl = a < b ? a : b;
    if (lvl > 6)
        lvl = 6;
    *tb = i + lvl;
    *te = e - lvl;
    return (int)lvl;
}

/* s[i..] is "{|" at a line start. Returns the index after the matching
 * line-start "|}"; an unclosed table ends before the next heading line
 * (*at_bol set) or at the end. */
static size_t skip_table(wt *w, size_t i, int *at_bol)
{
    const char *s = w->s;
    size_t n = w->n, j = i, depth = 0;
    int bol = 1;
    *at_bol = 0;
    while (j < n) {
        unsigned char c;
        if (bol) {
            size_t k = j, tb, te;
            bol = 0;
            while (k < n && (is_hspace((unsigned char)s[k]) || s[k] == ':'))
                k++;
            if (k + 1 < n && s[k] == '{' && s[k + 1] == '|') {
                depth++;
                j = k + 2;
                continue;
            }
            if (k + 1 < n && s[k] == '|' && s[k + 1] == '}') {
                j = k + 2;
                if (--depth == 0)
                    return j;
                continue;
            }
            if (s[j] == '=' && heading_at(s, j, eol_from(s, n, j), &tb, &te)) {
                *at_bol = 1;
                return j;
            }
        }
        c = (unsigned char)s[j];
        if (c == '\n') {
            bol = 1;
            j++;
        } else if (c == '{' && j + 1 < n && s[j + 1] == '{' && w->budget) {
            size_t e = match_braces(w, j);
            if (e != WT_NONE) {
                j = e;
            } else {
                w->budget = w->budget < n - j ? 0 : w->budget - (n - j);
                j += 2;
            }
        } else if (c == '<') {
            j = skip_opaque(w, j);
        } else {
            j++;
            while (j < n && s[j] != '\n' && s[j] != '{' && s[j] != '<')
                j++;
        }
    }
    return n;
}

static int blank_between(const char *s, size_t a, size_t b)
{
    while (a < b && is_hspace((unsigned char)s[a]))
        a++;
    return a == b;
}

static size_t scheme_len(const char *s, size_t n, size_t i)
{
    size_t k;
    for (k = 0; k < sizeof SCHEMES / sizeof SCHEMES[0]; k++)
        if (starts_with(s, n, i, SCHEMES[k]))
            return strlen(SCHEMES[k]);
    return 0;
}

/* s[i..] is "[[" of a link not shown in the text (file, category, ...).
 * Skips it with the links nested in its caption; an unclosed one is dropped
 * to the end of its paragraph. */
static size_t skip_link(wt *w, size_t i)
{
    const char *s = w->s;
    size_t n = w->n, j = i, depth = 0;
    int ext = 0;
    while (j < n) {
        unsigned char c = (unsigned char)s[j];
        if (c == '[') {
            if (j + 1 < n && s[j + 1] == '[') {
                depth++;
                j += 2;
            } else {
                if (scheme_len(s, n, j + 1))
                    ext = 1;
                j++;
            }
        } else if (c == ']') {
            if (ext) {
                ext = 0;
                j++;
            } else if (j + 1 < n && s[j + 1] == ']') {
                j += 2;
                if (--depth == 0)
                    return j;
            } else {
                j++;
            }
        } else if (c == '\n') {
            if (blank_line_at(s, n, j + 1))
                return j;
            j++;
        } else if (c == '<') {
            j = skip_opaque(w, j);
        } else {
            j++;
        }
    }
    return n;
}

/* ---- inline emission ----------------------------------------------------- */

/* Decodes an entity at s[i] == '&'. Returns the index after it, or 0. */
static size_t parse_entity(const char *s, size_t n, size_t i, uint32_t *cp)
{
    size_t j = i + 1, b;
    uint32_t v = 0;
    if (j < n && s[j] == '#') {
        j++;
        if (j < n && (s[j] == 'x' || s[j] == 'X')) {
            for (b = ++j; j < n && j - b < 7; j++) {
                int c = lower((unsigned char)s[j]);
                if (c >= '0' && c <= '9')
                    v = v * 16 + (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                    v = v * 16 + (uint32_t)(c - 'a' + 10);
                else
                    break;
            }
        } else {
            for (b = j; j < n && j - b < 8 && s[j] >= '0' && s[j] <= '9'; j++)
                v = v * 10 + (uint32_t)(s[j] - '0');
        }
        if (j == b || j >= n || s[j] != ';' || v == 0 || v > 0x10FFFF ||
            (v >= 0xD800 && v <= 0xDFFF))
            return 0;
        *cp = v;
        return j + 1;
    }
    for (b = j; j < n && j - b < 10 && (is_alpha((unsigned char)s[j]) ||
                                         (s[j] >= '0' && s[j] <= '9'));
         j++)
        ;
    if (j == b || j >= n || s[j] != ';')
        return 0;
    {
        size_t lo = 0, hi = sizeof ENTITIES / sizeof ENTITIES[0], len = j - b;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            const char *nm = ENTITIES[mid].name;
            int c = strncmp(nm, s + b, len);
            if (c == 0 && nm[len] != '\0')
                c = 1;
            if (c == 0) {
                *cp = ENTITIES[mid].cp;
                return j + 1;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return 0;
}

/* Emits s[a..b) as plain text: no markup, but spaces collapse and entities decode. */
static void emit_plain(wt *w, size_t a, size_t b)
{
    const char *s = w->s;
    while (a < b) {
        unsigned char c = (unsigned char)s[a];
        if (is_hspace(c)) {
            em_space(&w->e);
            a++;
        } else if (c == '\n') {
            em_line(&w->e);
            a++;
        } else if (c == '&') {
            uint32_t cp;
            size_t e = parse_entity(s, b, a, &cp);
            if (e) {
                em_cp(&w->e, cp);
                a = e;
            } else {
                em_put(&w->e, "&", 1);
                a++;
            }
        } else {
            size_t j = a + 1;
            while (j < b && !is_hspace((unsigned char)s[j]) && s[j] != '\n' && s[j] != '&')
                j++;
            em_put(&w->e, s + a, j - a);
            a = j;
        }
    }
}

static int is_interlang(const char *s, size_t a, size_t b)
{
    size_t k = a, seg;
    if (eq_word(s + a, b - a, "simple"))
        return 1;
    while (k < b && s[k] >= 'a' && s[k] <= 'z')
        k++;
    seg = k - a;
    if (seg < 2 || seg > 3)
        return 0;
    for (size_t q = 0; q < sizeof NOT_LANG / sizeof NOT_LANG[0]; q++)
        if (eq_word(s + a, seg, NOT_LANG[q]))
            return 0;
    while (k < b) { /* "zh-min-nan", "be-x-old" */
        size_t st;
        if (s[k] != '-')
            return 0;
        st = ++k;
        while (k < b && s[k] >= 'a' && s[k] <= 'z')
            k++;
        if (k == st)
            return 0;
    }
    return 1;
}

/* "[[Target|]]": the target without namespace and trailing "(...)" or ", ...". */
static void emit_pipe_trick(wt *w, size_t a, size_t b)
{
    const char *s = w->s;
    const char *col = memchr(s + a, ':', b - a), *p;
    if (col && col > s + a)
        a = (size_t)(col - s) + 1;
    while (b > a && is_hspace((unsigned char)s[b - 1]))
        b--;
    if (b > a && s[b - 1] == ')' && (p = memchr(s + a, '(', b - a)) != NULL)
        b = (size_t)(p - s);
    else if ((p = memchr(s + a, ',', b - a)) != NULL)
        b = (size_t)(p - s);
    trim_range(s, &a, &b);
    emit_plain(w, a, b);
}

/* s[i..] is "[[". Returns where to continue. */
static size_t do_link(wt *w, size_t i)
{
    const char *s = w->s;
    size_t n = w->n, j = i + 2, t = j, lim, a, b;
    const char *col;
    int piped;
    lim = n - j > WT_TARGET_MAX ? j + WT_TARGET_MAX : n;
    while (t < lim) {
        unsigned char c = (unsigned char)s[t];
        if (c == '|' || c == ']' || c == '[' || c == '\n' || c == '{' || c == '}' || c == '<')
            break;
        t++;
    }
    if (t < n && s[t] == '|')
        piped = 1;
    else if (t + 1 < n && s[t] == ']' && s[t + 1] == ']')
        piped = 0;
    else
        return i + 2; /* not a link: drop the brackets */
    a = j;
    b = t;
    while (a < b && is_hspace((unsigned char)s[a]))
        a++;
    while (b > a && is_hspace((unsigned char)s[b - 1]))
        b--;
    if (a < b && s[a] == ':') { /* [[:Category:X]] is a visible link */
        a++;
    } else if ((col = memchr(s + a, ':', b - a)) != NULL) {
        size_t pb = a, pe = (size_t)(col - s), k;
        while (pe > pb && is_hspace((unsigned char)s[pe - 1]))
            pe--;
        for (k = 0; k < sizeof DROPPED_NS / sizeof DROPPED_NS[0]; k++)
            if (eq_word(s + pb, pe - pb, DROPPED_NS[k]))
                break;
        if (k < sizeof DROPPED_NS / sizeof DROPPED_NS[0] || is_interlang(s, pb, pe)) {
            w->e.removed = 1;
            return skip_link(w, i);
        }
    }
    if (!piped) {
        if (a < b && s[a] == '#')
            a++;
        emit_plain(w, a, b);
        return t + 2;
    }
    if (t + 2 < n && s[t + 1] == ']' && s[t + 2] == ']') {
        emit_pipe_trick(w, a, b);
        return t + 3;
    }
    return t + 1; /* the label follows; its "]]" is dropped when met */
}

/* s[i] == '['. Returns where to continue, or 0 if it is not an external link. */
static size_t do_extlink(wt *w, size_t i)
{
    const char *s = w->s;
    size_t n = w->n, u = i + 1, sl = scheme_len(s, n, i + 1), ue, rb;
    if (!sl)
        return 0;
    ue = u + sl;
    while (ue < n) {
        unsigned char c = (unsigned char)s[ue];
        if (is_hspace(c) || c == '\n' || c == '[' || c == ']' || c == '<' || c == '>' || c == '"')
            break;
        ue++;
    }
    if (ue == u + sl)
        return 0;
    rb = cached_find(w, &w->rbr, ue, scan_rbr, NULL);
    if (rb >= n || s[rb] != ']')
        return i + 1; /* "[http://x no close": drop '[' and keep the bare URL */
    if (rb == ue || blank_between(s, ue, rb)) {
        w->e.removed = 1;
        return rb + 1;
    }
    w->ext_close = rb;
    return ue;
}

/* s[i] == '<'. Returns where to continue, or 0 to emit '<' as text. */
static size_t do_tag(wt *w, size_t i)
{
    tagtok t;
    size_t e;
    if (i + 3 < w->n && w->s[i + 1] == '!' && w->s[i + 2] == '-' && w->s[i + 3] == '-') {
        w->e.removed = 1;
        return skip_cmt(w, i);
    }
    if (!parse_tag(w->s, w->n, i, &t))
        return 0;
    if (!t.def)
        return t.end;
    switch (t.def->kind) {
    case TG_BR:
        em_line(&w->e);
        return t.end;
    case TG_BLOCK:
        em_block(&w->e);
        return t.end;
    case TG_DROP:
        w->e.removed = 1;
        if (t.closing || t.selfclose)
            return t.end;
        e = find_close(w, t.def, t.end);
        return e == WT_NONE ? t.end : e;
    case TG_LIT:
    case TG_LITBLOCK:
        if (t.closing || t.selfclose)
            return t.end;
        e = find_close(w, t.def, t.end);
        if (e == WT_NONE)
            return t.end;
        if (t.def->kind == TG_LITBLOCK)
            em_block(&w->e);
        /* content ends at the '<' of the closer */
        {
            size_t c = e - 1;
            while (w->s[c] != '<')
                c--;
            emit_plain(w, t.end, c);
        }
        if (t.def->kind == TG_LITBLOCK)
            em_block(&w->e);
        return e;
    default:
        return t.end;
    }
}

/* ---- the few templates whose text is kept ---------------------------------- */

enum {
    TX_TEXT,    /* fixed text (arg 1: spaced on both sides) */
    TX_PARAM,   /* positional parameter arg, parsed as wikitext */
    TX_LAST,    /* last positional parameter */
    TX_QUOTE,   /* positional parameter arg (or text=/quote=) as its own block */
    TX_CONVERT, /* {{convert|value|unit|...}}: "value unit" */
};

typedef struct {
    const char   *name;
    unsigned char kind, arg;
    const char   *text;
} tplexp;

static const tplexp TEMPLATES[] = {
    {"ndash", TX_TEXT, 0, "\xE2\x80\x93"}, {"mdash", TX_TEXT, 0, "\xE2\x80\x94"},
    {"snd", TX_TEXT, 1, "\xE2\x80\x93"}, {"spnd", TX_TEXT, 1, "\xE2\x80\x93"},
    {"sndash", TX_TEXT, 1, "\xE2\x80\x93"}, {"spaced ndash", TX_TEXT, 1, "\xE2\x80\x93"},
    {"spaced en dash", TX_TEXT, 1, "\xE2\x80\x93"}, {"nbsp", TX_TEXT, 0, "\xC2\xA0"},
    {"\xC2\xB7", TX_TEXT, 1, "\xC2\xB7"}, {"dot", TX_TEXT, 1, "\xC2\xB7"},
    {"middot", TX_TEXT, 1, "\xC2\xB7"}, {"\xE2\x80\xA2", TX_TEXT, 1, "\xE2\x80\xA2"},
    {"bull", TX_TEXT, 1, "\xE2\x80\xA2"},
    {"lang", TX_PARAM, 2, NULL}, {"nihongo", TX_PARAM, 1, NULL}, {"nowrap", TX_PARAM, 1, NULL},
    {"nobr", TX_PARAM, 1, NULL}, {"nobreak", TX_PARAM, 1, NULL}, {"small", TX_PARAM, 1, NULL},
    {"smaller", TX_PARAM, 1, NULL}, {"vanchor", TX_PARAM, 1, NULL},
    {"visible anchor", TX_PARAM, 1, NULL}, {"flag", TX_PARAM, 1, NULL},
    {"sic", TX_PARAM, 1, NULL}, {"not a typo", TX_PARAM, 1, NULL}, {"abbr", TX_PARAM, 1, NULL},
    {"math", TX_PARAM, 1, NULL}, {"em", TX_PARAM, 1, NULL}, {"script", TX_PARAM, 2, NULL},
    {"transl", TX_LAST, 0, NULL}, {"transliteration", TX_LAST, 0, NULL},
    {"quote", TX_QUOTE, 1, NULL}, {"quotation", TX_QUOTE, 1, NULL},
    {"blockquote", TX_QUOTE, 1, NULL}, {"cquote", TX_QUOTE, 1, NULL},
    {"convert", TX_CONVERT, 0, NULL}, {"cvt", TX_CONVERT, 0, NULL},
};

/* {{convert}} unit codes and how they read; unknown codes are shown as given. */
static const char *const UNITS[][2] = {
    {"km2", "km\xC2\xB2"}, {"sqkm", "km\xC2\xB2"}, {"m2", "m\xC2\xB2"}, {"sqmi", "sq mi"},
    {"sqft", "sq ft"}, {"acre", "acres"}, {"m3", "m\xC2\xB3"}, {"cuft", "cu ft"},
    {"C", "\xC2\xB0""C"}, {"F", "\xC2\xB0""F"}, {"ftm", "fathoms"}, {"USgal", "US gal"},
    {"impgal", "imp gal"}, {"l", "L"}, {"e6km2", "million km\xC2\xB2"},
    {"e6sqmi", "million sq mi"}, {"e3km2", "thousand km\xC2\xB2"},
    {"e6m3", "million m\xC2\xB3"}, {"kmh", "km/h"}, {"km/h", "km/h"}, {"mph", "mph"},
    {"ft/s", "ft/s"}, {"m/s", "m/s"}, {"LT", "long tons"}, {"ST", "short tons"},
};

typedef struct {
    size_t name_b, name_e;               /* template name */
    size_t pb[WT_TPL_PARAMS], pe[WT_TPL_PARAMS]; /* positional parameters */
    int    np;                           /* how many positional parameters seen */
    size_t tb, te;                       /* text= or quote= value, tb == te if none */
} tplargs;

/* Records one parameter s[a..b) (without its '|'). */
static void tpl_param(const char *s, size_t a, size_t b, size_t eq, tplargs *t)
{
    int slot = -1;
    if (eq != WT_NONE) { /* named: only 1=, 2=, ..., text=, quote= matter */
        size_t nb = a, ne = eq;
        trim_range(s, &nb, &ne);
        if (ne - nb == 1 && s[nb] >= '1' && s[nb] <= '8') {
            slot = s[nb] - '1';
        } else if (eq_word(s + nb, ne - nb, "text") || eq_word(s + nb, ne - nb, "quote")) {
            t->tb = eq + 1;
            t->te = b;
            trim_range(s, &t->tb, &t->te);
        }
        if (slot < 0)
            return;
        a = eq + 1;
        if (slot + 1 > t->np)
            t->np = slot + 1;
    } else {
        slot = t->np++;
        if (slot >= WT_TPL_PARAMS)
            return;
    }
    trim_range(s, &a, &b);
    t->pb[slot] = a;
    t->pe[slot] = b;
}

/* Splits the template s[i..e) ("{{name|p1|p2}}") at its top-level '|'. */
static void tpl_split(wt *w, size_t i, size_t e, tplargs *t)
{
    const char *s = w->s;
    size_t j = i + 2, end = e - 2, seg = j, eq = WT_NONE, brace = 0, brack = 0;
    int first = 1, k;
    memset(t, 0, sizeof *t);
    for (k = 0; k < WT_TPL_PARAMS; k++)
        t->pb[k] = t->pe[k] = i;
    while (j <= end) {
        unsigned char c = j < end ? (unsigned char)s[j] : '|';
        if (j == end || (c == '|' && !brace && !brack)) {
            if (first) {
                t->name_b = seg;
                t->name_e = j;
                first = 0;
            } else {
                tpl_param(s, seg, j, eq, t);
            }
            seg = j + 1;
            eq = WT_NONE;
            j++;
        } else if (c == '{' && j + 1 < end && s[j + 1] == '{') {
            brace++;
            j += 2;
        } else if (c == '}' && j + 1 < end && s[j + 1] == '}' && brace) {
            brace--;
            j += 2;
        } else if (c == '[' && j + 1 < end && s[j + 1] == '[') {
            brack++;
            j += 2;
        } else if (c == ']' && j + 1 < end && s[j + 1] == ']' && brack) {
            brack--;
            j += 2;
        } else if (c == '=' && !brace && !brack && eq == WT_NONE) {
            eq = j++;
        } else if (c == '<') {
            size_t q = skip_opaque(w, j);
            j = q > end ? end : q;
        } else {
            j++;
        }
    }
}

static void emit_unit(wt *w, size_t a, size_t b)
{
    size_t k;
    for (k = 0; k < sizeof UNITS / sizeof UNITS[0]; k++)
        if (strlen(UNITS[k][0]) == b - a && memcmp(UNITS[k][0], w->s + a, b - a) == 0) {
            em_space(&w->e);
            em_put(&w->e, UNITS[k][1], strlen(UNITS[k][1]));
            return;
        }
    em_space(&w->e);
    emit_plain(w, a, b);
}

/* {{convert|1|km}} -> "1 km"; {{convert|1|-|2|km}} -> "1–2 km"; {{convert|1|to|2|km}}. */
static void emit_convert(wt *w, const tplargs *t)
{
    const char *s = w->s;
    size_t sb, se;
    if (t->np < 2 || t->pb[0] == t->pe[0])
        return;
    emit_plain(w, t->pb[0], t->pe[0]);
    sb = t->pb[1];
    se = t->pe[1];
    if (t->np >= 4 && se > sb && se - sb <= 6 && (s[sb] < '0' || s[sb] > '9') &&
        t->pe[3] > t->pb[3]) {
        if (se - sb == 1 && s[sb] == '-') {
            em_put(&w->e, "\xE2\x80\x93", 3);
        } else if (se - sb == 3 && memcmp(s + sb, "\xE2\x80\x93", 3) == 0) {
            em_put(&w->e, "\xE2\x80\x93", 3);
        } else {
            em_space(&w->e);
            emit_plain(w, sb, se);
            em_space(&w->e);
        }
        emit_plain(w, t->pb[2], t->pe[2]);
        emit_unit(w, t->pb[3], t->pe[3]);
    } else if (se > sb) {
        emit_unit(w, sb, se);
    }
}

/* The template s[i..e) is complete. If it is one whose text readers see, emits
 * it or arranges for its shown parameter to be parsed next; returns where to
 * continue, or WT_NONE to drop it. */
static size_t expand_template(wt *w, size_t i, size_t e)
{
    const char *s = w->s;
    const tplexp *x = NULL;
    tplargs t;
    char name[24];
    size_t nb, ne, k, a = 0, b = 0;
    if (e - i < 5 || s[i + 2] == '{')
        return WT_NONE;
    /* name: up to the first '|' or the end, spaces/underscores folded */
    nb = i + 2;
    for (ne = nb; ne < e - 2 && s[ne] != '|' && ne - nb < 64; ne++)
        ;
    trim_range(s, &nb, &ne);
    if (ne - nb >= sizeof name || ne == nb)
        return WT_NONE;
    for (k = 0; nb + k < ne; k++)
        name[k] = s[nb + k] == '_' ? ' ' : (char)lower((unsigned char)s[nb + k]);
    name[k] = '\0';
    for (k = 0; k < sizeof TEMPLATES / sizeof TEMPLATES[0]; k++)
        if (strcmp(TEMPLATES[k].name, name) == 0) {
            x = &TEMPLATES[k];
            break;
        }
    if (!x && ne - nb > 5 && memcmp(name, "lang-", 5) == 0) {
        static const tplexp langx = {"lang-", TX_PARAM, 1, NULL};
        x = &langx;
    }
    if (!x)
        return WT_NONE;
    if (x->kind == TX_TEXT) {
        if (x->arg)
            em_space(&w->e);
        em_put(&w->e, x->text, strlen(x->text));
        if (x->arg)
            em_space(&w->e);
        return e;
    }
    tpl_split(w, i, e, &t);
    switch (x->kind) {
    case TX_CONVERT:
        emit_convert(w, &t);
        return e;
    case TX_LAST:
        if (t.np > 0 && t.np <= WT_TPL_PARAMS) {
            a = t.pb[t.np - 1];
            b = t.pe[t.np - 1];
        }
        break;
    default:
        if (t.np >= x->arg) {
            a = t.pb[x->arg - 1];
            b = t.pe[x->arg - 1];
        }
        if (a == b) {
            a = t.tb;
            b = t.te;
        }
        break;
    }
    if (a >= b)
        return e;
    if (w->nfr == WT_FRAMES)
        return WT_NONE;
    w->fr[w->nfr].stop = b;
    w->fr[w->nfr].resume = e;
    w->fr[w->nfr].block = x->kind == TX_QUOTE;
    w->nfr++;
    if (x->kind == TX_QUOTE)
        em_block(&w->e);
    return a;
}

/* ---- line structure ------------------------------------------------------ */

static int is_dropped_section(const char *p, size_t k)
{
    size_t q;
    while (k && (p[0] == '\n' || p[0] == ' ')) {
        p++;
        k--;
    }
    while (k && (p[k - 1] == ' ' || p[k - 1] == ':'))
        k--;
    for (q = 0; q < sizeof DROPPED_SECTIONS / sizeof DROPPED_SECTIONS[0]; q++)
        if (eq_word(p, k, DROPPED_SECTIONS[q]))
            return 1;
    return 0;
}

/* A heading of level lvl starts (or the page ends, lvl 1): headings of that
 * level or deeper that got no text after them are taken back. */
static void drop_empty_headings(wt *w, int lvl)
{
    kbuf *o = w->e.out;
    while (w->nhs && w->hs[w->nhs - 1].level >= lvl) {
        headrec *h = &w->hs[--w->nhs];
        if (!w->e.mute && o->len == h->out_end) {
            o->len = h->out_start;
            if (o->data)
                o->data[o->len] = '\0';
            w->e = h->saved;
        }
    }
}

static size_t finish_heading(wt *w, size_t i)
{
    size_t eol = w->head_eol;
    int lvl = w->head_level;
    kbuf *o = w->e.out;
    w->head_level = 0;
    if (!w->e.mute && o->len > w->head_out &&
        is_dropped_section(o->data + w->head_out, o->len - w->head_out)) {
        o->len = w->head_out;
        o->data[o->len] = '\0';
        w->e = w->head_saved;
        w->e.mute = 1;
        w->skip_level = lvl;
    } else if (!w->e.mute && w->nhs < 6) {
        headrec *h = &w->hs[w->nhs++];
        h->out_start = w->head_out;
        h->out_end = o->len;
        h->saved = w->head_saved;
        h->level = lvl;
    }
    em_block(&w->e);
    return i < eol ? eol : i;
}

/* At the start of a source line: blank lines, headings, lists, tables, rules,
 * preformatted lines. Returns where to continue. */
static size_t line_start(wt *w, size_t i)
{
    const char *s = w->s;
    size_t n = w->n, j = i, tb, te, eol;
    int ws, lvl, at_bol;
    w->kind = LK_TEXT;
    while (j < n && is_hspace((unsigned char)s[j]))
        j++;
    if (j >= n)
        return n;
    if (s[j] == '\n') { /* blank line: paragraph break */
        em_block(&w->e);
        w->prev_kind = LK_TEXT;
        w->bol = 1;
        return j + 1;
    }
    ws = j > i;
    if (!ws && s[j] == '=') {
        eol = eol_from(s, n, j);
        lvl = heading_at(s, j, eol, &tb, &te);
        if (lvl) {
            if (w->skip_level && lvl <= w->skip_level) {
                w->skip_level = 0;
                w->e.mute = 0;
            }
            drop_empty_headings(w, lvl);
            em_block(&w->e);
            w->kind = LK_HEAD;
            w->head_level = lvl;
            w->head_end = te;
            w->head_eol = eol;
            w->head_out = w->e.out->len;
            w->head_saved = w->e;
            return tb;
        }
    }
    if (!ws && (s[j] == '*' || s[j] == '#' || s[j] == ':' || s[j] == ';')) {
        while (j < n && (s[j] == '*' || s[j] == '#' || s[j] == ':' || s[j] == ';'))
            j++;
        while (j < n && is_hspace((unsigned char)s[j]))
            j++;
        em_block(&w->e);
        w->kind = LK_LIST;
    }
    if (j + 1 < n && s[j] == '{' && s[j + 1] == '|') {
        j = skip_table(w, j, &at_bol);
        em_block(&w->e);
        w->e.removed = 1;
        w->kind = LK_TEXT;
        w->prev_kind = LK_TEXT;
        w->bol = at_bol;
        return j;
    }
    if (w->kind == LK_LIST)
        return j;
    if (!ws && run_of(s, n, j, '-') >= 4) {
        em_block(&w->e);
        return j + run_of(s, n, j, '-');
    }
    if (ws) {
        w->kind = LK_PRE;
        if (w->prev_kind != LK_PRE)
            em_block(&w->e);
    } else if (w->prev_kind == LK_PRE) {
        em_block(&w->e);
    }
    return j;
}

/* ---- main loop ----------------------------------------------------------- */

static int is_redirect(const char *s, size_t n)
{
    size_t i = 0;
    if (n >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        i = 3;
    while (i < n && (is_hspace((unsigned char)s[i]) || s[i] == '\n'))
        i++;
    return starts_with(s, n, i, "#redirect");
}

void wikitext_to_text(const char *src, size_t len, kbuf *out)
{
    wt w;
    size_t i = 0, k;
    const char *s = src;
    if (!src || len == 0 || is_redirect(src, len))
        return;
    memset(&w, 0, sizeof w);
    w.s = src;
    w.n = len;
    w.e.out = out;
    w.e.base = out->len;
    w.e.line_off = out->len;
    w.bol = 1;
    w.ext_close = WT_NONE;
    w.budget = len > WT_FAIL_BUDGET_MIN / 4 ? 4 * len : WT_FAIL_BUDGET_MIN;
    for (k = 0; k < WT_TAG_CACHES; k++)
        w.tagc[k].from = WT_NONE;
    w.cmt.from = WT_NONE;
    w.rbr.from = WT_NONE;

    while (i < len) {
        unsigned char c;
        size_t j;
        if (w.nfr && i >= w.fr[w.nfr - 1].stop) {
            frame *f = &w.fr[--w.nfr];
            if (f->block)
                em_block(&w.e);
            if (i < f->resume)
                i = f->resume;
            continue;
        }
        if (w.head_level && i >= w.head_end) {
            i = finish_heading(&w, i);
            continue;
        }
        if (w.bol) {
            w.bol = 0;
            i = line_start(&w, i);
            continue;
        }
        c = (unsigned char)s[i];
        if (!SPECIAL[c]) {
            size_t lim = w.head_level ? w.head_end : len;
            if (w.nfr && w.fr[w.nfr - 1].stop < lim)
                lim = w.fr[w.nfr - 1].stop;
            for (j = i + 1; j < lim && !SPECIAL[(unsigned char)s[j]]; j++)
                ;
            em_put(&w.e, s + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '\n':
            if (w.kind == LK_LIST || w.kind == LK_HEAD)
                em_block(&w.e);
            else
                em_line(&w.e);
            w.prev_kind = w.kind;
            w.bol = 1;
            i++;
            break;
        case ' ': case '\t': case '\r': case '\f': case '\v':
            em_space(&w.e);
            i++;
            break;
        case '{':
            if (i + 1 < len && s[i + 1] == '{') {
                j = w.budget ? match_braces(&w, i) : WT_NONE;
                if (j == WT_NONE) {
                    w.e.removed = 1;
                    i = skip_unclosed_template(&w, i);
                } else if ((k = expand_template(&w, i, j)) != WT_NONE) {
                    i = k;
                } else {
                    w.e.removed = 1;
                    i = j;
                }
            } else {
                em_put(&w.e, "{", 1);
                i++;
            }
            break;
        case '}':
            if (i + 1 < len && s[i + 1] == '}') { /* stray closer */
                i += 2;
            } else {
                em_put(&w.e, "}", 1);
                i++;
            }
            break;
        case '[':
            if (i + 1 < len && s[i + 1] == '[') {
                i = do_link(&w, i);
            } else if ((j = do_extlink(&w, i)) != 0) {
                i = j;
            } else {
                em_put(&w.e, "[", 1);
                i++;
            }
            break;
        case ']':
            if (i == w.ext_close) {
                w.ext_close = WT_NONE;
                i++;
            } else if (i + 1 < len && s[i + 1] == ']') {
                i += 2;
            } else {
                em_put(&w.e, "]", 1);
                i++;
            }
            break;
        case '\'':
            k = run_of(s, len, i, '\'');
            if (k == 1 || k == 4)
                em_put(&w.e, "'", 1);
            else if (k > 5)
                for (j = 0; j < k - 5; j++)
                    em_put(&w.e, "'", 1);
            i += k;
            break;
        case '<':
            if ((j = do_tag(&w, i)) != 0) {
                i = j;
            } else {
                em_put(&w.e, "<", 1);
                i++;
            }
            break;
        case '&': {
            uint32_t cp;
            j = parse_entity(s, len, i, &cp);
            if (j) {
                em_cp(&w.e, cp);
                i = j;
            } else {
                em_put(&w.e, "&", 1);
                i++;
            }
            break;
        }
        case '_':
            if (i + 1 < len && s[i + 1] == '_') {
                for (j = i + 2; j < len && j - i < 40 && s[j] >= 'A' && s[j] <= 'Z'; j++)
                    ;
                if (j > i + 2 && j + 1 < len && s[j] == '_' && s[j + 1] == '_') {
                    w.e.removed = 1;
                    i = j + 2;
                    break;
                }
            }
            em_put(&w.e, "_", 1);
            i++;
            break;
        default:
            em_put(&w.e, s + i, 1);
            i++;
            break;
        }
    }
    if (w.head_level)
        finish_heading(&w, len);
    drop_empty_headings(&w, 1);
}
