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

    /// Where an agent loop marks its prefix: the last tool definition (the tools are cached) and
    /// the last tool result, the block itself, with or without content (they were dropped).
    @Test func toolDefinitionsAndToolResultsMarkedForCachingKeepTheirMarks() throws {
        let messages = #"{"model":"p/m","max_tokens":9,"tools":[{"name":"a","input_schema":{"type":"object"}},"#
            + #"{"name":"b","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],"messages":["#
            + #"{"role":"user","content":"Go."},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"a","input":{}},"#
            + #"{"type":"tool_use","id":"t2","name":"b","input":{}}]},{"role":"user","content":["#
            + #"{"type":"tool_result","tool_use_id":"t1","content":"one"},"#
            + #"{"type":"tool_result","tool_use_id":"t2","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}"#
        let request = try MessagesRequest(body: Array(messages.utf8)).modelRequest()
        let (anthropic, openAI, gemini) = try Self.bodies(request)
        #expect(anthropic["tools"]?[0]?["cache_control"] == nil && anthropic["tools"]?[1]?["cache_control"] == Self.ephemeral, "\(anthropic)")
        let results = anthropic["messages"]?[2]?["content"]?.arrayValue ?? []
        #expect(results.count == 2, "\(anthropic)")
        #expect(results.first?["cache_control"] == nil && results.first?["content"] == .string("one"))
        #expect(results.last?["cache_control"] == .object(["type": .string("ephemeral"), "ttl": .string("1h")]), "\(anthropic)")
        #expect(results.last?["content"] == nil, "no content invented")
        for other in [openAI, gemini] { #expect(!other.contains("cache_control"), "\(other)") }

        // A chat client's tool (`cache_control` beside `function`) and its tool message's marked text.
        let chat = #"{"model":"p/m","tools":[{"type":"function","function":{"name":"a"},"cache_control":{"type":"ephemeral"}}],"messages":["#
            + #"{"role":"user","content":"Go."},{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"a","arguments":"{}"}}]},"#
            + #"{"role":"tool","tool_call_id":"t1","content":[{"type":"text","text":"out","cache_control":{"type":"ephemeral"}}]}]}"#
        let fromChat = try Self.bodies(try ChatRequest(body: Array(chat.utf8)).modelRequest())
        #expect(fromChat.anthropic["tools"]?[0]?["cache_control"] == Self.ephemeral, "\(fromChat.anthropic)")
        let result = fromChat.anthropic["messages"]?[2]?["content"]?[0]
        #expect(result?["cache_control"] == Self.ephemeral && result?["content"] == .string("out"), "\(fromChat.anthropic)")
        #expect(!fromChat.openAI.contains("cache_control") && !fromChat.gemini.contains("cache_control"))
    }
}
