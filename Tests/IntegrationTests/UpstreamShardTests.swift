import EventLoop
import Foundation
import MockUpstream
import Synchronization
import Testing
import UpstreamClient

/// `UpstreamClient`'s shards (one curl multi handle each) against the mock over loopback: a
/// client with more transfers than one shard takes opens more, every transfer still completes
/// whole, light load stays on the first shard and reuses its connection, and idle shards close.
@Suite(.timeLimit(.minutes(1))) final class UpstreamShardTests: UpstreamTestBed {
    init() throws { try super.init(name: "shard") }

    /// Starts `count` streamed chat completions at once on the client; returns each body and the
    /// shards open right after starting them.
    private func run(_ count: Int, model: String, perShard: Int, idleMilliseconds: UInt64,
                     host: String = "127.0.0.1") throws -> (bodies: [String], shards: Int) {
        let box = box
        let loop = clientThread.loop
        let url = "http://\(host):\(mockPort)/v1/chat/completions"
        let bodies = Mutex<[Int: String]>([:])
        let done = DispatchSemaphore(value: 0)
        let shards = try loop.submitAndWait { () -> Int in
            if box.client == nil { box.client = UpstreamClient(loop: loop, transfersPerShard: perShard, idleShardMilliseconds: idleMilliseconds) }
            let client = box.client!
            for index in 0..<count {
                var received: [UInt8] = []
                let body = Array(#"{"model":"\#(model)","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8)
                let transfer = client.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: body))
                transfer.onData = { bytes in
                    received.append(contentsOf: bytes)
                    return true
                }
                transfer.onComplete = { failure in
                    let text = failure.map { "failed: \($0.message)" } ?? String(decoding: received, as: UTF8.self)
                    bodies.withLock { $0[index] = text }
                    done.signal()
                }
            }
            return client.shardCount
        }
        for _ in 0..<count { #expect(done.wait(timeout: .now() + 20) == .success) }
        return (bodies.withLock { dict in (0..<count).map { dict[$0] ?? "missing" } }, shards)
    }

    private func shardCount() throws -> Int {
        let box = box
        return try clientThread.loop.submitAndWait { box.client?.shardCount ?? 0 }
    }

    private func watcherCount() throws -> Int {
        let box = box
        return try clientThread.loop.submitAndWait { box.client?.socketWatcherCount ?? 0 }
    }

    @Test func moreTransfersThanAShardTakesOpenMoreShardsAndEveryOneCompletesWhole() throws {
        let (bodies, shards) = try run(7, model: "paced:pace_ms=20:deltas=5", perShard: 2, idleMilliseconds: 60_000)
        #expect(shards == 4, "7 transfers at 2 per shard")
        for body in bodies {
            #expect(body.hasSuffix("data: [DONE]\n\n"), "\(body.prefix(200))")
            #expect(body.components(separatedBy: "\"content\":").count - 1 >= 5, "every delta arrived")
        }
        #expect(stats.counts.streamsFinished == 7)
    }

    /// The machine's own name, when it resolves to 127.0.0.1 (from /etc/hosts, as on Debian):
    /// a name curl resolves in its resolver thread (`localhost` it resolves itself).
    static let loopbackName: String? = {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count) == 0 else { return nil }
        let host = String(cString: name)
        var hints = addrinfo()
        hints.ai_family = AF_INET
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        let address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
        return address == inet_addr("127.0.0.1") && host != "localhost" ? host : nil
    }()

    /// A name resolved in curl's resolver thread leaves no watcher behind (its socketpair, which
    /// curl closes itself): only the kept-alive connections are watched (review 43 engine F3: one
    /// stopped watcher stayed per resolve, and closing it with its shard took a descriptor that
    /// had its number since out of epoll).
    @Test(.enabled(if: loopbackName != nil, "the machine's name does not resolve to 127.0.0.1"))
    func aResolvedNameLeavesOnlyItsConnectionsWatched() throws {
        let host = try #require(Self.loopbackName)
        let (bodies, _) = try run(2, model: "paced:pace_ms=1:deltas=2", perShard: 4, idleMilliseconds: 60_000, host: host)
        for body in bodies { #expect(body.hasSuffix("data: [DONE]\n\n"), "\(body.prefix(200))") }
        #expect(try watcherCount() == stats.counts.connections, "one watcher per kept-alive connection, none for the resolver")
    }

    @Test func lightLoadStaysOnTheFirstShardAndReusesItsConnection() throws {
        for _ in 0..<4 {
            let (bodies, shards) = try run(1, model: "paced:pace_ms=1:deltas=2", perShard: 2, idleMilliseconds: 60_000)
            #expect(shards == 1)
            #expect(bodies[0].hasSuffix("data: [DONE]\n\n"))
        }
        #expect(stats.counts.requests == 4)
        #expect(stats.counts.connections == 1, "one kept-alive connection served all four")
        #expect(try watcherCount() == 1, "and one socket watcher, kept between them")
    }

    /// A socket's watcher lives as long as curl keeps the socket: a transfer cancelled mid-stream
    /// closes its connection, and the watcher goes first; the next transfer gets a new socket
    /// (often the same descriptor number) and a new watcher, and completes whole.
    @Test func aClosedConnectionTakesItsWatcherAndTheNextTransferWatchesItsOwnSocket() throws {
        let (first, _) = try run(1, model: "paced:pace_ms=1:deltas=2", perShard: 4, idleMilliseconds: 60_000)
        #expect(first[0].hasSuffix("data: [DONE]\n\n"))
        #expect(try watcherCount() == 1)
        let box = box
        let url = "http://127.0.0.1:\(mockPort)/v1/chat/completions"
        let firstData = DispatchSemaphore(value: 0)
        try clientThread.loop.submitAndWait {
            let body = Array(#"{"model":"paced:pace_ms=50:deltas=40","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8)
            let transfer = box.client!.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: body))
            box.transfer = transfer
            var signalled = false
            transfer.onData = { _ in
                if !signalled { signalled = true; firstData.signal() }
                return true
            }
        }
        #expect(firstData.wait(timeout: .now() + 10) == .success)
        // Cancelled mid-stream: curl cannot reuse the connection and closes it.
        try clientThread.loop.submitAndWait {
            box.transfer?.cancel()
            box.transfer = nil
        }
        #expect(try watcherCount() == 0, "the closed connection's watcher is closed with it")
        let deadline = Date().addingTimeInterval(5)
        while connectionsToMock() > 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(connectionsToMock() == 0)
        for _ in 0..<3 {
            let (again, _) = try run(1, model: "paced:pace_ms=1:deltas=3", perShard: 4, idleMilliseconds: 60_000)
            #expect(again[0].hasSuffix("data: [DONE]\n\n"), "\(again[0].prefix(200))")
        }
        #expect(try watcherCount() == 1)
        #expect(stats.counts.connections == 2, "one connection before the cancel, one after, kept alive")
    }

    /// This process's established TCP connections to the mock (the client's ends), from
    /// /proc/net/tcp: other suites' mocks listen on other ports.
    private func connectionsToMock() -> Int {
        // Read to the end: /proc files report size 0.
        guard let file = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return -1 }
        defer { try? file.close() }
        let table = String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
        let port = String(format: "%04X", mockPort)
        return table.split(separator: "\n").dropFirst().filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[2].hasSuffix(":" + port) && fields[3] == "01"
        }.count
    }

    @Test func shardsPastTheFirstCloseOnceIdleAndTheirConnectionsWithThem() throws {
        let (bodies, shards) = try run(6, model: "paced:pace_ms=10:deltas=3", perShard: 2, idleMilliseconds: 300)
        #expect(shards == 3)
        #expect(bodies.allSatisfy { $0.hasSuffix("data: [DONE]\n\n") })
        #expect(connectionsToMock() == 6, "every transfer's connection kept alive in its shard")
        let deadline = Date().addingTimeInterval(5)
        while try shardCount() > 1, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(try shardCount() == 1)
        #expect(connectionsToMock() == 2, "the retired shards' connections are closed; the first shard keeps its two")
        #expect(try watcherCount() == 2, "their watchers closed with them")
        // The first shard still serves, on a kept-alive connection of its own.
        let connectionsBefore = stats.counts.connections
        let (again, _) = try run(1, model: "paced:pace_ms=1:deltas=2", perShard: 2, idleMilliseconds: 100)
        #expect(again[0].hasSuffix("data: [DONE]\n\n"))
        #expect(stats.counts.connections == connectionsBefore, "reused the first shard's connection")
    }
}
