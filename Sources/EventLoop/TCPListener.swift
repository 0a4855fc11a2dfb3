internal import CLibUV
import Foundation

/// A listening TCP socket; hands each accepted connection to `onConnection`.
public final class TCPListener: LoopHandle {
    private var onConnection: (TCPConnection) -> Void
    /// A connection could not be accepted (`EMFILE`: the process is out of descriptors; libuv
    /// then accepts and closes what is queued, so clients are refused rather than left hanging).
    public var onAcceptError: ((LoopError) -> Void)?

    /// `reusePort`: several listeners (one per loop) share the port and the kernel spreads
    /// connections across them (SO_REUSEPORT). Every listener of the group must set it.
    public init(loop: EventLoop, host: String, port: Int, backlog: Int32 = 1024, reusePort: Bool = false,
                onConnection: @escaping (TCPConnection) -> Void) throws {
        // Int32(port) below would trap on a number no port can be.
        guard (0...65535).contains(port) else { throw LoopError(Int32(UV_EINVAL.rawValue), "listen on \(host):\(port)") }
        self.onConnection = onConnection
        super.init(loop: loop, byteCount: MemoryLayout<uv_tcp_t>.size)
        let tcp = rawHandle.assumingMemoryBound(to: uv_tcp_t.self)
        guard didInitialize(uv_tcp_init(loop.uvLoop, tcp), "uv_tcp_init") else { throw initError! }
        var storage: sockaddr_storage
        let length: socklen_t
        do {
            (storage, length) = try Self.address(host: host, port: port)
        } catch {
            close()
            throw error
        }
        var result: Int32 = 0
        if reusePort {
            // libuv 1.44 cannot set SO_REUSEPORT: prepare the socket ourselves, then adopt it.
            let fd = socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            let bound = withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            if bound != 0 {
                let code = -errno
                Glibc.close(fd)
                close()
                throw LoopError(Int32(code), "listen on \(host):\(port)")
            }
            result = uv_tcp_open(tcp, fd)
        } else {
            result = withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(tcp, $0, 0) }
            }
        }
        if result == 0 {
            result = uv_listen(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self), backlog) { server, status in
                guard let server else { return }
                let listener = LoopHandle.from(UnsafeMutableRawPointer(server)) as! TCPListener
                guard status == 0 else {
                    listener.onAcceptError?(LoopError(status, "accept"))
                    return
                }
                listener.accept()
            }
        }
        guard result == 0 else {
            close()
            throw LoopError(result, "listen on \(host):\(port)")
        }
    }

    /// `host:port` as a socket address (IPv4, else IPv6).
    private static func address(host: String, port: Int) throws(LoopError) -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        var result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, Int32(port), $0) }
        }
        if result != 0 {
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            result = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) }
            }
        }
        // A name (`localhost`) is not resolved: the address to listen on is an IP literal.
        guard result == 0 else { throw LoopError(result, "listen address '\(host)' is not an IP address (use e.g. 127.0.0.1, ::1, 0.0.0.0 or ::)") }
        return (storage, length)
    }

    /// Throws `EADDRINUSE` when something listens on `host:port` already. A group of
    /// `reusePort` listeners checks this before it binds: SO_REUSEPORT would let it join another
    /// process's listeners on the port (another gateway, with another config), and the kernel
    /// would spread connections over both. A plain bind (this probe's) is refused by any
    /// listener, as the group's first bind would be without SO_REUSEPORT.
    public static func ensurePortFree(host: String, port: Int) throws {
        guard (1...65535).contains(port) else { return }
        var (storage, length) = try address(host: host, port: port)
        let fd = socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LoopError(Int32(-errno), "listen on \(host):\(port)") }
        defer { Glibc.close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))  // past TIME_WAIT, as the group binds
        let bound = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        if bound != 0 { throw LoopError(Int32(-errno), "listen on \(host):\(port)") }
    }

    /// The bound port (useful after binding port 0).
    public var port: Int {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                uv_tcp_getsockname(rawHandle.assumingMemoryBound(to: uv_tcp_t.self), $0, &length)
            }
        }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// Stops taking connections without resetting any (a graceful stop, before `close()`).
    /// Closing a listening socket resets the connections whose handshake the kernel completed
    /// but the loop has not accepted yet: their clients may have written a request already, and
    /// nginx answers such a POST with 502 and never resends it. So first the kernel is told to
    /// drop whatever reaches this socket (no handshake completes into its queue any more, and a
    /// client whose SYN is dropped sends it again a second later, is refused and goes to the
    /// next server), then everything queued is accepted and handed to `onConnection` like any
    /// other connection. Without the filter, a connection completing between the last accept
    /// and the close would still be reset, and under CPU load that gap is as long as a
    /// preempted thread's wait.
    public func stopAccepting() {
        var fd: uv_os_fd_t = -1
        guard isOpen, uv_fileno(rawHandle.assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return }
        _ = CLibUV_drop_all_packets(fd)  // should it fail, the queue is still emptied (the old gap remains)
        while true {
            // The listening socket is non-blocking (libuv), so this returns EAGAIN once the queue
            // is empty. Glibc's module lacks accept4: close-on-exec is set right after, and
            // uv_tcp_open makes the socket non-blocking.
            let accepted = Glibc.accept(fd, nil, nil)
            if accepted < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // EAGAIN: nothing queued any more (or out of descriptors: what is left is reset)
            }
            _ = fcntl(accepted, F_SETFD, FD_CLOEXEC)
            let adopted = handOver { uv_tcp_open($0.rawHandle.assumingMemoryBound(to: uv_tcp_t.self), accepted) }
            if !adopted { Glibc.close(accepted) }  // not the handle's: ours to close
        }
    }

    private func accept() {
        _ = handOver { uv_accept(rawHandle.assumingMemoryBound(to: uv_stream_t.self), $0.rawHandle.assumingMemoryBound(to: uv_stream_t.self)) }
    }

    /// A new connection handle that `attach` gives its socket (0 on success), handed to
    /// `onConnection`; false if the handle could not be made or given the socket.
    private func handOver(_ attach: (TCPConnection) -> Int32) -> Bool {
        let connection = TCPConnection(loop: loop)
        guard connection.isOpen else { return false }
        guard attach(connection) == 0 else {
            connection.close()
            return false
        }
        uv_tcp_nodelay(connection.rawHandle.assumingMemoryBound(to: uv_tcp_t.self), 1)
        onConnection(connection)
        return true
    }

    override func didClose() { onConnection = { _ in } }
}
