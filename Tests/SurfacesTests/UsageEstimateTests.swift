import Foundation
import GatewayCore
import Providers
import Surfaces
import Testing

/// A usage the upstream did not report is the gateway's estimate, and every API says so; an
/// estimate for a stream cut short starts from the prompt the upstream counted, when it did.
@Suite struct UsageEstimateTests {
    static let openAIWithoutUsage = #"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}"# + "\n\n"
        + #"data: {"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]}"# + "\n\ndata: [DONE]\n\n"

    /// Anthropic's stream up to two deltas, then nothing: no `message_delta`, no usage at the end.
    static let anthropicCut = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"c","usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}


        """

    static func relay<Writer: NeutralStreamWriter>(_ provider: any Provider, _ sse: String, writer: Writer,
                                                   cut: Bool) -> (TranslatingRelay<Writer>, String) {
        var relay = TranslatingRelay(decoder: provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none), writer: writer,
                                     estimatedPromptTokens: 999)
        var out: [UInt8] = []
        relay.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        if cut { relay.upstreamDidEnd(failure: nil, into: &out) }
        return (relay, String(decoding: out, as: UTF8.self))
    }

    @Test func aMessagesClientIsToldItsUsageIsAnEstimate() throws {
        let (relay, text) = Self.relay(OpenAICompatibleProvider(), Self.openAIWithoutUsage, writer: MessagesStreamWriter(id: "m1", model: "m"),
                                       cut: false)
        let delta = try #require(try MessagesStreamWriterTests.events(Array(text.utf8)).first { $0.name == "message_delta" })
        #expect(delta.data["usage"]?["estimated"] == .bool(true) && delta.data["usage"]?["input_tokens"] == .int(999), "\(delta.data)")
        #expect(relay.usageEstimated)
        // A reported usage carries no such member.
        let reported = Self.openAIWithoutUsage.replacingOccurrences(
            of: "data: [DONE]", with: #"data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"# + "\n\ndata: [DONE]")
        let (_, plain) = Self.relay(OpenAICompatibleProvider(), reported, writer: MessagesStreamWriter(id: "m1", model: "m"), cut: false)
        let end = try #require(try MessagesStreamWriterTests.events(Array(plain.utf8)).first { $0.name == "message_delta" })
        #expect(end.data["usage"]?["estimated"] == nil && end.data["usage"]?["input_tokens"] == .int(7), "\(end.data)")
    }

    /// A later report counting fewer tokens, or as many for less, is not the one charged, on a
    /// translated stream as on chat's passthrough (review 120 #3).
    @Test func aShrinkingReportIsNotTheOneKept() {
        func usage(_ prompt: Int, _ completion: Int, _ cost: Double) -> String {
            #"data: {"choices":[],"usage":{"prompt_tokens":\#(prompt),"completion_tokens":\#(completion),"total_tokens":\#(prompt + completion),"cost":\#(cost)}}"# + "\n\n"
        }
        for (reports, kept) in [([usage(100, 100, 1), usage(1, 1, 0.000001)], 1.0), ([usage(10, 5, 0.5), usage(10, 5, 0.1)], 0.5),
                                ([usage(10, 1, 0.1), usage(10, 9, 0.2)], 0.2)] {
            let sse = Self.openAIWithoutUsage.replacingOccurrences(of: "data: [DONE]", with: reports.joined() + "data: [DONE]")
            let (relay, _) = Self.relay(OpenAICompatibleProvider(), sse, writer: MessagesStreamWriter(id: "m1", model: "m"), cut: false)
            #expect(relay.usage?.cost == kept, "\(String(describing: relay.usage))")
        }
    }

    @Test func aCutAnthropicStreamIsEstimatedFromThePromptItCounted() throws {
        let (relay, text) = Self.relay(AnthropicProvider(), Self.anthropicCut,
                                       writer: ChatStreamTranslation(chunks: ChatChunkWriter(id: "gen-1", model: "m", created: 1), includeUsage: true),
                                       cut: true)
        #expect(relay.promptUsage?.promptTokens == 30, "input plus cache reads")
        let usage = try #require(text.components(separatedBy: "\n\n").compactMap { event -> JSONValue? in
            guard event.hasPrefix("data: {") else { return nil }
            return try? JSONValue.parse(Array(event.dropFirst(6).utf8))
        }.compactMap { $0["usage"] }.first { $0 != .null }, "\(text)")
        #expect(usage["prompt_tokens"] == JSONValue.int(30) && usage["completion_tokens"] == JSONValue.int(2)
                    && usage["estimated"] == JSONValue.bool(true), "\(usage)")
        #expect(text.contains("upstream_truncated"))
    }

    /// An estimate counts the answer's size as well as its events: 20 KB in one delta is not one
    /// token (review 101 #1; a whole body's was already counted by its size), and `message_start`'s
    /// output count is a placeholder, not the answer's (review 100 #2).
    @Test func aLargeDeltaIsEstimatedByItsSize() throws {
        let big = String(repeating: "word ", count: 4_000)
        let sse = Self.anthropicCut.replacingOccurrences(of: #""text":"lo""#, with: #""text":"\#(big)""#)
            .replacingOccurrences(of: #""output_tokens":1"#, with: #""output_tokens":5000"#)
        let (relay, _) = Self.relay(AnthropicProvider(), sse, writer: MessagesStreamWriter(id: "m1", model: "m"), cut: true)
        let estimate = try #require(relay.estimatedUsage)
        #expect(estimate.promptTokens == 30 && estimate.completionTokens == Int64((3 + big.utf8.count) / 4 + 1), "\(estimate)")
    }
}
