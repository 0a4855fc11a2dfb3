// libxml2's HTML parser behind a handful of functions (seven). libxml2's own headers are not exposed to
// Swift: they include the system's ICU headers, which clash with Foundation's copy of ICU.
#pragma once
#include <stddef.h>

typedef struct CHTMLText_doc CHTMLText_doc;
typedef struct CHTMLText_node CHTMLText_node;

enum { CHTMLText_ELEMENT = 1, CHTMLText_TEXT = 3, CHTMLText_CDATA = 4 };

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
