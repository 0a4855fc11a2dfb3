// libuv, plus the few helpers Swift cannot express (macros, signal dispositions).
#pragma once
#include <uv.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

// A peer that disconnects mid-write must surface as EPIPE on the write, not kill the process.
static inline void CLibUV_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

// Names the calling thread as `top -H`, perf and /proc show it (prctl is variadic; Linux keeps
// 15 bytes).
static inline void CLibUV_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

// Unblocks SIGINT, SIGTERM and SIGHUP for the calling thread (and the threads it starts later). A
// parent may start us with them blocked (Foundation's Process passes on its own blocked set): the
// graceful shutdown on SIGTERM, and SIGHUP's being logged, must not depend on who started us.
static inline void CLibUV_unblock_termination_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

// Makes the kernel drop every packet that reaches socket `fd` from now on (a classic BPF filter
// that returns 0). On a listening socket that closes its doors without resetting anyone: a new
// SYN is dropped (the client sends it again a second later, finds the port closed and is
// refused, so a proxy tries its next server), and no handshake can complete into the accept
// queue any more, so the queue can be emptied before the socket closes. Connections accepted
// before keep working (a socket inherits its listener's filter only when it is created).
// Returns 0, or -1 with errno set.
static inline int CLibUV_drop_all_packets(int fd) {
  struct sock_filter code[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
  struct sock_fprog program = { .len = 1, .filter = code };
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
}

// Bytes the kernel holds for a TCP socket that its peer has not acknowledged yet (SIOCOUTQ:
// sent but unacknowledged, plus not sent); -1 on failure. It falls as the peer reads.
static inline int CLibUV_unacknowledged_bytes(int fd) {
  int count = 0;
  return ioctl(fd, SIOCOUTQ, &count) == 0 ? count : -1;
}

// Whether a TCP socket's peer has closed or reset its side, seen without reading: `poll` reports
// POLLRDHUP once the peer's FIN has arrived however much unread data is queued before it, and
// POLLHUP/POLLERR after a reset. For a connection whose reading is paused (pipelined bytes held
// at their bound), whose EOF a read would never reach. 0x2000 is Linux's POLLRDHUP (glibc
// defines it only under _GNU_SOURCE).
#include <poll.h>
static inline int CLibUV_peer_has_closed(int fd) {
  struct pollfd probe = { .fd = fd, .events = 0x2000, .revents = 0 };
  if (poll(&probe, 1, 0) != 1) return 0;
  return (probe.revents & (0x2000 | POLLHUP | POLLERR)) != 0;
}

// Bytes the kernel has received on a socket that no read has taken yet (FIONREAD), -1 if it
// cannot say: a connection that looks idle may have its next request waiting there.
static inline int CLibUV_unread_bytes(int fd) {
  int count = 0;
  if (ioctl(fd, FIONREAD, &count) != 0) return -1;
  return count;
}
