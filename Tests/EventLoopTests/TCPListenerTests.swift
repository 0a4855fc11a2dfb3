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
