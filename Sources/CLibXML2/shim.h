// libxml2's HTML parser (Debian: libxml2-dev), used to turn fetched pages into readable text.
#pragma once
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <libxml/parser.h>
