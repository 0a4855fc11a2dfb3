internal import CLibUV
import Foundation

/// Errors from the OS or libuv: the raw code and what we were doing.
public struct LoopError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let operation: String
    init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }
    public var description: String {
        "\(operation): \(String(cString: uv_strerror(code))) (\(String(cString: uv_err_name(code))))"
    }
}

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

/// An accepted TCP connection.
///
/// Writes are coalesced: everything written during one loop iteration is sent with one syscall
/// when the loop flushes (right after the I/O callbacks, and before it would block), so a
/// response head and its first event, or several events parsed from one upstream read, leave
/// in one segment. What the kernel does not take at once is sent with a single `uv_write` at a
/// time. `bufferedBytes` lets producers apply backpressure.
public final class TCPConnection: LoopHandle, LoopFlushTarget {
    /// Bytes read; valid only during the call.
    public var onRead: ((UnsafeRawBufferPointer) -> Void)?
    /// The peer closed or the connection failed; `close()` has already been called.
    public var onDisconnect: ((LoopError?) -> Void)?
    /// The write buffer became empty; called only while `notifiesDrain` is set (the owner says
    /// when it waits for a drain, so the per-event flush calls nothing).
    public var onDrain: (() -> Void)?
    /// The connection has closed, whoever closed it (after `closeAfterWriting`: once the bytes
    /// went out, or the write failed, or `close()` cut it short). Called once, from libuv's
    /// close callback.
    public var onClosed: (() -> Void)?
    public var notifiesDrain = true
    /// Run once the bytes queued when each was added have left this process (the buffer
    /// drained) or the connection closed (`whenWritten`).
    private var afterWritten: [() -> Void] = []

    private let pending = ByteQueue()
    private let inFlight = ByteQueue()
    private let writeRequest: UnsafeMutablePointer<uv_write_t> = .allocate(capacity: 1)
    private let shutdownRequest: UnsafeMutablePointer<uv_shutdown_t> = .allocate(capacity: 1)
    private var writing = false
    private var flushScheduled = false
    private var closeWhenDrained = false
    private var shutdownWhenDrained = false
    private var reading = false

    init(loop: EventLoop) {
        super.init(loop: loop, byteCount: MemoryLayout<uv_tcp_t>.size)
        // On failure the connection never opens: `accept` closes it at once.
        didInitialize(uv_tcp_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_tcp_t.self)), "uv_tcp_init")
        writeRequest.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        writeRequest.deallocate()
        shutdownRequest.deallocate()
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> { rawHandle.assumingMemoryBound(to: uv_stream_t.self) }

    /// Bytes accepted by `write` since the connection opened (wrapping): a slow reader's pace is
    /// measured against it (`WriteBacklog.delivered(since:)`).
    public private(set) var bytesAccepted: UInt64 = 0

    /// Bytes accepted by `write` but not yet handed to the kernel.
    public var bufferedBytes: Int { pending.count + inFlight.count }

    /// What is still on its way to the peer: in this process, and in the kernel (one `ioctl`;
    /// for a check now and then, not per write). The process's share counts what libuv has not
    /// yet handed to the kernel of the write in flight (`uv_stream_get_write_queue_size`, which
    /// falls with each partial write), not the whole write: a response written as one large
    /// buffer stays in flight for as long as a slow reader takes, and while it does the kernel's
    /// queue is kept full, so neither the write's size nor the kernel's share would move.
    public var backlog: WriteBacklog {
        var fd: uv_os_fd_t = -1
        guard isOpen, uv_fileno(rawHandle.assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else {
            return WriteBacklog(buffered: bufferedBytes, kernel: 0, accepted: bytesAccepted)
        }
        let unwritten = writing ? Int(uv_stream_get_write_queue_size(stream)) : 0
        return WriteBacklog(buffered: pending.count + unwritten, kernel: max(0, Int(CLibUV_unacknowledged_bytes(fd))),
                            accepted: bytesAccepted)
    }
    /// Bytes allocated for the two queues (tests: a drained connection gives a backlog's back).
    var queueCapacity: Int { pending.capacity + inFlight.capacity }

    public func startReading() {
        guard isOpen, !reading else { return }
        reading = true
        uv_read_start(stream, { handle, _, buffer in
            let connection = LoopHandle.from(UnsafeMutableRawPointer(handle!)) as! TCPConnection
            buffer!.pointee = uv_buf_init(connection.loop.readBuffer.assumingMemoryBound(to: CChar.self),
                                          UInt32(connection.loop.readBufferSize))
        }, { handle, count, _ in
            let connection = LoopHandle.from(UnsafeMutableRawPointer(handle!)) as! TCPConnection
            if count > 0 {
                connection.loop.readBufferInUse = true
                defer { connection.loop.readBufferInUse = false }
                connection.onRead?(UnsafeRawBufferPointer(start: connection.loop.readBuffer, count: count))
            } else if count < 0 {
                connection.fail(count == Int(UV_EOF.rawValue) ? nil : LoopError(Int32(count), "read"))
            }
        })
    }

    /// Reads what has already arrived, now, rather than after the loop's next poll: a new
    /// connection's client has usually written its request by the time the connection is
    /// accepted, and waiting for the poll to say so was an `epoll_ctl`, an `epoll_wait` and a
    /// pass of the loop before the request's first byte was read. What it reads is handled as
    /// the loop's read would: bytes to `onRead`, the end of the stream or an error (a reset,
    /// which this read takes from the socket) to `onDisconnect`; nothing there, the loop's poll
    /// waits for it. Call once `onRead` is set and its owner is ready for a request; either may
    /// run before this returns.
    public func readAvailable() {
        // Not from inside another connection's read (a shutdown's last accepts): the loop's one
        // read buffer holds that read's bytes.
        guard isOpen, reading, !loop.readBufferInUse else { return }
        var fd: uv_os_fd_t = -1
        guard uv_fileno(rawHandle.assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return }
        let count = recv(fd, loop.readBuffer, loop.readBufferSize, Int32(MSG_DONTWAIT))
        guard count > 0 else {
            let code = errno
            if count == 0 {
                fail(nil)
            } else if code != EAGAIN && code != EWOULDBLOCK && code != EINTR {
                fail(LoopError(-code, "read"))
            }
            return
        }
        loop.readBufferInUse = true
        defer { loop.readBufferInUse = false }
        onRead?(UnsafeRawBufferPointer(start: loop.readBuffer, count: count))
    }

    /// Whether the peer has closed or reset its side, asked of the kernel (one `poll`): for a
    /// connection whose reading is paused, which would otherwise learn of it only when it reads
    /// again.
    public var peerHasClosed: Bool {
        var fd: uv_os_fd_t = -1
        guard isOpen, uv_fileno(rawHandle.assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return true }
        return CLibUV_peer_has_closed(fd) != 0
    }

    /// Bytes have arrived that no read has taken yet (or the kernel cannot say): a connection
    /// that looks idle may have its next request there.
    public var hasUnreadBytes: Bool {
        var fd: uv_os_fd_t = -1
        guard isOpen, uv_fileno(rawHandle.assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return false }
        return CLibUV_unread_bytes(fd) != 0
    }

    public func stopReading() {
        guard isOpen, reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Queues `bytes`; they are sent when the loop flushes, later in this iteration.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard isOpen, !closeWhenDrained, !shutdownWhenDrained, bytes.count > 0 else { return }
        pending.append(bytes)
        bytesAccepted &+= UInt64(bytes.count)
        scheduleFlush()
    }

    /// Runs `action` once what was written so far has left this process for the kernel (the
    /// write buffer drained; the kernel's share is bounded by the socket's buffer), or the
    /// connection closed: what holds memory for queued bytes (a whole answer's reservation) is
    /// released when they are gone, not when they were queued.
    public func whenWritten(_ action: @escaping () -> Void) {
        guard isOpen, bufferedBytes > 0 else { return action() }
        afterWritten.append(action)
    }

    /// Sends what is buffered, then closes. Reads stop at once.
    public func closeAfterWriting() {
        guard isOpen else { return }
        stopReading()
        if bufferedBytes == 0 {
            close()
        } else {
            closeWhenDrained = true
            scheduleFlush()
        }
    }

    /// Sends what is buffered, then half-closes (FIN) and goes on reading: a lingering close.
    /// Closing a socket with unread bytes makes the kernel answer with a reset, which can destroy
    /// the last response before the peer reads it; the owner drops what still arrives and calls
    /// `close()` on EOF or at its own deadline. Later writes are ignored.
    public func shutdownAfterWriting() {
        guard isOpen, !closeWhenDrained, !shutdownWhenDrained else { return }
        shutdownWhenDrained = true
        if bufferedBytes == 0 && !writing {
            startShutdown()
        } else {
            scheduleFlush()
        }
    }

    private func startShutdown() {
        shutdownRequest.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        // The request lives as long as this object, which libuv keeps alive until the close
        // callback; a shutdown still pending at close is called back (cancelled) before that.
        let result = uv_shutdown(shutdownRequest, stream) { _, _ in }
        if result < 0 { fail(LoopError(result, "shutdown")) }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.scheduleFlush(self)
    }

    /// Hands the pending bytes to the kernel: directly with `uv_try_write` when it takes them all
    /// (the common case: no request object, no extra iteration), else with one `uv_write`.
    func flush() {
        flushScheduled = false
        guard isOpen, !writing, !pending.isEmpty else { return }
        let readable = pending.readable
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: readable.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                 UInt32(readable.count))
        let written = Int(uv_try_write(stream, &buffer, 1))
        if written < 0 && written != Int(UV_EAGAIN.rawValue) {
            fail(LoopError(Int32(written), "write"))
            return
        }
        pending.consume(max(written, 0))
        if pending.isEmpty {
            didDrain()
        } else {
            startWrite()
        }
    }

    private func startWrite() {
        // `inFlight` is empty here; it must not change until the write callback.
        inFlight.append(pending.readable)
        pending.clear()
        writing = true
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: inFlight.readable.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                 UInt32(inFlight.count))
        let result = uv_write(writeRequest, stream, &buffer, 1) { request, status in
            let connection = Unmanaged<TCPConnection>.fromOpaque(request!.pointee.data).takeUnretainedValue()
            connection.didWrite(status: status)
        }
        if result < 0 {
            writing = false
            fail(LoopError(result, "write"))
        }
    }

    private func didWrite(status: Int32) {
        writing = false
        inFlight.clear()
        guard status >= 0 else {
            if status != Int32(UV_ECANCELED.rawValue) { fail(LoopError(status, "write")) }
            return
        }
        if pending.isEmpty {
            didDrain()
        } else {
            flush()
        }
    }

    private func didDrain() {
        pending.releaseIfLarge()
        inFlight.releaseIfLarge()
        if !afterWritten.isEmpty { runAfterWritten() }
        if closeWhenDrained {
            close()
        } else if shutdownWhenDrained {
            startShutdown()
            if notifiesDrain { onDrain?() }  // the owner times its linger from here
        } else if notifiesDrain {
            onDrain?()
        }
    }

    private func fail(_ error: LoopError?) {
        guard isOpen else { return }
        let callback = onDisconnect
        close()
        callback?(error)
    }

    override func willClose() { reading = false }

    private func runAfterWritten() {
        let actions = afterWritten
        afterWritten = []
        for action in actions { action() }
    }

    override func didClose() {
        if !afterWritten.isEmpty { runAfterWritten() }
        onRead = nil
        onDisconnect = nil
        onDrain = nil
        let closed = onClosed
        onClosed = nil
        closed?()
    }
}

/// Bytes on their way to a peer, here and in the kernel, and all ever written: how much a slow
/// reader took between two looks (`delivered(since:)`). A reader that takes them steadily but slowly frees kernel buffer space long before the
/// socket becomes writable again (Linux waits until half of a send buffer auto-tuned to megabytes
/// is free), so the process's own queue alone would call it stalled.
public struct WriteBacklog: Sendable, Equatable {
    public var buffered: Int
    public var kernel: Int
    /// Bytes the connection had accepted for writing, ever (a wrapping count).
    public var accepted: UInt64

    public init(buffered: Int, kernel: Int, accepted: UInt64 = 0) {
        self.buffered = buffered
        self.kernel = kernel
        self.accepted = accepted
    }

    /// Still on its way: in the process, and sent but not yet acknowledged by the peer.
    public var outstanding: UInt64 { UInt64(max(0, buffered)) &+ UInt64(max(0, kernel)) }

    /// Bytes the peer took since `earlier`: what was on its way then, plus what was written
    /// since, less what is on its way now.
    public func delivered(since earlier: WriteBacklog) -> UInt64 {
        let due = earlier.outstanding &+ (accepted &- earlier.accepted)
        return due > outstanding ? due - outstanding : 0
    }
}
