import EventLoop
import Foundation
@testable import Gateway
import GatewayCore
import MockUpstream
import Testing

/// Whole (non-streamed) upstream answers large enough to be read off their loop
/// (`WholeAnswer.offLoopBytes`, review 125 #1): each arrives whole in the client's API, streamed
/// or not, and what it held of `upstream.max_collected_bytes` is given back, a client that left
/// while it was read included.
@Suite(.serialized, .timeLimit(.minutes(2))) struct WholeAnswerTests {
    /// Every reader of whole answers busy until `release()` (or 10 s): an answer waits in the
    /// lane, as behind other clients' large answers.
    final class BusyReaders: @unchecked Sendable {
        private let gate = DispatchSemaphore(value: 0)
        private let thread = EventLoopThread(name: "busy-readers")
        private let width = WholeAnswer<ChatProxyRequest>.readers.width

        init() {
            let started = DispatchSemaphore(value: 0)
            for _ in 0..<width {
                _ = WholeAnswer<ChatProxyRequest>.readers.submit(on: thread.loop, ticket: OffLoopLane.Ticket(), { [gate] in
                    started.signal()
                    _ = gate.wait(timeout: .now() + 10)
                }, then: { (_: Void) in })
            }
            for _ in 0..<width { started.wait() }
        }

        func release() { for _ in 0..<width { gate.signal() } }

        deinit {
            release()
            thread.shutdown()
        }
    }

    static func environment() throws -> TestEnvironment {
        // The mock builds a large answer whole before its first byte: a sanitizer's slowdown
        // beside other tests is longer than the usual upstream timeout.
        try TestEnvironment { config in
            config.upstream.idleTimeoutMilliseconds = 20_000
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: config.providers["mock"]!.baseURL,
                                             apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
    }

    static let answerBytes = 300_000

    static func request(api: ClientAPI, model: String, stream: Bool) -> String {
        switch api {
        case .chatCompletions:
            TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: model, stream: stream))
        case .messages:
            TestEnvironment.post("/v1/messages", body: MessagesRouteTests.body(model: model, stream: stream), headers: ["anthropic-version": "2023-06-01"])
        case .responses:
            TestEnvironment.post("/v1/responses", body: #"{"model":"\#(model)","input":"Hello there","stream":\#(stream)}"#)
        }
    }

    /// Every client API, from an upstream speaking its format and one translated, streamed (the
    /// upstream ignoring `stream`) or not.
    @Test(arguments: [ClientAPI.chatCompletions, .messages, .responses])
    func aLargeWholeAnswerArrivesWhole(api: ClientAPI) throws {
        let env = try Self.environment()
        let run = String(repeating: "x", count: Self.answerBytes)
        for provider in ["mock", "anth"] {
            for stream in [false, true] {
                let model = "\(provider)/huge:bytes=\(Self.answerBytes):pace_ms=0\(stream ? ":whole=1" : "")"
                let client = try env.client(timeoutSeconds: 20 * Int(TestEnvironment.sanitizerSlowdown))
                try client.send(Self.request(api: api, model: model, stream: stream))
                let response = try client.readResponse()
                let what = "\(api) from \(provider), stream \(stream)"
                #expect(response.status == 200, "\(what): \(response.text.prefix(300))")
                #expect(response.text.contains("start " + run), "\(what): the answer whole, in one piece: \(response.text.prefix(300))")
                if stream {
                    #expect(response.header("content-type")?.hasPrefix("text/event-stream") == true, "\(what)")
                    let ends = ["data: [DONE]", "event: message_stop", "event: response.completed"]
                    #expect(ends.contains { response.text.contains($0) }, "\(what): its stream's end: \(response.text.suffix(300))")
                } else {
                    #expect(response.json != nil, "\(what): one JSON body")
                }
                let id = response.header("x-generation-id")
                #expect(env.eventually { (try? env.generation(id))??["tokens_completion"]?.intValue ?? 0 > 0 },
                        "\(what): its record counts the answer")
            }
        }
        #expect(env.eventually { env.cluster.shared.collected.current == 0 }, "given back: \(env.cluster.shared.collected.current)")
    }

    /// A streamed client whose upstream answered whole gets its head and keep-alives while the
    /// answer waits to be read, then the answer with its stream's start once (review 130 #1: no
    /// byte for 8.6 s behind busy readers).
    @Test(arguments: [ClientAPI.chatCompletions, .messages, .responses])
    func keepAlivesGoOutWhileTheAnswerWaitsToBeRead(api: ClientAPI) throws {
        let env = try TestEnvironment { config in
            config.upstream.idleTimeoutMilliseconds = 20_000
            config.upstream.keepAliveIntervalMilliseconds = 100
        }
        let busy = BusyReaders()
        let client = try env.client(timeoutSeconds: 20 * Int(TestEnvironment.sanitizerSlowdown))
        try client.send(Self.request(api: api, model: "mock/huge:bytes=\(Self.answerBytes):pace_ms=0:whole=1", stream: true))
        var keptAlive = false
        let response = try client.readResponse { chunk in
            guard !keptAlive, String(decoding: chunk, as: UTF8.self).contains(": keep-alive") else { return }
            keptAlive = true
            busy.release()
        }
        #expect(keptAlive, "a keep-alive while the answer waited: \(response.text.prefix(300))")
        #expect(response.status == 200 && response.text.contains(String(repeating: "x", count: Self.answerBytes)), "\(response.text.prefix(300))")
        let starts = ["event: message_start", "event: response.created"].map { response.text.components(separatedBy: $0).count - 1 }
        #expect(api == .chatCompletions ? starts == [0, 0] : starts.max() == 1, "the stream's start once: \(starts)")
        let ends = ["data: [DONE]", "event: message_stop", "event: response.completed"]
        #expect(ends.contains { response.text.contains($0) }, "\(response.text.suffix(300))")
    }

    /// An answer waiting to be read for a client that left stays counted against
    /// `upstream.max_collected_bytes` until its job lets go of it (review 130 #2: the proxy gave
    /// the reservation back as it went, the queued job still holding the body).
    @Test func anAnswerWaitingForAReaderStaysCountedAfterItsClientLeft() throws {
        let env = try Self.environment()
        let collected = env.cluster.shared.collected
        var busy: BusyReaders? = BusyReaders()
        do {
            let client = try env.client()
            try client.send(Self.request(api: .chatCompletions, model: "mock/huge:bytes=2000000:pace_ms=0", stream: false))
            #expect(env.eventually(timeoutSeconds: 10) { collected.current >= 2_000_000 }, "collected: \(collected.current)")
        }  // the client leaves
        usleep(300_000)
        #expect(collected.current >= 2_000_000, "still held by the job waiting for a reader: \(collected.current)")
        busy = nil  // the readers free: the job is skipped, its body let go
        _ = busy
        #expect(env.eventually(timeoutSeconds: 10) { collected.current == 0 }, "given back: \(collected.current)")
    }

    /// Clients that leave at every moment around the read (before the answer, while it is read
    /// off the loop, while it is written): nothing stays held, and the gateway keeps serving.
    @Test func clientsLeavingWhileTheAnswerIsReadLeaveNothingHeld() throws {
        let env = try Self.environment()
        for (index, api) in [ClientAPI.chatCompletions, .messages, .responses, .chatCompletions, .messages, .responses].enumerated() {
            for leaveAfterMicroseconds in stride(from: 0, through: 60_000, by: 6_000) {
                let client = try env.client()
                try client.send(Self.request(api: api, model: "mock/huge:bytes=2000000:pace_ms=0\(index >= 3 ? ":whole=1" : "")", stream: index >= 3))
                usleep(useconds_t(leaveAfterMicroseconds))
                _ = client  // closed here (`deinit`)
            }
        }
        #expect(env.eventually(timeoutSeconds: 20) { env.cluster.shared.collected.current == 0 },
                "every reservation given back: \(env.cluster.shared.collected.current)")
        let fits = try env.client(timeoutSeconds: 20 * Int(TestEnvironment.sanitizerSlowdown))
        try fits.send(Self.request(api: .chatCompletions, model: "mock/huge:bytes=\(Self.answerBytes):pace_ms=0", stream: false))
        #expect(try fits.readResponse().status == 200)
    }
}
