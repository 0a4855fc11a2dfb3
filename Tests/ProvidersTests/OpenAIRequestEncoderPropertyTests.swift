import GatewayCore
import PropertyBased
import Providers
import Testing

/// `OpenAIRequestEncoder.body` writes the messages without a tree (it runs as every inner call
/// starts); the tree, serialized, is the reference: the same bytes for any request, the
/// client's extra fields included (ours win over theirs, `messages` too).
@Suite struct OpenAIRequestEncoderPropertyTests {
    static let texts = ["", "Hi", "a \"quoted\"\nline\t\\", "é🙂\u{2028}", "\u{0}\u{1F}", String(repeating: "long text ", count: 40)]
    static let text = Gen.element(of: texts).map { $0 ?? "" }

    static let part = zip(Gen.int(in: 0...3), text).map { kind, text -> ContentPart in
        switch kind {
        case 0, 1: .text(text)
        case 2: .image(url: "https://example.com/\(text.count).png", detail: text.isEmpty ? nil : "low")
        default: .other(.object(["type": .string("input_audio"), "input_audio": .object(["data": .string(text)])]))
        }
    }

    static let message = zip(Gen.element(of: [ModelMessage.Role.system, .developer, .user, .assistant, .tool]), part.array(of: 0...3),
                             Gen.int(in: 0...15), text)
        .map { role, parts, extras, text -> ModelMessage in
            var message = ModelMessage(role: role ?? .user, content: parts)
            if extras & 1 != 0 { message.name = "name \(text.count)" }
            if extras & 2 != 0 { message.toolCallID = "call_\(text.count)" }
            if extras & 4 != 0 { message.toolCalls = [ToolCall(index: 0, id: "call_1", name: "lookup", arguments: text)] }
            if extras & 8 != 0 { message.reasoning = [.thinking(text: text, signature: "sig"), .redacted(data: "data")] }
            return message
        }

    static let extraKeys = ["messages", "model", "stream", "seed", "user", "aaa", "zzz", "métadonnées", "Z", "tool_choice"]

    static let request = zip(message.array(of: 0...5), Gen.int(in: 0...255), Gen.element(of: extraKeys).array(of: 0...4), text)
        .map { messages, flags, extraKeys, text -> ModelRequest in
            var request = ModelRequest(model: "model/\(text.count)", messages: messages, stream: flags & 1 != 0)
            request.includeUsage = flags & 2 != 0
            if flags & 4 != 0 { request.tools = [.function(name: "lookup", description: text, parameters: .object(["type": .string("object")]), strict: true)] }
            if flags & 8 != 0 { request.toolChoice = flags & 16 != 0 ? .function("lookup") : .required }
            if flags & 32 != 0 { request.maxOutputTokens = Int64(flags) * 100 }
            if flags & 64 != 0 { request.temperature = Double(flags) / 100; request.topP = 0.5; request.topK = 5; request.stop = [text]; request.user = text }
            if flags & 128 != 0 { request.reasoning = .init(effort: "high", maxTokens: 10, exclude: false) }
            for key in extraKeys { request.extraFields[key ?? "x"] = .string(text) }
            if flags & 64 != 0 { request.extraFieldsFormat = .anthropicMessages }
            return request
        }

    @Test func bodyIsTheTreeSerialized() async {
        await propertyCheck(count: 800, input: Self.request, Gen.bool) { request, completionTokens in
            let field: ProviderEndpoint.MaxTokensField = completionTokens ? .maxCompletionTokens : .maxTokens
            let body = OpenAIRequestEncoder.body(request, maxTokensField: field)
            let reference = OpenAIRequestEncoder.json(request, maxTokensField: field).serialized()
            #expect(body == reference, "\(String(decoding: body, as: UTF8.self))\n\(String(decoding: reference, as: UTF8.self))")
        }
    }

    /// A tool result's images go in a user message after the turn's results (chat's tool
    /// messages take text only), each introduced by its call; text-only results are untouched.
    @Test func toolResultImagesFollowTheResults() throws {
        let image = ContentPart.image(url: "data:image/png;base64,iVBO", detail: nil)
        let messages = [
            ModelMessage(role: .user, text: "Look"),
            ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "a", name: "shot", arguments: "{}"),
                                                                    ToolCall(index: 1, id: "b", name: "shot", arguments: "{}")]),
            ModelMessage(role: .tool, content: [.text("screen 1"), image], toolCallID: "a"),
            ModelMessage(role: .tool, content: [.text("screen 2")], toolCallID: "b"),
            ModelMessage(role: .user, text: "What do you see?"),
        ]
        let sent = OpenAIRequestEncoder.json(ModelRequest(model: "m", messages: messages))["messages"]?.arrayValue ?? []
        #expect(sent.map { $0["role"]?.stringValue ?? "" } == ["user", "assistant", "tool", "tool", "user", "user"])
        #expect(sent[2]["content"] == .string("screen 1") && sent[3]["content"] == .string("screen 2"))
        #expect(sent[4]["content"] == .array([.object(["type": .string("text"), "text": .string("Attached to the result of tool call a:")]),
                                             .object(["type": .string("image_url"), "image_url": .object(["url": .string("data:image/png;base64,iVBO")])])]))
        let plain = Array(messages.prefix(2)) + [ModelMessage(role: .tool, content: [.text("r")], toolCallID: "a")]
        #expect(OpenAIRequestEncoder.chatMessages(plain) == plain)
    }
}
