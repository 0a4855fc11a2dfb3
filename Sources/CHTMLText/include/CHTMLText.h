// libxml2's HTML parser behind a handful of functions. libxml2's own headers are not exposed to
// Swift: they include the system's ICU headers, which clash with Foundation's copy of ICU.
#pragma once
#include <stddef.h>

typedef struct CHTMLText_doc CHTMLText_doc;
typedef struct CHTMLText_node CHTMLText_node;

enum { CHTMLText_ELEMENT = 1, CHTMLText_TEXT = 3, CHTMLText_CDATA = 4 };

// Attributes a start tag keeps when parsed (`CHTMLText_bound_tags`).
enum { CHTMLText_MAX_ATTRIBUTES = 64 };

// Copies `length` bytes of HTML into `output` (room for `length`) with each start tag cut to its
// first CHTMLText_MAX_ATTRIBUTES attributes; returns the bytes written. Linear. CHTMLText_parse
// does it first: libxml2's parser is quadratic in a tag's attributes.
size_t CHTMLText_bound_tags(const char *bytes, size_t length, char *output);

// Parses (error-tolerant, no network access); `encoding` may be NULL. Free with CHTMLText_free.
CHTMLText_doc *CHTMLText_parse(const char *bytes, size_t length, const char *encoding);
void CHTMLText_free(CHTMLText_doc *doc);
const CHTMLText_node *CHTMLText_root(const CHTMLText_doc *doc);
const CHTMLText_node *CHTMLText_first_child(const CHTMLText_node *node);
const CHTMLText_node *CHTMLText_next(const CHTMLText_node *node);
const CHTMLText_node *CHTMLText_parent(const CHTMLText_node *node);
int CHTMLText_type(const CHTMLText_node *node);
// Element name, or text content (UTF-8); NULL if none. Owned by the document.
const char *CHTMLText_name(const CHTMLText_node *node);
const char *CHTMLText_content(const CHTMLText_node *node);
