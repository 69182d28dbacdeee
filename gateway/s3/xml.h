/* XML for S3: a writer that escapes correctly, and a small strict parser for request bodies. */
#ifndef DFS_GATEWAY_S3_XML_H
#define DFS_GATEWAY_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Writer ---- */

/*
 * Builds one UTF-8 document in memory, starting with `<?xml version="1.0" encoding="UTF-8"?>`.
 * Text is escaped (& < > " ' and, so that they survive a parser's line-end normalisation, tab, CR
 * and LF as character references); text that is not well-formed UTF-8, or holds a character XML
 * 1.0 cannot carry at all (C0 controls other than tab, CR, LF; U+FFFE; U+FFFF), is refused, never
 * altered: the writer then fails at dfs_xml_writer_finish with DFS_EINVAL and names the element.
 * The first failure (that, out of memory, unbalanced elements) sticks: later calls do nothing, so
 * a response is built with no checks in between and checked once at the end.
 *
 * Element names and namespaces are the caller's constants (borrowed: they must stay valid until
 * their element is closed) and are not checked beyond being non-empty.
 */
typedef struct dfs_xml_writer dfs_xml_writer;

#define DFS_XML_WRITER_MAX_DEPTH 16

/* A writer with the declaration written; NULL when out of memory. */
dfs_xml_writer *dfs_xml_writer_create(void);

/* Frees the writer and its buffer (NULL: nothing). */
void dfs_xml_writer_destroy(dfs_xml_writer *w);

/*
 * <name> or <name xmlns="xmlns"> (xmlns NULL: none). At most DFS_XML_WRITER_MAX_DEPTH open, and
 * one root element.
 */
void dfs_xml_open(dfs_xml_writer *w, const char *name, const char *xmlns);

/* Closes the innermost open element. */
void dfs_xml_close(dfs_xml_writer *w);

/* <name>text</name>, text escaped (NULL is written as empty). */
void dfs_xml_text(dfs_xml_writer *w, const char *name, const char *text);

/* The same for len bytes of text (which need not be NUL-terminated; a NUL byte is refused). */
void dfs_xml_text_len(dfs_xml_writer *w, const char *name, const char *text, size_t len);

/* Escaped text inside the innermost open element (for a root that holds only text). */
void dfs_xml_chars(dfs_xml_writer *w, const char *text);

/* <name>decimal</name>. */
void dfs_xml_u64(dfs_xml_writer *w, const char *name, uint64_t v);

/* <name>true</name> or <name>false</name>. */
void dfs_xml_bool(dfs_xml_writer *w, const char *name, bool v);

/*
 * Ends the document: every element must be closed. Returns 0 with *out (malloc'd, NUL-terminated;
 * the caller frees) and its length in *len (may be NULL); the writer is then empty and only fit
 * for destroy. Or the first failure: DFS_EINVAL (with a message in *errmsg) or DFS_ENOMEM, *out
 * untouched.
 */
int dfs_xml_writer_finish(dfs_xml_writer *w, char **out, size_t *len, char **errmsg);

/* ---- Parser ---- */

/*
 * A parsed document: a tree of elements, each with its local name, the namespace its name is in,
 * the text directly inside it (character data, entities and CDATA sections decoded and joined;
 * the text of child elements is not included), and its children in document order.
 *
 * What is accepted is XML 1.0 with namespaces, well-formed, in UTF-8: an optional byte order
 * mark and XML declaration (version 1.x, encoding UTF-8 if given), comments and processing
 * instructions, one root element, attributes (checked, unique, and read only for namespace
 * declarations), CDATA sections, the five predefined entities and character references to
 * characters XML allows. Refused, each with a one-line reason and the byte offset: document
 * type declarations (so no entity can be declared, internal or external: no expansion bombs and
 * no outside files), any other entity reference, characters XML does not allow, malformed UTF-8,
 * undeclared namespace prefixes, mismatched or unclosed tags, content after the root, and
 * documents past the limits below.
 */
typedef struct dfs_xml_doc dfs_xml_doc;
typedef struct dfs_xml_node dfs_xml_node;

struct dfs_xml_limits {
    size_t max_bytes; /* the input's length */
    size_t max_depth; /* nesting of elements; the root is depth 1 */
    size_t max_nodes; /* elements in all */
};

/*
 * Parse len bytes of buf (not necessarily NUL-terminated; borrowed for the call only). Returns 0
 * and *out (free with dfs_xml_doc_destroy), or DFS_EINVAL with a reason in *errmsg, or
 * DFS_ENOMEM; *out untouched on failure.
 */
int dfs_xml_parse(const char *buf, size_t len, const struct dfs_xml_limits *limits,
                  dfs_xml_doc **out, char **errmsg);

/* Frees the document and every node and string it holds (NULL: nothing). */
void dfs_xml_doc_destroy(dfs_xml_doc *d);

/* The root element (never NULL for a parsed document). Nodes live as long as their document. */
const dfs_xml_node *dfs_xml_root(const dfs_xml_doc *d);

/* The element's local name (its prefix, if any, removed). */
const char *dfs_xml_name(const dfs_xml_node *n);

/* The namespace URI of the element's name; "" when it is in none. */
const char *dfs_xml_ns(const dfs_xml_node *n);

/*
 * The character data directly inside the element, NUL-terminated (it never holds a NUL), with
 * its length in *len (may be NULL). "" when there is none.
 */
const char *dfs_xml_content(const dfs_xml_node *n, size_t *len);

/* Whether that character data holds anything but XML white space (space, tab, CR, LF). */
bool dfs_xml_has_text(const dfs_xml_node *n);

/* The first child element, or NULL. */
const dfs_xml_node *dfs_xml_first_child(const dfs_xml_node *n);

/* The next sibling element, or NULL. */
const dfs_xml_node *dfs_xml_next(const dfs_xml_node *n);

#endif /* DFS_GATEWAY_S3_XML_H */
