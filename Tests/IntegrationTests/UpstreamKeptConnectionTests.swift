import EventLoop
import Foundation
import Testing
import UpstreamClient

/// A kept-alive upstream connection between and across transfers: a transfer that takes it up
/// has its request in the upstream's socket when `sendNow` returns, not after the loop's next
/// pass; one its server closes while no transfer uses it costs the loop nothing and the next
/// transfer goes out on a new connection.
@Suite(.timeLimit(.minutes(1))) struct UpstreamKeptConnectionTests {
    final class Box: @unchecked Sendable {  // the client loop only
        var client: UpstreamClient?
        var transfers: [UpstreamTransfer] = []
    }

    /// A listening socket on 127.0.0.1, served by the test itself (blocking calls).
    struct Listener {
        let fd: Int32
        let url: String

        init() throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = fd
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            try #require(bound)
            url = "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))/ping"
        }

        /// The next connection, waited for up to `timeoutSeconds`.
        func accept(timeoutSeconds: Int32 = 5) throws -> Int32 {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            try #require(poll(&ready, 1, timeoutSeconds * 1_000) == 1)
            return Glibc.accept(fd, nil, nil)
        }
    }

    static let okResponse = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)

    /// Starts a GET on the loop; `done` is signalled when it completes, with its failure if any.
    static func get(_ url: String, box: Box, loop: EventLoop, done: DispatchSemaphore, failure: LockedText? = nil) throws {
        try loop.submitAndWait {
            if box.client == nil { box.client = UpstreamClient(loop: loop) }
            let transfer = box.client!.start(UpstreamRequest(url: url, method: "GET"))
            transfer.onComplete = { outcome in
                if let outcome { failure?.set(outcome.message) }
                done.signal()
            }
            box.transfers.append(transfer)
        }
    }

    /// Answers the GET waiting on `connection` (the test is its server), and waits for the
    /// transfer to complete.
    static func answer(_ connection: Int32, done: DispatchSemaphore) {
        #expect(readHead(connection).hasPrefix("GET /ping"))
        #expect(write(connection, okResponse, okResponse.count) == okResponse.count)
        #expect(done.wait(timeout: .now() + 5) == .success)
    }

    final class LockedText: @unchecked Sendable {
        private let lock = NSLock()
        private var text: String?
        func set(_ value: String) { lock.withLock { text = value } }
        var value: String? { lock.withLock { text } }
    }

    @Test func aRequestOnAKeptConnectionLeavesBeforeSendNowReturns() throws {
        let listener = try Listener()
        defer { close(listener.fd) }
        let thread = EventLoopThread(name: "send-now")
        defer { thread.shutdown() }
        let loop = thread.loop
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        // The first transfer opens the connection (a connect takes the loop's polls).
        try Self.get(listener.url, box: box, loop: loop, done: done)
        let connection = try listener.accept()
        defer { close(connection) }
        Self.answer(connection, done: done)
        // The second reuses it: its request is in the upstream's socket before the loop runs on.
        let arrivedAtOnce = try loop.submitAndWait {
            let transfer = box.client!.start(UpstreamRequest(url: listener.url, method: "GET"))
            transfer.onComplete = { _ in }
            box.transfers.append(transfer)
            transfer.sendNow()
            var waiting = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            return poll(&waiting, 1, 0) == 1
        }
        #expect(arrivedAtOnce)
        #expect(Self.readHead(connection).hasPrefix("GET /ping"))
        try loop.submitAndWait { box.client?.close() }
    }

    /// A transfer says once when its whole request has gone out, before any answer (a Fusion
    /// session charges a call it cuts from then on): on a new connection and on a kept one, where
    /// curl sends at once; a body the server has not read has not gone out.
    @Test func aTransferSaysWhenItsWholeRequestWentOut() throws {
        let listener = try Listener()
        defer { close(listener.fd) }
        let thread = EventLoopThread(name: "request-sent")
        defer { thread.shutdown() }
        let loop = thread.loop
        let box = Box()
        let sent = LockedCount()
        let post = { (body: [UInt8]) in
            try loop.submitAndWait {
                if box.client == nil { box.client = UpstreamClient(loop: loop) }
                let transfer = box.client!.start(UpstreamRequest(url: listener.url, body: body))
                transfer.onComplete = { _ in }
                transfer.onRequestSent = { sent.add() }
                box.transfers.append(transfer)
            }
        }
        try post(Array("{}".utf8))
        let connection = try listener.accept()
        defer { close(connection) }
        #expect(Self.readHead(connection).hasPrefix("POST /ping"))
        #expect(sent.eventually(1), "a new connection's request")
        var body = [UInt8](repeating: 0, count: 2)
        #expect(read(connection, &body, 2) == 2)
        #expect(write(connection, Self.okResponse, Self.okResponse.count) == Self.okResponse.count)
        #expect(Self.eventually { (try? loop.submitAndWait { box.transfers[0].isFinished }) == true })
        try post(Array("{}".utf8))
        #expect(Self.readHead(connection).hasPrefix("POST /ping"))
        #expect(sent.eventually(2), "a kept connection's request")
        #expect(read(connection, &body, 2) == 2)
        // A body larger than the kernel's buffers (the sender's grow to 4 MB; the server's here
        // are a few KB), the server reading none of it: it has not gone out, and says nothing.
        var small: Int32 = 4096
        setsockopt(listener.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let third = Array(repeating: UInt8(ascii: "x"), count: 8 << 20)
        try post(third)
        let other = try listener.accept()  // the kept one is busy: a new connection
        defer { close(other) }
        usleep(200_000)
        #expect(sent.value == 2, "a body still waiting to go out")
        #expect(Self.readHead(other).hasPrefix("POST /ping"))
        var drained = 0
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while drained < third.count {
            let count = read(other, &chunk, min(chunk.count, third.count - drained))
            guard count > 0 else { break }
            drained += count
        }
        #expect(drained == third.count)
        #expect(sent.eventually(3), "once the server has read it all")
        try loop.submitAndWait { box.client?.close() }
    }

    final class LockedCount: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
        /// Whether the count reaches `target` within 5 s.
        func eventually(_ target: Int) -> Bool { UpstreamKeptConnectionTests.eventually { self.value >= target } && value == target }
    }

    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// The server closing an idle connection makes it readable, which must not spin the loop
    /// (epoll is level-triggered, and no transfer would read it), and the next transfer finds it
    /// closed and connects again.
    @Test func anIdleConnectionItsServerClosedCostsNothingAndIsReplaced() throws {
        let listener = try Listener()
        defer { close(listener.fd) }
        let thread = EventLoopThread(name: "idle-close")
        defer { thread.shutdown() }
        let loop = thread.loop
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        try Self.get(listener.url, box: box, loop: loop, done: done)
        let first = try listener.accept()
        Self.answer(first, done: done)
        close(first)  // the server closes the kept connection while no transfer uses it
        let before = try loop.submitAndWait { Self.threadCPUMicroseconds() }
        usleep(300_000)
        let spent = try loop.submitAndWait { Self.threadCPUMicroseconds() } - before
        #expect(spent < 100_000, "the loop spent \(spent) µs of CPU in 300 ms with nothing to do")
        let failure = LockedText()
        try Self.get(listener.url, box: box, loop: loop, done: done, failure: failure)
        let second = try listener.accept()
        defer { close(second) }
        Self.answer(second, done: done)
        #expect(failure.value == nil)
        try loop.submitAndWait { box.client?.close() }
    }

    /// CPU time (user and system) of the calling thread.
    static func threadCPUMicroseconds() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return time.tv_sec * 1_000_000 + time.tv_nsec / 1_000
    }

    /// Reads a request head (up to its blank line) from a blocking socket.
    /// How a test's upstream answers a request it took.
    enum Answer {
        /// Not at all, once the whole request is in.
        case nothing
        /// A `500` head, its body never coming, once the request is in.
        case refusal
        /// A `500` head with `Connection: close` after the request's head, before reading its body
        /// (as nginx refuses a body too large), then the body read: curl goes on sending it.
        case earlyRefusal
    }

    /// The gateway's request on `upstream`'s next connection, read and answered as `answer` says;
    /// then, 300 ms on, the client leaves. Returns the connection, for the caller to close (the
    /// upstream still holds it as the gateway cuts it).
    static func takeRequestThenLeave(_ upstream: Listener, client: TestClient, answer: Answer) throws -> Int32 {
        // A request of megabytes is read, parsed and re-encoded first: seconds under a sanitizer
        // (ThreadSanitizer took more than 5 s for 8 MB in CI).
        let connection = try upstream.accept(timeoutSeconds: 20 * Int32(TestEnvironment.sanitizerSlowdown))
        let head = readHead(connection)
        #expect(head.hasPrefix("POST /v1/chat/completions"))
        let refusal = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
        func readBody() {
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            var taken = 0
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while taken < length {
                let count = read(connection, &chunk, min(chunk.count, length - taken))
                guard count > 0 else { break }
                taken += count
            }
            #expect(taken == length && length > 0, "the whole body went out")
        }
        switch answer {
        case .nothing:
            readBody()
        case .refusal:
            let bytes = Array((refusal + "\r\n{\"error\":").utf8)
            #expect(write(connection, bytes, bytes.count) == bytes.count)
        case .earlyRefusal:
            let bytes = Array((refusal + "Connection: close\r\n\r\n{\"error\":").utf8)
            #expect(write(connection, bytes, bytes.count) == bytes.count)
            readBody()  // curl goes on sending it after the refusal
        }
        usleep(300_000)
        client.disconnect()
        return connection
    }

    static func readHead(_ fd: Int32) -> String {
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !head.suffix(4).elementsEqual("\r\n\r\n".utf8), read(fd, &byte, 1) == 1 { head.append(byte) }
        return String(decoding: head, as: UTF8.self)
    }
}
