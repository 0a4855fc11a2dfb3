#include "CHTMLText.h"
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void) { xmlInitParser(); }

static int is_letter(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static int is_name_char(unsigned char c) {
    return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '-' || c == '_' || c == '.';
}

size_t CHTMLText_bound_tags(const char *bytes, size_t n, char *output) {
    // Why: libxml2 2.9's HTML parser compares each attribute of a start tag with every earlier
    // one, so a tag with n attributes costs n^2 (review 45: one 2 MiB tag froze a loop for
    // minutes). The text extraction reads no attribute, so every tag keeps its first
    // CHTMLText_MAX_ATTRIBUTES names and loses the rest.
    //
    // Robust without tokenizing as libxml2 does (review 46: each place a tokenizer of ours
    // disagreed with libxml2's let a tag through unbounded): the caller gives UTF-8 with no
    // quote characters (`PageBytes` swaps them for private-use characters and back), and NULs
    // are dropped here. Then nothing can carry a tag past a '>': every start tag libxml2 parses
    // lies within one region from a '<' to the next '>', and in each region the names counted
    // here (any run of name characters, a run of more than 100 counting once per 100, as
    // libxml2 reads it) are capped. A region starts only where libxml2 starts an element: at '<'
    // and an ASCII letter (a '<' in prose, `<!--`, `<?` are copied as they are).
    const unsigned char *in = (const unsigned char *)bytes;
    unsigned char *out = (unsigned char *)output;
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = in[i];
        if (c == 0) { i++; continue; }
        // libxml2 starts an element only at '<' and an ASCII letter (the NULs between dropped).
        size_t next = i + 1;
        while (next < n && in[next] == 0) next++;
        if (c != '<' || next >= n || !is_letter(in[next])) { out[o++] = c; i++; continue; }
        // A region: '<' up to the next '>' (or the end).
        size_t end = i + 1;
        while (end < n && in[end] != '>') end++;
        size_t names = 0, cut = end;
        for (size_t k = i + 1; k < end;) {
            if (!is_name_char(in[k])) { k++; continue; }
            size_t run = k;
            while (k < end && is_name_char(in[k])) k++;
            names += (k - run + 99) / 100;
            if (names > CHTMLText_MAX_ATTRIBUTES) { cut = run; break; }
        }
        for (size_t k = i; k < cut; k++) if (in[k] != 0) out[o++] = in[k];
        if (cut < end) {
            // Cut short: what ends the region stays: the last end tag's name (a script's `i<n`
            // with many words after it would otherwise lose its `</script` and with it the rest
            // of the page), a self-closing '/', a comment's "--". At most one name more.
            // Never more than was dropped: the output fits the input's room.
            size_t room = end - cut, wrote = 0, last = end;
            for (size_t k = cut; k + 2 < end; k++) if (in[k] == '<' && in[k + 1] == '/' && is_letter(in[k + 2])) last = k;
            if (last < end) {
                out[o++] = '<';
                out[o++] = '/';
                wrote = 2;
                for (size_t k = last + 2; k < end && k < last + 2 + 32 && is_letter(in[k]); k++) { out[o++] = in[k]; wrote++; }
            }
            int dashes = room >= 2 && in[end - 2] == '-' && in[end - 1] == '-';
            if (dashes && wrote + 3 <= room) {
                out[o++] = ' ';
                out[o++] = '-';
                out[o++] = '-';
            } else if (!dashes && in[end - 1] == '/' && wrote + 1 <= room) {
                out[o++] = '/';
            }
        }
        i = end;  // the '>' itself, if any, is copied as an ordinary byte
    }
    return o;
}

CHTMLText_doc *CHTMLText_parse(const char *bytes, size_t length, int *halted) {
    pthread_once(&once, init);
    *halted = 0;
    if (length > 0x7fffffff) length = 0x7fffffff;
    char *bounded = malloc(length > 0 ? length : 1);
    if (!bounded) return NULL;
    size_t bounded_length = CHTMLText_bound_tags(bytes, length, bounded);
    // UTF-8, as `PageBytes` made it: neither the bytes' look nor a <meta> may switch it (a
    // switch to UTF-16 or EBCDIC would make tags of what was bounded as text).
    int options = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_COMPACT
        | HTML_PARSE_IGNORE_ENC;
    htmlParserCtxtPtr context = htmlNewParserCtxt();
    if (!context) {
        free(bounded);
        return NULL;
    }
    CHTMLText_doc *doc = (CHTMLText_doc *)htmlCtxtReadMemory(context, bounded, (int)bounded_length, NULL, "UTF-8", options);
    // Past 256 open elements (legacy pages' unclosed <font>s pile them up) libxml2 stops with
    // "Excessive depth" and keeps what it built: the rest of the page is lost without an error
    // in recovery mode (review 62B #2). Stopping is the only way it sets disableSAX here.
    // (HTML_PARSE_HUGE would go deeper, but an unmatched end tag then scans the whole stack of
    // open elements: quadratic, 33 s for one 2 MiB page.)
    *halted = context->disableSAX != 0;
    htmlFreeParserCtxt(context);
    free(bounded);
    return doc;
}

static int count_attributes(const xmlNode *node, int most) {
    for (; node; node = node->next) {
        if (node->type == XML_ELEMENT_NODE) {
            int count = 0;
            for (const xmlAttr *attribute = node->properties; attribute; attribute = attribute->next) count++;
            if (count > most) most = count;
        }
        // Recursion: for tests only (`CHTMLText_max_attributes`), on small documents.
        most = count_attributes(node->children, most);
    }
    return most;
}

int CHTMLText_max_attributes(const CHTMLText_doc *doc) {
    return count_attributes(((const xmlDoc *)doc)->children, 0);
}

void CHTMLText_free(CHTMLText_doc *doc) { xmlFreeDoc((xmlDocPtr)doc); }
const CHTMLText_node *CHTMLText_root(const CHTMLText_doc *doc) { return (const CHTMLText_node *)xmlDocGetRootElement((const xmlDoc *)doc); }
const CHTMLText_node *CHTMLText_first_child(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->children; }
const CHTMLText_node *CHTMLText_next(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->next; }
const CHTMLText_node *CHTMLText_parent(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->parent; }
int CHTMLText_type(const CHTMLText_node *node) { return (int)((const xmlNode *)node)->type; }
const char *CHTMLText_name(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->name; }
const char *CHTMLText_content(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->content; }
