import EventLoop
import Foundation
import Fusion
import Gateway
import GatewayCore
import Logging
import MockUpstream
import Testing

/// The gateway on several loops (one thread each) against the mock on its own loop.
final class ClusterEnvironment {
    let mockThread = EventLoopThread(name: "mock-loop")
    let mockStats = MockUpstreamStats()
    let cluster: GatewayCluster
    /// Keeps the mock alive; touched on the mock's loop only.
    private final class MockBox: @unchecked Sendable { var mock: MockUpstream? }
    private let mockBox = MockBox()

    /// `panelSpillMargin` 0 (not the default 8) spreads every panel over the loops: most of these
    /// tests are about members on other loops than their session's.
    init(loops: Int, shutdownGraceMilliseconds: UInt64 = 10_000, panelSpillMargin: Int = 0) throws {
        let stats = mockStats
        let mockLoop = mockThread.loop
        let box = mockBox
        let mockPort = try mockLoop.submitAndWait { () -> Int in
            let mock = try MockUpstream(loop: mockLoop, port: 0, stats: stats)
            box.mock = mock
            return mock.port
        }
        var config = GatewayConfig.embeddedDefault
        config.server.port = 0
        config.server.shutdownGraceMilliseconds = shutdownGraceMilliseconds
        config.simulatedModels = false
        config.providers["mock"] = .init(name: "mock", baseURL: "http://127.0.0.1:\(mockPort)/v1")
        config.fusion = FusionSettings(
            outerModel: "mock/outer:pace_ms=1",
            presets: ["quality": .init(analysisModels: ["mock/expert-1:pace_ms=2", "mock/expert-2:pace_ms=2", "mock/expert-3:pace_ms=2",
                                                        "mock/expert-4:pace_ms=2"])],
            defaultPreset: "quality")
        config.fusion?.panelSpillMargin = panelSpillMargin
        var logger = Logger(label: "cluster-under-test")
        logger.logLevel = ProcessInfo.processInfo.environment["FUSION_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        cluster = try GatewayCluster(config: config, environment: [:], logger: logger, loops: loops)
    }

    deinit { stop() }

    private var clusterStopped = false
    private var mockStopped = false

    /// Stops the cluster (gracefully), then the mock. Idempotent.
    func stop() {
        if !clusterStopped {
            clusterStopped = true
            cluster.shutdown()
            cluster.waitUntilStopped()
        }
        stopMock()
    }

    /// For tests that stopped the cluster themselves.
    func stopMock() {
        clusterStopped = true
        guard !mockStopped else { return }
        mockStopped = true
        let box = mockBox
        mockThread.loop.execute { box.mock?.shutdown() }
        mockThread.shutdown()
    }

    func chat(_ body: String) throws -> TestResponse {
        let client = try TestClient(port: cluster.port)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
        return try client.readResponse()
    }
}

@Suite struct MultiLoopTests {
    @Test func connectionsSpreadOverTheLoops() throws {
        let env = try ClusterEnvironment(loops: 2)
        defer { env.stop() }
        for _ in 0..<24 {
            let client = try TestClient(port: env.cluster.port)
            try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
        let accepted = try env.cluster.loopCounters().map(\.accepted)
        #expect(accepted.reduce(0, +) == 24)
        #expect(accepted.allSatisfy { $0 > 0 }, "every loop accepted connections: \(accepted)")
    }

    /// SO_REUSEPORT joins the loops' listeners, never another process's: a second gateway on a
    /// port one already holds fails to start (EADDRINUSE), as any server would, instead of
    /// splitting the port's connections with it.
    @Test func aSecondGatewayCannotJoinAPortInUse() throws {
        let env = try ClusterEnvironment(loops: 2)
        defer { env.stop() }
        var config = GatewayConfig.embeddedDefault
        config.server.port = env.cluster.port
        config.fusion = nil
        for loops in [2, 1] {
            #expect(throws: LoopError.self, "\(loops) loops") {
                let intruder = try GatewayCluster(config: config, environment: [:], logger: Logger(label: "intruder"), loops: loops)
                intruder.shutdown()
                intruder.waitUntilStopped()
            }
        }
        let client = try TestClient(port: env.cluster.port)
        try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(try client.readResponse().status == 200, "the first gateway still serves")
    }

    @Test func aPanelRunsOnEveryLoopAndItsEventsComeBackInOrder() throws {
        let env = try ClusterEnvironment(loops: 2)
        defer { env.stop() }
        let response = try env.chat(#"{"model":"fusion","stream":true,"stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}"#)
        #expect(response.status == 200)
        let events = response.namedEvents
        #expect(events.filter { $0.name == "fusion.member.completed" }.count == 4)
        for index in 0..<4 {
            let text = events.filter { $0.name == "fusion.member.delta" && $0.data["index"] == .int(Int64(index)) }
                .compactMap { $0.data["delta"]?.stringValue }.joined()
            #expect(text.hasPrefix("Expert \(index + 1)'s view"), "member \(index)'s deltas arrived whole and in order")
            #expect(text.hasSuffix("."))
        }
        let answer = response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(answer.hasPrefix("Drawing on a panel of 4 models (4 answered)"))
        let transfers = try env.cluster.loopCounters().map(\.transfers)
        #expect(transfers.allSatisfy { $0 >= 2 }, "both loops made upstream calls: \(transfers)")
    }

    /// With the default margin, deliberations on idle loops make every call on their session's
    /// loop; with a margin of 2, one member of four goes to the other loop. Either way every call
    /// is counted out again when it ends (a count that only grew would send later panels away).
    @Test(arguments: [(8, 3), (2, 1)])
    func aPanelStaysOnItsSessionsLoopUnlessThatLoopIsBusier(margin: Int, deliberations: Int) throws {
        let env = try ClusterEnvironment(loops: 2, panelSpillMargin: margin)
        defer { env.stop() }
        let before = try env.cluster.loopCounters().map(\.transfers)
        for _ in 0..<deliberations {
            let response = try env.chat(#"{"model":"fusion","stream":true,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}"#)
            #expect(response.status == 200)
            #expect(response.comments.contains { $0.contains("4/4 panel models answered") }, "\(response.comments)")
        }
        let transfers = zip(try env.cluster.loopCounters().map(\.transfers), before).map { $0 - $1 }
        // Each deliberation: the outer turn, four members, the judge, the final turn.
        #expect(transfers.reduce(0, +) == 7 * deliberations)
        // Every call let go: the loops' counts are back to zero (a remote call's handle may be
        // released by its loop a moment after the response ends).
        let deadline = Date().addingTimeInterval(2)
        while try env.cluster.loopCounters().contains(where: { $0.openInnerCalls != 0 }) && Date() < deadline { usleep(2_000) }
        #expect(try env.cluster.loopCounters().map(\.openInnerCalls) == [0, 0])
        if margin == 8 {
            #expect(transfers.allSatisfy { $0 % 7 == 0 }, "every deliberation on one loop: \(transfers)")
        } else {
            #expect(transfers.sorted() == [1, 6], "one member on the other loop: \(transfers)")
        }
    }

    @Test func aDisconnectCancelsMembersOnOtherLoops() throws {
        let env = try ClusterEnvironment(loops: 2)
        defer { env.stop() }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/paced:pace_ms=40:deltas=100","mock/paced:pace_ms=50:deltas=100","mock/paced:pace_ms=60:deltas=100","mock/paced:pace_ms=70:deltas=100"]}}]"#
        let client = try TestClient(port: env.cluster.port)
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: #"{"model":"mock/outer:pace_ms=1","stream":true,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}],"tools":\#(tools)}"#))
        var seen = Set<String>()
        _ = try? client.readResponse { chunk in
            let text = String(decoding: chunk, as: UTF8.self)
            for index in 0..<4 where text.contains("fusion panel[\(index)]") && text.contains("t1") { seen.insert("\(index)") }
            if seen.count == 4 { client.disconnect() }
        }
        #expect(seen.count == 4)
        let stats = env.mockStats
        let deadline = Date().addingTimeInterval(3)
        while stats.counts.streamsCancelled < 4 && Date() < deadline { usleep(5_000) }
        #expect(stats.counts.streamsCancelled == 4, "\(stats.counts)")
        #expect(try env.cluster.activeStreamsPerLoop().reduce(0, +) == 0)
    }
}

@Suite struct CrossLoopRaceTests {
    /// Sessions end (client hang-ups at random points) while panel members on the other loop are
    /// still pushing into the session's fan-in channel: the channel must stay valid for them.
    @Test(.timeLimit(.minutes(3))) func hangUpsRacingCrossLoopProducers() throws {
        let env = try ClusterEnvironment(loops: 2)
        defer { env.stop() }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/paced:pace_ms=0:deltas=400","mock/paced:pace_ms=0:deltas=401","mock/paced:pace_ms=1:deltas=400"]}}]"#
        let body = #"{"model":"mock/outer:pace_ms=0","stream":true,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}],"tools":\#(tools)}"#
        for round in 0..<60 {
            let client = try TestClient(port: env.cluster.port)
            try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
            var chunks = 0
            _ = try? client.readResponse { _ in
                chunks += 1
                if chunks == 1 + round % 7 { client.disconnect() }
            }
        }
        // Still alive and serving.
        let health = try TestClient(port: env.cluster.port)
        try health.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(try health.readResponse().status == 200)
    }
}

@Suite struct ClusterShutdownTests {
    /// A graceful shutdown while deliberations run on every loop: loops must not release their
    /// upstream clients while another loop may still place panel members on them. The streams in
    /// flight end (finished or cut at the grace deadline), and the process-level stop completes.
    @Test(.timeLimit(.minutes(2)), arguments: [0, 1, 2, 3])
    func shutdownMidDeliberationOnEveryLoop(round: Int) throws {
        let env = try ClusterEnvironment(loops: 2, shutdownGraceMilliseconds: 300)
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/paced:pace_ms=5:deltas=200","mock/paced:pace_ms=7:deltas=200","mock/expert-1:pace_ms=3"]}}]"#
        let body = #"{"model":"mock/outer:pace_ms=1","stream":true,"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":\#(tools)}"#
        // Several sessions, so both loops own some and place members on the other.
        var clients: [TestClient] = []
        for _ in 0..<6 {
            let client = try TestClient(port: env.cluster.port)
            try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
            clients.append(client)
        }
        // Wait until deliberations are under way, staggered per round, then stop.
        usleep(UInt32(50_000 + round * 40_000))
        env.cluster.shutdown()
        for client in clients {
            let response = try? client.readResponse()
            if let response { #expect(response.status == 200) }
        }
        env.cluster.waitUntilStopped()
        env.stopMock()
    }

    /// Streams still running when the grace period ends are ended, not broken off: an error
    /// chunk their SDKs raise on (`shutting_down`), `[DONE]`, the chunked body's end; their
    /// records say why (an error, not a client that left).
    @Test(.timeLimit(.minutes(1)))
    func streamsOutlastingTheGracePeriodEndWithAnError() throws {
        let env = try ClusterEnvironment(loops: 2, shutdownGraceMilliseconds: 300)
        let proxied = #"{"model":"mock/paced:pace_ms=20:deltas=1000","stream":true,"messages":[{"role":"user","content":"Count"}]}"#
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/paced:pace_ms=20:deltas=1000","mock/expert-1:pace_ms=3"]}}]"#
        let fusion = #"{"model":"mock/outer:pace_ms=1","stream":true,"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":\#(tools)}"#
        var clients: [TestClient] = []
        for body in [proxied, fusion, proxied, fusion] {
            let client = try TestClient(port: env.cluster.port)
            try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
            clients.append(client)
        }
        usleep(150_000)
        env.cluster.shutdown()
        for client in clients {
            let response = try client.readResponse()  // throws on a body broken off
            #expect(response.status == 200)
            #expect(response.streamError?["code"] == .string("shutting_down"), "\(response.text.suffix(400))")
            #expect(response.text.hasSuffix("data: [DONE]\n\n"))
        }
        env.cluster.waitUntilStopped()
        env.stopMock()
    }

    /// One session, its outer model still deciding when the shutdown starts: the other loop has
    /// nothing in flight and finishes at once, yet the session then places panel members on it.
    /// The deliberation completes within the grace period.
    @Test(.timeLimit(.minutes(1)))
    func anIdleLoopKeepsItsUpstreamClientForSessionsOnOtherLoops() throws {
        let env = try ClusterEnvironment(loops: 2, shutdownGraceMilliseconds: 30_000)
        let tools = #"[{"type":"fusion","parameters":{"model":"mock/judge:pace_ms=1","analysis_models":["mock/expert-1:pace_ms=1","mock/expert-2:pace_ms=1","mock/expert-3:pace_ms=1","mock/expert-4:pace_ms=1"]}}]"#
        let body = #"{"model":"mock/outer:pace_ms=25","stream":true,"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":\#(tools)}"#
        let client = try TestClient(port: env.cluster.port)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
        usleep(60_000)  // the outer model's first call is streaming its tool call
        env.cluster.shutdown()
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
        #expect(response.comments.contains { $0.contains("4/4 panel models answered") }, "\(response.comments)")
        env.cluster.waitUntilStopped()
        env.stopMock()
    }
}
