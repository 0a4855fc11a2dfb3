import Foundation
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// A Fusion request's answer gets the checks a proxied answer gets on its surface: a call to
/// the client's own tool whose arguments are cut or are not JSON ends the response failed
/// (`invalid_tool_arguments`), never `response.completed` or `stop_reason: tool_use` (review
/// 71A #1: broken arguments went out as a completed call when the request offered fusion).
@Suite(.timeLimit(.minutes(1))) struct FusionAnswerChecksTests {
    static let question = "Please lookup the local rules on cars"

    func post(_ env: TestEnvironment, _ path: String, _ body: String) throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body, headers: ["anthropic-version": "2023-06-01"]))
        return try client.readResponse()
    }

    @Test(arguments: [(1, true), (1, false), (2, true), (2, false)])
    func responsesRefusesBrokenArgumentsOfTheClientsTool(badArguments: Int, stream: Bool) throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion"},{"type":"function","name":"lookup","parameters":{"type":"object"}}]"#
        let response = try post(env, "/v1/responses", #"{"model":"mock/outer:pace_ms=0:bad_args=\#(badArguments)","input":"\#(Self.question)","stream":\#(stream),"tools":\#(tools)}"#)
        if stream {
            #expect(response.status == 200)
            let names = response.namedEvents.map(\.name)
            #expect(names.last == "response.failed" && !names.contains("response.completed"), "\(names)")
            // Responses' error codes are its own few (`server_error`); the message names the call.
            #expect(response.namedEvents.last?.data["response"]?["error"]?["message"]?.stringValue?.contains("'lookup'") == true, "\(response.text)")
        } else {
            #expect(response.status == 502 && response.json?["error"]?["code"] == .string("invalid_tool_arguments"), "\(response.text)")
        }
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["error"]?["code"] == .string("invalid_tool_arguments") || "\(record)".contains("invalid_tool_arguments"), "\(record)")
        // The same model with whole arguments: the call goes out, completed.
        let fine = try post(env, "/v1/responses", #"{"model":"mock/outer:pace_ms=0","input":"\#(Self.question)","stream":\#(stream),"tools":\#(tools)}"#)
        #expect(fine.status == 200 && !fine.text.contains("invalid_tool_arguments"), "\(fine.text)")
    }

    /// A member whose answer was whole (its finish and usage in) when its connection dropped has
    /// answered, as a proxied answer has (review 72A: it failed, its answer lost to the judge).
    /// Or went silent (2): it ends a second later, not at the member's deadline (review 75B #1).
    @Test(arguments: [1, 2])
    func aWholeAnswerWhoseTransferBrokeIsAnAnswer(drop: Int) throws {
        let env = try TestEnvironment()
        let members = #"["mock/expert-1:pace_ms=0:drop=\#(drop)","mock/expert-2:pace_ms=0"]"#
        let response = try env.chat(#"{"model":"mock/outer:pace_ms=0","stream":false,"messages":[{"role":"user","content":"\#(Self.question)"}],"tools":[{"type":"fusion","parameters":{"analysis_models":\#(members)}}],"tool_choice":"required"}"#)
        #expect(response.status == 200, "\(response.text.prefix(400))")
        let fusion = try #require(response.json?["fusion"])
        // Bound first: `#expect((a?.b ?? c).isEmpty)` is never checked by the macro (swift-testing
        // 6.3.1: a member of a parenthesized optional chain at the top passes whatever it holds).
        let failed = fusion["failed_models"]?.arrayValue ?? []
        #expect(failed.isEmpty, "\(fusion)")
        let calls = response.json?["usage"]?["fusion"]?["calls"]?.arrayValue ?? []
        let dropped = calls.first { $0["model"]?.stringValue?.hasPrefix("mock/expert-1") == true }
        #expect(dropped?["status"] == .string("ok") && (dropped?["completion_tokens"]?.intValue ?? 0) > 0, "\(calls)")
        // Proxied, the same stream ends complete too.
        let proxied = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:drop=1"))
        #expect(try env.generation(response.header("x-generation-id"))?["generation_time"]?.doubleValue ?? 0 < 10_000)
        #expect(proxied.status == 200 && proxied.streamError == nil && proxied.text.contains("[DONE]"), "\(proxied.text.suffix(300))")
    }

    /// A turn that called fusion and the client's tool with broken arguments fails when the turn
    /// ends, before any panel member is asked (review 72B #6: the whole deliberation ran and was
    /// charged, then the response failed).
    @Test(arguments: [(1, true), (2, false), (1, false), (2, true)])
    func responsesRefusesBrokenArgumentsBeforeTheDeliberation(badArguments: Int, stream: Bool) throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion"},{"type":"function","name":"lookup","parameters":{"type":"object"}}]"#
        let body = #"{"model":"mock/outer:pace_ms=0:with_fusion=1:bad_args=\#(badArguments)","input":"\#(Self.question)","stream":\#(stream),"tools":\#(tools)}"#
        let response = try post(env, "/v1/responses", body)
        if stream {
            let names = response.namedEvents.map(\.name)
            #expect(names.last == "response.failed" && !names.contains { $0.contains("panel") }, "\(names)")
        } else {
            #expect(response.status == 502 && response.json?["error"]?["code"] == .string("invalid_tool_arguments"), "\(response.text)")
        }
        #expect(env.mockStats.counts.requests == 1, "only the outer turn reached the upstream")
        // Whole arguments: the same turn deliberates.
        let fine = try post(env, "/v1/responses", body.replacingOccurrences(of: ":bad_args=\(badArguments)", with: ""))
        #expect(fine.status == 200 && !fine.text.contains("invalid_tool_arguments"), "\(fine.text)")
        #expect(env.mockStats.counts.requests > 3, "the panel was asked")
    }

    @Test(arguments: [(1, true), (1, false), (2, true), (2, false)])
    func messagesRefusesBrokenArgumentsOfTheClientsTool(badArguments: Int, stream: Bool) throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion"},{"name":"lookup","input_schema":{"type":"object"}}]"#
        let response = try post(env, "/v1/messages", #"{"model":"mock/outer:pace_ms=0:bad_args=\#(badArguments)","max_tokens":500,"stream":\#(stream),"messages":[{"role":"user","content":"\#(Self.question)"}],"tools":\#(tools)}"#)
        if stream {
            #expect(response.status == 200)
            let names = response.namedEvents.map(\.name)
            #expect(names.last == "error" && !names.contains("message_stop") && !names.contains("message_delta"), "\(names)")
            #expect(response.namedEvents.last?.data["error"]?["message"]?.stringValue?.contains("lookup") == true, "\(response.text)")
        } else {
            #expect(response.status == 502 && response.json?["type"] == .string("error"), "\(response.text)")
        }
        let fine = try post(env, "/v1/messages", #"{"model":"mock/outer:pace_ms=0","max_tokens":500,"stream":\#(stream),"messages":[{"role":"user","content":"\#(Self.question)"}],"tools":\#(tools)}"#)
        #expect(fine.status == 200 && fine.text.contains("tool_use"), "\(fine.text)")
    }

    /// A deliberation whose usage holds the gateway's estimate (a member's upstream reported none)
    /// says so at the usage's top level on Messages, as on chat and Responses (review 71A #3).
    @Test(arguments: [true, false])
    func messagesSaysItsUsageHoldsEstimates(stream: Bool) throws {
        let env = try TestEnvironment()
        let panel = #"["mock/expert-1:pace_ms=0","mock/expert-2:pace_ms=0:no_usage=1"]"#
        let body = #"{"model":"mock/outer:pace_ms=0","max_tokens":500,"stream":\#(stream),"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":\#(panel)}}]}"#
        let response = try post(env, "/v1/messages", body)
        #expect(response.status == 200, "\(response.text)")
        let usage = stream ? response.namedEvents.last { $0.name == "message_delta" }?.data["usage"] : response.json?["usage"]
        #expect(usage?["estimated"] == .bool(true) && usage?["fusion"]?["calls_estimated"]?.intValue ?? 0 >= 1, "\(String(describing: usage))")
        let direct = try post(env, "/v1/messages", body.replacingOccurrences(of: ":no_usage=1", with: ""))
        let measured = stream ? direct.namedEvents.last { $0.name == "message_delta" }?.data["usage"] : direct.json?["usage"]
        #expect(measured?["estimated"] == nil, "\(String(describing: measured))")
    }

    /// An Anthropic outer model's own stop reaches a Messages client through a deliberation, as
    /// through the proxy: `stop_sequence` with its sequence, `pause_turn` (review 71A #2, 72B #1:
    /// the call's records dropped them, so the first fix never reached the wire).
    @Test(arguments: [true, false])
    func anAnthropicOuterModelsOwnStopReachesTheClient(stream: Bool) throws {
        let env = try TestEnvironment { config in
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: config.providers["mock"]!.baseURL,
                                             apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        func stop(_ model: String, _ question: String) throws -> (reason: JSONValue?, sequence: JSONValue?) {
            let body = #"{"model":"\#(model)","max_tokens":500,"stream":\#(stream),"stop_sequences":["STOP"],"messages":[{"role":"user","content":"\#(question)"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=0"]}}]}"#
            let response = try post(env, "/v1/messages", body)
            #expect(response.status == 200, "\(response.text)")
            let source = stream ? response.namedEvents.last { $0.name == "message_delta" }?.data["delta"] : response.json
            return (source?["stop_reason"], source?["stop_sequence"])
        }
        // A deliberation, its final turn stopped at the sequence; a direct answer that paused.
        let deliberated = try stop("anth/outer:pace_ms=0:stop=1", "Should cities ban cars?")
        #expect(deliberated.reason == .string("stop_sequence") && deliberated.sequence == .string("STOP"), "\(deliberated)")
        let paused = try stop("anth/outer:pace_ms=0:stop=2", "Hi")
        #expect(paused.reason == .string("pause_turn"), "\(paused)")
    }
}
