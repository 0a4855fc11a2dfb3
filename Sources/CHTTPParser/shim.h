// Debian's http-parser (libhttp-parser-dev, 2.9.x); it ships no .pc file, hence `link`.
#pragma once
#include <http_parser.h>

// Bitfields behind macros in http_parser.h; read them through functions.
static inline enum http_errno CHTTPParser_errno(const http_parser *p) { return (enum http_errno)p->http_errno; }
static inline unsigned int CHTTPParser_method(const http_parser *p) { return p->method; }
static inline unsigned int CHTTPParser_upgrade(const http_parser *p) { return p->upgrade; }
static inline int CHTTPParser_isChunked(const http_parser *p) { return (p->flags & F_CHUNKED) != 0; }
