/* XML for S3: a writer that escapes correctly, and a small strict parser for request bodies. */
#include "gateway/s3/xml.h"

#include "common/arena.h"
#include "common/err.h"
#include "common/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Characters ---- */

/*
 * Length of the character XML 1.0 allows (production [2] Char) that starts s[0..len): a
 * well-formed UTF-8 sequence that is tab, LF, CR, U+0020..U+D7FF, U+E000..U+FFFD or
 * U+10000..U+10FFFF. 0 when there is none.
 */
static size_t xml_char_len(const char *s, size_t len)
{
    size_t n = dfs_utf8_char_len(s, len);
    if (n == 0)
        return 0;
    unsigned char c = (unsigned char)s[0];
    if (n == 1 && c < 0x20 && c != '\t' && c != '\n' && c != '\r')
        return 0;
    /* U+FFFE and U+FFFF: EF BF BE, EF BF BF. Surrogates are already not UTF-8. */
    if (n == 3 && c == 0xEF && (unsigned char)s[1] == 0xBF && (unsigned char)s[2] >= 0xBE)
        return 0;
    return n;
}

static bool xml_char_ok(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

static size_t utf8_put(char out[4], uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ---- Writer ---- */

struct dfs_xml_writer {
    char *buf;
    size_t len, cap;
    const char *open[DFS_XML_WRITER_MAX_DEPTH];
    size_t depth;
    bool rooted; /* the root element was opened */
    int status;  /* the first failure, sticky */
    char *msg;
};

static void w_fail(dfs_xml_writer *w, int code, const char *fmt, const char *arg)
{
    if (w->status != DFS_OK)
        return;
    w->status = code;
    if (asprintf(&w->msg, fmt, arg) < 0)
        w->msg = NULL;
}

static void w_put(dfs_xml_writer *w, const char *s, size_t n)
{
    if (w->status != DFS_OK)
        return;
    if (w->cap - w->len <= n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len <= n) {
            if (cap > SIZE_MAX / 2) {
                w_fail(w, DFS_ENOMEM, "%s", "XML document too large");
                return;
            }
            cap *= 2;
        }
        char *b = realloc(w->buf, cap);
        if (b == NULL) {
            w_fail(w, DFS_ENOMEM, "%s", "out of memory");
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void w_puts(dfs_xml_writer *w, const char *s)
{
    w_put(w, s, strlen(s));
}

/* Escaped text of element `name` (for the message). */
static void w_escaped(dfs_xml_writer *w, const char *name, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && w->status == DFS_OK) {
        size_t run = i;
        /* Copy runs of plain characters in one go. */
        while (run < n) {
            unsigned char c = (unsigned char)s[run];
            if (c == '&' || c == '<' || c == '>' || c == '"' || c == '\'' || c < 0x20 || c >= 0x80)
                break;
            run++;
        }
        w_put(w, s + i, run - i);
        i = run;
        if (i >= n)
            break;
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '&':
            esc = "&amp;";
            break;
        case '<':
            esc = "&lt;";
            break;
        case '>':
            esc = "&gt;";
            break;
        case '"':
            esc = "&quot;";
            break;
        case '\'':
            esc = "&apos;";
            break;
        case '\t':
            esc = "&#9;";
            break;
        case '\n':
            esc = "&#10;";
            break;
        case '\r':
            esc = "&#13;";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            w_puts(w, esc);
            i++;
            continue;
        }
        size_t cl = xml_char_len(s + i, n - i);
        if (cl == 0) {
            w_fail(w, DFS_EINVAL,
                   "<%s>: text is not well-formed UTF-8 or holds a character XML cannot carry",
                   name);
            return;
        }
        w_put(w, s + i, cl);
        i += cl;
    }
}

dfs_xml_writer *dfs_xml_writer_create(void)
{
    dfs_xml_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w_puts(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if (w->status != DFS_OK) {
        dfs_xml_writer_destroy(w);
        return NULL;
    }
    return w;
}

void dfs_xml_writer_destroy(dfs_xml_writer *w)
{
    if (w == NULL)
        return;
    free(w->buf);
    free(w->msg);
    free(w);
}

static bool name_ok(dfs_xml_writer *w, const char *name)
{
    if (name == NULL || name[0] == '\0') {
        w_fail(w, DFS_EINVAL, "%s", "an element without a name");
        return false;
    }
    return true;
}

void dfs_xml_open(dfs_xml_writer *w, const char *name, const char *xmlns)
{
    if (w->status != DFS_OK || !name_ok(w, name))
        return;
    if (w->depth == DFS_XML_WRITER_MAX_DEPTH) {
        w_fail(w, DFS_EINVAL, "<%s>: elements nested too deeply", name);
        return;
    }
    if (w->depth == 0 && w->rooted) {
        w_fail(w, DFS_EINVAL, "<%s>: a second root element", name);
        return;
    }
    w->rooted = true;
    w_puts(w, "<");
    w_puts(w, name);
    if (xmlns != NULL) {
        w_puts(w, " xmlns=\"");
        w_escaped(w, name, xmlns, strlen(xmlns));
        w_puts(w, "\"");
    }
    w_puts(w, ">");
    w->open[w->depth++] = name;
}

void dfs_xml_close(dfs_xml_writer *w)
{
    if (w->status != DFS_OK)
        return;
    if (w->depth == 0) {
        w_fail(w, DFS_EINVAL, "%s", "an element closed that was not open");
        return;
    }
    const char *name = w->open[--w->depth];
    w_puts(w, "</");
    w_puts(w, name);
    w_puts(w, ">");
}

void dfs_xml_text_len(dfs_xml_writer *w, const char *name, const char *text, size_t len)
{
    if (w->status != DFS_OK || !name_ok(w, name))
        return;
    if (w->depth == 0) {
        w_fail(w, DFS_EINVAL, "<%s>: text outside the root element", name);
        return;
    }
    w_puts(w, "<");
    w_puts(w, name);
    w_puts(w, ">");
    if (text != NULL)
        w_escaped(w, name, text, len);
    w_puts(w, "</");
    w_puts(w, name);
    w_puts(w, ">");
}

void dfs_xml_text(dfs_xml_writer *w, const char *name, const char *text)
{
    dfs_xml_text_len(w, name, text, text != NULL ? strlen(text) : 0);
}

void dfs_xml_chars(dfs_xml_writer *w, const char *text)
{
    if (w->status != DFS_OK)
        return;
    if (w->depth == 0) {
        w_fail(w, DFS_EINVAL, "%s", "text outside the root element");
        return;
    }
    w_escaped(w, w->open[w->depth - 1], text, strlen(text));
}

void dfs_xml_u64(dfs_xml_writer *w, const char *name, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    dfs_xml_text(w, name, s);
}

void dfs_xml_bool(dfs_xml_writer *w, const char *name, bool v)
{
    dfs_xml_text(w, name, v ? "true" : "false");
}

int dfs_xml_writer_finish(dfs_xml_writer *w, char **out, size_t *len, char **errmsg)
{
    if (w->status == DFS_OK && w->depth != 0)
        w_fail(w, DFS_EINVAL, "<%s>: element not closed", w->open[w->depth - 1]);
    if (w->status == DFS_OK && !w->rooted)
        w_fail(w, DFS_EINVAL, "%s", "a document without a root element");
    if (w->status != DFS_OK) {
        if (w->status == DFS_ENOMEM)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return dfs_seterr(errmsg, w->status, "%s", w->msg != NULL ? w->msg : "XML writer failed");
    }
    *out = w->buf;
    if (len != NULL)
        *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    w->status = DFS_EINVAL; /* spent */
    return DFS_OK;
}

/* ---- Parser ---- */

struct dfs_xml_node {
    const char *name;
    const char *ns;
    const char *text;
    size_t text_len;
    bool has_text;
    struct dfs_xml_node *first, *last, *next;
};

struct dfs_xml_doc {
    dfs_arena arena;
    dfs_xml_node *root;
};

#define XML_NS_URI     "http://www.w3.org/XML/1998/namespace"
#define MAX_ATTRS      32
#define INITIAL_LEVELS 8

/* A namespace binding in scope: prefix (plen 0: the default namespace) to uri. */
struct nsbind {
    const char *prefix;
    size_t plen;
    const char *uri; /* in the arena */
};

/* An open element while parsing. */
struct level {
    dfs_xml_node *node;
    const char *qname; /* into the input, for matching the end tag */
    size_t qlen;
    size_t nbind; /* bindings in scope before this element's own */
    char *text;   /* its character data so far */
    size_t tlen, tcap;
};

struct parser {
    const char *s;
    size_t n, i;
    const struct dfs_xml_limits *lim;
    dfs_xml_doc *doc;
    struct level *lv;
    size_t depth, lvcap;
    struct nsbind *ns;
    size_t nns, nscap;
    size_t nodes;
    int status;
    char **errmsg;
};

static int perr(struct parser *p, const char *what)
{
    p->status = DFS_EINVAL;
    return dfs_seterr(p->errmsg, DFS_EINVAL, "malformed XML at byte %zu: %s", p->i, what);
}

static int pnomem(struct parser *p)
{
    p->status = DFS_ENOMEM;
    return dfs_seterr(p->errmsg, DFS_ENOMEM, "out of memory");
}

static bool at(const struct parser *p, const char *lit)
{
    size_t k = strlen(lit);
    return p->n - p->i >= k && memcmp(p->s + p->i, lit, k) == 0;
}

static void skip_space(struct parser *p)
{
    while (p->i < p->n && is_space(p->s[p->i]))
        p->i++;
}

static bool name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}

static bool name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* A Name at p->i: returns its length (p->i moved past it), 0 when there is none. */
static size_t scan_name(struct parser *p)
{
    size_t start = p->i;
    if (p->i >= p->n || !name_start((unsigned char)p->s[p->i]))
        return 0;
    while (p->i < p->n && name_char((unsigned char)p->s[p->i]))
        p->i++;
    return p->i - start;
}

/* A QName (NCName or NCName:NCName): its length, and the prefix's length in *plen (0: none). */
static int scan_qname(struct parser *p, size_t *qlen, size_t *plen)
{
    const char *q = p->s + p->i;
    size_t n = scan_name(p);
    if (n == 0)
        return perr(p, "expected a name");
    const char *colon = memchr(q, ':', n);
    *plen = 0;
    if (colon != NULL) {
        size_t pl = (size_t)(colon - q);
        if (pl == 0 || pl == n - 1 || memchr(colon + 1, ':', n - pl - 1) != NULL ||
            !name_start((unsigned char)colon[1]))
            return perr(p, "a name with a misplaced ':'");
        *plen = pl;
    }
    *qlen = n;
    return DFS_OK;
}

/* Append to a growable buffer. */
static int buf_add(struct parser *p, char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*cap - *len <= n) {
        size_t c = *cap ? *cap : 64;
        while (c - *len <= n)
            c *= 2;
        char *nb = realloc(*b, c);
        if (nb == NULL)
            return pnomem(p);
        *b = nb;
        *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
    return DFS_OK;
}

/*
 * A reference at p->i (which is at '&'): the decoded character goes to out[0..*olen). Only
 * XML's five entities and character references to allowed characters.
 */
static int scan_ref(struct parser *p, char out[4], size_t *olen)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"apos", '\''}, {"quot", '"'}};
    p->i++; /* '&' */
    const char *semi = memchr(p->s + p->i, ';', p->n - p->i);
    if (semi == NULL || semi - (p->s + p->i) > 12)
        return perr(p, "'&' that does not start a reference (write &amp;)");
    size_t k = (size_t)(semi - (p->s + p->i));
    const char *r = p->s + p->i;
    if (k >= 2 && r[0] == '#') {
        uint32_t cp = 0;
        bool hex = r[1] == 'x';
        size_t j = hex ? 2 : 1;
        if (j == k)
            return perr(p, "an empty character reference");
        for (; j < k; j++) {
            int d;
            char c = r[j];
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (hex && c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else if (hex && c >= 'A' && c <= 'F')
                d = c - 'A' + 10;
            else
                return perr(p, "a bad digit in a character reference");
            cp = cp * (hex ? 16 : 10) + (uint32_t)d;
            if (cp > 0x10FFFF)
                return perr(p, "a character reference past U+10FFFF");
        }
        if (!xml_char_ok(cp))
            return perr(p, "a character reference to a character XML does not allow");
        *olen = utf8_put(out, cp);
        p->i += k + 1;
        return DFS_OK;
    }
    for (size_t e = 0; e < sizeof ents / sizeof ents[0]; e++) {
        if (strlen(ents[e].name) == k && memcmp(ents[e].name, r, k) == 0) {
            out[0] = ents[e].c;
            *olen = 1;
            p->i += k + 1;
            return DFS_OK;
        }
    }
    return perr(p, "an entity other than XML's five (&lt; &gt; &amp; &apos; &quot;)");
}

/*
 * Character data up to the next '<' (or the end) into the current element's text, with line
 * ends normalised (CR LF and lone CR become LF) and references decoded.
 */
static int scan_text(struct parser *p)
{
    struct level *l = &p->lv[p->depth - 1];
    while (p->i < p->n && p->s[p->i] != '<') {
        size_t start = p->i;
        while (p->i < p->n && p->s[p->i] != '<' && p->s[p->i] != '&' && p->s[p->i] != '\r' &&
               p->s[p->i] != ']')
            p->i++;
        if (p->i > start &&
            buf_add(p, &l->text, &l->tlen, &l->tcap, p->s + start, p->i - start) != DFS_OK)
            return p->status;
        if (p->i >= p->n || p->s[p->i] == '<')
            break;
        char c = p->s[p->i];
        char rep[4];
        size_t rlen = 1;
        if (c == '&') {
            if (scan_ref(p, rep, &rlen) != DFS_OK)
                return p->status;
        } else if (c == '\r') {
            rep[0] = '\n';
            p->i += at(p, "\r\n") ? 2 : 1;
        } else { /* ']' */
            if (at(p, "]]>"))
                return perr(p, "']]>' in character data");
            rep[0] = ']';
            p->i++;
        }
        if (buf_add(p, &l->text, &l->tlen, &l->tcap, rep, rlen) != DFS_OK)
            return p->status;
    }
    return DFS_OK;
}

/* "<!--" ... "-->", p->i at "<!--". */
static int scan_comment(struct parser *p)
{
    p->i += 4;
    for (;;) {
        const char *d = memchr(p->s + p->i, '-', p->n - p->i);
        if (d == NULL) {
            p->i = p->n;
            return perr(p, "a comment not closed");
        }
        p->i = (size_t)(d - p->s);
        if (at(p, "-->")) {
            p->i += 3;
            return DFS_OK;
        }
        if (at(p, "--"))
            return perr(p, "'--' inside a comment");
        p->i++;
    }
}

/* "<?target ... ?>" other than the XML declaration, p->i at "<?". */
static int scan_pi(struct parser *p)
{
    p->i += 2;
    const char *t = p->s + p->i;
    size_t tl = scan_name(p);
    if (tl == 0)
        return perr(p, "a processing instruction without a target");
    if (tl == 3 && strncasecmp(t, "xml", 3) == 0)
        return perr(p, "an XML declaration that is not at the start");
    if (!at(p, "?>")) {
        if (p->i >= p->n || !is_space(p->s[p->i]))
            return perr(p, "a bad processing instruction");
    }
    for (;;) {
        const char *q = memchr(p->s + p->i, '?', p->n - p->i);
        if (q == NULL) {
            p->i = p->n;
            return perr(p, "a processing instruction not closed");
        }
        p->i = (size_t)(q - p->s);
        if (at(p, "?>")) {
            p->i += 2;
            return DFS_OK;
        }
        p->i++;
    }
}

/* A quoted attribute value: decoded and normalised into *v (malloc'd, *vlen), p->i past it. */
static int scan_attr_value(struct parser *p, char **v, size_t *vlen)
{
    size_t cap = 0;
    *v = NULL;
    *vlen = 0;
    if (p->i >= p->n || (p->s[p->i] != '"' && p->s[p->i] != '\''))
        return perr(p, "an attribute value not in quotes");
    char quote = p->s[p->i++];
    if (buf_add(p, v, vlen, &cap, "", 0) != DFS_OK)
        return p->status;
    for (;;) {
        if (p->i >= p->n)
            return perr(p, "an attribute value not closed");
        char c = p->s[p->i];
        if (c == quote) {
            p->i++;
            return DFS_OK;
        }
        if (c == '<')
            return perr(p, "'<' in an attribute value");
        char rep[4];
        size_t rlen = 1;
        if (c == '&') {
            if (scan_ref(p, rep, &rlen) != DFS_OK)
                return p->status;
        } else if (is_space(c)) {
            /* Attribute-value normalisation: white space becomes a space, CR LF one space. */
            rep[0] = ' ';
            p->i += at(p, "\r\n") ? 2 : 1;
        } else {
            rep[0] = c;
            p->i++;
        }
        if (buf_add(p, v, vlen, &cap, rep, rlen) != DFS_OK)
            return p->status;
    }
}

static int push_ns(struct parser *p, const char *prefix, size_t plen, const char *uri, size_t ulen)
{
    if (p->nns == p->nscap) {
        size_t c = p->nscap ? p->nscap * 2 : 8;
        struct nsbind *b = realloc(p->ns, c * sizeof *b);
        if (b == NULL)
            return pnomem(p);
        p->ns = b;
        p->nscap = c;
    }
    char *u = dfs_arena_memdup(&p->doc->arena, uri, ulen + 1);
    if (u == NULL)
        return pnomem(p);
    u[ulen] = '\0';
    p->ns[p->nns++] = (struct nsbind){prefix, plen, u};
    return DFS_OK;
}

/* The namespace bound to a prefix (plen 0: the default one); NULL when undeclared. */
static const char *lookup_ns(const struct parser *p, const char *prefix, size_t plen)
{
    if (plen == 3 && memcmp(prefix, "xml", 3) == 0)
        return XML_NS_URI;
    for (size_t k = p->nns; k-- > 0;) {
        if (p->ns[k].plen == plen && memcmp(p->ns[k].prefix, prefix, plen) == 0)
            return p->ns[k].uri;
    }
    return plen == 0 ? "" : NULL;
}

struct attr {
    const char *q;
    size_t qlen, plen;
};

/* A start tag at p->i ('<' then a name). */
static int scan_start_tag(struct parser *p)
{
    p->i++; /* '<' */
    const char *q = p->s + p->i;
    size_t qlen, plen;
    if (scan_qname(p, &qlen, &plen) != DFS_OK)
        return p->status;
    if (p->depth >= p->lim->max_depth)
        return perr(p, "elements nested too deeply");
    if (p->nodes >= p->lim->max_nodes)
        return perr(p, "too many elements");
    size_t nbind = p->nns;
    struct attr attrs[MAX_ATTRS];
    size_t nattrs = 0;
    bool empty = false;
    for (;;) {
        size_t before = p->i;
        skip_space(p);
        if (p->i >= p->n)
            return perr(p, "a start tag not closed");
        if (at(p, "/>")) {
            p->i += 2;
            empty = true;
            break;
        }
        if (p->s[p->i] == '>') {
            p->i++;
            break;
        }
        if (p->i == before)
            return perr(p, "attributes must be separated by white space");
        const char *aq = p->s + p->i;
        size_t aqlen, aplen;
        if (scan_qname(p, &aqlen, &aplen) != DFS_OK)
            return p->status;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != '=')
            return perr(p, "an attribute without '='");
        p->i++;
        skip_space(p);
        char *v = NULL;
        size_t vlen = 0;
        if (scan_attr_value(p, &v, &vlen) != DFS_OK) {
            free(v);
            return p->status;
        }
        for (size_t k = 0; k < nattrs; k++) {
            if (attrs[k].qlen == aqlen && memcmp(attrs[k].q, aq, aqlen) == 0) {
                free(v);
                return perr(p, "an attribute given twice");
            }
        }
        if (nattrs == MAX_ATTRS) {
            free(v);
            return perr(p, "too many attributes");
        }
        attrs[nattrs++] = (struct attr){aq, aqlen, aplen};
        int rc = DFS_OK;
        if (aqlen == 5 && memcmp(aq, "xmlns", 5) == 0) {
            rc = push_ns(p, aq, 0, v, vlen);
        } else if (aplen == 5 && memcmp(aq, "xmlns", 5) == 0) {
            const char *pre = aq + 6;
            size_t pl = aqlen - 6;
            if (vlen == 0)
                rc = perr(p, "a namespace prefix bound to the empty name");
            else if ((pl == 5 && memcmp(pre, "xmlns", 5) == 0) ||
                     (pl == 3 && memcmp(pre, "xml", 3) == 0 && strcmp(v, XML_NS_URI) != 0))
                rc = perr(p, "a reserved namespace prefix rebound");
            else
                rc = push_ns(p, pre, pl, v, vlen);
        }
        free(v);
        if (rc != DFS_OK)
            return p->status;
    }
    /* Attribute prefixes must be declared (on this element or above). */
    for (size_t k = 0; k < nattrs; k++) {
        if (attrs[k].plen == 0 || (attrs[k].plen == 5 && memcmp(attrs[k].q, "xmlns", 5) == 0))
            continue;
        if (lookup_ns(p, attrs[k].q, attrs[k].plen) == NULL)
            return perr(p, "an attribute with an undeclared namespace prefix");
    }
    if (plen == 5 && memcmp(q, "xmlns", 5) == 0)
        return perr(p, "an element with the reserved prefix xmlns");
    const char *uri = lookup_ns(p, q, plen);
    if (uri == NULL)
        return perr(p, "an element with an undeclared namespace prefix");

    dfs_xml_node *node = dfs_arena_alloc(&p->doc->arena, sizeof *node);
    const char *local = plen ? q + plen + 1 : q;
    size_t llen = plen ? qlen - plen - 1 : qlen;
    char *name = node != NULL ? dfs_arena_memdup(&p->doc->arena, local, llen + 1) : NULL;
    if (name == NULL)
        return pnomem(p);
    name[llen] = '\0';
    node->name = name;
    node->ns = uri;
    node->text = "";
    p->nodes++;
    if (p->depth == 0) {
        p->doc->root = node;
    } else {
        dfs_xml_node *parent = p->lv[p->depth - 1].node;
        if (parent->last != NULL)
            parent->last->next = node;
        else
            parent->first = node;
        parent->last = node;
    }
    if (empty) {
        p->nns = nbind; /* its declarations go out of scope at once */
        return DFS_OK;
    }
    if (p->depth == p->lvcap) {
        size_t c = p->lvcap ? p->lvcap * 2 : INITIAL_LEVELS;
        struct level *l = realloc(p->lv, c * sizeof *l);
        if (l == NULL)
            return pnomem(p);
        p->lv = l;
        p->lvcap = c;
    }
    struct level *l = &p->lv[p->depth++];
    memset(l, 0, sizeof *l);
    l->node = node;
    l->qname = q;
    l->qlen = qlen;
    l->nbind = nbind;
    return DFS_OK;
}

/* An end tag at p->i ("</"). */
static int scan_end_tag(struct parser *p)
{
    p->i += 2;
    const char *q = p->s + p->i;
    size_t qlen, plen;
    if (scan_qname(p, &qlen, &plen) != DFS_OK)
        return p->status;
    skip_space(p);
    if (p->i >= p->n || p->s[p->i] != '>')
        return perr(p, "an end tag not closed");
    p->i++;
    struct level *l = &p->lv[p->depth - 1];
    if (l->qlen != qlen || memcmp(l->qname, q, qlen) != 0)
        return perr(p, "an end tag that does not match its start tag");
    dfs_xml_node *node = l->node;
    if (l->tlen > 0) {
        char *t = dfs_arena_memdup(&p->doc->arena, l->text, l->tlen + 1);
        if (t == NULL)
            return pnomem(p);
        node->text = t;
        node->text_len = l->tlen;
        for (size_t k = 0; k < l->tlen; k++) {
            if (!is_space(t[k])) {
                node->has_text = true;
                break;
            }
        }
    }
    free(l->text);
    l->text = NULL;
    p->nns = l->nbind;
    p->depth--;
    return DFS_OK;
}

/* The XML declaration, p->i at "<?xml" followed by white space. */
static int scan_decl(struct parser *p)
{
    static const char *const names[] = {"version", "encoding", "standalone"};
    p->i += 5;
    size_t next = 0; /* the pseudo-attributes come in this order, version required */
    for (;;) {
        size_t before = p->i;
        skip_space(p);
        if (at(p, "?>")) {
            p->i += 2;
            break;
        }
        if (p->i == before)
            return perr(p, "a bad XML declaration");
        const char *a = p->s + p->i;
        size_t alen = scan_name(p);
        size_t k = next;
        while (k < 3 && !(strlen(names[k]) == alen && memcmp(names[k], a, alen) == 0))
            k++;
        if (alen == 0 || k == 3 || (next == 0 && k != 0))
            return perr(p, "a bad XML declaration");
        next = k + 1;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != '=')
            return perr(p, "a bad XML declaration");
        p->i++;
        skip_space(p);
        char *v = NULL;
        size_t vlen;
        if (scan_attr_value(p, &v, &vlen) != DFS_OK) {
            free(v);
            return p->status;
        }
        bool ok = true;
        if (k == 0)
            ok = vlen >= 3 && strncmp(v, "1.", 2) == 0 && strspn(v + 2, "0123456789") == vlen - 2;
        else if (k == 1)
            ok = strcasecmp(v, "UTF-8") == 0;
        else
            ok = strcmp(v, "yes") == 0 || strcmp(v, "no") == 0;
        free(v);
        if (!ok)
            return perr(p, k == 1 ? "an encoding other than UTF-8" : "a bad XML declaration");
    }
    if (next == 0)
        return perr(p, "an XML declaration without a version");
    return DFS_OK;
}

/* Comments, processing instructions and white space, outside the root element. */
static int scan_misc(struct parser *p)
{
    for (;;) {
        skip_space(p);
        if (at(p, "<!--")) {
            if (scan_comment(p) != DFS_OK)
                return p->status;
        } else if (at(p, "<?")) {
            if (scan_pi(p) != DFS_OK)
                return p->status;
        } else {
            return DFS_OK;
        }
    }
}

static int parse_doc(struct parser *p)
{
    /* Every character must be one XML allows, in well-formed UTF-8. */
    for (size_t k = 0; k < p->n;) {
        size_t cl = xml_char_len(p->s + k, p->n - k);
        if (cl == 0) {
            p->i = k;
            return perr(p, "not well-formed UTF-8, or a character XML does not allow");
        }
        k += cl;
    }
    if (at(p, "\xEF\xBB\xBF"))
        p->i += 3;
    if (at(p, "<?xml") && p->n - p->i > 5 && is_space(p->s[p->i + 5])) {
        if (scan_decl(p) != DFS_OK)
            return p->status;
    }
    if (scan_misc(p) != DFS_OK)
        return p->status;
    if (at(p, "<!DOCTYPE"))
        return perr(p, "document type declarations (DTDs) are not allowed");
    if (p->i >= p->n || p->s[p->i] != '<' || p->n - p->i < 2 ||
        !name_start((unsigned char)p->s[p->i + 1]))
        return perr(p, "expected the root element");
    if (scan_start_tag(p) != DFS_OK)
        return p->status;
    while (p->depth > 0) {
        if (scan_text(p) != DFS_OK)
            return p->status;
        if (p->i >= p->n)
            return perr(p, "the document ends inside an element");
        if (at(p, "</")) {
            if (scan_end_tag(p) != DFS_OK)
                return p->status;
        } else if (at(p, "<!--")) {
            if (scan_comment(p) != DFS_OK)
                return p->status;
        } else if (at(p, "<![CDATA[")) {
            p->i += 9;
            struct level *l = &p->lv[p->depth - 1];
            for (;;) {
                size_t start = p->i;
                while (p->i < p->n && p->s[p->i] != '\r' && !at(p, "]]>"))
                    p->i++;
                if (buf_add(p, &l->text, &l->tlen, &l->tcap, p->s + start, p->i - start) != DFS_OK)
                    return p->status;
                if (p->i >= p->n)
                    return perr(p, "a CDATA section not closed");
                if (p->s[p->i] == '\r') {
                    p->i += at(p, "\r\n") ? 2 : 1;
                    if (buf_add(p, &l->text, &l->tlen, &l->tcap, "\n", 1) != DFS_OK)
                        return p->status;
                    continue;
                }
                p->i += 3;
                break;
            }
        } else if (at(p, "<?")) {
            if (scan_pi(p) != DFS_OK)
                return p->status;
        } else if (at(p, "<!")) {
            return perr(p, "a declaration inside an element");
        } else {
            if (scan_start_tag(p) != DFS_OK)
                return p->status;
        }
    }
    if (scan_misc(p) != DFS_OK)
        return p->status;
    if (p->i < p->n)
        return perr(p, "content after the root element");
    return DFS_OK;
}

int dfs_xml_parse(const char *buf, size_t len, const struct dfs_xml_limits *limits,
                  dfs_xml_doc **out, char **errmsg)
{
    if (len > limits->max_bytes)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "XML document of %zu bytes, more than the %zu allowed", len,
                          limits->max_bytes);
    if (len == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "malformed XML: an empty document");
    dfs_xml_doc *doc = calloc(1, sizeof *doc);
    if (doc == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    struct parser p = {
        .s = buf,
        .n = len,
        .lim = limits,
        .doc = doc,
        .errmsg = errmsg,
    };
    int rc = parse_doc(&p);
    for (size_t k = 0; k < p.depth; k++)
        free(p.lv[k].text);
    free(p.lv);
    free(p.ns);
    if (rc != DFS_OK) {
        dfs_xml_doc_destroy(doc);
        return rc;
    }
    *out = doc;
    return DFS_OK;
}

void dfs_xml_doc_destroy(dfs_xml_doc *d)
{
    if (d == NULL)
        return;
    dfs_arena_free(&d->arena);
    free(d);
}

const dfs_xml_node *dfs_xml_root(const dfs_xml_doc *d)
{
    return d->root;
}

const char *dfs_xml_name(const dfs_xml_node *n)
{
    return n->name;
}

const char *dfs_xml_ns(const dfs_xml_node *n)
{
    return n->ns;
}

const char *dfs_xml_content(const dfs_xml_node *n, size_t *len)
{
    if (len != NULL)
        *len = n->text_len;
    return n->text;
}

bool dfs_xml_has_text(const dfs_xml_node *n)
{
    return n->has_text;
}

const dfs_xml_node *dfs_xml_first_child(const dfs_xml_node *n)
{
    return n->first;
}

const dfs_xml_node *dfs_xml_next(const dfs_xml_node *n)
{
    return n->next;
}
