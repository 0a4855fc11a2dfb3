import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// A provider's refusal names the field as the client sent it (review 48 surfaces #7): checks
/// run on the neutral messages, whose positions are not the client's on Responses (an
/// `instructions` message first, function calls joined into one turn) or on Messages (`system`
/// first, tool results split out).
@Suite struct RefusalPathTests {
    static let bmp = "data:image/bmp;base64,Qk0="

    static func refusal(_ provider: any Provider, _ request: ModelRequest) -> APIError? {
        do {
            try provider.validate(request)
            return nil
        } catch {
            return error
        }
    }

    @Test func responsesRefusalsNameTheInputItem() throws {
        let image = try ResponsesRequest(body: Array(#"""
            {"model":"m","instructions":"Be brief.","input":[{"role":"user","content":[
              {"type":"input_text","text":"look"},{"type":"input_image","image_url":"\#(Self.bmp)"}]}]}
            """#.utf8)).modelRequest()
        let inline = try #require(Self.refusal(AnthropicProvider(), image))
        #expect(inline.param == "input[0].content[1]" && inline.message.contains("image/bmp"), "\(inline)")

        // Two calls joined into one assistant turn: the second call's arguments are its own item's.
        let calls = try ResponsesRequest(body: Array(#"""
            {"model":"m","input":[{"role":"user","content":"q"},
              {"type":"function_call","call_id":"a","name":"f","arguments":"{}"},
              {"type":"function_call","call_id":"b","name":"f","arguments":"[1]"},
              {"type":"function_call_output","call_id":"a","output":"1"},{"type":"function_call_output","call_id":"b","output":"2"}]}
            """#.utf8)).modelRequest()
        for provider in [AnthropicProvider(), GeminiProvider()] as [any Provider] {
            let arguments = try #require(Self.refusal(provider, calls))
            #expect(arguments.param == "input[2].arguments", "\(arguments)")
        }

        // An empty assistant turn, after the instructions: named by its item, not `messages[2]`.
        let empty = try ResponsesRequest(body: Array(#"""
            {"model":"m","instructions":"s","input":[{"role":"user","content":"q"},{"role":"assistant","content":""},{"role":"user","content":"again"}]}
            """#.utf8)).modelRequest()
        let turn = try #require(Self.refusal(GeminiProvider(), empty))
        #expect(turn.param == "input[1].content" && turn.message.contains("'input[1]' has no content"), "\(turn)")

        // A tool output's parts: `output[j]`.
        let output = try ResponsesRequest(body: Array(#"""
            {"model":"m","input":[{"role":"user","content":"q"},{"type":"function_call","call_id":"a","name":"f","arguments":"{}"},
              {"type":"function_call_output","call_id":"a","output":[{"type":"input_image","image_url":"\#(Self.bmp)"}]}]}
            """#.utf8)).modelRequest()
        #expect(Self.refusal(AnthropicProvider(), output)?.param == "input[2].output[0]")
    }

    @Test func messagesRefusalsNameTheBlockInAnthropicsSyntax() throws {
        let image = try MessagesRequest(body: Array(#"""
            {"model":"m","max_tokens":9,"system":"Be brief.","messages":[{"role":"user","content":[
              {"type":"text","text":"look"},{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"Qk0="}}]}]}
            """#.utf8)).modelRequest()
        let inline = try #require(Self.refusal(AnthropicProvider(), image))
        #expect(inline.param == "messages.0.content.1", "\(inline)")

        // A tool result split out of its user turn (after that turn's text): its own content's block.
        let result = try MessagesRequest(body: Array(#"""
            {"model":"m","max_tokens":9,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[
              {"role":"user","content":"q"},
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},
              {"role":"user","content":[{"type":"text","text":"here"},{"type":"tool_result","tool_use_id":"t1","content":[
                {"type":"text","text":"r"},{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"Qk0="}}]}]}]}
            """#.utf8)).modelRequest()
        #expect(Self.refusal(AnthropicProvider(), result)?.param == "messages.2.content.1.content.1")

        // A search result in a tool result, to a model behind another API.
        let search = try MessagesRequest(body: Array(#"""
            {"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"},
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[
                {"type":"search_result","source":"https://s.example","title":"S","content":[{"type":"text","text":"found"}]}]}]}]}
            """#.utf8)).modelRequest()
        #expect(Self.refusal(OpenAICompatibleProvider(), search)?.param == "messages.2.content.0.content.0")
    }

    @Test func chatRefusalsKeepChatsPaths() throws {
        let image = try ChatRequest(body: Array(#"""
            {"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"\#(Self.bmp)"}}]}]}
            """#.utf8)).modelRequest()
        #expect(Self.refusal(AnthropicProvider(), image)?.param == "messages[1].content[0]")
    }

    /// Every neutral message a surface makes knows its place: one path per content part and per
    /// tool call, each under one of the surface's own fields.
    static func expectOrigins(_ request: ModelRequest, roots: [String], _ body: String) {
        for message in request.messages {
            guard let origin = message.origin else {
                Issue.record("a message without its origin: \(message) in \(body)")
                continue
            }
            #expect(origin.parts.count == message.content.count && origin.calls.count == message.toolCalls.count, "\(origin) in \(body)")
            for path in [origin.path] + origin.parts + origin.calls {
                #expect(roots.contains { path.hasPrefix($0) }, "\(path) in \(body)")
            }
        }
    }

    @Test func everyResponsesMessageKnowsItsPlace() async {
        await propertyCheck(count: 1_000, input: ResponsesRequestPropertyTests.bodies) { body in
            guard let request = try? ResponsesRequest(body: Array(body.utf8)) else { return }
            let neutral = request.modelRequest()
            Self.expectOrigins(neutral, roots: ["input", "instructions"], body)
            for provider in [AnthropicProvider(), GeminiProvider(), OpenAICompatibleProvider()] as [any Provider] {
                guard let param = Self.refusal(provider, neutral)?.param else { continue }
                #expect(!param.hasPrefix("messages"), "\(param) in \(body)")
            }
        }
    }

    @Test func everyMessagesMessageKnowsItsPlace() async {
        await propertyCheck(count: 1_000, input: MessagesRequestPropertyTests.bodies) { body in
            guard let request = try? MessagesRequest(body: Array(body.utf8)) else { return }
            let neutral = request.modelRequest()
            Self.expectOrigins(neutral, roots: ["messages.", "system"], body)
            for provider in [AnthropicProvider(), GeminiProvider(), OpenAICompatibleProvider()] as [any Provider] {
                guard let param = Self.refusal(provider, neutral)?.param, param.hasPrefix("messages") else { continue }
                #expect(!param.contains("["), "\(param) in \(body)")
            }
        }
    }
}
