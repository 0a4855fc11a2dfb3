import Foundation
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// An Anthropic model's signed thinking, out to chat and Responses clients and back in on their
/// next request (`ReasoningBlock`, `ReasoningDetail`, Responses' `encrypted_content`).
@Suite struct ReasoningRoundTripTests {
    /// Text of every kind a model may think in: JSON and SSE syntax, line breaks, any scalar.
    static let text = FusionProgressPropertyTests.text

    @Test func anyBlockSurvivesItsToken() async {
        await propertyCheck(count: 300, input: Self.text, Self.text) { text, signature in
            let block: ReasoningBlock = signature.isEmpty ? .redacted(data: text.isEmpty ? "x" : text) : .thinking(text: text, signature: signature)
            #expect(ReasoningBlock(token: block.token) == block, "\(block)")
            #expect(ReasoningBlock.isToken(block.token))
        }
    }

    /// A token is the client's bytes: cut, altered or made up, it decodes to nothing or to a
    /// well-formed block (whose signature the provider checks), never traps.
    @Test func anyTokenIsRefusedOrAWellFormedBlock() async {
        let token = ReasoningBlock.thinking(text: "Let me think.", signature: "c2lnbmF0dXJl").token
        #expect(ReasoningBlock(token: String(token.dropLast(3))) == nil)
        #expect(ReasoningBlock(token: "fgw.anthropic.v1.") == nil)
        #expect(ReasoningBlock(token: "fgw.anthropic.v1.!!!") == nil)
        for json in [#"{"thinking":"t","signature":""}"#, #"{"thinking":1,"signature":"s"}"#, "[1,2]", #"{"redacted_thinking":""}"#, "{"] {
            #expect(ReasoningBlock(token: "fgw.anthropic.v1." + Data(json.utf8).base64EncodedString()) == nil, "\(json)")
        }
        #expect(!ReasoningBlock.isToken("gAAAAABopenai-encrypted"))
        await propertyCheck(count: 300, input: Gen.int(in: 17...(token.utf8.count - 1)), Gen.int(in: 0...127), Self.text) { position, byte, tail in
            var bytes = Array(token.utf8)
            bytes[position] = UInt8(byte)
            for altered in [String(decoding: bytes, as: UTF8.self), "fgw.anthropic.v1." + tail,
                            "fgw.anthropic.v1." + Data(tail.utf8).base64EncodedString()] {
                guard let block = ReasoningBlock(token: altered) else { continue }
                #expect(ReasoningBlock(token: block.token) == block, "\(altered)")
                switch block {
                case .thinking(_, let signature): #expect(!signature.isEmpty)
                case .redacted(let data): #expect(!data.isEmpty)
                }
            }
        }
    }

    @Test func chatDetailsComeBackAsBlocksJoinedByIndex() throws {
        let blocks: [ReasoningBlock] = [.thinking(text: "Think \"hard\".", signature: "sig1"), .redacted(data: "ZW5j")]
        let details = JSONValue.array(blocks.enumerated().map { ReasoningDetail.json($1, index: $0) })
        #expect(ReasoningDetail.blocks(details) == blocks)
        // Streamed pieces a client kept unmerged; others' entries; entries without a signature.
        let pieces = try JSONValue.parse(Array("""
            [{"type":"reasoning.text","text":"Think ","index":0,"format":"anthropic-claude-v1"},
             {"type":"reasoning.text","text":"again.","index":0},
             {"type":"reasoning.text","signature":"sig2","index":0,"format":"anthropic-claude-v1"},
             {"type":"reasoning.encrypted","data":"gAAAA","format":"openai-responses-v1","index":1},
             {"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","arguments":"{}","result":"R","index":2},
             {"type":"reasoning.text","text":"unsigned","index":3},
             {"type":"reasoning.summary","summary":"s","index":4},
             {"type":"reasoning.encrypted","data":"cmVk","index":5},
             "junk", 7, null]
            """.utf8))
        #expect(ReasoningDetail.blocks(pieces) == [.thinking(text: "Think again.", signature: "sig2"), .redacted(data: "cmVk")])
        let body = #"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":null,"reasoning_details":\#(String(decoding: details.serialized(), as: UTF8.self)),"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"t1","content":"42"}]}"#
        let messages = try ChatRequest(body: Array(body.utf8)).modelRequest().messages
        #expect(messages[1].reasoning == blocks && messages[0].reasoning.isEmpty && messages[2].reasoning.isEmpty)
    }

    /// OpenRouter's `reasoning.enabled: false` is kept, so no provider is asked to think.
    @Test func aChatClientsReasoningEnabledFalseIsKept() throws {
        let body = #"{"model":"m","reasoning":{"effort":"high","enabled":false},"messages":[{"role":"user","content":"Q"}]}"#
        #expect(try ChatRequest(body: Array(body.utf8)).modelRequest().reasoning == ModelRequest.Reasoning(effort: "high", enabled: false))
    }

    @Test func anEffortNoProviderKnowsIsA400NamingIt() {
        for (field, param) in [(#""reasoning":{"effort":"bogus"}"#, "reasoning.effort"), (#""reasoning_effort":"bogus""#, "reasoning_effort"),
                               (#""reasoning_effort":3"#, "reasoning_effort")] {
            let body = #"{"model":"m",\#(field),"messages":[{"role":"user","content":"Q"}]}"#
            do throws(APIError) {
                _ = try ChatRequest(body: Array(body.utf8))
                Issue.record("\(field) was taken")
            } catch {
                #expect(error.status == 400 && error.param == param, "\(error)")
            }
        }
    }

    /// OpenAI's own `reasoning_effort` asks other providers to think; to an OpenAI-compatible
    /// upstream it goes as it came, without OpenRouter's `reasoning` beside it.
    @Test func aChatClientsReasoningEffortAsksEveryProviderToThink() throws {
        let body = #"{"model":"m","reasoning_effort":"low","messages":[{"role":"user","content":"Q"}]}"#
        let request = try ChatRequest(body: Array(body.utf8)).modelRequest()
        #expect(request.reasoning == ModelRequest.Reasoning(effort: "low"))
        let openAI = OpenAIRequestEncoder.json(request, maxTokensField: .maxCompletionTokens)
        #expect(openAI["reasoning_effort"] == .string("low") && openAI["reasoning"] == nil, "\(openAI)")
    }

    /// A server speaking OpenAI's dialect gets `reasoning_effort` alone: OpenAI's API refuses
    /// fields it does not know, OpenRouter's `reasoning` object among them.
    @Test func reasoningReachesAnOpenAIDialectServerAsAnEffort() throws {
        let cases: [(ModelRequest.Reasoning, String?)] = [
            (.init(effort: "high"), "high"), (.init(effort: "none"), "none"), (.init(effort: "high", enabled: false), nil), (.init(effort: "max"), "high"),
            (.init(maxTokens: 1024), "low"), (.init(maxTokens: 8192), "medium"), (.init(maxTokens: 32000), "high"),
            (.init(), nil), (.init(enabled: false), nil), (.init(maxTokens: 8192, enabled: false), nil), (.init(exclude: true), nil),
        ]
        for (reasoning, effort) in cases {
            var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, content: [.text("Q")])])
            request.reasoning = reasoning
            request.extraFieldsFormat = .anthropicMessages
            let body = OpenAIRequestEncoder.json(request, reasoningField: .effort)
            #expect(body["reasoning"] == nil && body["reasoning_effort"]?.stringValue == effort, "\(reasoning): \(body)")
            #expect(try JSONValue.parse(OpenAIRequestEncoder.body(request, reasoningField: .effort)) == body)
            #expect(OpenAIRequestEncoder.json(request, reasoningField: .object)["reasoning"] != nil)
        }
        // A chat client's own OpenRouter object is not passed to such a server either.
        let chat = #"{"model":"m","reasoning":{"effort":"low","max_tokens":10},"messages":[{"role":"user","content":"Q"}]}"#
        let body = OpenAIRequestEncoder.json(try ChatRequest(body: Array(chat.utf8)).modelRequest(), reasoningField: .effort)
        #expect(body["reasoning"] == nil && body["reasoning_effort"] == .string("low"), "\(body)")
    }

    /// An upstream's endless thinking is not held for its signature: past the cap no block is
    /// made (and the next block is whole again).
    @Test func aThinkingBlockPastTheCapIsNotKept() {
        var builder = ReasoningBlockBuilder()
        let piece = String(repeating: "t", count: 64 << 10)
        for _ in 0..<(ReasoningBlockBuilder.maximumTextBytes / piece.utf8.count + 1) { #expect(builder.add(.reasoning(piece)) == nil) }
        #expect(builder.add(.reasoningSignature("sig")) == nil)
        _ = builder.add(.reasoning("short"))
        #expect(builder.add(.reasoningSignature("sig2")) == .thinking(text: "short", signature: "sig2"))
    }

    @Test func aChatStreamSendsEachSignedBlockWholeAsAReasoningDetail() throws {
        var translation = ChatStreamTranslation(chunks: ChatChunkWriter(id: "gen-1", model: "a/m", created: 1), includeUsage: false)
        var out: [UInt8] = []
        for event: ModelEvent in [.reasoning("The user "), .reasoning("wants rain."), .reasoningSignature("sig=="), .redactedReasoning("ZW5j"),
                                  .toolCall(ToolCallFragment(index: 0, id: "t1", name: "f", arguments: "{}")), .finish(.toolCalls)] {
            translation.append(event, to: &out)
        }
        let chunks = String(decoding: out, as: UTF8.self).components(separatedBy: "\n\n").compactMap { line in
            line.hasPrefix("data: ") ? try? JSONValue.parse(Array(line.dropFirst(6).utf8)) : nil
        }
        let details = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["reasoning_details"]?.arrayValue }.flatMap { $0 }
        #expect(details == [ReasoningDetail.json(.thinking(text: "The user wants rain.", signature: "sig=="), index: 0),
                            ReasoningDetail.json(.redacted(data: "ZW5j"), index: 1)])
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["reasoning"]?.stringValue }.joined() == "The user wants rain.")
        let whole = try JSONValue.parse(ChatCompletionBody.make(id: "gen-1", model: "a/m", created: 1, events: [
            .reasoning("Hm."), .reasoningSignature("s"), .text("Hi"), .finish(.stop),
        ]))
        #expect(whole["choices"]?.arrayValue?.first?["message"]?["reasoning_details"] == .array([ReasoningDetail.json(.thinking(text: "Hm.", signature: "s"), index: 0)]))
    }

    @Test func aResponsesReasoningItemCarriesItsBlockAndComesBack() throws {
        var writer = ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: false)
        var out: [UInt8] = []
        for event: ModelEvent in [.reasoning("Rain "), .reasoning("or sun?"), .reasoningSignature("sig=="), .redactedReasoning("ZW5j"),
                                  .reasoning("Unsigned."), .toolCall(ToolCallFragment(index: 0, id: "t1", name: "f", arguments: "{}")),
                                  .finish(.toolCalls)] {
            writer.append(event, to: &out)
        }
        let output = writer.response(completedAt: 2)["output"]?.arrayValue ?? []
        #expect(output.map { $0["type"]?.stringValue ?? "" } == ["reasoning", "reasoning", "reasoning", "function_call"])
        let tokens = output.map { $0["encrypted_content"]?.stringValue }
        #expect(tokens[0].flatMap { ReasoningBlock(token: $0) } == .thinking(text: "Rain or sun?", signature: "sig=="))
        #expect(tokens[1].flatMap { ReasoningBlock(token: $0) } == .redacted(data: "ZW5j"))
        #expect(tokens[2] == nil && output[2]["summary"]?.arrayValue?.first?["text"] == .string("Unsigned."))

        // The items sent back as they came, then the call's output: the assistant turn starts
        // with the two blocks; an unsigned item and OpenAI's own encrypted reasoning add nothing.
        var input = output
        input.insert(.object(["type": .string("reasoning"), "summary": .array([]), "encrypted_content": .string("gAAAAopenai")]), at: 2)
        input.insert(.object(["role": .string("user"), "content": .string("Weather?")]), at: 0)
        input.append(.object(["type": .string("function_call_output"), "call_id": .string("t1"), "output": .string("rain")]))
        let body = JSONValue.object(["model": .string("a/m"), "input": .array(input)]).serialized()
        let messages = try ResponsesRequest(body: body).modelRequest().messages
        #expect(messages.map(\.role) == [.user, .assistant, .tool])
        #expect(messages[1].reasoning == [.thinking(text: "Rain or sun?", signature: "sig=="), .redacted(data: "ZW5j")])
        #expect(messages[1].toolCalls.map(\.id) == ["t1"])
    }

    @Test func anAlteredEncryptedContentIsA400NamingIt() throws {
        let token = ReasoningBlock.thinking(text: "t", signature: "s").token
        for (value, refused) in [(JSONWriting.quoted(String(token.dropLast(4))), true), ("42", true), (JSONWriting.quoted(token), false),
                                 (#""gAAAAopenai""#, false), ("null", false)] {
            let body = #"{"model":"a/m","input":[{"role":"user","content":"Q"},{"type":"reasoning","summary":[],"encrypted_content":\#(value)},{"role":"assistant","content":"A"}]}"#
            do throws(APIError) {
                let messages = try ResponsesRequest(body: Array(body.utf8)).modelRequest().messages
                #expect(!refused, "\(value) was taken")
                #expect(messages.last?.reasoning == (value.contains("fgw") ? [.thinking(text: "t", signature: "s")] : []))
            } catch {
                #expect(refused && error.status == 400 && error.param == "input[1].encrypted_content", "\(error)")
            }
        }
    }
}
