import Foundation
import Fusion
import Gateway
import GatewayCore
import Testing

/// A streamed deliberation that ends while its client is not reading (the deadline cut the
/// panel of a parallel turn): the session is released once its record is filed, but its stream
/// still holds the answer and the end, behind what the client has not taken. Review 43 engine
/// F1 and F2: the stream called back into the released session (a trap that stopped the whole
/// process), and with the session's watchdog gone, a client that never read again held its
/// connection forever.
@Suite(.serialized) struct FusionStreamTailTests {
    /// A parallel turn (the caller's tool and fusion) whose verbose panel is cut by the deadline
    /// while the client reads nothing: the turn completes without the client.
    static func body(deadline: Int) -> String {
        let tools = #"[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}},"#
            + #"{"type":"fusion","parameters":{"analysis_models":["mock/paced:pace_ms=0:deltas=100000","mock/paced:pace_ms=0:deltas=100001"],"deadline_ms":\#(deadline),"max_completion_tokens":100000}}]"#
        return #"{"model":"\#(ParallelTurnTests.model)","stream":true,"stream_options":{"include_fusion_events":true},"messages":[\#(ParallelTurnTests.question)],"tools":\#(tools)}"#
    }

    /// When the deadline cuts the panel: long enough for the members to write more than the
    /// kernel's buffers hold (a few MB), five times as long under a sanitizer. 3 s was not, for a
    /// debug build beside a CPU hog or a build: the whole stream was handed to the kernel, so
    /// nothing was held behind the client.
    static let deadline = 6_000 * TestEnvironment.sanitizerSlowdown

    /// The session is gone (its record filed) while the client was blocked on its stream. After
    /// the deadline, the judge and the caller's turn read megabytes of cut answers: 15 s was not
    /// enough under ThreadSanitizer with every other suite starting beside it (CI, stop 69), so
    /// the wait after the deadline scales with the sanitizer too. Returns what was last seen.
    static func waitForTheTurnToEndUnread(_ env: TestEnvironment) -> (ended: Bool, seen: String) {
        var seen = "nothing read from /metrics"
        let ended = env.eventually(timeoutSeconds: Double(deadline + 15_000 * TestEnvironment.sanitizerSlowdown) / 1_000) {
            guard let metrics = try? env.get("/metrics") else { return false }
            let pauses = metrics.metric("fusion_gateway_backpressure_pauses_total") ?? 0
            let active = (try? env.activeStreams()).map(String.init) ?? "unknown"
            seen = "\(pauses) backpressure pauses, \(active) active streams"
            return pauses > 0 && active == "0"
        }
        return (ended, seen)
    }

    static func gateway(slowClientTimeoutMilliseconds: UInt64) throws -> TestEnvironment {
        try TestEnvironment {
            $0.server.slowClientTimeoutMilliseconds = slowClientTimeoutMilliseconds
            $0.fusion?.memberTimeoutMilliseconds = deadline + 20_000  // the deadline cuts the panel, not this
        }
    }

    /// A client (a small receive buffer: it falls behind after kilobytes) whose turn has ended
    /// while it read nothing.
    static func turnEndedUnread(_ env: TestEnvironment) throws -> TestClient {
        let client = try env.client(timeoutSeconds: 20 * Int(TestEnvironment.sanitizerSlowdown), receiveBufferBytes: 4096)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body(deadline: Int(deadline))))
        let wait = waitForTheTurnToEndUnread(env)
        #expect(wait.ended, "the turn ended while the client read nothing (last seen: \(wait.seen))")
        return client
    }

    @Test(.timeLimit(.minutes(3))) func aClientReadingAgainAfterTheTurnEndedGetsTheWholeStream() throws {
        let env = try Self.gateway(slowClientTimeoutMilliseconds: 30_000)
        let client = try Self.turnEndedUnread(env)
        let response = try client.readResponse()
        #expect(response.status == 200)
        let finishes = response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
        #expect(finishes == ["tool_calls"], "the caller's turn, after the cut panel")
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
        #expect(try Self.chat(env).status == 200, "the gateway still serves")
    }

    /// A request after the held stream, given the time a sanitizer's loaded machine may need (the
    /// default client's 5 s is for a quiet one).
    static func chat(_ env: TestEnvironment) throws -> TestResponse {
        let client = try env.client(timeoutSeconds: 5 * Int(TestEnvironment.sanitizerSlowdown))
        try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")))
        return try client.readResponse()
    }

    @Test(.timeLimit(.minutes(3))) func aClientThatNeverReadsAgainIsDroppedAfterTheSlowClientTimeout() throws {
        // Longer than the deadline: the session's own watchdog must not drop the client first.
        let env = try Self.gateway(slowClientTimeoutMilliseconds: Self.deadline + 2_000)
        let client = try Self.turnEndedUnread(env)
        // Still reading nothing: the stream is dropped once the client has taken nothing for the
        // slow-client timeout (it fell behind before the deadline ended the turn). Watched from
        // the gateway's side: the client sees nothing of it until it reads (the FIN waits behind
        // the unsent bytes).
        #expect(try env.cluster.openConnections() == 1)
        let closed = env.eventually(timeoutSeconds: Double(Self.deadline) / 1_000 + 20) { (try? env.cluster.openConnections()) == 0 }
        #expect(closed, "the gateway let go of a client that took nothing")
        // Counted as the stream lets go, which may come just after the connection's close (CI run 84).
        #expect(env.eventually { (try? env.get("/metrics"))?.metric(#"fusion_gateway_errors_total{code="client_too_slow",origin="gateway"}"#) == 1 },
                "and counted it")
        #expect(try Self.chat(env).status == 200)
    }

    /// A client that leaves after the turn ended takes the stream with it (its channel, ring and
    /// wakeup handle were kept until the process stopped).
    @Test(.timeLimit(.minutes(3))) func aClientThatLeavesAfterTheTurnEndedReleasesTheStream() throws {
        let env = try Self.gateway(slowClientTimeoutMilliseconds: 30_000)
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: true)).status == 200)
        let before = try env.cluster.openWakeups()
        let client = try Self.turnEndedUnread(env)
        let open = try env.cluster.openWakeups()
        #expect(open == before + 1, "the stream waits for its client (\(open) open, \(before) before)")
        client.disconnect()
        #expect(env.eventually(timeoutSeconds: 5) { (try? env.cluster.openWakeups()) == before }, "the stream was released")
    }
}
