import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Providers
import Testing

/// One id per completion, on every path: the body's or every chunk's `id` is the
/// `X-Generation-Id`, under which the record is found; one `created` over a whole stream.
@Suite struct OneIDTests {
    /// Checks `response` (a stream or a whole body) against its header and its record; returns the record.
    @discardableResult
    static func checkOneID(_ env: TestEnvironment, _ response: TestResponse, streamed: Bool,
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue {
        let id = try #require(response.header("x-generation-id"), sourceLocation: sourceLocation)
        // The SDKs' request ids (OpenAI's `x-request-id`, Anthropic's `request-id`) are the same id.
        #expect(response.header("x-request-id") == id && response.header("request-id") == id, sourceLocation: sourceLocation)
        let record = try #require(try env.generation(id), "no record under \(id)", sourceLocation: sourceLocation)
        #expect(record["id"] == .string(id), sourceLocation: sourceLocation)
        if streamed {
            let chunks = response.plainChunksJSON
            #expect(!chunks.isEmpty, sourceLocation: sourceLocation)
            #expect(chunks.allSatisfy { $0["id"] == .string(id) }, "\(chunks.map { $0["id"] })", sourceLocation: sourceLocation)
            #expect(chunks.allSatisfy { $0["created"] == record["created"] }, "every chunk, usage and error chunks too",
                    sourceLocation: sourceLocation)
        } else if response.status == 200 {
            #expect(response.json?["id"] == .string(id), sourceLocation: sourceLocation)
            #expect(response.json?["created"] == record["created"], sourceLocation: sourceLocation)
        }
        return record
    }

    /// A cost as the gateway states it: at most 10 decimal places.
    static func isRounded(_ cost: JSONValue?) -> Bool {
        guard let value = cost?.doubleValue else { return false }
        return Usage.roundedCost(value) == value
    }

    @Test func theProxiedPathsCarryTheGenerationID() throws {
        let env = try TestEnvironment()
        let usage = #","stream_options":{"include_usage":true}"#
        // Relayed as the upstream sent it (ids and created rewritten), with the upstream's usage.
        let streamed = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", extra: usage))
        let record = try Self.checkOneID(env, streamed, streamed: true)
        let usageChunk = try #require(streamed.plainChunksJSON.last { $0["usage"] != nil })
        #expect(Self.isRounded(usageChunk["usage"]?["cost"]))
        #expect(usageChunk["usage"]?["cost"] == record["total_cost"], "the client and the record state one cost")
        // In the usage it reads (the mock's `sent_at_us` timestamps may hold any digits: CI run
        // 89 failed on one ending 999991).
        let usageLines = streamed.text.split(separator: "\n").filter { $0.contains(#""usage""#) }
        #expect(!usageLines.isEmpty && !usageLines.joined().contains("99999"), "no float noise in what the client reads")
        // The gateway's estimate when the upstream sends no usage.
        let estimated = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:no_usage=1", extra: usage))
        #expect(try Self.checkOneID(env, estimated, streamed: true)["usage_estimated"] == .bool(true))
        #expect(record["usage_unknown"] == .bool(false))
        // No usage asked for: the upstream is asked anyway, so the record (and the key's limits)
        // have the real figures, and the client sees no usage chunk.
        let unasked = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1"))
        let unaskedRecord = try Self.checkOneID(env, unasked, streamed: true)
        #expect(unaskedRecord["usage_unknown"] == .bool(false) && unaskedRecord["usage_estimated"] == .bool(false))
        #expect((unaskedRecord["tokens_completion"]?.intValue ?? 0) > 0, "\(unaskedRecord)")
        #expect(!unasked.plainChunksJSON.contains { $0["usage"] != nil && $0["usage"] != .null }, "\(unasked.text)")
        // None sent at all: estimated (the prompt by its size, a token per event), never 0 tokens.
        let silent = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:no_usage=1"))
        let silentRecord = try Self.checkOneID(env, silent, streamed: true)
        #expect(silentRecord["usage_estimated"] == .bool(true) && (silentRecord["tokens_completion"]?.intValue ?? 0) > 0)
        // A whole body.
        let whole = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false))
        let wholeRecord = try Self.checkOneID(env, whole, streamed: false)
        #expect(whole.json?["usage"]?["cost"] == wholeRecord["total_cost"] && Self.isRounded(whole.json?["usage"]?["cost"]))
        // A whole body without usage: estimated too (review 22 F4: charged nothing).
        let wholeSilent = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:no_usage=1", stream: false))
        let wholeSilentRecord = try Self.checkOneID(env, wholeSilent, streamed: false)
        #expect(wholeSilent.json?["usage"] == nil || wholeSilent.json?["usage"] == .null, "\(wholeSilent.text)")
        #expect(wholeSilentRecord["usage_estimated"] == .bool(true) && wholeSilentRecord["usage_unknown"] == .bool(false)
                && (wholeSilentRecord["tokens_completion"]?.intValue ?? 0) > 0 && (wholeSilentRecord["tokens_prompt"]?.intValue ?? 0) > 0,
                "\(wholeSilentRecord)")
        // An error chunk after the stream began.
        let broken = try env.chat(TestEnvironment.chatBody(model: "mock/error-mid-stream:pace_ms=1"))
        try Self.checkOneID(env, broken, streamed: true)
        #expect(broken.streamError != nil)
        // A whole answer to a streamed request, turned into chunks.
        try Self.checkOneID(env, try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:whole=1", extra: usage)), streamed: true)
        // And without usage: its output estimated by its size, not a token for its one event
        // (review 45 proxy #5).
        let wholeStreamed = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1:whole=1:no_usage=1", extra: usage))
        let wholeStreamedRecord = try Self.checkOneID(env, wholeStreamed, streamed: true)
        #expect(wholeStreamedRecord["usage_estimated"] == .bool(true), "\(wholeStreamedRecord)")
        #expect((wholeStreamedRecord["tokens_completion"]?.intValue ?? 0) == Int64(wholeStreamed.streamedContent.utf8.count / 4 + 1),
                "\(wholeStreamedRecord) for \(wholeStreamed.streamedContent.utf8.count) bytes")
        // An error before anything was sent: the header names the record.
        let failed = try env.chat(TestEnvironment.chatBody(model: "mock/error:status=400"))
        #expect(try Self.checkOneID(env, failed, streamed: false)["status"] == .int(400))
        // Refused before any upstream call: a record too.
        let refused = try env.chat(TestEnvironment.chatBody(model: "nobody/x"))
        #expect(try Self.checkOneID(env, refused, streamed: false)["kind"] == .string("rejected"))
        // Refused while planned (a bad fusion parameter): the record names the model asked for.
        let badFusion = try env.chat(#"{"model":"mock/outer","stream":true,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"fusion","parameters":{"grace_ms":-1}}]}"#)
        let rejected = try #require(try env.generation(badFusion.header("x-generation-id")))
        #expect(badFusion.status == 400 && rejected["kind"] == .string("rejected") && rejected["requested_model"] == .string("mock/outer"), "\(rejected)")
        #expect(rejected["streamed"] == .bool(true))
        // A refused request's model is kept as short as any model name, in bytes: one letter and
        // a million accents is one Character, and was kept whole (review 46 #1).
        let accents = "a" + String(repeating: "\u{0301}", count: 20_000)
        let huge = try env.chat(#"{"model":"\#(accents)","messages":[]}"#)
        let hugeRecord = try #require(try env.generation(huge.header("x-generation-id")), "\(huge.status) \(huge.headers) \(huge.text.prefix(300))")
        #expect(huge.status == 400 && (hugeRecord["requested_model"]?.stringValue?.utf8.count ?? .max) <= ModelRouter.maxModelNameBytes + 3,
                "\(huge.status) \(hugeRecord["requested_model"]?.stringValue?.utf8.count ?? -1) bytes")
    }

    @Test func aTranslatedStreamCarriesTheGenerationID() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let usage = #","stream_options":{"include_usage":true}"#
        let streamed = try env.chat(TestEnvironment.chatBody(model: "anth/normal:pace_ms=1", extra: usage))
        #expect(streamed.status == 200)
        let record = try Self.checkOneID(env, streamed, streamed: true)
        #expect(record["provider_name"] == .string("anth"))
        try Self.checkOneID(env, try env.chat(TestEnvironment.chatBody(model: "anth/normal:pace_ms=1", stream: false)), streamed: false)
        try Self.checkOneID(env, try env.chat(TestEnvironment.chatBody(model: "anth/error-mid-stream:pace_ms=1")), streamed: true)
    }

    @Test func fusionCarriesTheGenerationIDStreamedAndWhole() throws {
        let env = try TestEnvironment()
        let body = #"{"model":"mock/outer:pace_ms=1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}],"tools":[{"type":"fusion"}]}"#
        let streamed = try env.chat(body)
        let record = try Self.checkOneID(env, streamed, streamed: true)
        let usage = try #require(streamed.plainChunksJSON.last?["usage"])
        // The client's usage, the record and the sum of the record's calls agree, to the last place.
        #expect(Self.isRounded(usage["cost"]) && usage["cost"] == record["total_cost"])
        #expect(!streamed.text.split(separator: "\n").filter { $0.contains(#""usage""#) }.joined().contains("99999"), "no float noise in the usage")
        let calls = try #require(record["inner_calls"]?.arrayValue)
        #expect(calls.map { $0["role"]?.stringValue ?? "" } == ["outer", "panel", "panel", "panel", "judge", "outer_final"])
        let summed = calls.compactMap { $0["usage"]?["cost"]?.doubleValue }.reduce(Usage()) { $0 + Usage(cost: $1) }
        #expect(record["total_cost"]?.doubleValue == summed.cost)
        #expect(record["tokens_prompt"] == usage["prompt_tokens"] && record["tokens_completion"] == usage["completion_tokens"])
        #expect(calls.allSatisfy { $0["status"] == .int(200) && $0["cancelled"] == .bool(false) && $0["error"] == .null })
        // Each call's upstream time is its own part of the call's time: the rest is the gateway's.
        #expect(calls.allSatisfy { call in
            guard let upstream = call["upstream_time"]?.doubleValue, let total = call["generation_time"]?.doubleValue else { return false }
            return upstream > 0 && upstream < total
        }, "\(calls.map { ($0["upstream_time"] ?? .null, $0["generation_time"] ?? .null) })")
        #expect(calls.map { $0["finish_reason"]?.stringValue ?? "" } == ["tool_calls", "stop", "stop", "stop", "stop", "stop"],
                "the outer model's first turn ended calling the fusion tool")
        #expect(record["fusion"]?["calls"] == usage["fusion"]?["calls"], "the record keeps the breakdown the client got")
        let whole = try env.chat(body.replacingOccurrences(of: #""stream":true"#, with: #""stream":false"#))
        let wholeRecord = try Self.checkOneID(env, whole, streamed: false)
        #expect(whole.json?["usage"]?["cost"] == wholeRecord["total_cost"])
    }
}

/// Records and metrics after every way a request can end badly.
@Suite struct TruthfulRecordTests {
    static let fusionQuestion = "Should cities ban cars from their centres?"

    static func fusionBody(stream: Bool, tools: String = #"[{"type":"fusion"}]"#, model: String = "mock/outer:pace_ms=1") -> String {
        #"{"model":"\#(model)","stream":\#(stream),"messages":[{"role":"user","content":"\#(fusionQuestion)"}],"tools":\#(tools)}"#
    }

    @Test func anUpstream502IsAnErrorNotAStop() throws {
        let env = try TestEnvironment()
        for stream in [false, true] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/error:status=502:n=\(stream ? 1 : 0)", stream: stream))
            #expect(response.status == 502)
            let record = try #require(try env.generation(response.header("x-generation-id")))
            #expect(record["status"] == .int(502))
            #expect(record["finish_reason"] == .string("error"))
            #expect(record["cancelled"] == .bool(false))
            #expect(record["kind"] == .string("proxy") && record["provider_name"] == .string("mock"))
            #expect(record["error"]?["type"] == .string("upstream_error"))
            #expect(record["error"]?["code"] == response.json?["error"]?["code"], "the record names the error the client got")
            #expect(record["error"]?["message"] == response.json?["error"]?["message"])
            #expect(record["error"]?["origin"] == .string("upstream"), "the upstream's error, passed on")
            #expect(record["retries"] == .int(2) && record["upstream_attempts"] == .int(3))
        }
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="proxy",status="502"}"#) == 2)
        #expect(metrics.metric(#"fusion_gateway_upstream_retries_total{provider="mock"}"#) == 4)
        #expect(metrics.metric(#"fusion_gateway_upstream_errors_total{provider="mock",code="other"}"#) == 2)
        // Told apart from the gateway's own errors, whose codes an upstream's may share (review 62D #7).
        #expect(metrics.metric(#"fusion_gateway_errors_total{code="other",origin="upstream"}"#) == 2)
        #expect(metrics.metric(#"fusion_gateway_errors_total{code="other",origin="gateway"}"#) == nil)
    }

    /// An upstream's error that ended a deliberation (its outer model's 401) is the upstream's
    /// too: it crosses the session's fan-in with its origin (review 65 #1).
    @Test func aDeliberationsUpstreamErrorKeepsItsOrigin() throws {
        let env = try TestEnvironment()
        let body = #"{"model":"mock/error:status=401","messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion"}]}"#
        let response = try env.chat(body)
        #expect(response.status == 502 && response.json?["error"]?["code"] == .string("upstream_auth_failed"), "\(response.text)")
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["kind"] == .string("fusion") && record["error"]?["origin"] == .string("upstream"), "\(record)")
        #expect(try env.get("/metrics").metric(#"fusion_gateway_errors_total{code="upstream_auth_failed",origin="upstream"}"#) == 1)
    }

    @Test func anErrorAfterTheHeadIsStatus200WithAnErrorEnding() throws {
        let env = try TestEnvironment()
        // The keep-alive (150 ms here) commits the 200 while the gateway waits out Retry-After.
        let late = try env.chat(TestEnvironment.chatBody(model: "mock/rate-limited:retry_after_ms=150"))
        #expect(late.status == 200 && late.streamError?["code"] == .string("rate_limited"))
        let record = try #require(try env.generation(late.header("x-generation-id")))
        #expect(record["status"] == .int(200), "the status the client was sent")
        #expect(record["finish_reason"] == .string("error") && record["error"]?["code"] == .string("rate_limited"))
        let broken = try env.chat(TestEnvironment.chatBody(model: "mock/error-mid-stream:pace_ms=1"))
        let brokenRecord = try #require(try env.generation(broken.header("x-generation-id")))
        #expect(brokenRecord["status"] == .int(200) && brokenRecord["finish_reason"] == .string("error"))
        #expect(brokenRecord["error"]?["code"] == broken.streamError?["code"])
        #expect((brokenRecord["latency"]?.doubleValue ?? 0) > 0, "its tokens reached the client first")
    }

    @Test func retriesAndFallbacksAreCountedWhereTheyHappened() throws {
        let env = try TestEnvironment()
        let body = #"{"model":"mock/error:status=500","models":["dead/model","mock/normal:pace_ms=1"],"stream":true,"messages":[{"role":"user","content":"Hello there"}]}"#
        let response = try env.chat(body)
        #expect(response.status == 200)
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["model"] == .string("mock/normal:pace_ms=1") && record["requested_model"] == .string("mock/error:status=500"))
        #expect(record["fallbacks"] == .int(2) && record["retries"] == .int(4) && record["upstream_attempts"] == .int(7))
        #expect(record["status"] == .int(200) && record["finish_reason"] == .string("stop") && record["error"] == .null)
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_upstream_fallbacks_total{provider="mock"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_upstream_fallbacks_total{provider="dead"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_upstream_retries_total{provider="mock"}"#) == 2)
        #expect(metrics.metric(#"fusion_gateway_upstream_retries_total{provider="dead"}"#) == 2)
        #expect((metrics.metric(#"fusion_gateway_upstream_time_to_first_token_seconds_count{provider="mock"}"#) ?? 0) == 1)
        // A panel member's retries are its call's.
        let fusion = try env.chat(Self.fusionBody(stream: false, tools: #"[{"type":"fusion","parameters":{"analysis_models":["mock/flaky:fail=1:pace_ms=1:n=7"]}}]"#))
        #expect(fusion.status == 200)
        let fusionRecord = try #require(try env.generation(fusion.header("x-generation-id")))
        let panel = try #require(fusionRecord["inner_calls"]?.arrayValue?.first { $0["role"] == .string("panel") })
        #expect(panel["attempts"] == .int(2) && panel["status"] == .int(200))
        #expect(fusionRecord["retries"] == .int(1))
    }

    /// A call cut before its usage is charged an estimate, and its entry in the record says what
    /// the record charges for it: the calls add up to the total (review 62C #4: `cost: 0`).
    @Test func aCutCallsEstimateIsCostedInTheRecordAsItIsCharged() throws {
        let env = try TestEnvironment { config in
            config.prices = ["mock/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 8)]
        }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/paced:pace_ms=50:deltas=100"],"min_answers":1,"grace_ms":0}}]"#
        let response = try env.chat(Self.fusionBody(stream: false, tools: tools))
        #expect(response.status == 200)
        let id = try #require(response.header("x-generation-id"))
        #expect(env.eventually { (try? env.generation(id)) != nil })
        let record = try #require(try env.generation(id))
        let calls = try #require(record["inner_calls"]?.arrayValue)
        let cut = try #require(calls.first { $0["usage_estimated"] == .bool(true) }, "\(calls)")
        #expect((cut["usage"]?["cost"]?.doubleValue ?? 0) > 0, "\(cut)")
        // The call the session cut keeps what its upstream said of it (review 81A #3: no status, no ids).
        // Bound first: `#expect((a?.b ?? "").hasPrefix(…))` is never checked by the macro
        // (swift-testing 6.3.1; see FusionAnswerChecksTests).
        let requestID = cut["upstream_request_id"]?.stringValue ?? "", answerID = cut["upstream_id"]?.stringValue ?? ""
        #expect(cut["cancelled"] == .bool(true) && cut["status"] == .int(200) && requestID.hasPrefix("req-"), "\(cut)")
        #expect(answerID.hasPrefix("chatcmpl-"), "its answer's id, read before the cut (review 82 #2): \(cut)")
        let sum = calls.compactMap { $0["usage"]?["cost"]?.doubleValue }.reduce(0, +)
        let total = record["usage"]?["cost"]?.doubleValue ?? record["total_cost"]?.doubleValue ?? -1
        #expect(abs(sum - total) < 1e-9, "calls \(sum), record \(total)")
    }

    @Test func aDeliberationCancelledMidPanelIsCancelledNotStatusZero() throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/paced:pace_ms=50:deltas=100","mock/paced:pace_ms=50:deltas=100:n=2"]}}]"#
        // Streamed: the head is out, so the status sent is 200; the panel is cut.
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions", body: Self.fusionBody(stream: true, tools: tools)))
        // By the fifth paced delta the fast member has answered; the two slow ones have 95 to go.
        _ = try? client.readResponse { chunk in
            if String(decoding: chunk, as: UTF8.self).contains("t5") { client.disconnect() }
        }
        let id = try #require(client.lastResponseHeaders.first { $0.0.lowercased() == "x-generation-id" }?.1)
        #expect(env.eventually { (try? env.generation(id)) != nil })
        let record = try #require(try env.generation(id))
        #expect(record["status"] == .int(200) && record["cancelled"] == .bool(true) && record["finish_reason"] == .string("cancelled"))
        #expect(record["kind"] == .string("fusion") && record["router"] == .string("openrouter/fusion") && record["entry_point"] == .string("fusion_tool"))
        #expect(record["overhead_ms"] == .null, "no overhead figure for a request that did not finish")
        let calls = try #require(record["inner_calls"]?.arrayValue)
        let cut = calls.filter { $0["role"] == .string("panel") && $0["cancelled"] == .bool(true) }
        #expect(cut.count == 2 && cut.allSatisfy { $0["finish_reason"] == .string("cancelled") && $0["upstream_time"] == .null })
        // What the cut members had generated is still charged (estimated), to the key and the record.
        #expect(cut.allSatisfy { $0["usage_estimated"] == .bool(true) && ($0["usage"]?["completion_tokens"]?.intValue ?? 0) > 0 }, "\(cut)")
        #expect(record["usage_estimated"] == .bool(true) && (record["tokens_completion"]?.intValue ?? 0) > 0)
        #expect(calls.filter { $0["role"] == .string("panel") && $0["finish_reason"] == .string("stop") }.count == 1)
        // Not streamed: nothing was sent, so the record says 499 (the client closed the request).
        let quiet = try env.client()
        try quiet.send(TestEnvironment.post("/v1/chat/completions", body: Self.fusionBody(stream: false, tools: tools)))
        #expect(env.eventually { env.mockStats.counts.active >= 2 })
        usleep(500_000)  // the fast member answers; the slow ones are cut
        quiet.disconnect()
        #expect(env.eventually { (try? env.get("/metrics"))?.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="fusion",status="499"}"#) == 1 })
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_fusion_member_failures_total{reason="cancelled"}"#) == 4)
        #expect(metrics.metric("fusion_gateway_active_deliberations") == 0)
        #expect(metrics.metric("fusion_gateway_active_streams") == 0)
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="fusion",status="200"}"#) == 1)
    }

    /// A client that drops its stream before the upstream's usage chunk still pays for what was
    /// generated (an estimate: the prompt by its size, a token per event), on every route: before,
    /// it paid nothing, so a key's budget and tokens per minute could be dodged by hanging up.
    @Test(arguments: ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
    func aStreamDroppedBeforeItsUsageIsStillCharged(path: String) throws {
        let env = try TestEnvironment()
        let model = "mock/paced:pace_ms=5:deltas=200"
        let body = switch path {
        case "/v1/messages": #"{"model":"\#(model)","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        case "/v1/responses": #"{"model":"\#(model)","stream":true,"input":"hi"}"#
        default: TestEnvironment.chatBody(model: model, extra: #","stream_options":{"include_usage":true}"#)
        }
        let record = try Self.droppedStream(env, path: path, body: body)
        #expect(record["cancelled"] == .bool(true) && record["usage_estimated"] == .bool(true), "\(record)")
        #expect((record["tokens_completion"]?.intValue ?? 0) > 0 && (record["tokens_prompt"]?.intValue ?? 0) > 0, "\(record)")
    }

    /// A client that leaves once the upstream has taken its prompt, before the first token, pays
    /// for the prompt: as the upstream counted it (Anthropic's `message_start`), or by its size
    /// (review 77B #1: such a request was free, so a key's budget and tokens per minute could be
    /// dodged with large prompts the provider still bills). A whole (non-streamed) answer's head
    /// comes only with the answer: one left before it is charged once its request had gone out
    /// whole (it was charged nothing: hanging up before a long answer dodged the budget).
    @Test(arguments: [("/v1/chat/completions", "mock", true), ("/v1/messages", "mock", true), ("/v1/responses", "mock", true),
                      ("/v1/chat/completions", "anth", true), ("/v1/chat/completions", "mock", false), ("/v1/messages", "mock", false),
                      ("/v1/responses", "mock", false), ("/v1/chat/completions", "anth", false)])
    func aClientThatLeavesBeforeTheFirstTokenPaysForThePrompt(path: String, provider: String, stream: Bool) throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: config.providers["mock"]!.baseURL,
                                             apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let model = "\(provider)/slow-first-token:first_ms=20000"
        let body = switch path {
        case "/v1/messages": #"{"model":"\#(model)","max_tokens":500,"stream":\#(stream),"messages":[{"role":"user","content":"hi"}]}"#
        case "/v1/responses": #"{"model":"\#(model)","stream":\#(stream),"input":"hi"}"#
        default: TestEnvironment.chatBody(model: model, stream: stream)
        }
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body))
        #expect(env.eventually { env.mockStats.counts.active == 1 })
        // A stream's head (and Anthropic's message_start) are the gateway's; a whole answer has
        // sent nothing yet.
        usleep(300_000)
        client.disconnect()
        var line: CapturedLog.Entry?
        #expect(env.eventually(timeoutSeconds: 5) {
            line = log.entries.first { $0.message == "request finished" }
            return line != nil
        })
        let fields = line?.metadata ?? [:]
        // Anthropic's `message_start` counts one output token already.
        #expect(fields["cancelled"] == "true" && (Int(fields["prompt_tokens"] ?? "") ?? 0) > 0 && (Int(fields["completion_tokens"] ?? "") ?? 9) <= 1,
                "\(fields)")
        #expect(env.eventually { env.mockStats.counts.active == 0 }, "the upstream transfer was cancelled")
    }

    /// A client that leaves a call its upstream refused (a 500 head, its body still coming) pays
    /// nothing, however far its request went (review 92 #1: the whole request having gone out
    /// charged it); one whose upstream has the request and has not answered pays its prompt.
    @Test(arguments: [true, false]) func aRefusedCallIsNotChargedWhenTheClientLeaves(stream: Bool) throws {
        let upstream = try UpstreamKeptConnectionTests.Listener()
        defer { close(upstream.fd) }
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            config.upstream.retry = RetryPolicy(maxRetries: 0, baseDelayMilliseconds: 20, maxDelayMilliseconds: 20)
            config.providers["raw"] = .init(name: "raw", baseURL: String(upstream.url.dropLast("/ping".count)) + "/v1")
        }
        for refuse in [true, false] {
            let before = log.entries.filter { $0.message == "request finished" }.count
            let client = try env.client()
            try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "raw/any", stream: stream)))
            let connection = try UpstreamKeptConnectionTests.takeRequestThenLeave(upstream, client: client, answer: refuse ? .refusal : .nothing)
            defer { close(connection) }
            var line: CapturedLog.Entry?
            #expect(env.eventually(timeoutSeconds: 5) {
                let lines = log.entries.filter { $0.message == "request finished" }
                line = lines.count > before ? lines.last : nil
                return line != nil
            })
            let fields = line?.metadata ?? [:]
            let prompt = Int(fields["prompt_tokens"] ?? "") ?? -1
            #expect(fields["cancelled"] == "true" && (refuse ? prompt == 0 && fields["usage_estimated"] == nil : prompt > 0 && fields["usage_estimated"] == "true"),
                    "refused: \(refuse), \(fields)")
        }
    }

    /// A member cancelled before it wrote anything (its response ended: here the client left) has
    /// its row in the per-call breakdown, not left out (review 71A #5), and its upstream having
    /// taken the prompt, it is charged for it (review 77B #1: it was charged nothing).
    @Test func aMemberCancelledBeforeItWroteAnythingHasItsRow() throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/slow-first-token:first_ms=60000"]}}]"#
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions", body: Self.fusionBody(stream: true, tools: tools)))
        let head = try client.readHead()
        // The outer turn and the fast member are done; the slow member has written nothing.
        #expect(env.eventually(timeoutSeconds: 10) { env.mockStats.counts.streamsFinished >= 2 })
        client.disconnect()
        var record: JSONValue?
        #expect(env.eventually(timeoutSeconds: 5) {
            record = try? env.generation(head.header("x-generation-id"))
            return record != nil
        })
        let calls = record?["fusion"]?["calls"]?.arrayValue ?? []
        let silent = calls.filter { $0["model"] == .string("mock/slow-first-token:first_ms=60000") }
        #expect(silent.count == 1 && silent.first?["status"] == .string("cancelled") && silent.first?["usage_unknown"] != .bool(true)
                && (silent.first?["prompt_tokens"]?.intValue ?? 0) > 0 && silent.first?["completion_tokens"] == .int(0), "\(calls)")
    }

    /// A member whose upstream never took its request (refused with a 4xx, its provider
    /// unreachable) owes nothing: its row in the client's breakdown is known and zero, as the
    /// record counts it (review 99 #1: the rows said `usage_unknown` and `calls_without_usage`
    /// counted them while the record's `usage_unknown` was false); one that answered without any
    /// usage or output is still unknown in both.
    @Test func aMemberRefusedOrUnreachableOwesNothingInEveryFigure() throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/error:status=400","dead/x"]}}]"#
        for stream in [false, true] {
            var body = Self.fusionBody(stream: stream, tools: tools)
            if stream { body.removeLast(); body += #","stream_options":{"include_usage":true}}"# }
            let response = try env.chat(body)
            #expect(response.status == 200, "\(response.text.prefix(300))")
            let usage = try #require(stream ? response.plainChunksJSON.last?["usage"] : response.json?["usage"])
            let calls = usage["fusion"]?["calls"]?.arrayValue ?? []
            let failed = calls.filter { ["mock/error:status=400", "dead/x"].contains($0["model"]?.stringValue ?? "") }
            #expect(failed.count == 2 && failed.allSatisfy { $0["usage_unknown"] == nil && $0["prompt_tokens"] == .int(0) }, "\(calls)")
            #expect(usage["fusion"]?["calls_without_usage"] == nil, "\(usage)")
            let record = try #require(try env.generation(response.header("x-generation-id")))
            #expect(record["usage_unknown"] == .bool(false), "\(record)")
        }
    }

    /// The record of a stream whose client hung up after its fifth chunk.
    static func droppedStream(_ env: TestEnvironment, path: String, body: String) throws -> JSONValue {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body))
        var seen = 0
        _ = try? client.readResponse { _ in
            seen += 1
            if seen == 5 { client.disconnect() }
        }
        let id = try #require(client.lastResponseHeaders.first { $0.0.lowercased() == "x-generation-id" }?.1)
        #expect(env.eventually { (try? env.generation(id)) != nil })
        return try #require(try env.generation(id))
    }

    /// A proxied call's record keeps the upstream's own ids — its answer's `id` and its response's
    /// `x-request-id` — so the call can be found in the provider's logs and bills (review 74A #5:
    /// the gateway's id replaced them everywhere); a hostile one that is long or odd is not kept.
    @Test func theRecordKeepsTheUpstreamsIDs() throws {
        let env = try TestEnvironment()
        for stream in [true, false] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0", stream: stream))
            let record = try #require(try env.generation(response.header("x-generation-id")))
            let upstreamID = record["upstream_id"]?.stringValue ?? ""
            #expect(!upstreamID.isEmpty && upstreamID != response.header("x-generation-id"), "\(record)")
            #expect(record["upstream_request_id"]?.stringValue == "req-" + upstreamID, "\(record)")
            #expect(!response.text.contains(upstreamID), "the client sees the gateway's id")
        }
        // An Anthropic or Gemini stream's id too (its `message_start` message, its `responseId`),
        // translated for a chat client.
        let native = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        for provider in ["anth", "gem"] {
          for stream in [true, false] {
            let response = try native.chat(TestEnvironment.chatBody(model: "\(provider)/normal:pace_ms=0", stream: stream))
            let record = try #require(try native.generation(response.header("x-generation-id")))
            let upstreamID = record["upstream_id"]?.stringValue ?? ""
            #expect(!upstreamID.isEmpty && upstreamID != response.header("x-generation-id") && !response.text.contains(upstreamID), "\(record)")
          }
        }
        #expect(UpstreamIdentifier.sanitized(Array("gen-123:abc".utf8)) == "gen-123:abc")
        for hostile in ["", String(repeating: "a", count: 129), "id with space", "id\u{1B}[31m", "<script>"] {
            #expect(UpstreamIdentifier.sanitized(Array(hostile.utf8)) == nil, "\(hostile)")
        }
        #expect(Array("sk-secret-123456789".utf8).withUnsafeBytes { UpstreamIdentifier.sanitized($0, redactor: Redactor(secrets: ["sk-secret-123456789"])) } == nil)
        // As a decoded string (an Anthropic or Gemini id): the same rules.
        for hostile in ["sk-secret-123456789", "id\r\nx", "id\u{0}", String(repeating: "a", count: 129), ""] {
            #expect(UpstreamIdentifier.sanitized(hostile, redactor: Redactor(secrets: ["sk-secret-123456789"])) == nil, "\(hostile)")
        }
        #expect(UpstreamIdentifier.sanitized("msg_01AbC", redactor: .none) == "msg_01AbC")
    }

    /// Fusion's calls keep their upstreams' ids too, each its own answering attempt's: OpenAI-format
    /// streams (the first chunk's `id`, the `x-request-id` header), Anthropic's and Gemini's
    /// streams, and a member answering its streamed request with one whole body. Also a Responses
    /// client's call translated to an OpenAI-format upstream (the decoder read no id before).
    @Test func fusionsCallsKeepTheirUpstreamsIDs() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","anth/expert-2:pace_ms=1","gem/expert-3:pace_ms=1","mock/expert-4:pace_ms=1:whole=1"]}}]"#
        let response = try env.chat(Self.fusionBody(stream: true, tools: tools))
        let generationID = try #require(response.header("x-generation-id"))
        let record = try #require(try env.generation(generationID))
        let calls = try #require(record["inner_calls"]?.arrayValue)
        #expect(calls.count == 7, "\(calls)")
        let ids = calls.map { $0["upstream_id"]?.stringValue ?? "" }
        #expect(ids.allSatisfy { !$0.isEmpty && $0 != generationID } && Set(ids).count == ids.count, "\(ids)")
        for call in calls where call["provider_name"] == .string("mock") {
            #expect(call["upstream_request_id"]?.stringValue == "req-" + (call["upstream_id"]?.stringValue ?? ""), "\(call)")
        }
        #expect(!response.text.contains(ids[1]), "the client sees the gateway's ids")
        // The log's line per call says the same.
        #expect(env.eventually { log.entries.filter { $0.message == "inner call finished" }.count >= 7 })
        let logged = log.entries.filter { $0.message == "inner call finished" }.compactMap { $0.metadata["upstream_id"].map { "\($0)" } }
        #expect(Set(logged) == Set(ids), "\(logged)")
        // A translated call to an OpenAI-format upstream.
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/responses", body: #"{"model":"mock/normal:pace_ms=0","input":"Hello","stream":true}"#))
        let responses = try client.readResponse()
        let translated = try #require(try env.generation(responses.header("x-generation-id")))
        let translatedID = translated["upstream_id"]?.stringValue ?? ""
        #expect(translatedID.hasPrefix("chatcmpl-"), "\(translated)")
    }

    /// What a request counts against budgets is on its record (`spend_usd`), estimates included:
    /// a dropped stream's `total_cost` (what its client was told: nothing) is 0, its spend is not.
    @Test func theRecordSaysWhatTheRequestIsCharged() throws {
        let env = try TestEnvironment { $0.prices = ["mock/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 10)] }
        let record = try Self.droppedStream(env, path: "/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=5:deltas=200"))
        let prompt = record["tokens_prompt"]?.doubleValue ?? 0, completion = record["tokens_completion"]?.doubleValue ?? 0
        #expect(record["cancelled"] == .bool(true) && record["total_cost"]?.doubleValue == 0, "\(record)")
        let expected = ((prompt * 1 + completion * 10)).rounded(.up) / 1_000_000
        #expect(completion > 0 && record["spend_usd"]?.doubleValue == expected, "\(record)")
        // A finished one too.
        let whole = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0", stream: false))
        let finished = try #require(try env.generation(whole.header("x-generation-id")))
        #expect((finished["spend_usd"]?.doubleValue ?? 0) > 0, "\(finished)")
        // A stream without usage: its estimate is costed at the price, for the client and the
        // record alike (review 74C #3: no cost, `total_cost` 0).
        let silent = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:no_usage=1", extra: #","stream_options":{"include_usage":true}"#))
        let estimate = try #require(silent.chunksJSON.last { $0["usage"]?["estimated"] == .bool(true) }?["usage"])
        let estimated = try #require(try env.generation(silent.header("x-generation-id")))
        #expect((estimate["cost"]?.doubleValue ?? 0) > 0 && estimate["cost"] == estimated["total_cost"], "\(estimate) \(estimated)")
        #expect(estimated["spend_usd"] == estimated["total_cost"], "\(estimated)")
        // Not asked for, nothing was told: `total_cost` 0 (what the client was told), the spend charged.
        let unasked = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:no_usage=1"))
        let unaskedRecord = try #require(try env.generation(unasked.header("x-generation-id")))
        #expect(unaskedRecord["total_cost"]?.doubleValue == 0 && (unaskedRecord["spend_usd"]?.doubleValue ?? 0) > 0, "\(unaskedRecord)")
    }

    @Test func aJudgeThatTimesOutIsAJudgeTimeout() throws {
        let env = try TestEnvironment { $0.fusion?.judgeTimeoutMilliseconds = 300 }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"],"model":"mock/judge:pace_ms=200"}}]"#
        let response = try env.chat(Self.fusionBody(stream: false, tools: tools))
        #expect(response.status == 200)
        #expect(response.json?["fusion"]?["analysis_failure"]?["reason"] == .string("judge_timeout"))
        let record = try #require(try env.generation(response.header("x-generation-id")))
        let participants = try #require(record["fusion"]?["calls"]?.arrayValue)
        #expect(participants.first { $0["role"] == .string("judge") }?["status"] == .string("judge_timeout"))
        let judge = try #require(record["inner_calls"]?.arrayValue?.first { $0["role"] == .string("judge") })
        #expect(judge["error"]?["code"] == .string("upstream_timeout") && judge["finish_reason"] == .string("error"))
        #expect(judge["status"] == .int(200), "it answered, then ran out of time")
        #expect(record["status"] == .int(200) && record["finish_reason"] == .string("stop"), "the outer model still answered")
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_upstream_errors_total{provider="mock",code="upstream_timeout"}"#) == 1)
    }

    @Test func aFusionWhoseOuterCallFailsIsStillFusion() throws {
        let env = try TestEnvironment()
        let response = try env.chat(Self.fusionBody(stream: false, model: "mock/error:status=503"))
        #expect(response.status == 503)
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["kind"] == .string("fusion") && record["router"] == .string("openrouter/fusion") && record["entry_point"] == .string("fusion_tool"), "no deliberation ran, but it was a fusion request")
        #expect(record["status"] == .int(503) && record["finish_reason"] == .string("error"))
        let outer = try #require(record["inner_calls"]?.arrayValue?.first)
        #expect(outer["role"] == .string("outer") && outer["status"] == .int(503) && outer["attempts"] == .int(3))
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="fusion",status="503"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="proxy",status="503"}"#) == nil)
    }

    @Test func overheadIsMeasuredPerRequestAndPerPhase() throws {
        let env = try TestEnvironment()
        let proxied = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1"))
        let record = try #require(try env.generation(proxied.header("x-generation-id")))
        let overhead = try #require(record["overhead_ms"]?.doubleValue)
        #expect(overhead >= 0 && overhead <= (record["generation_time"]?.doubleValue ?? 0))
        #expect((record["upstream_latency"]?.doubleValue ?? 0) > 0)
        let fusion = try env.chat(Self.fusionBody(stream: true))
        let fusionRecord = try #require(try env.generation(fusion.header("x-generation-id")))
        let phases = try #require(fusionRecord["fusion"]?["phases"]?.arrayValue)
        #expect(phases.map { $0["phase"]?.stringValue ?? "" } == ["outer_first", "panel", "judge", "outer_final"])
        #expect(phases.allSatisfy { ($0["overhead_ms"]?.doubleValue ?? -1) >= 0
            && ($0["overhead_ms"]?.doubleValue ?? 0) <= ($0["duration_ms"]?.doubleValue ?? 0) })
        let metrics = try env.get("/metrics")
        for phase in ["proxy", "outer_first", "panel", "judge", "outer_final"] {
            #expect(metrics.metric(#"fusion_gateway_overhead_seconds_count{phase="\#(phase)"}"#) == 1, "\(phase)")
        }
    }
}

/// The other two APIs file the same records and count under their own route.
@Suite struct OtherRoutesRecordTests {
    @Test func messagesAndResponsesAreRecordedUnderTheirRoute() throws {
        let env = try TestEnvironment()
        func post(_ path: String, _ body: String, _ headers: [String: String] = [:]) throws -> TestResponse {
            let client = try env.client()
            try client.send(TestEnvironment.post(path, body: body, headers: headers))
            return try client.readResponse()
        }
        let message = try post("/v1/messages", #"{"model":"mock/normal:pace_ms=0","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello there"}]}"#,
                               ["anthropic-version": "2023-06-01"])
        #expect(message.status == 200)
        let messageRecord = try #require(try env.generation(message.header("x-generation-id")))
        #expect(messageRecord["route"] == .string("messages") && messageRecord["kind"] == .string("proxy"))
        #expect(messageRecord["status"] == .int(200) && messageRecord["finish_reason"] == .string("stop"))
        let response = try post("/v1/responses", #"{"model":"mock/normal:pace_ms=0","input":"Hello there","stream":false}"#)
        #expect(response.status == 200)
        let responseRecord = try #require(try env.generation(response.json?["id"]?.stringValue), "a resp_ id finds its record")
        #expect(responseRecord["route"] == .string("responses") && responseRecord["created"] == response.json?["created_at"])
        let refused = try post("/v1/messages", #"{"model":"nobody/x","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                               ["anthropic-version": "2023-06-01"])
        #expect(try env.generation(refused.header("x-generation-id"))?["route"] == .string("messages"))
        // Paths under /v1/messages/ speak its API but are no completion: not counted as one
        // (review 68D #3).
        #expect(try post("/v1/messages/batches", "{}").status == 404)
        #expect(try env.get("/v1/messages/anything").status == 404)
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="messages",kind="proxy",status="200"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="responses",kind="proxy",status="200"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_requests_total{route="messages",kind="rejected",status="404"}"#) == 1)
    }
}

/// Anthropic's and Gemini's APIs report no cost, nor do many OpenAI-compatible servers: the
/// usage a client reads is costed at the config's price, as the record's spend is, not a 0 that
/// reads as free (review 49 SDK F5). A reported cost stays; without a price the 0 (unknown) does.
@Suite struct UsageCostTests {
    static let price = ModelPrice(inputPerMillion: 3, outputPerMillion: 15)

    static func expectedCost(_ usage: JSONValue?, input: String = "prompt_tokens", output: String = "completion_tokens",
                             price: ModelPrice = price) -> Double {
        let prompt = Double(usage?[input]?.intValue ?? 0), completion = Double(usage?[output]?.intValue ?? 0)
        return Usage.roundedCost((prompt * price.inputPerMillion + completion * price.outputPerMillion) / 1_000_000)
    }

    static func post(_ env: TestEnvironment, _ path: String, _ body: String) throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body))
        return try client.readResponse()
    }

    @Test func aUsageWithoutACostIsCostedAtTheConfigPrice() throws {
        let env = try TestEnvironment {
            $0.prices["sim-anthropic/*"] = Self.price
            $0.prices["sim-gemini/*"] = nil  // unpriced: no cost is known
        }
        let usageAsked = #","stream_options":{"include_usage":true}"#
        // Streamed chat from Anthropic's API: the usage chunk and the record state one cost.
        let streamed = try env.chat(TestEnvironment.chatBody(model: "sim-anthropic/normal:pace_ms=0", extra: usageAsked))
        let usage = try #require(streamed.plainChunksJSON.last { $0["usage"] != nil && $0["usage"] != .null }?["usage"], "\(streamed.text)")
        #expect((usage["completion_tokens"]?.intValue ?? 0) > 0 && usage["cost"] == .double(Self.expectedCost(usage)), "\(usage)")
        let record = try #require(try env.generation(streamed.header("x-generation-id")))
        #expect(record["total_cost"] == usage["cost"], "\(record)")
        // A whole answer, and Responses' usage (its own names for the counts).
        let whole = try env.chat(TestEnvironment.chatBody(model: "sim-anthropic/normal:pace_ms=0", stream: false))
        #expect(whole.json?["usage"]?["cost"] == .double(Self.expectedCost(whole.json?["usage"])), "\(whole.text)")
        let response = try Self.post(env, "/v1/responses", #"{"model":"sim-anthropic/normal:pace_ms=0","input":"Hello there","stream":false}"#)
        let responseUsage = response.json?["usage"]
        #expect(responseUsage?["cost"] == .double(Self.expectedCost(responseUsage, input: "input_tokens", output: "output_tokens")),
                "\(response.text)")
        // Unpriced: nothing is made up.
        let unpriced = try env.chat(TestEnvironment.chatBody(model: "sim-gemini/normal:pace_ms=0", stream: false))
        #expect(unpriced.status == 200 && unpriced.json?["usage"]?["cost"]?.doubleValue == 0, "\(unpriced.text)")
        // An upstream's own cost is never replaced: the simulator's OpenAI API reports 2 µ$ a token.
        let reported = try env.chat(TestEnvironment.chatBody(model: "sim/normal:pace_ms=0", stream: false))
        #expect(reported.json?["usage"]?["cost"] == .double(Self.expectedCost(reported.json?["usage"], price: ModelPrice(inputPerMillion: 2, outputPerMillion: 2))),
                "\(reported.text)")
    }

    /// A deliberation's calls are costed the same way, each at its model's price.
    @Test func aDeliberationsCallsAreCostedAtTheirModelsPrices() throws {
        let env = try TestEnvironment { $0.prices["sim-anthropic/*"] = Self.price }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["sim-anthropic/expert-2:pace_ms=1","sim-gemini/expert-3:pace_ms=1"]}}]"#
        let response = try env.chat(#"{"model":"mock/outer:pace_ms=1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Compare two options"}],"tools":\#(tools),"tool_choice":"required"}"#)
        let usage = try #require(response.plainChunksJSON.last?["usage"], "\(response.text)")
        let calls = try #require(usage["fusion"]?["calls"]?.arrayValue, "\(usage)")
        let anthropic = try #require(calls.first { $0["model"]?.stringValue?.hasPrefix("sim-anthropic/") == true }, "\(calls)")
        #expect((anthropic["cost"]?.doubleValue ?? 0) > 0 && anthropic["cost"] == .double(Self.expectedCost(anthropic)), "\(anthropic)")
        let gemini = try #require(calls.first { $0["model"]?.stringValue?.hasPrefix("sim-gemini/") == true }, "\(calls)")
        #expect(gemini["cost"] == .double(Self.expectedCost(gemini, price: ModelPrice(inputPerMillion: 2, outputPerMillion: 2))), "\(gemini)")
        let summed = calls.compactMap { $0["cost"]?.doubleValue }.reduce(0, +)
        #expect(abs((usage["cost"]?.doubleValue ?? 0) - summed) < 1e-9, "the total is the calls' sum: \(usage)")
    }

    /// The record states the cost the client read (review 53 #5): a translated stream that ends
    /// in an error without usage gives its estimate, costed, to both; a whole body relayed as its
    /// OpenAI-compatible upstream wrote it, reporting a cost of 0, gets none added on either side.
    @Test func theRecordStatesTheCostTheClientRead() throws {
        let env = try TestEnvironment {
            $0.prices["sim-anthropic/*"] = Self.price
            $0.prices["mock/*"] = Self.price
        }
        let failed = try Self.post(env, "/v1/responses", #"{"model":"sim-anthropic/disconnect:after=5:pace_ms=0","input":"Hello there","stream":true}"#)
        let last = try #require(failed.namedEvents.last, "\(failed.text)")
        let usage = last.data["response"]?["usage"]
        #expect(last.name == "response.failed" && usage?["estimated"] == .bool(true) && (usage?["cost"]?.doubleValue ?? 0) > 0, "\(last.data)")
        let failedRecord = try #require(try env.generation(failed.header("x-generation-id")))
        #expect(failedRecord["total_cost"] == usage?["cost"], "\(failedRecord)")
        let relayed = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:cost_usd=0", stream: false))
        let relayedRecord = try #require(try env.generation(relayed.header("x-generation-id")))
        #expect(relayed.json?["usage"]?["cost"]?.doubleValue == 0 && relayedRecord["total_cost"]?.doubleValue == 0, "\(relayed.text) \(relayedRecord)")
        #expect((relayedRecord["spend_usd"]?.doubleValue ?? 0) > 0, "the spend still prices it")
    }

    /// An outer call that fell back to another model is priced as the model that answered, as
    /// the spend prices it (review 54 #2: its estimate took the first model's price).
    @Test func aFallenBackCallsEstimateIsPricedAsTheModelThatAnswered() throws {
        let env = try TestEnvironment { $0.prices["mock/*"] = Self.price }  // sim/* stays at 2 µ$ a token
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}]"#
        let response = try env.chat(#"{"model":"mock/error:status=503","models":["sim/outer:pace_ms=1:no_usage=1"],"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Compare two options"}],"tools":\#(tools),"tool_choice":"required"}"#)
        let usage = try #require(response.plainChunksJSON.last?["usage"], "\(response.text)")
        let calls = try #require(usage["fusion"]?["calls"]?.arrayValue, "\(usage)")
        let outer = calls.filter { $0["role"]?.stringValue?.hasPrefix("outer") == true && $0["estimated"] == .bool(true) }
        #expect(!outer.isEmpty, "\(calls)")
        for call in outer {
            #expect(call["cost"] == .double(Self.expectedCost(call, price: ModelPrice(inputPerMillion: 2, outputPerMillion: 2))), "\(call)")
        }
    }

    /// An outer turn that fails before any deliberation, without usage: the usage the client
    /// gets is the estimate and says so at its top level (no per-call breakdown to say it;
    /// review 68C #6), as a proxied request's does.
    @Test func anEstimateWithoutADeliberationIsFlagged() throws {
        let env = try TestEnvironment()
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}]"#
        let response = try env.chat(#"{"model":"mock/error-mid-stream:after=2:pace_ms=1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Compare two options"}],"tools":\#(tools)}"#)
        let usage = try #require(response.plainChunksJSON.last { $0["usage"] != nil && $0["usage"] != .null }?["usage"], "\(response.text)")
        #expect(usage["estimated"] == .bool(true) && usage["fusion"] == nil, "\(usage)")
    }

    /// A member cut before its usage holds the gateway's estimate, costed the same way (the
    /// client and the record state one cost).
    @Test func aCutMembersEstimateIsCostedToo() throws {
        let env = try TestEnvironment { $0.prices["mock/*"] = Self.price }
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/paced:pace_ms=20:deltas=500"],"min_answers":1,"grace_ms":0}}]"#
        let response = try env.chat(#"{"model":"mock/outer:pace_ms=1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Compare two options"}],"tools":\#(tools),"tool_choice":"required"}"#)
        let usage = try #require(response.plainChunksJSON.last?["usage"], "\(response.text)")
        let calls = try #require(usage["fusion"]?["calls"]?.arrayValue, "\(usage)")
        let cut = try #require(calls.first { $0["status"] == .string("cut_for_latency") }, "\(calls)")
        #expect(cut["estimated"] == .bool(true) && (cut["cost"]?.doubleValue ?? 0) > 0 && cut["cost"] == .double(Self.expectedCost(cut)), "\(cut)")
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["total_cost"] == usage["cost"], "\(record)")
    }
}
