import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// Quorum, deadline, forced fusion and the cost estimate end to end over loopback: the panel
/// on two loops, the mock counting what it saw (a straggler's transfer closed, the order calls
/// arrived in).
@Suite(.timeLimit(.minutes(1))) struct DeliberationLatencyTests {
    static let question = "Should cities ban cars from their centres?"
    /// Two quick experts and one that would take 10 s (100 deltas, 100 ms apart).
    static let panel = #"["mock/expert-1:pace_ms=1","mock/expert-2:pace_ms=1","mock/paced:pace_ms=100:deltas=100"]"#

    func body(_ parameters: String, extra: String = #","stream_options":{"include_fusion_events":true}"#) -> String {
        #"{"model":"mock/outer:pace_ms=1","stream":true,"messages":[{"role":"user","content":"\#(Self.question)"}],"tools":[{"type":"fusion","parameters":\#(parameters)}],"tool_choice":"required"\#(extra)}"#
    }

    func finalText(_ response: TestResponse) -> String {
        response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
    }

    @Test func quorumCutsTheStragglerAndItsTransferIsClosedAtTheMock() throws {
        let env = try TestEnvironment { $0.fusion?.shuffleLabels = true }
        let response = try env.chat(body(#"{"analysis_models":\#(Self.panel),"model":"mock/judge:pace_ms=1","min_answers":2,"grace_ms":50}"#))
        #expect(response.status == 200)
        let events = response.namedEvents
        let cut = try #require(events.first { $0.name == "fusion.member.cut" })
        #expect(cut.data["index"] == .int(2) && cut.data["reason"] == .string("cut_for_latency") && cut.data["cause"] == .string("grace"))
        #expect((cut.data["characters"]?.intValue ?? 0) > 0, "it had written something")
        // The cut comes before the judge, and the judge compared the two answers.
        let names = events.map(\.name)
        #expect((names.firstIndex(of: "fusion.member.cut") ?? 99) < (names.firstIndex(of: "fusion.judge.started") ?? -1))
        let result = try #require(events.first { $0.name == "fusion.completed" }?.data["result"])
        #expect(result["panel"]?["cut_for_latency"] == .int(1) && result["panel"]?["answered"] == .int(2))
        #expect(result["failed_models"]?.arrayValue?.first?["reason"] == .string("cut_for_latency"))
        #expect(result["failed_models"]?.arrayValue?.first?["partial_content"]?.stringValue?.hasPrefix("t0 ") == true)
        #expect(finalText(response).hasPrefix("Drawing on a panel of 3 models (2 answered):"))
        // The analysis items streamed, with real model names (never the judge's neutral labels).
        let items = events.filter { $0.name == "fusion.judge.item" }
        #expect(!items.isEmpty && !items.contains { String(decoding: $0.data.serialized(), as: UTF8.self).contains("Response ") })
        // The judge's raw deltas are its own words, under the labels: judge.started gives the map.
        let labels = try #require(events.first { $0.name == "fusion.judge.started" }?.data["labels"]?.objectValue)
        #expect(Set(labels.keys) == ["Response A", "Response B", "Response C"], "the cut member has a label too: the judge is told it was cut")
        #expect(Set(labels.values.compactMap(\.stringValue)) == ["mock/expert-1:pace_ms=1", "mock/expert-2:pace_ms=1", "mock/paced:pace_ms=100:deltas=100"])
        #expect(items.contains { $0.data["field"] == .string("consensus") })
        // The mock saw the straggler's stream closed by the gateway, not finished.
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 1 }, "\(env.mockStats.counts)")
        #expect(env.eventually { env.mockStats.counts.active == 0 })
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["fusion"]?["calls"]?.arrayValue?.map { $0["status"]?.stringValue ?? "" }.sorted()
                == ["cut_for_latency", "ok", "ok", "ok", "ok"])
    }

    /// A straggler behind Anthropic's API, cut by the quorum before its usage, is charged the
    /// prompt its upstream counted in `message_start` (9,000 tokens), not the prompt's size.
    @Test func aCutMemberOnAnthropicIsChargedThePromptItsUpstreamCounted() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let panel = #"["mock/expert-1:pace_ms=1","mock/expert-2:pace_ms=1","anth/paced:pace_ms=100:deltas=100:prompt_tokens=9000"]"#
        let response = try env.chat(body(#"{"analysis_models":\#(panel),"model":"mock/judge:pace_ms=1","min_answers":2,"grace_ms":50}"#))
        #expect(response.status == 200)
        #expect(response.namedEvents.contains { $0.name == "fusion.member.cut" })
        let record = try #require(try env.generation(response.header("x-generation-id")))
        let calls = try #require(record["inner_calls"]?.arrayValue)
        let cut = try #require(calls.first { $0["model"]?.stringValue?.hasPrefix("anth/paced") == true }, "\(calls)")
        #expect(cut["usage_estimated"] == .bool(true) && cut["cancelled"] == .bool(true), "\(cut)")
        #expect(cut["usage"]?["prompt_tokens"] == .int(9_000), "\(cut)")
        #expect((cut["usage"]?["completion_tokens"]?.intValue ?? 0) > 0, "a token per piece it wrote")
    }

    @Test func theDeadlineCutsWhatStillRunsAndTheRecordHoldsTheEstimate() throws {
        let env = try TestEnvironment { $0.fusion?.prices = ["mock/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2)] }
        let response = try env.chat(body(#"{"analysis_models":\#(Self.panel),"model":"mock/judge:pace_ms=1","deadline_ms":400}"#,
                                         extra: #","stream_options":{"include_fusion_events":true,"include_usage":true}"#))
        let events = response.namedEvents
        // The estimate is the first thing the client hears.
        let estimate = try #require(events.first)
        #expect(estimate.name == "fusion.estimate")
        let minimum = try #require(estimate.data["cost_min"]?.doubleValue)
        let maximum = try #require(estimate.data["cost_max"]?.doubleValue)
        #expect(minimum > 0 && maximum > minimum && estimate.data["calls"]?.arrayValue?.count == 4)
        #expect(events.first { $0.name == "fusion.member.cut" }?.data["cause"] == .string("deadline"))
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 1 }, "\(env.mockStats.counts)")
        let record = try #require(try env.generation(response.header("x-generation-id")))
        // A cut member is counted once, as cut (not also as cancelled when the request ends).
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_fusion_member_failures_total{reason="cut_for_latency"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_fusion_member_failures_total{reason="cancelled"}"#) == 0)
        let cost = try #require(record["fusion_cost"])
        #expect(cost["estimate_min"]?.doubleValue == minimum && cost["estimate_max"]?.doubleValue == maximum)
        let calls = try #require(cost["calls"]?.arrayValue)
        // Three members; no judge: the deadline that cut the panel left it no time.
        #expect(calls.count == 3 && calls.allSatisfy { $0["estimate_max"]?.doubleValue != nil }, "\(calls)")
        #expect(!env.mockStats.requestedModels.contains("judge:pace_ms=1"))
        #expect(events.contains { $0.name == "fusion.judge.failed" && $0.data["reason"] == .string("judge_timeout") }, "\(events.map(\.name))")
        #expect(calls.filter { $0["status"] == .string("ok") }.allSatisfy { ($0["actual"]?.doubleValue ?? 0) > 0 })
        // A cut call reported no usage: it costs the gateway's estimate (its prompt, a token per
        // piece of output), as the client's usage and the key's spend say.
        let cut = try #require(calls.first { $0["status"] == .string("cut_for_latency") })
        #expect((cut["actual"]?.doubleValue ?? 0) > 0 && cut["estimated"] == .bool(true), "\(cut)")
        let usage = try #require(response.plainChunksJSON.last { $0["usage"] != nil }?["usage"])
        #expect(usage["total_tokens"] == record["usage"]?["total_tokens"], "the client's usage is the record's: \(usage)")
        #expect((cost["actual"]?.doubleValue ?? 0) > 0)
    }

    @Test func aDeadlineOfNoAnswerAtAllStillAnswersTheClient() throws {
        let env = try TestEnvironment()
        let slow = #"["mock/paced:pace_ms=100:deltas=100","mock/paced:pace_ms=100:deltas=50"]"#
        let response = try env.chat(body(#"{"analysis_models":\#(slow),"model":"mock/judge:pace_ms=1","deadline_ms":250}"#, extra: ""))
        #expect(response.status == 200)
        #expect(response.comments.filter { $0.contains(": cut for latency at ") }.count == 2)
        #expect(finalText(response).hasPrefix("The panel could not answer (all_panels_failed)"))
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 2 }, "\(env.mockStats.counts)")
    }

    @Test func forcedFusionNeverCallsTheOuterModelBeforeThePanel() throws {
        let env = try TestEnvironment()
        let parameters = #"{"analysis_models":["mock/expert-1:pace_ms=1","mock/expert-2:pace_ms=1"],"model":"mock/judge:pace_ms=1"}"#
        let forced = try env.chat(body(parameters, extra: ""))
        #expect(forced.status == 200 && finalText(forced).hasPrefix("Drawing on a panel of 2 models"))
        let models = env.mockStats.requestedModels
        #expect(Set(models.prefix(2)) == ["expert-1:pace_ms=1", "expert-2:pace_ms=1"], "\(models)")
        #expect(models.suffix(2) == ["judge:pace_ms=1", "outer:pace_ms=1"], "the outer model only writes the final answer")
        #expect(forced.comments.contains { $0.hasPrefix("fusion phase outer: skipped") })
        // No call of the outer model is reported: the comment says the panel was asked at once.
        #expect(!forced.comments.contains { $0.contains("the outer model called the fusion tool") })
        #expect(forced.comments.contains { $0.hasPrefix("fusion: the panel is asked (fusion is forced") }, "\(forced.comments.prefix(4))")
        // Not forced: the outer model decides first.
        let decided = try env.chat(body(parameters, extra: "").replacingOccurrences(of: #","tool_choice":"required""#, with: ""))
        #expect(decided.status == 200)
        let after = Array(env.mockStats.requestedModels.dropFirst(models.count))
        #expect(after.first == "outer:pace_ms=1" && after.count == 5, "\(after)")
        #expect(decided.comments.contains { $0.hasPrefix("fusion: the outer model called the fusion tool") })
    }
}
