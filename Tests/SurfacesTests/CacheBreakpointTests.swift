import GatewayCore
import Providers
import Surfaces
import Testing

/// Anthropic's prompt-cache breakpoints (`cache_control`) a client puts on its content reach an
/// Anthropic upstream through the neutral form, on the same blocks, and no other API sees them
/// (review 43 conformance #4: they were dropped, and a client that marked its long system prompt
/// paid full input price on every turn).
@Suite struct CacheBreakpointTests {
    static let endpoint = ProviderEndpoint(name: "p", baseURL: "http://127.0.0.1:1/v1", apiKey: "k")
    static let ephemeral = JSONValue.object(["type": .string("ephemeral")])

    static func bodies(_ request: ModelRequest) throws -> (anthropic: JSONValue, openAI: String, gemini: String) {
        func body(_ provider: any Provider) throws -> [UInt8] {
            try provider.validate(request)
            return provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: []).body
        }
        return (try JSONValue.parse(try body(AnthropicProvider())), String(decoding: try body(OpenAICompatibleProvider()), as: UTF8.self),
                String(decoding: try body(GeminiProvider()), as: UTF8.self))
    }

    @Test func chatPartsMarkedForCachingKeepTheirMarksOnAnthropic() throws {
        let chat = #"{"model":"p/m","messages":[{"role":"system","content":[{"type":"text","text":"Long rules.","cache_control":{"type":"ephemeral"}}]},"#
            + #"{"role":"user","content":[{"type":"text","text":"Context.","cache_control":{"type":"ephemeral","ttl":"1h"}},{"type":"text","text":"Question?"}]}]}"#
        let request = try ChatRequest(body: Array(chat.utf8)).modelRequest()
        let (anthropic, openAI, gemini) = try Self.bodies(request)
        #expect(anthropic["system"] == .array([.object(["type": .string("text"), "text": .string("Long rules."), "cache_control": Self.ephemeral])]))
        let user = anthropic["messages"]?[0]?["content"]?.arrayValue
        #expect(user?.first?["cache_control"] == .object(["type": .string("ephemeral"), "ttl": .string("1h")]))
        #expect(user?.count == 2 && user?.last?["cache_control"] == nil, "only the part marked")
        for other in [openAI, gemini] {
            #expect(!other.contains("cache_control") && !other.contains(#""text":"""#), "left out, no empty part: \(other)")
        }
    }

    @Test func messagesBlocksMarkedForCachingKeepTheirMarksThroughTheNeutralForm() throws {
        let messages = #"{"model":"p/m","max_tokens":9,"system":[{"type":"text","text":"Rules.","cache_control":{"type":"ephemeral"}}],"#
            + #""messages":[{"role":"user","content":[{"type":"text","text":"Doc.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Q?"}]}]}"#
        let request = try MessagesRequest(body: Array(messages.utf8)).modelRequest()
        let (anthropic, openAI, _) = try Self.bodies(request)
        #expect(anthropic["system"]?[0]?["cache_control"] == Self.ephemeral, "\(anthropic)")
        #expect(anthropic["messages"]?[0]?["content"]?[0]?["cache_control"] == Self.ephemeral)
        #expect(anthropic["messages"]?[0]?["content"]?[1]?["cache_control"] == nil)
        #expect(!openAI.contains("cache_control"))
    }
}
