import Glibc

/// The process's limit on open descriptors (`RLIMIT_NOFILE`). Every client connection holds one
/// and a proxied one another for its upstream, while Debian's and systemd's default soft limit
/// is 1,024: a gateway left there stops accepting at about a thousand connections, however high
/// `server.max_connections` is (review 21 F4). `serve` raises the soft limit to the hard one at
/// start, as Go's runtime and nginx's `worker_rlimit_nofile` do; libuv polls with epoll, so no
/// `select` limit applies.
public enum DescriptorLimit {
    /// The soft limit after raising it as far as the hard limit allows.
    public static func raiseToHard() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}
