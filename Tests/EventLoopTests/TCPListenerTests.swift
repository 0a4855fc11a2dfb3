@testable import EventLoop
import Foundation
import Testing

/// A listener's graceful stop: what the kernel has queued is handed over, and nothing new gets in.
@Suite struct TCPListenerTests {
    /// Loop-confined state, read once the loop has been told to stop.
    final class Accepted: @unchecked Sendable {
        var connections: [TCPConnection] = []
        var listener: TCPListener?
    }

    /// `stopAccepting` hands over a connection the loop had not accepted yet, and from then on
    /// no handshake completes (the kernel drops the SYN, so the client is refused once the port
    /// closes instead of being reset after writing its request).
    @Test func stopAcceptingHandsOverTheQueueAndLetsNoOneElseIn() throws {
        let thread = EventLoopThread(name: "listener-test")
        defer { thread.shutdown() }
        let accepted = Accepted()
        let port = try thread.loop.submitAndWait {
            let listener = try TCPListener(loop: thread.loop, host: "127.0.0.1", port: 0) { accepted.connections.append($0) }
            accepted.listener = listener
            return listener.port
        }
        // In one loop turn: a client connects (the kernel completes the handshake and queues it;
        // the loop is busy here), then the listener stops accepting.
        let queuedFD = try thread.loop.submitAndWait {
            let fd = try Self.connect(port: port, timeoutMilliseconds: 1_000)
            accepted.listener?.stopAccepting()
            return fd
        }
        defer { close(queuedFD) }
        #expect(try thread.loop.submitAndWait { accepted.connections.count } == 1, "the queued connection was handed over")
        // A new client's SYN is dropped: its connect does not complete.
        #expect(throws: ConnectFailure.timedOut) { _ = try Self.connect(port: port, timeoutMilliseconds: 300) }
        // The connection handed over still works: bytes written to it arrive.
        let received = LockedBytes()
        try thread.loop.submitAndWait {
            accepted.connections.first?.onRead = { bytes in received.append(bytes) }
            accepted.connections.first?.startReading()
        }
        #expect(send(queuedFD, "ping", 4, 0) == 4)
        let deadline = Date().addingTimeInterval(2)
        while received.count < 4 && Date() < deadline { usleep(5_000) }
        #expect(received.count == 4)
        try thread.loop.submitAndWait {
            for connection in accepted.connections { connection.close() }
            accepted.listener?.close()
        }
    }

    /// A connection's first bytes, there when it is accepted, are read at once (`readAvailable`),
    /// before the loop polls again; while another read's bytes are in the loop's one read buffer
    /// (a connection accepted from inside a read), nothing is read, and the loop's poll reads it.
    @Test func aNewConnectionsFirstBytesAreReadWithoutWaitingForThePoll() throws {
        let thread = EventLoopThread(name: "read-available-test")
        defer { thread.shutdown() }
        final class Seen: @unchecked Sendable {
            var atOnce: [Int] = []  // bytes each connection had read when `readAvailable` returned
            var read: [Int] = []
            var connections: [TCPConnection] = []
            var listener: TCPListener?
        }
        let seen = Seen()
        let port = try thread.loop.submitAndWait {
            let listener = try TCPListener(loop: thread.loop, host: "127.0.0.1", port: 0) { connection in
                let index = seen.connections.count
                seen.connections.append(connection)
                seen.read.append(0)
                connection.onRead = { bytes in seen.read[index] += bytes.count }
                connection.startReading()
                // The second connection is accepted as if from inside another read.
                thread.loop.readBufferInUse = index == 1
                connection.readAvailable()
                thread.loop.readBufferInUse = false
                seen.atOnce.append(seen.read[index])
            }
            seen.listener = listener
            return listener.port
        }
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<2 {
            // Written before the loop accepts: the bytes are in the kernel when the connection is.
            clients.append(try thread.loop.submitAndWait {
                let fd = try Self.connect(port: port, timeoutMilliseconds: 1_000)
                #expect(send(fd, "ping", 4, 0) == 4)
                return fd
            })
            let deadline = Date().addingTimeInterval(2)
            while try thread.loop.submitAndWait({ seen.read.last ?? 0 }) < 4 && Date() < deadline { usleep(5_000) }
        }
        #expect(try thread.loop.submitAndWait { seen.atOnce } == [4, 0], "read at once, except from inside a read")
        #expect(try thread.loop.submitAndWait { seen.read } == [4, 4], "the loop read the second")
        try thread.loop.submitAndWait {
            for connection in seen.connections { connection.close() }
            seen.listener?.close()
        }
    }

    /// What `readAvailable` reads besides bytes is handled as the loop's read would: a client's
    /// end of the stream and a reset (which this read takes from the socket) disconnect the
    /// connection at once, the reset as an error.
    @Test func aNewConnectionsEndOrResetFoundAtOnceDisconnectsIt() throws {
        let thread = EventLoopThread(name: "read-available-end")
        defer { thread.shutdown() }
        final class Seen: @unchecked Sendable {
            var ends: [String] = []  // per connection, when `readAvailable` returned
            var connections: [TCPConnection] = []
            var listener: TCPListener?
        }
        let seen = Seen()
        let port = try thread.loop.submitAndWait {
            let listener = try TCPListener(loop: thread.loop, host: "127.0.0.1", port: 0) { connection in
                seen.connections.append(connection)
                var end = "open"
                connection.onRead = { _ in end = "read" }
                connection.onDisconnect = { error in end = error == nil ? "end" : "error" }
                connection.startReading()
                connection.readAvailable()
                seen.ends.append(end)
            }
            seen.listener = listener
            return listener.port
        }
        // Each client is done before the loop accepts: one shuts its side, one resets.
        var open: [Int32] = []
        defer { for fd in open { close(fd) } }
        for reset in [false, true] {
            let fd = try thread.loop.submitAndWait {
                let fd = try Self.connect(port: port, timeoutMilliseconds: 1_000)
                if reset {
                    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                    close(fd)
                    return Int32(-1)
                }
                shutdown(fd, Int32(SHUT_WR))
                usleep(20_000)
                return fd
            }
            if fd >= 0 { open.append(fd) }
            let deadline = Date().addingTimeInterval(2)
            while try thread.loop.submitAndWait({ seen.ends.count }) < (reset ? 2 : 1) && Date() < deadline { usleep(5_000) }
        }
        #expect(try thread.loop.submitAndWait { seen.ends } == ["end", "error"])
        try thread.loop.submitAndWait {
            for connection in seen.connections { connection.close() }
            seen.listener?.close()
        }
    }

    enum ConnectFailure: Error, Equatable { case timedOut, failed(Int32) }

    final class LockedBytes: @unchecked Sendable {
        private let lock = NSLock()
        private var bytes: [UInt8] = []
        func append(_ more: UnsafeRawBufferPointer) { lock.withLock { bytes.append(contentsOf: more) } }
        var count: Int { lock.withLock { bytes.count } }
    }

    /// A non-blocking connect to 127.0.0.1:`port`, waited for up to `timeoutMilliseconds`.
    static func connect(port: Int, timeoutMilliseconds: Int32) throws(ConnectFailure) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result == 0 { return fd }
        guard errno == EINPROGRESS else {
            let code = errno
            close(fd)
            throw .failed(code)
        }
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&descriptor, 1, timeoutMilliseconds) == 1 else {
            close(fd)
            throw .timedOut
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else {
            close(fd)
            throw .failed(error)
        }
        return fd
    }
}
