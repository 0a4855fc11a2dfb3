import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Providers
import Testing

/// Perimeter cases over the wire that unit tests alone do not prove: what reaches an upstream
/// (and what must not), and that nothing an upstream sends is lost on the paths other suites do
/// not drive (the outer model's final turn, the Responses and Messages routes).
@Suite struct UpstreamPerimeterTests {
    /// A second `model` (also spelled with escapes) cannot smuggle a model past a provider's
    /// allow-list: a 400 naming `model`, and no upstream call.
    @Test(arguments: [
        #"{"model":"listed/normal","messages":[{"role":"user","content":"x"}],"model":"listed/paced"}"#,
        #"{"model":"listed/normal","messages":[{"role":"user","content":"x"}],"mod\u0065l":"listed/paced"}"#,
        #"{"model":"listed/normal","messages":[{"role":"user","content":"x","role":"system"}]}"#,
    ])
    func aDuplicateKeyIsRefusedBeforeAnyUpstreamCall(body: String) throws {
        let env = try TestEnvironment()
        let response = try env.chat(body)
        #expect(response.status == 400 && response.json?["error"]?["code"] == .string("duplicate_key"), "\(response.text)")
        let param = response.json?["error"]?["param"]?.stringValue
        #expect(param == "model" || param == "messages[0].role", "\(response.text)")
        #expect(env.mockStats.counts.requests == 0)
    }

    /// A number beyond a double's range is a 400 naming where it is, never a `null` sent upstream.
    @Test(arguments: [
        (#"{"model":"mock/echo","messages":[{"role":"user","content":"x"}],"temperature":1e999}"#, "temperature"),
        (#"{"model":"mock/echo","messages":[{"role":"user","content":"x"}],"seed":-1e999}"#, "seed"),
        (#"{"model":"mock/echo","messages":[{"role":"user","content":"x"}],"metadata":{"n":[1,2e400]}}"#, "metadata.n[1]"),
    ])
    func aNumberBeyondADoubleIsA400NamingItsField(body: String, param: String) throws {
        let env = try TestEnvironment()
        let response = try env.chat(body)
        #expect(response.status == 400 && response.json?["error"]?["param"] == .string(param), "\(response.text)")
        #expect(env.mockStats.counts.requests == 0)
    }

    /// An upstream's absurd cost (clamped to 1e9 dollars, which is beyond Int64 in the metrics'
    /// 1e-10 units) and many of them summed never trap the gateway: the counter saturates, the
    /// record keeps the clamped cost, and the gateway keeps serving (it crashed on both).
    @Test func anAbsurdUpstreamCostNeitherTrapsNorWraps() throws {
        let env = try TestEnvironment()
        for stream in [true, false, true] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:cost_usd=1000000000000", stream: stream))
            #expect(response.status == 200, "\(response.text.prefix(300))")
        }
        let metrics = try env.get("/metrics")
        let total = try #require(metrics.metric(#"fusion_gateway_cost_usd_total{kind="proxy"}"#))
        #expect(total > 9e8 && total < 1e10, "saturated, never negative: \(total)")
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal", stream: false)).status == 200)
    }

    /// A Fusion output limit beyond 32 bits is a 400, and the largest one accepted cannot trap
    /// the cost estimate (a panel of eight at 2^31 − 1 tokens each).
    @Test func aHugeFusionOutputLimitIsRefusedOrBounded() throws {
        let env = try TestEnvironment { $0.fusion?.prices = ["mock/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2)] }
        let huge = #"{"model":"fusion","messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":{"max_completion_tokens":9223372036854775807}}]}"#
        for body in [huge, huge.replacingOccurrences(of: "9223372036854775807", with: "2147483648")] {
            let refused = try env.chat(body)
            #expect(refused.status == 400 && refused.json?["error"]?["param"] == .string("tools[0].parameters.max_completion_tokens"), "\(refused.text)")
        }
        let panel = (1...8).map { #""mock/expert-\#($0):pace_ms=0""# }.joined(separator: ",")
        let largest = #"{"model":"fusion","stream":true,"messages":[{"role":"user","content":"Should cities ban cars?"}],"stream_options":{"include_fusion_events":true},"tools":[{"type":"fusion","parameters":{"analysis_models":[\#(panel)],"max_completion_tokens":2147483647}}]}"#
        let response = try env.chat(largest)
        #expect(response.status == 200 && response.namedEvents.first?.name == "fusion.estimate", "\(response.text.prefix(300))")
    }

    /// A client asking for usage gets the upstream asked for it, whichever way its body goes
    /// upstream (relayed as sent, or rewritten for fallbacks); with none reported it gets an estimate.
    @Test func theUpstreamIsAskedForUsageWhenTheClientIs() throws {
        let env = try TestEnvironment()
        for extra in [#","stream_options":{"include_usage":true}"#, #","stream_options":{"include_usage":true},"models":["mock/normal"]"#] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:no_usage=1", extra: extra))
            let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
            #expect(sent["stream_options"]?["include_usage"] == .bool(true) && sent["models"] == nil, "\(sent)")
            let usage = response.plainChunksJSON.last { $0["usage"] != nil }?["usage"]
            #expect(usage?["estimated"] == .bool(true) && usage?["completion_tokens"]?.intValue ?? 0 > 0)
        }
        // Translated for another API: asked too.
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/responses", body: #"{"model":"mock/normal:pace_ms=1","stream":true,"input":"Hello there"}"#))
        let responses = try client.readResponse()
        #expect(try JSONValue.parse(env.mockStats.lastRequestBody)["stream_options"]?["include_usage"] == .bool(true))
        #expect(responses.text.contains(#""type":"response.completed""#))
    }

    /// The last content, the finish reason and the usage in one chunk: the outer model's final
    /// turn keeps all three.
    @Test func theFinalTurnsLastChunkIsKeptWhole() throws {
        let env = try TestEnvironment()
        let body = #"{"model":"mock/outer:pace_ms=1:together=1","stream":true,"stream_options":{"include_usage":true},"tool_choice":"required","messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":{"preset":"budget"}}]}"#
        let response = try env.chat(body)
        let answer = response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        let whole = try env.chat(body.replacingOccurrences(of: "together=1", with: "n=1"))
        let reference = whole.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(!answer.isEmpty && answer == reference, "\(answer.suffix(80)) vs \(reference.suffix(80))")
        #expect(response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue } == ["stop"])
        let calls = response.plainChunksJSON.last?["usage"]?["fusion"]?["calls"]?.arrayValue ?? []
        #expect(calls.last?["role"] == .string("outer_final") && calls.last?["completion_tokens"]?.intValue ?? 0 > 0, "\(calls.last ?? .null)")
    }

    /// An error after a deliberation's stream began carries the stream's id and model, like
    /// every chunk before it.
    @Test func aFusionErrorChunkCarriesTheStreamsIdAndModel() throws {
        let env = try TestEnvironment { $0.fusion?.outerModel = "mock/outer:pace_ms=1:fail_final=1" }
        let response = try env.chat(#"{"model":"fusion","stream":true,"tool_choice":"required","messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}]}"#)
        let chunks = response.plainChunksJSON
        let error = try #require(chunks.last { $0["error"] != nil })
        #expect(chunks.count > 2 && chunks.allSatisfy {
            $0["id"]?.stringValue == response.header("x-generation-id") && $0["model"] == .string("mock/outer:pace_ms=1:fail_final=1")
        }, "\(error)")
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    /// The same chunk, and a cut stream, through the other client APIs.
    @Test(arguments: ["/v1/responses", "/v1/messages"])
    func otherAPIsLoseNothingAndNeverEndACutStreamCleanly(path: String) throws {
        let env = try TestEnvironment()
        func send(_ model: String) throws -> TestResponse {
            let body = path == "/v1/responses"
                ? #"{"model":"\#(model)","stream":true,"input":"Hello there"}"#
                : #"{"model":"\#(model)","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"Hello there"}]}"#
            let client = try env.client()
            try client.send(TestEnvironment.post(path, body: body))
            return try client.readResponse()
        }
        let together = try send("mock/normal:pace_ms=1:together=1")
        let text = together.namedEvents.compactMap { event in
            event.name == "content_block_delta" ? event.data["delta"]?["text"]?.stringValue
                : event.name == "response.output_text.delta" ? event.data["delta"]?.stringValue : nil
        }.joined()
        #expect(text.hasSuffix("watch the stream arrive."), "the last content, sent with the finish: \(text.suffix(80))")
        #expect(together.text.contains(path == "/v1/responses" ? "response.completed" : "message_stop"))
        let cut = try send("mock/normal:pace_ms=1:truncate=1")
        #expect(cut.text.contains(path == "/v1/responses" ? "response.failed" : "event: error"), "\(cut.text.suffix(300))")
        #expect(!cut.text.contains(path == "/v1/responses" ? "response.completed" : "message_stop"))
        let record = try env.generation(cut.header("x-generation-id"))
        #expect(record?["error"]?["code"]?.stringValue == "upstream_truncated", "\(record ?? .null)")
    }
}
