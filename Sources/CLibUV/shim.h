// libuv, plus the few helpers Swift cannot express (macros, signal dispositions).
#pragma once
#include <uv.h>
#include <signal.h>

// A peer that disconnects mid-write must surface as EPIPE on the write, not kill the process.
static inline void CLibUV_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }
