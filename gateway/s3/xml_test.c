/* Tests for the XML writer (escaping, refusals) and the strict parser (what it takes, refuses). */
#include "gateway/s3/xml.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const struct dfs_xml_limits lim = {1 << 20, 16, 1000};

static char *write_one(const char *text, size_t len, int *rc, char **msg)
{
    dfs_xml_writer *w = dfs_xml_writer_create();
    assert_non_null(w);
    dfs_xml_open(w, "Root", "http://s3.amazonaws.com/doc/2006-03-01/");
    dfs_xml_text_len(w, "Key", text, len);
    dfs_xml_close(w);
    char *out = NULL;
    *rc = dfs_xml_writer_finish(w, &out, NULL, msg);
    dfs_xml_writer_destroy(w);
    return out;
}

static void writer_escapes(void **state)
{
    (void)state;
    int rc;
    char *msg = NULL;
    const char *s = "a&b<c>d\"e'f\tg\nh\ri \xc3\xa9 \xf0\x9f\x98\x80";
    char *out = write_one(s, strlen(s), &rc, &msg);
    assert_int_equal(rc, DFS_OK);
    assert_string_equal(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<Root xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             "<Key>a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i \xc3\xa9 "
                             "\xf0\x9f\x98\x80</Key></Root>");
    free(out);

    dfs_xml_writer *w = dfs_xml_writer_create();
    dfs_xml_open(w, "R", NULL);
    dfs_xml_u64(w, "N", UINT64_MAX);
    dfs_xml_bool(w, "T", true);
    dfs_xml_bool(w, "F", false);
    dfs_xml_text(w, "E", NULL);
    dfs_xml_open(w, "In", NULL);
    dfs_xml_text(w, "X", "");
    dfs_xml_close(w);
    dfs_xml_close(w);
    size_t len = 0;
    assert_int_equal(dfs_xml_writer_finish(w, &out, &len, NULL), DFS_OK);
    assert_string_equal(out,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R><N>18446744073709551615"
                        "</N><T>true</T><F>false</F><E></E><In><X></X></In></R>");
    assert_int_equal(len, strlen(out));
    free(out);
    dfs_xml_writer_destroy(w);
}

static void writer_refuses(void **state)
{
    (void)state;
    int rc;
    char *msg = NULL;
    /* Not UTF-8, or characters XML 1.0 cannot carry: refused, never altered. */
    static const char *const bad[] = {"\xff", "a\xc3", "\xc0\xaf",     "\xed\xa0\x80",
                                      "\x01", "\x1f",  "\xef\xbf\xbe", "\xef\xbf\xbf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = write_one(bad[i], strlen(bad[i]), &rc, &msg);
        assert_int_equal(rc, DFS_EINVAL);
        assert_null(out);
        assert_non_null(strstr(msg, "<Key>"));
    }
    char *out = write_one("a\0b", 3, &rc, &msg);
    assert_int_equal(rc, DFS_EINVAL);
    free(msg);
    msg = NULL;

    /* Unbalanced documents. */
    dfs_xml_writer *w = dfs_xml_writer_create();
    dfs_xml_open(w, "R", NULL);
    assert_int_equal(dfs_xml_writer_finish(w, &out, NULL, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "not closed"));
    dfs_xml_writer_destroy(w);
    w = dfs_xml_writer_create();
    dfs_xml_close(w);
    dfs_xml_open(w, "R", NULL); /* the first failure sticks */
    dfs_xml_close(w);
    assert_int_equal(dfs_xml_writer_finish(w, &out, NULL, &msg), DFS_EINVAL);
    dfs_xml_writer_destroy(w);
    w = dfs_xml_writer_create();
    assert_int_equal(dfs_xml_writer_finish(w, &out, NULL, &msg), DFS_EINVAL);
    dfs_xml_writer_destroy(w);
    w = dfs_xml_writer_create();
    dfs_xml_text(w, "T", "x");
    assert_int_equal(dfs_xml_writer_finish(w, &out, NULL, &msg), DFS_EINVAL);
    dfs_xml_writer_destroy(w);
    w = dfs_xml_writer_create();
    for (int i = 0; i <= DFS_XML_WRITER_MAX_DEPTH; i++)
        dfs_xml_open(w, "D", NULL);
    assert_int_equal(dfs_xml_writer_finish(w, &out, NULL, &msg), DFS_EINVAL);
    dfs_xml_writer_destroy(w);
    free(msg);
    dfs_xml_writer_destroy(NULL);
}

static dfs_xml_doc *parse_ok(const char *s)
{
    dfs_xml_doc *d = NULL;
    char *msg = NULL;
    int rc = dfs_xml_parse(s, strlen(s), &lim, &d, &msg);
    if (rc != DFS_OK)
        fail_msg("refused %s: %s", s, msg);
    return d;
}

static void parse_bad(const char *s, size_t n, const char *why)
{
    dfs_xml_doc *d = NULL;
    char *msg = NULL;
    int rc = dfs_xml_parse(s, n != 0 ? n : strlen(s), &lim, &d, &msg);
    if (rc != DFS_EINVAL)
        fail_msg("accepted %s", s);
    assert_null(d);
    if (strstr(msg, why) == NULL)
        fail_msg("%s: message \"%s\" does not say \"%s\"", s, msg, why);
    free(msg);
}

static void round_trip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "",
        "plain",
        "a&b<c>d\"e'f",
        "tab\there",
        "lf\nand\r\ncrlf\rcr",
        "\xc3\xa9\xe2\x82\xac",
        " spaced ",
        "]]>",
        "&amp;",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int rc;
        char *out = write_one(texts[i], strlen(texts[i]), &rc, NULL);
        assert_int_equal(rc, DFS_OK);
        dfs_xml_doc *d = parse_ok(out);
        const dfs_xml_node *root = dfs_xml_root(d);
        assert_string_equal(dfs_xml_name(root), "Root");
        assert_string_equal(dfs_xml_ns(root), "http://s3.amazonaws.com/doc/2006-03-01/");
        const dfs_xml_node *k = dfs_xml_first_child(root);
        assert_string_equal(dfs_xml_name(k), "Key");
        assert_string_equal(dfs_xml_ns(k), "http://s3.amazonaws.com/doc/2006-03-01/");
        size_t len;
        assert_string_equal(dfs_xml_content(k, &len), texts[i]);
        assert_int_equal(len, strlen(texts[i]));
        assert_null(dfs_xml_next(k));
        dfs_xml_doc_destroy(d);
        free(out);
    }
}

static void parser_accepts(void **state)
{
    (void)state;
    dfs_xml_doc *d = parse_ok(
        "\xef\xbb\xbf<?xml version='1.0' encoding='utf-8' standalone=\"yes\"?>\n"
        "<!-- a comment -->\n<?app some instruction?>\n"
        "<p:Delete xmlns:p=\"urn:p\" xmlns=\"urn:default\" a='1' b=\"&lt;2&gt;\">\r\n"
        "  <Object><Key>a &amp; b &#x263A;&#65;<![CDATA[<raw & ]] stuff>]]></Key></Object>\n"
        "  <!-- between -->\n  <Quiet>true</Quiet><Empty/><p:Pre/>\n"
        "  <Lines>one\r\ntwo\rthree</Lines>\n"
        "</p:Delete>\n<!-- after -->\n");
    const dfs_xml_node *r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_name(r), "Delete");
    assert_string_equal(dfs_xml_ns(r), "urn:p");
    assert_false(dfs_xml_has_text(r)); /* only white space between its children */
    const dfs_xml_node *o = dfs_xml_first_child(r);
    assert_string_equal(dfs_xml_name(o), "Object");
    assert_string_equal(dfs_xml_ns(o), "urn:default");
    const dfs_xml_node *k = dfs_xml_first_child(o);
    assert_string_equal(dfs_xml_content(k, NULL), "a & b \xe2\x98\xba"
                                                  "A<raw & ]] stuff>");
    assert_true(dfs_xml_has_text(k));
    const dfs_xml_node *q = dfs_xml_next(o);
    assert_string_equal(dfs_xml_name(q), "Quiet");
    assert_string_equal(dfs_xml_content(q, NULL), "true");
    const dfs_xml_node *e = dfs_xml_next(q);
    assert_string_equal(dfs_xml_name(e), "Empty");
    assert_string_equal(dfs_xml_content(e, NULL), "");
    assert_null(dfs_xml_first_child(e));
    const dfs_xml_node *p = dfs_xml_next(e);
    assert_string_equal(dfs_xml_name(p), "Pre");
    assert_string_equal(dfs_xml_ns(p), "urn:p");
    const dfs_xml_node *l = dfs_xml_next(p);
    assert_string_equal(dfs_xml_content(l, NULL), "one\ntwo\nthree");
    assert_null(dfs_xml_next(l));
    dfs_xml_doc_destroy(d);

    /* No namespace at all; a namespace undeclared in a child; xml: is predefined. */
    d = parse_ok("<A><B xmlns=\"urn:b\"><C xmlns=\"\" xml:lang=\"en\"/></B><D/></A>");
    r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_ns(r), "");
    const dfs_xml_node *b = dfs_xml_first_child(r);
    assert_string_equal(dfs_xml_ns(b), "urn:b");
    assert_string_equal(dfs_xml_ns(dfs_xml_first_child(b)), "");
    assert_string_equal(dfs_xml_ns(dfs_xml_next(b)), "");
    dfs_xml_doc_destroy(d);
    dfs_xml_doc_destroy(NULL);
}

static void parser_refuses(void **state)
{
    (void)state;
    /* Document types: no entity can be declared, so none can expand or read a file. */
    parse_bad("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 "
              "\"&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>",
              0, "DTD");
    parse_bad("<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>", 0,
              "DTD");
    parse_bad("<!DOCTYPE foo SYSTEM \"http://example.com/x.dtd\"><foo/>", 0, "DTD");
    parse_bad("<a><!DOCTYPE x></a>", 0, "declaration");
    parse_bad("<a><!ENTITY x \"y\"></a>", 0, "declaration");
    parse_bad("<a>&xxe;</a>", 0, "entity");
    parse_bad("<a>&nbsp;</a>", 0, "entity");
    parse_bad("<a>& b</a>", 0, "reference");
    parse_bad("<a>&#0;</a>", 0, "character reference");
    parse_bad("<a>&#x1;</a>", 0, "character reference");
    parse_bad("<a>&#xD800;</a>", 0, "character reference");
    parse_bad("<a>&#x110000;</a>", 0, "U+10FFFF");
    parse_bad("<a>&#xFFFE;</a>", 0, "character reference");
    parse_bad("<a>&#;</a>", 0, "entity");
    parse_bad("<a>&#x;</a>", 0, "empty");
    parse_bad("<a>&#12a;</a>", 0, "digit");
    parse_bad("<a>\xff</a>", 0, "UTF-8");
    parse_bad("<a>\xc0\xaf</a>", 0, "UTF-8");
    parse_bad("<a>\x01</a>", 0, "UTF-8");
    parse_bad("<a>\xef\xbf\xbf</a>", 0, "UTF-8");
    parse_bad("<a>x\0y</a>", 9, "UTF-8");
    /* Structure. */
    parse_bad("", 0, "empty");
    parse_bad("   ", 0, "root");
    parse_bad("text", 0, "root");
    parse_bad("<a>", 0, "ends inside");
    parse_bad("<a></b>", 0, "does not match");
    parse_bad("<a><b></a></b>", 0, "does not match");
    parse_bad("<a/><b/>", 0, "after the root");
    parse_bad("<a/>text", 0, "after the root");
    parse_bad("<a>]]></a>", 0, "]]>");
    parse_bad("<a><![CDATA[x</a>", 0, "CDATA");
    parse_bad("<a><!-- x -- y --></a>", 0, "'--'");
    parse_bad("<a><!-- x </a>", 0, "comment");
    parse_bad("<a>< b/></a>", 0, "name");
    parse_bad("<a b='1' b='2'/>", 0, "twice");
    parse_bad("<a b='<'/>", 0, "'<'");
    parse_bad("<a b=1/>", 0, "quotes");
    parse_bad("<a b/>", 0, "'='");
    parse_bad("<a b='1'c='2'/>", 0, "white space");
    parse_bad("<a b='1", 0, "not closed");
    parse_bad("<p:a/>", 0, "undeclared");
    parse_bad("<a p:b='1'/>", 0, "undeclared");
    parse_bad("<a xmlns:p=''/>", 0, "empty name");
    parse_bad("<a xmlns:xmlns='urn:x'/>", 0, "reserved");
    parse_bad("<xmlns:a/>", 0, "reserved");
    parse_bad("<:a/>", 0, "':'");
    parse_bad("<a:/>", 0, "':'");
    parse_bad("<a:b:c xmlns:a='urn:a'/>", 0, "':'");
    parse_bad("<a><?xml version='1.0'?></a>", 0, "declaration");
    parse_bad(" <?xml version='1.0'?><a/>", 0, "declaration");
    parse_bad("<?xml version='1.0' encoding='UTF-16'?><a/>", 0, "UTF-8");
    parse_bad("<?xml encoding='UTF-8'?><a/>", 0, "declaration");
    parse_bad("<?xml version='2.0'?><a/>", 0, "declaration");
    parse_bad("<?xml version='1.0' standalone='yes' encoding='UTF-8'?><a/>", 0, "declaration");
    parse_bad("<a><? x?></a>", 0, "target");
    parse_bad("<a><?x y", 0, "not closed");
    parse_bad("<a><?x", 0, "processing instruction");
}

static void parser_limits(void **state)
{
    (void)state;
    dfs_xml_doc *d = NULL;
    char *msg = NULL;
    struct dfs_xml_limits small = {64, 3, 4};
    const char *deep = "<a><b><c><d/></c></b></a>";
    assert_int_equal(dfs_xml_parse(deep, strlen(deep), &small, &d, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "deeply"));
    const char *three = "<a><b><c/></b></a>";
    assert_int_equal(dfs_xml_parse(three, strlen(three), &small, &d, &msg), DFS_OK);
    dfs_xml_doc_destroy(d);
    const char *many = "<a><b/><b/><b/><b/></a>";
    assert_int_equal(dfs_xml_parse(many, strlen(many), &small, &d, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "too many"));
    char big[100];
    memset(big, ' ', sizeof big);
    memcpy(big, "<a/>", 4);
    assert_int_equal(dfs_xml_parse(big, sizeof big, &small, &d, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "more than"));
    /* 33 attributes on one element. */
    char attrs[600] = "<a";
    for (int i = 0; i < 33; i++)
        sprintf(attrs + strlen(attrs), " a%d='x'", i);
    strcat(attrs, "/>");
    assert_int_equal(dfs_xml_parse(attrs, strlen(attrs), &lim, &d, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "attributes"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writer_escapes), cmocka_unit_test(writer_refuses),
        cmocka_unit_test(round_trip),     cmocka_unit_test(parser_accepts),
        cmocka_unit_test(parser_refuses), cmocka_unit_test(parser_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
