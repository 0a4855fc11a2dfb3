import Foundation
import GatewayCore
import Providers
import Surfaces
import Testing

/// Tokens written to a prompt cache (Anthropic's `cache_creation_input_tokens`, priced apart)
/// reach every client API in its own field, never folded into plain input.
@Suite struct CacheWriteUsageTests {
    static let usage = Usage(promptTokens: 130, completionTokens: 9, totalTokens: 139, cachedTokens: 50, cacheWriteTokens: 30)

    @Test func eachAPIReportsCacheWritesApart() throws {
        var out: [UInt8] = []
        var messages = MessagesStreamWriter(id: "msg_1", model: "claude-x")
        for event: ModelEvent in [.text("Hi"), .finish(.stop), .usage(Self.usage)] { messages.append(event, to: &out) }
        messages.appendEnd(usage: Self.usage, to: &out)
        let delta = String(decoding: out, as: UTF8.self).components(separatedBy: "\n").first { $0.contains("\"message_delta\"") && $0.hasPrefix("data: ") }
        let usage = try JSONValue.parse(Array((delta ?? "").dropFirst(6).utf8))["usage"]
        #expect(usage?["input_tokens"] == .int(50) && usage?["cache_creation_input_tokens"] == .int(30) && usage?["cache_read_input_tokens"] == .int(50),
                "\(String(describing: usage))")

        #expect(ResponsesUsage.json(Self.usage)["input_tokens_details"] == .object(["cached_tokens": .int(50), "cache_write_tokens": .int(30)]))
        #expect(Self.usage.json["prompt_tokens_details"] == .object(["cached_tokens": .int(50), "cache_write_tokens": .int(30)]))
        #expect(Usage(openAI: Self.usage.json) == Self.usage, "a record's usage reads back whole")
        #expect((Self.usage + Self.usage).cacheWriteTokens == 60)
    }
}
