/* test_wikitext.c: cmocka unit tests for ingest/wikitext.c, the MediaWiki
 * wikitext -> plain text converter: one case per markup rule with exact
 * expected output, hostile inputs (deep nesting, unterminated constructs, NUL
 * bytes, random markup soup) that must neither crash nor blow up, and a
 * realistic multi-paragraph article snippet. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ingest/wikitext.h"
#include "util/util.h"

/* Converts a NUL-terminated wikitext string and checks the exact output. */
static void check(const char *in, const char *want)
{
    kbuf out = {0};
    wikitext_to_text(in, strlen(in), &out);
    if (out.len != strlen(want) || memcmp(out.data ? out.data : "", want, out.len) != 0)
        print_error("input:  [%s]\nwant:   [%s]\ngot:    [%.*s]\n", in, want, (int)out.len,
                    out.data ? out.data : "");
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data ? out.data : "", want, out.len);
    kbuf_free(&out);
}

/* Output invariants every conversion must keep. */
static void check_shape(const kbuf *out)
{
    size_t i;
    if (out->len == 0)
        return;
    assert_true(out->data[0] != '\n' && out->data[0] != ' ');
    assert_true(out->data[out->len - 1] != '\n' && out->data[out->len - 1] != ' ');
    for (i = 0; i + 2 < out->len; i++)
        assert_false(out->data[i] == '\n' && out->data[i + 1] == '\n' && out->data[i + 2] == '\n');
    for (i = 0; i + 1 < out->len; i++)
        assert_false(out->data[i] == ' ' && out->data[i + 1] == ' ');
    assert_int_equal(out->data[out->len], '\0');
}

/* Builds prefix * n + middle + suffix * n. */
static char *repeat3(const char *prefix, size_t n, const char *middle, const char *suffix,
                     size_t *len)
{
    size_t lp = strlen(prefix), lm = strlen(middle), ls = strlen(suffix), k;
    char *b = malloc(lp * n + lm + ls * n + 1), *p = b;
    assert_non_null(b);
    for (k = 0; k < n; k++, p += lp)
        memcpy(p, prefix, lp);
    memcpy(p, middle, lm);
    p += lm;
    for (k = 0; k < n; k++, p += ls)
        memcpy(p, suffix, ls);
    *p = '\0';
    *len = (size_t)(p - b);
    return b;
}

/* Converts a hostile input; output must keep its shape and stay small. */
static void check_hostile(const char *in, size_t len, size_t max_out)
{
    kbuf out = {0};
    wikitext_to_text(in, len, &out);
    assert_true(out.len <= max_out);
    check_shape(&out);
    kbuf_free(&out);
}

/* ---- links ---------------------------------------------------------------- */

static void test_links(void **state)
{
    (void)state;
    check("A [[cat]] sat.", "A cat sat.");
    check("[[Felis catus|house cat]] sat.", "house cat sat.");
    check("Two [[word]]s and [[Cat|kitten]]s.", "Two words and kittens.");
    check("[[Target#Section|x]] and [[#Early life]].", "x and Early life.");
    check("[[Paris (France)|]], [[Boston, Massachusetts|]], [[Help:Contents|]]",
          "Paris, Boston, Contents");
    check("[[Wikipedia:Manual of Style|style]] [[wikt:cat|cat]]", "style cat");
}

static void test_files_and_images(void **state)
{
    (void)state;
    check("Before [[File:a.jpg|thumb|250px|A [[link]] and [[x|y]] here]] after.",
          "Before after.");
    check("[[image:b.png|left|Caption with [http://e.org ext] link]]Text.", "Text.");
    check("x [[Media:Sound.ogg|listen]] y", "x y");
    check("[[File:a.jpg|thumb|[[File:b.jpg|nested [[c]]]] z]]Kept.", "Kept.");
}

static void test_categories_and_interlanguage(void **state)
{
    (void)state;
    check("Text.\n[[Category:Cats]]\n[[category:Pets|Sort key]]", "Text.");
    check("Text [[de:Katze]][[zh-min-nan:Niau]][[simple:Cat]].", "Text.");
    check("[[:Category:Cats|the cat list]] and [[:fr:Chat]]", "the cat list and fr:Chat");
}

static void test_external_links(void **state)
{
    (void)state;
    check("See [https://x.org label text] and [https://y.org] or https://z.org/a bare.",
          "See label text and or https://z.org/a bare.");
    check("[http://x.org ''italic'' label]", "italic label");
    check("[https://unclosed.org no close", "https://unclosed.org no close");
    check("[not a link] stays", "[not a link] stays");
}

/* ---- templates, tables, refs, comments ------------------------------------ */

static void test_templates(void **state)
{
    (void)state;
    check("A {{foo|{{bar|x}}|y={{baz}}}} b.", "A b.");
    check("{{Infobox person\n| name = X\n| born = {{birth date|1900|1|1}}\n}}\n"
          "'''Foo''' is a bar.",
          "Foo is a bar.");
    check("x {{{1|default}}} y", "x y");
    check("{{#if:{{{a|}}}|yes|no}}Text", "Text");
    check("stray }} closer", "stray closer");
}

static void test_kept_templates(void **state)
{
    (void)state;
    check("1775{{ndash}}1783, a{{snd}}b", "1775\xE2\x80\x93" "1783, a \xE2\x80\x93 b");
    check("French {{lang|fr|''[[texte]]''}} here", "French texte here");
    check("{{nihongo|'''Aikido'''|\xE5\x90\x88\xE6\xB0\x97\xE9\x81\x93|aikid\xC5\x8D}} is",
          "Aikido is");
    check("At {{convert|52419|sqmi|km2}}, it is", "At 52419 sq mi, it is");
    check("{{convert|5|-|10|km}} long", "5\xE2\x80\x93" "10 km long");
}

static void test_tables(void **state)
{
    (void)state;
    check("Intro.\n{| class=\"wikitable\"\n|a||b\n|-\n|\n{|\n|nested\n|}\n|c\n|}\nOutro.",
          "Intro.\n\nOutro.");
    check("Intro.\n:{|\n|indented table\n|}\nOutro.", "Intro.\n\nOutro.");
    check("Text {|not a table|} here", "Text {|not a table|} here");
    /* a template inside a table whose body looks like a table end */
    check("{|\n|{{foo\n|}}\n|}\nAfter.", "After.");
}

static void test_refs(void **state)
{
    (void)state;
    check("Fact.<ref>Source {{cite web|url=x}}</ref> More<ref name=\"a\" /> here.<ref "
          "name=b>z</ref>",
          "Fact. More here.");
    check("One<REF group=n>note</REF>, two<ref name=x/>.", "One, two.");
    check("a <ref>never closed", "a never closed");
}

static void test_comments(void **state)
{
    (void)state;
    check("a<!-- hidden -->b <!--\nmulti\nline\n-->c", "ab c");
    check("text<!-- never closed {{ [[", "text");
    check("Para one.\n<!-- a comment line -->\nstill one.", "Para one.\nstill one.");
}

/* ---- inline markup --------------------------------------------------------- */

static void test_bold_italic(void **state)
{
    (void)state;
    check("'''Bold''' and ''italic'' and '''''both''''' don't 'quote'",
          "Bold and italic and both don't 'quote'");
    check("the Smiths'''' house", "the Smiths' house");
}

static void test_entities(void **state)
{
    (void)state;
    check("a&nbsp;b &ndash; c &amp; d &lt;e&gt; &#160;&#x2014; &bogus; &quot;q&quot; &#0; &",
          "a\xC2\xA0" "b \xE2\x80\x93 c & d <e> \xC2\xA0\xE2\x80\x94 &bogus; \"q\" &#0; &");
    check("&eacute;t&eacute; &#x1F600;", "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80");
}

static void test_nowiki_and_pre(void **state)
{
    (void)state;
    check("<nowiki>[[not a link]] {{nor}} ''this'' &amp;</nowiki> x",
          "[[not a link]] {{nor}} ''this'' & x");
    check("a<nowiki/>b <nowiki>&lt;ref&gt;</nowiki>", "ab <ref>");
    check("Text\n<pre>\n  code {{x}}\n</pre>\nafter", "Text\n\ncode {{x}}\n\nafter");
}

static void test_br(void **state)
{
    (void)state;
    check("line1<br>line2<br/>line3<br />line4</br>", "line1\nline2\nline3\nline4");
    check("<br><br>text<BR clear=\"all\"><br>", "text");
}

static void test_tags(void **state)
{
    (void)state;
    check("<small>s</small> <span class=\"x\">t</span> x<sup>2</sup> <b>b</b><code>c</code>",
          "s t x2 bc");
    check("a <math>x^2 + {{y}}</math> b <gallery>\nFile:x.jpg|cap\n</gallery> c <chem>H2O</chem>",
          "a b c");
    check("a <foo bar=\"1\">b</foo> c < d and e > f, if x<y and y>z", "a b c < d and e > f, if x<y and y>z");
    check("<blockquote>Quoted.</blockquote>Then.", "Quoted.\n\nThen.");
}

static void test_magic_words_and_rules(void **state)
{
    (void)state;
    check("__TOC__\nText\n----\nMore __NOTOC__ and __init__", "Text\n\nMore and __init__");
    check("#REDIRECT [[Foo]]", "");
    check("  #redirect [[Foo]]\n{{R from move}}", "");
}

/* ---- block structure ------------------------------------------------------- */

static void test_headings(void **state)
{
    (void)state;
    check("Intro.\n== History ==\nText.\n=== Early ''years'' ===\nMore.\n==Bad heading",
          "Intro.\n\nHistory\n\nText.\n\nEarly years\n\nMore.\n==Bad heading");
    check("Intro.\n== Title == <!-- c -->\nText.", "Intro.\n\nTitle\n\nText.");
    /* headings whose sections end up empty (tables only) are dropped */
    check("Intro\n== Data ==\n{|\n|x\n|}\n== Next ==\nText\n== Empty ==\n",
          "Intro\n\nNext\n\nText");
}

static void test_dropped_sections(void **state)
{
    (void)state;
    check("Intro.\n== See also ==\n* [[X]]\n=== Sub ===\nY\n== Life ==\nText.\n"
          "== References ==\n{{reflist}}\n== External links ==\n* [http://x.org X]\n"
          "[[Category:Y]]",
          "Intro.\n\nLife\n\nText.");
    check("Intro.\n==Notes==\nA note.\n==Further reading==\n* Book", "Intro.");
}

static void test_lists(void **state)
{
    (void)state;
    check("Items:\n* one\n** two\n# three\n:four\n; five\nAfter.",
          "Items:\n\none\n\ntwo\n\nthree\n\nfour\n\nfive\n\nAfter.");
    check("* [[A]] {{tpl}}\n* \n*  b", "A\n\nb");
}

static void test_paragraphs_and_whitespace(void **state)
{
    (void)state;
    check("Para one\nline   two\t\there\n\n\n\nPara two  ", "Para one\nline two here\n\nPara two");
    check("Para.\n  indented   pre\n  more\nNext.", "Para.\n\nindented pre\nmore\n\nNext.");
    check("born in {{birth place|x}}, 1990 ({{IPA|x}}) here", "born in, 1990 here");
    check("'''X''' ({{IPA|x}}; born 1950) is", "X (born 1950) is");
    check("(''Akhilleus'', {{IPA|x}}) was", "(Akhilleus) was");
    check("Para.\n\n({{IPA|x}})\n\nNext.", "Para.\n\nNext.");
    check("Para.\n({{IPA|x}})\nNext ({{x}})", "Para.\nNext");
    check("({{IPA|x}}) Starts", "Starts");
    check("\n\n  \n{{x}}\n\nOnly.\n\n{{y}}\n\n", "Only.");
}

static void test_append_to_buffer(void **state)
{
    kbuf out = {0};
    (void)state;
    kbuf_puts(&out, "prefix:");
    wikitext_to_text("\n\n== Head ==\nText\n\n", 19, &out);
    assert_string_equal(out.data, "prefix:Head\n\nText");
    kbuf_free(&out);
}

/* ---- robustness ------------------------------------------------------------ */

static void test_empty_and_nul(void **state)
{
    kbuf out = {0};
    static const char nul_in[] = "a\0b [[c\0d]] e";
    (void)state;
    wikitext_to_text("", 0, &out);
    assert_int_equal(out.len, 0);
    wikitext_to_text(NULL, 0, &out);
    assert_int_equal(out.len, 0);
    wikitext_to_text(nul_in, sizeof nul_in - 1, &out);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "a\0b c\0d e", 9);
    kbuf_clear(&out);
    /* must not read past len: the bytes after it are markup that would change things */
    wikitext_to_text("abc{{never}}", 3, &out);
    assert_string_equal(out.data, "abc");
    kbuf_clear(&out);
    wikitext_to_text("[[a|b]]", 3, &out); /* "[[a" */
    check_shape(&out);
    kbuf_clear(&out);
    wikitext_to_text("x &amp;", 6, &out); /* "x &amp" */
    assert_string_equal(out.data, "x &amp");
    kbuf_free(&out);
}

static void test_unterminated(void **state)
{
    (void)state;
    check("A [[broken link\nnext line", "A broken link\nnext line");
    check("Intro.\n\n{{foo|bar\n\nAfter.", "Intro.\n\nAfter.");
    check("Intro.\n\n[[File:x.jpg|thumb|never closed\nstill caption\n\nAfter.", "Intro.\n\nAfter.");
    check("Intro.\n{|\n|cell\n== Next ==\nText", "Intro.\n\nNext\n\nText");
    check("x [[a|label without end", "x label without end");
    check("<nowiki>unclosed", "unclosed");
    check("a ''' b '' c", "a b c");
    check("{{", "");
    check("[[", "");
    check("<", "<");
    check("&#", "&#");
    check("==", "==");
}

#define DEEP 100000

static void test_deep_nesting(void **state)
{
    size_t len;
    char *in;
    (void)state;
    in = repeat3("{{", DEEP, "x", "}}", &len);
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("{{", DEEP, "x", "", &len); /* never closed */
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("[[", DEEP, "x", "]]", &len);
    check_hostile(in, len, 16);
    free(in);
    in = repeat3("[[a|", DEEP, "x", "]]", &len);
    check_hostile(in, len, 16);
    free(in);
    in = repeat3("[[File:a|", DEEP, "x", "]]", &len);
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("[[File:a|", DEEP, "x", "", &len);
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("{|\n", DEEP, "x\n", "|}\n", &len);
    check_hostile(in, len, 0);
    free(in);
}

static void test_deep_unterminated_tags(void **state)
{
    size_t len;
    char *in;
    (void)state;
    in = repeat3("<ref>", DEEP, "x", "", &len);
    check_hostile(in, len, 16);
    free(in);
    in = repeat3("<!--", DEEP, "x", "", &len);
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("{{lang|fr|", DEEP, "x", "}}", &len);
    check_hostile(in, len, 16);
    free(in);
    in = repeat3("[http://a.b ", DEEP, "x", "]", &len);
    check_hostile(in, len, 32 * (size_t)DEEP);
    free(in);
    in = repeat3("{{\n\n", DEEP, "x", "", &len); /* many unclosed templates */
    check_hostile(in, len, 0);
    free(in);
    in = repeat3("'", 10 * DEEP, "", "", &len);
    check_hostile(in, len, len);
    free(in);
    in = repeat3("=", DEEP, "x", "=", &len);
    check_hostile(in, len, len);
    free(in);
}

/* Deterministic soup of markup fragments and random bytes. */
static void test_random_soup(void **state)
{
    static const char *const frag[] = {
        "{{", "}}", "[[", "]]", "[", "]", "{|", "|}", "|", "\n", "\n\n", "''", "'''", "<ref>",
        "</ref>", "<ref name=x/>", "<!--", "-->", "<nowiki>", "</nowiki>", "<pre>", "</pre>",
        "&amp;", "&#x41;", "&", "== ", " ==", "* ", "#", ":", "File:", "Category:", "http://x ",
        "__TOC__", "<br>", "<math>", "</math>", " ", "word", "\xC3\xA9", "\xFF", "(", ")", ",",
        "{{lang|fr|", "{{convert|1|km}}", "{{{", "}}}", "<", ">", "de:", "|]]", "\0",
    };
    uint64_t seed = 0x9E3779B97F4A7C15u;
    int round;
    (void)state;
    for (round = 0; round < 300; round++) {
        size_t len = 0, cap = 8192, nfr = 64 + (size_t)(round * 37 % 1500);
        char *b = malloc(cap);
        size_t k;
        assert_non_null(b);
        for (k = 0; k < nfr; k++) {
            const char *f;
            size_t fl;
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            f = frag[(seed >> 33) % (sizeof frag / sizeof frag[0])];
            fl = f[0] ? strlen(f) : 1;
            if (len + fl + 1 > cap)
                break;
            memcpy(b + len, f, fl);
            len += fl;
        }
        {
            kbuf out = {0};
            wikitext_to_text(b, len, &out);
            assert_true(out.len <= 4 * len + 16);
            check_shape(&out);
            kbuf_free(&out);
        }
        free(b);
    }
}

/* ---- realistic ---------------------------------------------------------- */

static void test_realistic_article(void **state)
{
    (void)state;
    check("{{Short description|Large cat}}\n"
          "{{Infobox animal\n| name = Tiger\n| image = Tiger.jpg\n| status = EN\n}}\n"
          "The '''tiger''' (''Panthera tigris'') is the largest living [[Felidae|cat]] "
          "species.<ref>{{cite journal|title=T|year=2017}}</ref> It is most "
          "recognisable for its dark vertical stripes on orange fur.\n"
          "\n"
          "[[File:Tiger in water.jpg|thumb|A [[tiger]] swimming]]\n"
          "The tiger was once widely distributed from the [[Eastern Anatolia Region]] "
          "in the west to the [[Amur River]] basin.<ref name=\"IUCN\" />\n"
          "\n"
          "== Etymology ==\n"
          "The word ''tiger'' comes from the [[Old English]] ''tigras''&nbsp;&ndash; "
          "via [[Latin]] {{lang|la|tigris}}.<!-- check source -->\n"
          "\n"
          "== Characteristics ==\n"
          "{| class=\"wikitable\"\n! Subspecies !! Weight\n|-\n| Bengal || 200 kg\n|}\n"
          "Tigers are [[apex predator]]s:\n"
          "* they hunt [[deer]];\n"
          "* they hunt [[wild boar]]s.\n"
          "\n"
          "== See also ==\n"
          "* [[Lion]]\n"
          "\n"
          "== References ==\n"
          "{{Reflist}}\n"
          "\n"
          "[[Category:Tigers]]\n"
          "[[de:Tiger]]\n",
          "The tiger (Panthera tigris) is the largest living cat species. It is most "
          "recognisable for its dark vertical stripes on orange fur.\n"
          "\n"
          "The tiger was once widely distributed from the Eastern Anatolia Region in the "
          "west to the Amur River basin.\n"
          "\n"
          "Etymology\n"
          "\n"
          "The word tiger comes from the Old English tigras\xC2\xA0\xE2\x80\x93 via Latin "
          "tigris.\n"
          "\n"
          "Characteristics\n"
          "\n"
          "Tigers are apex predators:\n"
          "\n"
          "they hunt deer;\n"
          "\n"
          "they hunt wild boars.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_files_and_images),
        cmocka_unit_test(test_categories_and_interlanguage),
        cmocka_unit_test(test_external_links),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_kept_templates),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_bold_italic),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_nowiki_and_pre),
        cmocka_unit_test(test_br),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_magic_words_and_rules),
        cmocka_unit_test(test_headings),
        cmocka_unit_test(test_dropped_sections),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_paragraphs_and_whitespace),
        cmocka_unit_test(test_append_to_buffer),
        cmocka_unit_test(test_empty_and_nul),
        cmocka_unit_test(test_unterminated),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_deep_unterminated_tags),
        cmocka_unit_test(test_random_soup),
        cmocka_unit_test(test_realistic_article),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
