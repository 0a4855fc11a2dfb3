// libxml2's HTML parser behind a handful of functions. libxml2's own headers are not exposed to
// Swift: they include the system's ICU headers, which clash with Foundation's copy of ICU.
#pragma once
#include <stddef.h>

typedef struct CHTMLText_doc CHTMLText_doc;
typedef struct CHTMLText_node CHTMLText_node;

enum { CHTMLText_ELEMENT = 1, CHTMLText_TEXT = 3, CHTMLText_CDATA = 4 };

// Names a start tag keeps when parsed (`CHTMLText_bound_tags`).
enum { CHTMLText_MAX_ATTRIBUTES = 64 };

// Copies `length` bytes of HTML (UTF-8 with no quote characters: see html_text.c) into `output`
// (room for `length`) with each tag cut to its first CHTMLText_MAX_ATTRIBUTES names and NULs
// dropped; returns the bytes written. Linear. CHTMLText_parse does it first: libxml2's parser is
// quadratic in a tag's attributes.
size_t CHTMLText_bound_tags(const char *bytes, size_t length, char *output);

// Parses UTF-8 (error-tolerant, no network access, the encoding fixed). Free with CHTMLText_free.
// `*halted` is set when the parser stopped before the end (nesting past libxml2's depth limit):
// the document then holds the page only up to there.
CHTMLText_doc *CHTMLText_parse(const char *bytes, size_t length, int *halted);
// The most attributes any element of the document has (tests).
int CHTMLText_max_attributes(const CHTMLText_doc *doc);
void CHTMLText_free(CHTMLText_doc *doc);
const CHTMLText_node *CHTMLText_root(const CHTMLText_doc *doc);
const CHTMLText_node *CHTMLText_first_child(const CHTMLText_node *node);
const CHTMLText_node *CHTMLText_next(const CHTMLText_node *node);
const CHTMLText_node *CHTMLText_parent(const CHTMLText_node *node);
int CHTMLText_type(const CHTMLText_node *node);
// Element name, or text content (UTF-8); NULL if none. Owned by the document.
const char *CHTMLText_name(const CHTMLText_node *node);
const char *CHTMLText_content(const CHTMLText_node *node);
