#include "CHTMLText.h"
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void) { xmlInitParser(); }

CHTMLText_doc *CHTMLText_parse(const char *bytes, size_t length, const char *encoding) {
    pthread_once(&once, init);
    if (length > 0x7fffffff) length = 0x7fffffff;
    int options = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_COMPACT;
    return (CHTMLText_doc *)htmlReadMemory(bytes, (int)length, NULL, encoding, options);
}

void CHTMLText_free(CHTMLText_doc *doc) { xmlFreeDoc((xmlDocPtr)doc); }
const CHTMLText_node *CHTMLText_root(const CHTMLText_doc *doc) { return (const CHTMLText_node *)xmlDocGetRootElement((const xmlDoc *)doc); }
const CHTMLText_node *CHTMLText_first_child(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->children; }
const CHTMLText_node *CHTMLText_next(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->next; }
const CHTMLText_node *CHTMLText_parent(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->parent; }
int CHTMLText_type(const CHTMLText_node *node) { return (int)((const xmlNode *)node)->type; }
const char *CHTMLText_name(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->name; }
const char *CHTMLText_content(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->content; }
