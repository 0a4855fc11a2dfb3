import EventLoop
import Foundation
import Gateway
import GatewayCore
import HTTPServer
import MockUpstream
import Synchronization
import Testing

/// The graceful stop: streams in flight finish, new connections are refused, and nothing queued
/// is reset or dropped (what nginx, in front of a draining replica, would answer with 502).
@Suite struct ShutdownTests {
    @Test func gracefulShutdownLetsStreamsFinishAndRefusesNewConnections() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=20:deltas=15")))
        var shutdownStarted = false
        let response = try client.readResponse { _ in
            if !shutdownStarted {
                shutdownStarted = true
                env.beginGatewayShutdown()
            }
        }
        #expect(response.streamedContent == (0..<15).map { "t\($0) " }.joined(), "the stream in flight completed")
        #expect(client.peerClosed(), "the connection closes after its last response")
        #expect(throws: (any Error).self) { try TestClient(port: env.gatewayPort) }
    }

    /// A proxy writes its request the moment it connects and never resends a POST it has
    /// written: a connection accepted just before shutdown is served, not reset.
    @Test func aConnectionAcceptedBeforeShutdownIsStillServed() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        #expect(env.eventually { (try? env.acceptedConnections()) == 1 })
        env.beginGatewayShutdown()
        usleep(50_000)
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false)))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(client.peerClosed(), "then the connection closes")
    }

    /// A connection whose handshake the kernel completed but the loop has not accepted yet
    /// would be reset when the listener closes (nginx, having written its POST, answers 502):
    /// shutdown accepts what is queued first and serves it.
    @Test func aConnectionStillInTheListenersQueueAtShutdownIsServed() throws {
        let server = try GuardedServer()
        let port = server.port
        let handed = try server.shutdown(graceMilliseconds: 2_000) {
            let client = try TestClient(port: port)  // the kernel completes the handshake; the loop is busy here
            try client.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
            return ReplicaDeploymentTests.HandedOver(client)
        }
        let client = handed.value
        let response = try client.readResponse()
        #expect(response.status == 200 && response.text == "ok:2")
        // Read once the server is stopping, not in the accept that took it (review 86 #1: an
        // answer given there said keep-alive, and the client's next request on it was lost).
        #expect(response.header("Connection")?.lowercased() == "close", "the answer says the connection closes")
        #expect(client.peerClosed(), "then the connection closes")
        #expect(throws: (any Error).self, "the listener is closed") { try TestClient(port: port) }
    }

    /// A response that finished in the loop turn in which shutdown begins is still queued on
    /// its keep-alive connection: it goes out before the connection closes (closing at once
    /// dropped it, and nginx answered that request with 502).
    @Test func aResponseFinishedAsShutdownBeginsStillGoesOut() throws {
        let thread = EventLoopThread(name: "shutdown-test")
        defer { thread.shutdown() }
        final class Box: @unchecked Sendable { var server: HTTPServer? }
        let box = Box()
        let port = try thread.loop.submitAndWait {
            let server = try HTTPServer(loop: thread.loop, host: "127.0.0.1", port: 0) { _, writer in
                writer.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array("answered".utf8))
                box.server?.shutdown(graceMilliseconds: 2_000)  // the same loop turn: the answer is not sent yet
            }
            box.server = server
            return server.port
        }
        let client = try TestClient(port: port)
        try client.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
        let response = try client.readResponse()
        #expect(response.status == 200 && response.text == "answered")
        #expect(client.peerClosed(), "then the connection closes")
    }

    /// A response larger than the socket buffers, to a client that reads it late: the shutdown
    /// waits until it has gone out before it reports done (the gateway then stops its loops,
    /// which cut whatever was still queued).
    @Test func shutdownWaitsForALastResponseAClientReadsSlowly() throws {
        let thread = EventLoopThread(name: "shutdown-test")
        defer { thread.shutdown() }
        final class Box: @unchecked Sendable { var server: HTTPServer? }
        let box = Box()
        let stopped = Atomic<Bool>(false)
        let size = 16 << 20
        let port = try thread.loop.submitAndWait {
            let server = try HTTPServer(loop: thread.loop, host: "127.0.0.1", port: 0) { _, writer in
                writer.respond(status: 200, headers: [("Content-Type", "application/octet-stream")],
                               body: [UInt8](repeating: 0x61, count: size))
                box.server?.shutdown(graceMilliseconds: 10_000) { stopped.store(true, ordering: .relaxed) }
            }
            box.server = server
            return server.port
        }
        let client = try TestClient(port: port, timeoutSeconds: 20)
        // A small receive buffer (loopback's autotuning may grow one to 32 MiB here, enough to take
        // the whole answer): most of it has to wait in the server's queue.
        var receiveBuffer: Int32 = 64 << 10
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<Int32>.size))
        try client.send("GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        usleep(300_000)
        let doneEarly = stopped.load(ordering: .relaxed)
        #expect(!doneEarly, "not done while the answer is still queued")
        let response = try client.readResponse()
        #expect(response.status == 200 && response.body.count == size)
        let deadline = Date().addingTimeInterval(5)
        while !stopped.load(ordering: .relaxed) && Date() < deadline { usleep(10_000) }
        let done = stopped.load(ordering: .relaxed)
        #expect(done, "done once it has gone out")
    }

    /// A server dropped without a shutdown closes its connections: a client's next bytes find a
    /// closed socket, not callbacks into a server that is gone (a test that let go of its server
    /// early crashed the suite when its client hung up).
    @Test func aServerDroppedWithoutShutdownClosesItsConnections() throws {
        let thread = EventLoopThread(name: "dropped-server-test")
        defer { thread.shutdown() }
        final class Box: @unchecked Sendable { var server: HTTPServer? }
        let box = Box()
        let port = try thread.loop.submitAndWait {
            let server = try HTTPServer(loop: thread.loop, host: "127.0.0.1", port: 0) { _, writer in
                writer.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
            }
            box.server = server
            return server.port
        }
        let client = try TestClient(port: port)
        try client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        try thread.loop.submitAndWait { box.server = nil }
        #expect(client.peerClosed(), "its keep-alive connection is closed")
        _ = try? client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        client.disconnect()
        #expect(throws: (any Error).self, "nobody listens any more") { try TestClient(port: port) }
        #expect(try thread.loop.submitAndWait { 1 } == 1, "the loop still runs")
    }

    /// A last response (`Connection: close`) to a client that stopped reading: the connection
    /// is closed once the write has stalled for `stalledWriteTimeoutMilliseconds`, not held open
    /// for ever, and it counts as open until then.
    @Test func aLastResponseNobodyReadsIsCutOffWhenItStalls() throws {
        let thread = EventLoopThread(name: "stalled-close-test")
        defer { thread.shutdown() }
        final class Box: @unchecked Sendable { var server: HTTPServer? }
        let box = Box()
        var limits = HTTPServerLimits()
        limits.stalledWriteTimeoutMilliseconds = 200 * TestEnvironment.sanitizerSlowdown  // still open after 100 ms, under a sanitizer too
        let port = try thread.loop.submitAndWait { [limits] in
            let server = try HTTPServer(loop: thread.loop, host: "127.0.0.1", port: 0, limits: limits) { _, writer in
                writer.respond(status: 200, headers: [("Content-Type", "application/octet-stream")],
                               body: [UInt8](repeating: 0x61, count: 16 << 20))
            }
            box.server = server
            return server.port
        }
        defer { _ = try? thread.loop.submitAndWait { box.server?.shutdown(graceMilliseconds: 0); box.server = nil } }  // dropped on its loop
        let client = try TestClient(port: port)
        var receiveBuffer: Int32 = 64 << 10
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<Int32>.size))
        try client.send("GET /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        usleep(100_000)
        #expect(try thread.loop.submitAndWait { box.server?.openConnections } == 1, "still sending: open")
        let deadline = Date().addingTimeInterval(5)
        var open = 1
        while open > 0 && Date() < deadline {
            usleep(20_000)
            open = try thread.loop.submitAndWait { box.server?.openConnections ?? -1 }
        }
        #expect(open == 0, "cut off once the write stalled")
    }

    /// A stream cut at the end of the grace behind a client that stopped reading: its error chunk
    /// never reaches the client and the connection is closed, but the record says why it ended
    /// (the shutdown), not that the client left (found by review 11).
    @Test func aStreamCutAtShutdownBehindAClientThatStoppedReadingIsRecordedAsTheShutdown() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { $0.server.shutdownGraceMilliseconds = 300 }
        let client = try env.client()
        var receiveBuffer: Int32 = 4096
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<Int32>.size))
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=0:deltas=100000")))
        // Never read: wait until the stream is held back, then stop the gateway.
        #expect(env.eventually(timeoutSeconds: 10) { env.gatewayStats.backpressurePauses.load(ordering: .relaxed) > 0 })
        usleep(500_000)  // the kernel's buffers full too
        env.beginGatewayShutdown()
        #expect(env.eventually(timeoutSeconds: 10) { log.entries.contains { $0.message == "request finished" } })
        let finished = try #require(log.entries.first { $0.message == "request finished" })
        #expect(finished.metadata["error_code"] == "shutting_down", "\(finished.text)")
        #expect(finished.metadata["cancelled"] == "false" && finished.metadata["finish_reason"] == "error", "\(finished.text)")
    }

    /// A whole request cut by the shutdown is the SDKs' to retry (on another replica, behind a
    /// load balancer): its 503 says so, and no `x-should-retry: false` tells them otherwise
    /// (review 77B #3).
    @Test(arguments: [false, true])
    func aRequestCutAtShutdownBeforeItsFirstTokenMayBeRetried(stream: Bool) throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { $0.server.shutdownGraceMilliseconds = 300 }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/slow-first-token:first_ms=20000", stream: stream)))
        #expect(env.eventually { env.mockStats.counts.active == 1 })
        usleep(200_000)  // a stream's head (the upstream took the prompt) is the gateway's
        env.beginGatewayShutdown()
        let response = try client.readResponse()
        if stream && response.status == 200 {
            // A keep-alive committed the stream's head: the error is in-band.
            #expect(response.streamError?["code"] == .string("shutting_down"), "\(response.text)")
        } else {
            #expect(response.status == 503 && response.json?["error"]?["code"] == .string("shutting_down"), "\(response.text)")
            #expect(response.header("x-should-retry") == nil, "\(response.headers)")
        }
        #expect(env.eventually { log.entries.contains { $0.message == "request finished" } })
        let finished = log.entries.first { $0.message == "request finished" }
        if stream {
            // Its upstream had taken the prompt: charged it (review 78 #2: a shutdown's cut was free).
            #expect((Int(finished?.metadata["prompt_tokens"] ?? "") ?? 0) > 0, "\(finished?.text ?? "")")
        }
    }

    @Test func shutdownDeadlineCancelsLongStreams() throws {
        let env = try TestEnvironment { $0.server.shutdownGraceMilliseconds = 200 }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=20:deltas=500")))
        var shutdownStarted = false
        _ = try? client.readResponse { _ in
            if !shutdownStarted {
                shutdownStarted = true
                env.beginGatewayShutdown()
            }
        }
        #expect(shutdownStarted)
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 1 })
    }
}
