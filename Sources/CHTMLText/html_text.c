#include "CHTMLText.h"
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void) { xmlInitParser(); }

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }
static int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

// Where `needle` (ASCII, lower case) next starts in in[from..<n], case-insensitively; n if nowhere.
static size_t find_ci(const unsigned char *in, size_t from, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && (in[i + j] | 0x20) == (unsigned char)needle[j]) j++;
        if (j == k) return i;
    }
    return n;
}

size_t CHTMLText_bound_tags(const char *bytes, size_t n, char *output) {
    // Why: libxml2 2.9's HTML parser compares each attribute of a start tag with every earlier
    // one, so a tag with n attributes costs n^2 (review 45: one 256 KiB tag took 10 s, a 2 MiB
    // page minutes, all of it blocking the loop). The text extraction reads no attribute but a
    // <meta> charset, so a start tag keeps its first CHTMLText_MAX_ATTRIBUTES and loses the
    // rest. One linear pass; quotes are followed as HTML's tokenizer does, comments and
    // script/style bodies are copied as they are (a '<' there starts no tag).
    const unsigned char *in = (const unsigned char *)bytes;
    unsigned char *out = (unsigned char *)output;
    size_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '<') { out[o++] = in[i++]; continue; }
        if (i + 3 < n && in[i + 1] == '!' && in[i + 2] == '-' && in[i + 3] == '-') {
            size_t end = find_ci(in, i + 4, n, "-->");
            end = end < n ? end + 3 : n;
            while (i < end) out[o++] = in[i++];
            continue;
        }
        if (i + 1 >= n || !is_alpha(in[i + 1])) { out[o++] = in[i++]; continue; }
        // A start tag: '<', its name, then attributes until the '>' outside a quoted value.
        size_t name_start = i + 1;
        out[o++] = in[i++];
        while (i < n && !is_space(in[i]) && in[i] != '/' && in[i] != '>') out[o++] = in[i++];
        size_t name_length = i - name_start;
        enum { between, name, after_name, before_value, quoted, unquoted } state = between;
        unsigned char quote = 0;
        size_t attributes = 0;
        while (i < n) {
            unsigned char c = in[i];
            if (c == '>' && state != quoted) break;
            switch (state) {
            case between:
                if (!is_space(c) && c != '/') { attributes++; state = name; }
                break;
            case name:
                if (c == '=') state = before_value;
                else if (is_space(c)) state = after_name;
                break;
            case after_name:
                if (c == '=') state = before_value;
                else if (!is_space(c) && c != '/') { attributes++; state = name; }
                break;
            case before_value:
                if (c == '"' || c == '\'') { quote = c; state = quoted; }
                else if (!is_space(c)) state = unquoted;
                break;
            case quoted:
                if (c == quote) state = between;
                break;
            case unquoted:
                if (is_space(c)) state = between;
                break;
            }
            if (attributes <= CHTMLText_MAX_ATTRIBUTES) out[o++] = c;
            i++;
        }
        if (i < n) out[o++] = in[i++];  // the '>'
        // A script's or style's body is text to the parser, never tags.
        const char *raw = NULL;
        if (name_length == 6 && find_ci(in, name_start, name_start + 6, "script") == name_start) raw = "</script";
        if (name_length == 5 && find_ci(in, name_start, name_start + 5, "style") == name_start) raw = "</style";
        if (raw) {
            size_t end = find_ci(in, i, n, raw);
            while (i < end) out[o++] = in[i++];
        }
    }
    return o;
}

CHTMLText_doc *CHTMLText_parse(const char *bytes, size_t length, const char *encoding) {
    pthread_once(&once, init);
    if (length > 0x7fffffff) length = 0x7fffffff;
    char *bounded = malloc(length > 0 ? length : 1);
    if (!bounded) return NULL;
    size_t bounded_length = CHTMLText_bound_tags(bytes, length, bounded);
    int options = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_COMPACT;
    CHTMLText_doc *doc = (CHTMLText_doc *)htmlReadMemory(bounded, (int)bounded_length, NULL, encoding, options);
    free(bounded);
    return doc;
}

void CHTMLText_free(CHTMLText_doc *doc) { xmlFreeDoc((xmlDocPtr)doc); }
const CHTMLText_node *CHTMLText_root(const CHTMLText_doc *doc) { return (const CHTMLText_node *)xmlDocGetRootElement((const xmlDoc *)doc); }
const CHTMLText_node *CHTMLText_first_child(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->children; }
const CHTMLText_node *CHTMLText_next(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->next; }
const CHTMLText_node *CHTMLText_parent(const CHTMLText_node *node) { return (const CHTMLText_node *)((const xmlNode *)node)->parent; }
int CHTMLText_type(const CHTMLText_node *node) { return (int)((const xmlNode *)node)->type; }
const char *CHTMLText_name(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->name; }
const char *CHTMLText_content(const CHTMLText_node *node) { return (const char *)((const xmlNode *)node)->content; }
