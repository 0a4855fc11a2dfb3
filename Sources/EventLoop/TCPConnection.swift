internal import CLibUV
import Foundation

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
