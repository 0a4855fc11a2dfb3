// hiredis (Debian's libhiredis-dev, 0.14): only its RESP reply reader and command formatter are
// used. The connection itself is ours (EventLoop's TCP on the loop): hiredis 0.14's async layer
// asserts (aborts the process) on a reply nobody asked for, has no timeouts, and its libuv
// adapter keeps its own struct in the handle's data pointer, which our loop teardown owns.
#pragma once
#include <hiredis/hiredis.h>
