import Foundation
import GatewayCore
import MockUpstream
import Testing

/// The outer model calls the caller's tool and fusion in one turn: the deliberation runs, the
/// turn comes back as a real parallel tool-call turn (the caller's call, finish_reason
/// tool_calls, the fusion call's record in reasoning_details), and the follow-up request, with
/// the message sent back as received and the caller's tool result, gives the model the whole
/// turn: both calls, both results.
@Suite struct ParallelTurnTests {
    static let model = "mock/outer:pace_ms=1:with_fusion=1"
    static let tools = #"[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}},{"type":"fusion","parameters":{"preset":"budget"}}]"#
    static let question = #"{"role":"user","content":"Please lookup the local rules and ask the panel whether cities should ban cars"}"#

    /// The assistant message of a parallel turn, as a client reassembles it from a stream.
    func message(fromStream response: TestResponse) throws -> JSONValue {
        var calls: [Int: (id: String, name: String, arguments: String)] = [:]
        var details: [JSONValue] = []
        for chunk in response.plainChunksJSON {
            let delta = chunk["choices"]?.arrayValue?.first?["delta"]
            for fragment in delta?["tool_calls"]?.arrayValue ?? [] {
                let index = Int(fragment["index"]?.intValue ?? 0)
                var call = calls[index] ?? ("", "", "")
                if let id = fragment["id"]?.stringValue { call.id = id }
                if let name = fragment["function"]?["name"]?.stringValue { call.name += name }
                call.arguments += fragment["function"]?["arguments"]?.stringValue ?? ""
                calls[index] = call
            }
            details += delta?["reasoning_details"]?.arrayValue ?? []
        }
        let toolCalls = calls.keys.sorted().compactMap { calls[$0] }.map { call -> JSONValue in
            .object(["id": .string(call.id), "type": .string("function"),
                     "function": .object(["name": .string(call.name), "arguments": .string(call.arguments)])])
        }
        return .object(["role": .string("assistant"), "content": .null, "tool_calls": .array(toolCalls), "reasoning_details": .array(details)])
    }

    /// The fusion call first, the caller's second: the caller's call is its index 0 on the wire
    /// (review 57 #1: it came as index 1 with no 0, and openai-python's stream helper raised
    /// IndexError).
    @Test(.timeLimit(.minutes(1)))
    func theCallersCallsAreNumberedFromZeroWhateverFusionsPlace() throws {
        let env = try TestEnvironment()
        let model = "mock/outer:pace_ms=1:with_fusion=2"
        let response = try env.chat(#"{"model":"\#(model)","stream":true,"messages":[\#(Self.question)],"tools":\#(Self.tools)}"#)
        #expect(response.status == 200)
        let indexes = response.plainChunksJSON.flatMap { chunk in
            (chunk["choices"]?.arrayValue?.first?["delta"]?["tool_calls"]?.arrayValue ?? []).compactMap { $0["index"]?.intValue }
        }
        #expect(!indexes.isEmpty && indexes.allSatisfy { $0 == 0 }, "\(indexes)")
        #expect(try message(fromStream: response)["tool_calls"]?.arrayValue?.map { $0["function"]?["name"] } == [.string("lookup")])
    }

    @Test(.timeLimit(.minutes(1)), arguments: [true, false])
    func theTurnComesBackWithBothCallsAndTheNextRequestRestoresIt(stream: Bool) throws {
        let env = try TestEnvironment()
        let first = try env.chat(#"{"model":"\#(Self.model)","stream":\#(stream),"messages":[\#(Self.question)],"tools":\#(Self.tools)}"#)
        #expect(first.status == 200)
        let message: JSONValue
        if stream {
            let finishes = first.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
            #expect(finishes == ["tool_calls"])
            #expect(first.text.contains(": fusion: 2/2 panel models answered"), "the deliberation ran before the turn came back")
            message = try self.message(fromStream: first)
        } else {
            let choice = first.json?["choices"]?.arrayValue?.first
            #expect(choice?["finish_reason"] == .string("tool_calls"))
            #expect(first.json?["fusion"]?["status"] == .string("ok"))
            message = try #require(choice?["message"])
        }
        let calls = message["tool_calls"]?.arrayValue ?? []
        #expect(calls.map { $0["function"]?["name"] } == [.string("lookup")], "only the caller's call is the caller's to answer")
        let record = try #require(message["reasoning_details"]?.arrayValue?.first)
        #expect(record["type"] == .string("reasoning.server_tool_call") && record["tool_name"] == .string("openrouter:fusion"))
        let result = try JSONValue.parse(Array((record["result"]?.stringValue ?? "").utf8))
        #expect(result["status"] == .string("ok") && result["panel"]?["answered"] == .int(2))
        let record1 = try #require(try env.generation(first.header("x-generation-id")))
        let roles1 = record1["fusion"]?["calls"]?.arrayValue?.compactMap { $0["role"]?.stringValue } ?? []
        #expect(roles1 == ["outer", "panel", "panel", "judge"] && record1["finish_reason"] == .string("tool_calls"), "\(record1)")

        // The follow-up: the message as received, then the caller's result.
        let lookupID = try #require(calls.first?["id"]?.stringValue)
        let reply = #"{"role":"tool","tool_call_id":"\#(lookupID)","content":"Local rules: cars are banned on Sundays."}"#
        let body = #"{"model":"\#(Self.model)","stream":\#(stream),"messages":[\#(Self.question),"#
            + String(decoding: message.serialized(), as: UTF8.self) + "," + reply + #"],"tools":\#(Self.tools)}"#
        let second = try env.chat(body)
        #expect(second.status == 200)
        let answer = stream
            ? second.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
            : second.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
        #expect(answer.hasPrefix("Drawing on a panel of 2 models (2 answered)"), "written from the restored fusion result: \(answer)")
        #expect(answer.contains("said: Local rules: cars are banned on Sundays."), "and the caller's result: \(answer)")
        // What the outer model was sent: one turn with both calls, each answered.
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        let history = sent["messages"]?.arrayValue ?? []
        let turn = try #require(history.first { $0["role"] == .string("assistant") })
        let ids = turn["tool_calls"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
        #expect(turn["tool_calls"]?.arrayValue?.map { $0["function"]?["name"] } == [.string("lookup"), .string("fusion")])
        #expect(turn["content"] == .string("") && turn["reasoning_details"] == nil, "OpenAI's form, never a null content")
        #expect(Set(history.compactMap { $0["tool_call_id"]?.stringValue }) == Set(ids))
        let record2 = try #require(try env.generation(second.header("x-generation-id")))
        #expect(record2["fusion"]?["calls"]?.arrayValue?.contains { $0["role"] == .string("panel") } != true, "no second deliberation: \(record2)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aProxiedRequestRestoresTheRecordToo() throws {
        // The follow-up without the fusion tool: a plain proxy, which cannot relay the client's
        // bytes (no upstream knows the record) and sends the restored turn instead.
        let env = try TestEnvironment()
        let record = #"{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","tool_call_id":"call_f","arguments":"{}","result":"{\"status\":\"ok\"}"}"#
        let body = #"{"model":"mock/echo","stream":false,"messages":[{"role":"user","content":"Q"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_l","type":"function","function":{"name":"lookup","arguments":"{}"}}],"reasoning_details":[\#(record)]},{"role":"tool","tool_call_id":"call_l","content":"42"}]}"#
        let response = try env.chat(body)
        #expect(response.status == 200)
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        let history = sent["messages"]?.arrayValue ?? []
        #expect(history.map { $0["role"]?.stringValue ?? "" } == ["user", "assistant", "tool", "tool"])
        #expect(history[1]["tool_calls"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["call_l", "call_f"])
        #expect(history[2]["tool_call_id"] == .string("call_f") && history[2]["content"] == .string(#"{"status":"ok"}"#))
    }
}

/// The same parallel turn on `/v1/responses`: the output holds the caller's `function_call` and
/// the `openrouter:fusion` item with its `call_id` and `arguments`; the follow-up's input (the
/// output sent back as received, then the caller's `function_call_output`) gives the model the
/// whole turn: both calls, each answered.
@Suite struct ResponsesParallelTurnTests {
    static let tools = #"[{"type":"function","name":"lookup","parameters":{"type":"object"}},{"type":"openrouter:fusion","parameters":{"preset":"budget"}}]"#
    static let question = #"{"role":"user","content":"Please lookup the local rules and ask the panel whether cities should ban cars"}"#

    func post(_ env: TestEnvironment, _ body: String) throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/responses", body: body))
        return try client.readResponse()
    }

    /// The Response object: the body, or a stream's `response.completed`.
    func response(_ reply: TestResponse, stream: Bool) -> JSONValue? {
        stream ? reply.namedEvents.last { $0.name == "response.completed" }?.data["response"] : reply.json
    }

    @Test(.timeLimit(.minutes(1)), arguments: [true, false])
    func theFusionItemSentBackRestoresTheTurn(stream: Bool) throws {
        let env = try TestEnvironment()
        let first = try post(env, #"{"model":"\#(ParallelTurnTests.model)","stream":\#(stream),"input":[\#(Self.question)],"tools":\#(Self.tools)}"#)
        #expect(first.status == 200)
        let output = try #require(response(first, stream: stream)?["output"]?.arrayValue, "\(first.text)")
        #expect(output.map { $0["type"]?.stringValue ?? "" } == ["function_call", "openrouter:fusion"], "\(output)")
        let fusion = output[1]
        let fusionID = try #require(fusion["call_id"]?.stringValue)
        #expect(!fusionID.isEmpty && fusion["arguments"]?.stringValue != nil && fusion["status"] == .string("completed"), "\(fusion)")
        let lookupID = try #require(output[0]["call_id"]?.stringValue)

        let reply = #"{"type":"function_call_output","call_id":"\#(lookupID)","output":"Local rules: cars are banned on Sundays."}"#
        let input = "[" + Self.question + "," + output.map { String(decoding: $0.serialized(), as: UTF8.self) }.joined(separator: ",") + "," + reply + "]"
        let second = try post(env, #"{"model":"\#(ParallelTurnTests.model)","stream":\#(stream),"input":\#(input),"tools":\#(Self.tools)}"#)
        #expect(second.status == 200, "\(second.text)")
        let answer = response(second, stream: stream)?["output"]?.arrayValue?.last?["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        #expect(answer.hasPrefix("Drawing on a panel of 2 models (2 answered)"), "written from the restored fusion result: \(answer)")
        #expect(answer.contains("said: Local rules: cars are banned on Sundays."), "and the caller's result: \(answer)")
        // What the outer model was sent: one turn with both calls, then both results.
        let history = try JSONValue.parse(env.mockStats.lastRequestBody)["messages"]?.arrayValue ?? []
        #expect(history.map { $0["role"]?.stringValue ?? "" } == ["user", "assistant", "tool", "tool"], "\(history)")
        #expect(history[1]["tool_calls"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == [lookupID, fusionID])
        #expect(Set(history.compactMap { $0["tool_call_id"]?.stringValue }) == [lookupID, fusionID])
        let record = try #require(try env.generation(second.header("x-generation-id")))
        #expect(record["fusion"]?["calls"]?.arrayValue?.contains { $0["role"] == .string("panel") } != true, "no second deliberation: \(record)")
    }
}
