// libuv, plus the few helpers Swift cannot express (macros, signal dispositions).
#pragma once
#include <uv.h>
#include <signal.h>
#include <sys/prctl.h>

// A peer that disconnects mid-write must surface as EPIPE on the write, not kill the process.
static inline void CLibUV_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

// Names the calling thread as `top -H`, perf and /proc show it (prctl is variadic; Linux keeps
// 15 bytes).
static inline void CLibUV_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

// Unblocks SIGINT and SIGTERM for the calling thread (and the threads it starts later). A parent
// may start us with them blocked (Foundation's Process passes on its own blocked set): the
// graceful shutdown on SIGTERM must not depend on who started the process.
static inline void CLibUV_unblock_termination_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
