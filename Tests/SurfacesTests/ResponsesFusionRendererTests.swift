import Foundation
import Fusion
import GatewayCore
import Providers
import Surfaces
import Testing

/// Runs a real `FusionSessionMachine` without sockets, every call answered by a script, and
/// renders what it outputs with `ResponsesFusionRenderer`, as `FusionSession` will.
struct FusionScript {
    enum Reply {
        case events([ModelEvent])
        /// `statusCode`: the upstream's status, as `FusionSession.refusalStatus` reads it (nil: none).
        case failure(APIError, MemberFailureReason, statusCode: Int? = nil)
    }

    var machine: FusionSessionMachine
    var renderer: ResponsesFusionRenderer
    var out: [UInt8] = []
    var outcome: FusionSessionMachine.Outcome?
    private var time = 0.0
    private var pending: [FusionSessionMachine.Call] = []
    private var tools: [(FusionSessionMachine.ToolRunID, ToolCall)] = []
    private var answered: [String: Int] = [:]

    static let generationID = "gen-0123456789abcdef01234567"

    /// `body`: a Responses request whose plan is Fusion.
    init(_ body: String, stream: Bool = true, panelTools: [ToolDefinition] = [], prices: PriceBook = [:]) throws {
        let request = try ResponsesRequest(body: Array(body.utf8))
        var settings = FusionSettings.simulated
        settings.prices = prices
        guard case .fusion(let fusion) = try FusionPlan.make(request: request.modelRequest(), settings: settings, depth: 0) else {
            throw APIError.invalidRequest("not fusion")
        }
        machine = FusionSessionMachine(request: fusion, settings: settings,
                                       limits: .init(memberTimeoutMilliseconds: 10_000, judgeTimeoutMilliseconds: 10_000,
                                                     outerTimeoutMilliseconds: 10_000, defaultMaxTokens: 4096),
                                       panelTools: panelTools, judgeTools: [], readableProgress: false, labelSeed: 1)
        let envelope = ResponseEnvelope(generationID: Self.generationID, createdAt: ResponsesStreamWriterTests.created,
                                        model: fusion.outerModel, echoed: request.echoedFields)
        renderer = ResponsesFusionRenderer(envelope: envelope, stream: stream, openRouterEvents: request.openRouterFusionEvents)
    }

    /// Runs the request to its end, answering each call (FIFO, one after the other) with
    /// `reply(call, how many calls of this role and model were answered before)`.
    mutating func run(reply: (FusionSessionMachine.Call, Int) -> Reply,
                      tool: (ToolCall) -> FusionSessionMachine.ToolOutcome = { _ in .failure("no web here") }) {
        perform(machine.start(at: time))
        while outcome == nil {
            time += 1
            if !tools.isEmpty {
                let (run, call) = tools.removeFirst()
                perform(machine.handle(.toolFinished(run, tool(call)), at: time))
                continue
            }
            guard !pending.isEmpty else { break }
            let call = pending.removeFirst()
            let key = "\(call.role)|\(call.model)"
            let count = answered[key, default: 0]
            answered[key] = count + 1
            switch reply(call, count) {
            case .events(let events):
                for event in events {
                    time += 1
                    perform(machine.handle(.callEvent(call.id, event), at: time))
                }
                perform(machine.handle(.callEnded(call.id, .complete), at: time))
            case .failure(let error, let reason, let statusCode):
                perform(machine.handle(.callFailed(call.id, error, reason, statusCode: statusCode), at: time))
            }
        }
        switch outcome {
        case .completed?:
            let usage = ResponsesFusionRenderer.usage(machine.totalUsage, calls: machine.deliberated ? machine.calls : nil)
            renderer.renderEnd(usage: usage, sources: machine.sources, completedAt: ResponsesStreamWriterTests.completed, into: &out)
        case .failed(let error)?:
            renderer.renderError(error, into: &out)
        case nil:
            Issue.record("the session never finished")
        }
    }

    private mutating func perform(_ actions: [FusionSessionMachine.Action]) {
        for action in actions {
            switch action {
            case .startCall(let call): pending.append(call)
            case .cancelCall(let id): pending.removeAll { $0.id == id }
            case .runTool(let run, let call): tools.append((run, call))
            case .cancelTool(let run): tools.removeAll { $0.0 == run }
            case .startTimer, .cancelTimer: break  // no timer runs out in these scripts
            case .checkCallerCalls:
                if let refusal = renderer.refusalAtEnd(finish: nil) {
                    outcome = .failed(refusal)
                    return
                }
            case .output(let output): renderer.render(output, sources: machine.sources, into: &out)
            case .finish(let outcome): self.outcome = outcome
            }
        }
    }
}

@Suite struct ResponsesFusionRendererTests {
    static let body = #"{"model":"p/outer","input":"Monorepo or not?","stream":true,"tools":[{"type":"openrouter:fusion","parameters":{"analysis_models":["p/a","p/b"],"model":"p/judge"}}]}"#
    static let analysis = #"{"consensus":["Yes, for a small team."],"contradictions":[{"topic":"CI","stances":[{"model":"p/a","stance":"one pipeline"},{"model":"p/b","stance":"per package"}]}],"partial_coverage":[],"unique_insights":[{"model":"p/b","insight":"Scope CI per package."}],"blind_spots":["Repository size limits."]}"#
    static let usage = ModelEvent.usage(Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15, cost: 0.01))

    /// The usual cast: the outer model calls fusion after a preamble, members reason and answer,
    /// the judge streams its analysis in pieces, the final answer cites what the panel read.
    static func reply(_ call: FusionSessionMachine.Call, _ count: Int) -> FusionScript.Reply {
        switch call.role {
        case .outer(final: false):
            return .events([.text("Let me consult the panel. "),
                            .toolCall(ToolCallFragment(index: 0, id: "call_f", name: "fusion", arguments: #"{"question":"#)),
                            .toolCall(ToolCallFragment(index: 0, arguments: #""Monorepo or not?"}"#)), .finish(.toolCalls), usage])
        case .member(let index):
            return .events([.reasoning("Weighing it."), .text(index == 0 ? "A: yes, " : "B: yes, "), .text("with care."), usage])
        case .judge:
            let pieces = stride(from: 0, to: analysis.count, by: 40).map {
                String(analysis.dropFirst($0).prefix(40))
            }
            return .events(["```json\n"].map(ModelEvent.text) + pieces.map(ModelEvent.text) + [.text("\n```"), usage])
        case .outer(final: true):
            return .events([.text("Yes: adopt a monorepo; see [the survey](https://example.com/survey)."), .finish(.stop), usage])
        }
    }

    /// `reply`, but member B fails and the judge cites only what it was given (A).
    static func replyWithBFailed(_ call: FusionSessionMachine.Call, _ count: Int) -> FusionScript.Reply {
        switch call.role {
        case .member(index: 1): .failure(APIError(status: 429, type: "rate_limit", code: "rate_limited", message: "Rate limit exceeded"), .rateLimited, statusCode: 429)
        case .judge: .events([.text(#"{"consensus":["Yes, for a small team."],"contradictions":[],"partial_coverage":[],"unique_insights":[{"model":"p/a","insight":"One pipeline."}],"blind_spots":["Repository size limits."]}"#), usage])
        default: reply(call, count)
        }
    }

    static func events(_ script: FusionScript) throws -> [ResponsesEvent] {
        try ResponsesStreamCheck.decode(script.out)
    }

    /// The fusion events' types after `response.fusion_call.`, phase events left out (one test checks them).
    static func fusionTypes(_ events: [ResponsesEvent], phases: Bool = false) -> [String] {
        events.map(\.type).filter { $0.hasPrefix("response.fusion_call.") }.map { String($0.dropFirst("response.fusion_call.".count)) }
            .filter { phases || $0 != "phase" }
    }

    @Test func aWholeDeliberationStreamsAsAFusionItemThenTheAnswer() throws {
        var script = try FusionScript(Self.body, panelTools: ToolLoop.webToolDefinitions(search: true, fetch: true))
        script.run(reply: { call, count in
            // Member 0 searches first; the source it finds is cited in the answer.
            if call.role == .member(index: 0) && count == 0 {
                return .events([.toolCall(ToolCallFragment(index: 0, id: "ws", name: "web_search", arguments: #"{"query":"monorepo"}"#)),
                                .finish(.toolCalls)])
            }
            return Self.reply(call, count)
        }, tool: { _ in
            FusionSessionMachine.ToolOutcome(content: #"{"results":[]}"#, sources: [Source(url: "https://example.com/survey", title: "Survey", content: "A survey.")])
        })
        try Golden.check("fusion.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(Self.fusionTypes(events) == [
            "in_progress", "panel.added", "panel.added", "web.started", "web.completed",
            "panel.reasoning.delta", "panel.delta", "panel.delta", "panel.completed",
            "panel.reasoning.delta", "panel.delta", "panel.delta", "panel.completed",
            "analysis.in_progress", "analysis.item", "analysis.item", "analysis.item", "analysis.item", "analysis.completed", "completed",
        ])
        let fusionEvents = events.filter { $0.type.hasPrefix("response.fusion_call.") }
        #expect(fusionEvents.allSatisfy { $0.json["item_id"] == .string("fu_0123456789abcdef01234567_1") && $0.json["output_index"] == .int(1) })
        let completed = try #require(fusionEvents.first { $0.type.hasSuffix("panel.completed") && $0.json["index"] == .int(0) })
        #expect(completed.json["content"] == .string("A: yes, with care.") && completed.json["model"] == .string("p/a"))
        let items = fusionEvents.filter { $0.type.hasSuffix("analysis.item") }.map { "\($0.json["field"]?.stringValue ?? "")[\($0.json["index"]?.intValue ?? -1)]" }
        #expect(items == ["consensus[0]", "contradictions[0]", "unique_insights[0]", "blind_spots[0]"])
        let started = try #require(fusionEvents.first { $0.type.hasSuffix("analysis.in_progress") })
        #expect(started.json["analyst_model"] == .string("p/judge") && started.json["judge_model"] == .string("p/judge"))

        let response = try #require(events.last?.json["response"])
        #expect(events.last?.type == "response.completed" && response["model"] == .string("p/outer"))
        let output = try #require(response["output"]?.arrayValue)
        #expect(output.map { $0["type"] } == [.string("message"), .string("openrouter:fusion"), .string("message")])
        #expect(output[0]["content"]?[0]?["text"] == .string("Let me consult the panel. "))
        let fusion = output[1]
        #expect(fusion["status"] == .string("completed") && fusion["analysis"]?["consensus"] == .array([.string("Yes, for a small team.")]))
        #expect(fusion["responses"]?.arrayValue?.count == 2 && fusion["failed_models"] == nil && fusion["failure_reason"] == nil)
        #expect(fusion["sources"] == .array([.object(["url": .string("https://example.com/survey"), "title": .string("Survey")])]))
        #expect(fusion["panel"]?["degraded"] == .bool(false) && fusion["analyst_model"] == .string("p/judge"))
        let annotation = try #require(output[2]["content"]?[0]?["annotations"]?[0])
        #expect(annotation == .object(["type": .string("url_citation"), "url": .string("https://example.com/survey"), "title": .string("Survey"),
                                       "content": .string("A survey."), "start_index": .int(27), "end_index": .int(67)]))
        #expect(events.contains { $0.type == "response.output_text.annotation.added" })
        #expect(response["usage"]?["total_tokens"] == .int(15 * 5), "every call's usage (the searching turn reported none)")
        #expect(response["usage"]?["fusion"]?["calls"]?.arrayValue?.map { $0["role"] } == [
            .string("outer"), .string("panel"), .string("panel"), .string("judge"), .string("outer_final")])
    }

    @Test func aFailedMemberIsReportedWithoutATopLevelErrorAndTheRestGoesOn() throws {
        var script = try FusionScript(Self.body)
        script.run(reply: Self.replyWithBFailed)
        try Golden.check("fusion-member-failed.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let failed = try #require(events.first { $0.type == "response.fusion_call.panel.failed" })
        #expect(failed.json["error"] == nil, "the OpenAI SDKs abort a stream on a top-level error")
        #expect(failed.json["message"] == .string("Rate limit exceeded") && failed.json["reason"] == .string("rate_limited"))
        #expect(failed.json["status_code"] == .int(429) && failed.json["model"] == .string("p/b") && failed.json["index"] == .int(1))
        let fusion = try #require(events.last?.json["response"]?["output"]?[1])
        #expect(fusion["failed_models"] == .array([.object(["model": .string("p/b"), "error": .string("Rate limit exceeded"),
                                                            "reason": .string("rate_limited"), "status_code": .int(429)])]))
        #expect(fusion["panel"]?["degraded"] == .bool(true) && fusion["status"] == .string("completed"))
        #expect(fusion["note"]?.stringValue?.hasPrefix("The panel was partial: 1 of 2 models answered. Failed: p/b.") == true, "\(fusion)")
        #expect(Self.fusionTypes(events).contains("analysis.completed"))
    }

    @Test func openRouterEventsAreExactWhenAskedFor() throws {
        let body = Self.body.replacingOccurrences(of: #""stream":true"#, with: #""stream":true,"stream_options":{"openrouter_fusion_events":true}"#)
        var script = try FusionScript(body)
        script.run(reply: Self.replyWithBFailed)
        try Golden.check("fusion-openrouter-events.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events, allowTopLevelError: true) == [])
        let failed = try #require(events.first { $0.type == "response.fusion_call.panel.failed" })
        #expect(failed.json["error"] == .string("Rate limit exceeded") && failed.json["message"] == nil)
    }

    @Test func aFailedJudgeLeavesTheAnswersAndNamesTheReason() throws {
        var script = try FusionScript(Self.body)
        script.run { call, count in
            if call.role == .judge { return .events([.text("The models mostly agree."), Self.usage]) }
            return Self.reply(call, count)
        }
        try Golden.check("fusion-judge-failed.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(Self.fusionTypes(events).suffix(5) == ["analysis.in_progress", "analysis.failed", "analysis.in_progress", "analysis.failed", "completed"])
        let failures = events.filter { $0.type.hasSuffix("analysis.failed") }
        #expect(failures.map { $0.json["will_retry"] } == [.bool(true), .bool(false)])
        #expect(failures.allSatisfy { $0.json["reason"] == .string("judge_not_valid_json") && $0.json["error"] == nil })
        let fusion = try #require(events.last?.json["response"]?["output"]?[1])
        #expect(fusion["analysis"] == nil && fusion["responses"]?.arrayValue?.count == 2 && fusion["status"] == .string("completed"))
        #expect(fusion["failure_reason"] == .string("judge_not_valid_json"))
        #expect(events.last?.type == "response.completed", "the outer model still answers")
    }

    @Test func allMembersFailedIsAnIncompleteItemAndTheOuterModelStillAnswers() throws {
        var script = try FusionScript(Self.body)
        script.run { call, count in
            switch call.role {
            case .member(index: 0): return .failure(.upstreamUnavailable("upstream returned 500"), .upstreamError, statusCode: 500)
            case .member: return .failure(.upstreamUnavailable("connection refused"), .unreachable)
            default: return Self.reply(call, count)
            }
        }
        try Golden.check("fusion-all-failed.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(Self.fusionTypes(events) == ["in_progress", "panel.added", "panel.added", "panel.failed", "panel.failed", "completed"])
        let fusion = try #require(events.last?.json["response"]?["output"]?[1])
        #expect(fusion["status"] == .string("incomplete") && fusion["failure_reason"] == .string("all_panels_failed"))
        #expect(fusion["error"] == .string("all panel models failed") && fusion["failed_models"]?.arrayValue?.count == 2)
        #expect(fusion["failed_models"]?[0]?["status_code"] == .int(500), "the upstream's own status")
        #expect(fusion["failed_models"]?[1]?["status_code"] == nil, "an unreachable upstream sent no status")
        #expect(events.filter { $0.type.hasSuffix("panel.failed") }.map { $0.json["status_code"] } == [.int(500), nil])
        #expect(events.last?.json["response"]?["output"]?[2]?["type"] == .string("message"))
    }

    @Test func aSecondFusionCallIsACappedItem() throws {
        var script = try FusionScript(Self.body)
        script.run { call, count in
            guard call.role == .outer(final: false) else { return Self.reply(call, count) }
            return .events([.toolCall(ToolCallFragment(index: 0, id: "f1", name: "fusion", arguments: "{}")),
                            .toolCall(ToolCallFragment(index: 1, id: "f2", name: "fusion", arguments: #"{"question":"again"}"#)),
                            .finish(.toolCalls)])
        }
        try Golden.check("fusion-capped.sse", script.out)
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let output = try #require(events.last?.json["response"]?["output"]?.arrayValue)
        #expect(output.map { $0["type"] } == [.string("openrouter:fusion"), .string("openrouter:fusion"), .string("message")])
        #expect(output[1]["failure_reason"] == .string("fusion_invocation_capped") && output[1]["status"] == .string("incomplete"))
        #expect(output[1]["arguments"] == .string(#"{"question":"again"}"#))
    }

    @Test func aFailureMidDeliberationClosesTheItemAndFailsTheResponse() throws {
        var script = try FusionScript(Self.body)
        script.run { call, count in
            if call.role == .outer(final: true) { return .failure(.upstreamUnavailable("outer model gone"), .upstreamError) }
            return Self.reply(call, count)
        }
        let events = try Self.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(events.last?.type == "response.failed")
        #expect(events.last?.json["response"]?["error"]?["message"] == .string("outer model gone"))
    }

    @Test func theNonStreamedResponseHoldsTheSameItems() throws {
        var whole = try FusionScript(Self.body.replacingOccurrences(of: #""stream":true"#, with: #""stream":false"#), stream: false)
        whole.run(reply: Self.reply)
        #expect(whole.out.isEmpty)
        let usage = ResponsesFusionRenderer.usage(whole.machine.totalUsage, calls: whole.machine.calls)
        let body = whole.renderer.response(usage: usage, sources: whole.machine.sources, completedAt: ResponsesStreamWriterTests.completed)
        try Golden.check("fusion.json", body)
        var streamed = try FusionScript(Self.body)
        streamed.run(reply: Self.reply)
        let response = try JSONValue.parse(body)
        let last = try #require(try Self.events(streamed).last?.json["response"])
        #expect(response["output"] == last["output"] && response["usage"] == last["usage"] && response["status"] == .string("completed"))
    }
}

/// The analysis' items, found while the judge streams, through the renderer (the scanner is internal).
@Suite struct AnalysisItemStreamingTests {
    @Test(arguments: [1, 2, 7, 40, 10_000])
    func itemsArriveAsTheyCompleteWhateverTheSplit(size: Int) throws {
        // A fence, a key spelled with an escape, a field that is not the analysis' and strings
        // holding the bytes that structure JSON (a reply the judge's validation accepts).
        let analysis = ResponsesFusionRendererTests.analysis.replacingOccurrences(of: "\"consensus\"", with: "\"cons\\u0065nsus\"")
            .replacingOccurrences(of: "Repository size limits.", with: "Limits: [size], {files}, \\\"quotes\\\".")
        let reply = "```json\n" + analysis.dropLast() + ",\"summary\":[\"not a field\"]}\n```"
        var script = try FusionScript(ResponsesFusionRendererTests.body)
        script.run { call, count in
            guard call.role == .judge else { return ResponsesFusionRendererTests.reply(call, count) }
            var pieces: [ModelEvent] = []
            var rest = Substring(reply)
            while !rest.isEmpty {
                pieces.append(.text(String(rest.prefix(size))))
                rest = rest.dropFirst(size)
            }
            return .events(pieces)
        }
        let items = try ResponsesFusionRendererTests.events(script).filter { $0.type == "response.fusion_call.analysis.item" }
        #expect(items.map { $0.json["field"]?.stringValue ?? "" } == ["consensus", "contradictions", "unique_insights", "blind_spots"])
        #expect(items.first?.json["item"] == .string("Yes, for a small team.") && items.allSatisfy { $0.json["attempt"] == .int(1) })
        #expect(items[1].json["item"]?["stances"]?.arrayValue?.count == 2)
        #expect(items.last?.json["item"] == .string("Limits: [size], {files}, \"quotes\"."))
    }
}

/// Quorum cuts, withdrawn items and phases on the Responses surface.
@Suite struct ResponsesDeliberationTests {
    @Test func aMemberCutForLatencyIsAFailedPanelEntryWithItsReason() throws {
        let body = ResponsesFusionRendererTests.body.replacingOccurrences(of: #""model":"p/judge""#,
                                                                          with: #""model":"p/judge","min_answers":1,"grace_ms":0"#)
        var script = try FusionScript(body)
        script.run(reply: ResponsesFusionRendererTests.reply)  // member 0 answers first: member 1 is cut at once
        let events = try ResponsesFusionRendererTests.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let failed = try #require(events.first { $0.type == "response.fusion_call.panel.failed" })
        #expect(failed.json["reason"] == .string("cut_for_latency") && failed.json["cause"] == .string("grace") && failed.json["index"] == .int(1))
        #expect(failed.json["error"] == nil, "no top-level error: the OpenAI SDKs would abort")
        // OpenRouter's shape when asked for: its `error` string, as for any failed member.
        var exact = try FusionScript(body.replacingOccurrences(of: #""stream":true"#, with: #""stream":true,"stream_options":{"openrouter_fusion_events":true}"#))
        exact.run(reply: ResponsesFusionRendererTests.reply)
        let cut = try #require(try ResponsesFusionRendererTests.events(exact).first { $0.type == "response.fusion_call.panel.failed" })
        #expect(cut.json["error"]?.stringValue?.hasPrefix("cut for latency") == true && cut.json["message"] == nil, "\(cut.json)")
        let fusion = try #require(events.last?.json["response"]?["output"]?[1])
        #expect(fusion["failed_models"]?[0]?["reason"] == .string("cut_for_latency"))
        #expect(fusion["panel"]?["cut_for_latency"] == .int(1) && fusion["panel"]?["min_answers"] == .int(1))
        let phases = events.filter { $0.type == "response.fusion_call.phase" }.map { "\($0.json["phase"]?.stringValue ?? "") \($0.json["status"]?.stringValue ?? "")" }
        #expect(phases == ["outer completed", "panel started", "panel completed", "judge started", "judge completed"])
        #expect(events.first { $0.type == "response.fusion_call.phase" && $0.json["phase"] == .string("panel") && $0.json["status"] == .string("completed") }?
            .json["summary"] == .string("1 of 2 answered, 1 cut for latency"))
    }

    @Test func itemsOfAFailedAttemptAreWithdrawn() throws {
        var script = try FusionScript(ResponsesFusionRendererTests.body)
        script.run { call, count in
            guard call.role == .judge, count == 0 else { return ResponsesFusionRendererTests.reply(call, count) }
            return .events([.text(#"{"consensus":["one"],"blind_spots":["two"],"unique_insights":[{"model":"nobody","insight":"x"}]}"#)])
        }
        let events = try ResponsesFusionRendererTests.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let types = ResponsesFusionRendererTests.fusionTypes(events)
        let firstFailure = try #require(types.firstIndex(of: "analysis.failed"))
        #expect(Array(types[..<firstFailure].suffix(4)) == ["analysis.item", "analysis.item", "analysis.item.withdrawn", "analysis.item.withdrawn"])
        let withdrawn = events.filter { $0.type == "response.fusion_call.analysis.item.withdrawn" }
        #expect(withdrawn.map { $0.json["field"] } == [.string("blind_spots"), .string("consensus")] && withdrawn.allSatisfy { $0.json["attempt"] == .int(1) })
        #expect(types.contains("analysis.completed"), "the retry succeeded")
    }

    @Test func theEstimateWaitsForTheFusionItem() throws {
        var script = try FusionScript(ResponsesFusionRendererTests.body, prices: ["p/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 2)])
        script.run(reply: ResponsesFusionRendererTests.reply)
        let events = try ResponsesFusionRendererTests.events(script)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let types = ResponsesFusionRendererTests.fusionTypes(events, phases: true)
        #expect(types.prefix(3) == ["in_progress", "estimate", "phase"])
        let estimate = try #require(events.first { $0.type == "response.fusion_call.estimate" })
        #expect((estimate.json["cost_max"]?.doubleValue ?? 0) > (estimate.json["cost_min"]?.doubleValue ?? 1) && estimate.json["currency"] == .string("USD"))
    }
}
