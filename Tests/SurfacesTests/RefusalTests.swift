import Foundation
import GatewayCore
import Providers
import Surfaces
import Testing

/// An OpenAI-compatible model's `refusal` reaches every client API in that API's own form, never
/// an empty answer that looks complete.
@Suite struct RefusalTests {
    static let refusal = "I can't help with that."

    @Test func theOpenAIDecoderReadsRefusalsStreamedAndWhole() throws {
        var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 16, redactor: .none)
        var events: [ModelEvent] = []
        let stream = #"data: {"choices":[{"index":0,"delta":{"role":"assistant","refusal":"I can't "}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{"refusal":"help with that."},"finish_reason":"stop"}]}"# + "\n\ndata: [DONE]\n\n"
        _ = try Array(stream.utf8).withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
        #expect(events == [.refusal("I can't "), .refusal("help with that."), .finish(.stop)])
        let whole = try OpenAICompatibleProvider().decodeResponse(Array(#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"No."},"finish_reason":"stop"}]}"#.utf8), redactor: .none)
        #expect(whole == [.refusal("No."), .finish(.stop)])
    }

    @Test func chatClientsGetTheRefusalField() throws {
        var chunks = ChatChunkWriter(id: "gen-1", model: "m", created: 1)
        var out: [UInt8] = []
        chunks.append(.refusal(Self.refusal), to: &out)
        let line = String(decoding: out, as: UTF8.self).dropFirst(6).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try JSONValue.parse(Array(line.utf8))["choices"]?.arrayValue?.first?["delta"]?["refusal"] == .string(Self.refusal))
        let body = try JSONValue.parse(ChatCompletionBody.make(id: "gen-1", model: "m", created: 1, events: [.refusal(Self.refusal), .finish(.stop)]))
        let message = body["choices"]?.arrayValue?.first?["message"]
        #expect(message?["refusal"] == .string(Self.refusal) && message?["content"] == .null)
    }

    @Test(arguments: [true, false]) func responsesClientsGetARefusalPart(stream: Bool) throws {
        var writer = ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: stream)
        var out: [UInt8] = []
        for event: ModelEvent in [.reasoning("Hm."), .refusal("I can't "), .refusal("help with that."), .finish(.stop)] { writer.append(event, to: &out) }
        writer.appendEnd(completedAt: 2, to: &out)
        let output: [JSONValue]
        if stream {
            let events = try ResponsesStreamCheck.decode(out)
            #expect(ResponsesStreamCheck.problems(events).isEmpty, "\(ResponsesStreamCheck.problems(events))")
            #expect(events.filter { $0.type == "response.refusal.delta" }.compactMap { $0.json["delta"]?.stringValue }.joined() == Self.refusal)
            #expect(events.first { $0.type == "response.refusal.done" }?.json["refusal"] == .string(Self.refusal))
            output = events.last?.json["response"]?["output"]?.arrayValue ?? []
        } else {
            output = writer.response(completedAt: 2)["output"]?.arrayValue ?? []
        }
        #expect(output.last?["type"] == .string("message"))
        #expect(output.last?["content"] == .array([.object(["type": .string("refusal"), "refusal": .string(Self.refusal)])]), "\(output)")
    }

    @Test func anthropicClientsGetTheTextAndStopReasonRefusal() throws {
        let streamed = String(decoding: MessagesStreamWriterTests.render([.refusal(Self.refusal), .finish(.stop)]), as: UTF8.self)
        #expect(streamed.contains(#""text_delta","text":"I can't help with that.""#) && streamed.contains(#""stop_reason":"refusal""#), "\(streamed)")
        var whole = MessagesResponse(id: "msg_1", model: "m")
        for event: ModelEvent in [.refusal(Self.refusal), .finish(.stop)] { whole.add(event) }
        let json = try JSONValue.parse(whole.body())
        #expect(json["stop_reason"] == .string("refusal") && json["content"]?.arrayValue?.first?["text"] == .string(Self.refusal))
        // Tools or a length cut keep their own stop reason.
        let cut = String(decoding: MessagesStreamWriterTests.render([.refusal("No"), .finish(.length)]), as: UTF8.self)
        #expect(cut.contains(#""stop_reason":"max_tokens""#))
    }
}
