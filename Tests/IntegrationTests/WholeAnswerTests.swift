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
@Suite(.timeLimit(.minutes(2))) struct WholeAnswerTests {
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
