import Fusion
import GatewayCore
import Providers
import Testing

/// One Fusion request's decisions without sockets: calls started and cancelled, what the client
/// sees, and how it ends, for each path.
@Suite struct FusionSessionMachineTests {
    static let panel = ["p/a", "p/b"]
    /// The outer model calls the caller's tool and fusion in one turn.
    static let parallelTurn: [ModelEvent] = [
        .toolCall(ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: "{}")),
        .toolCall(ToolCallFragment(index: 1, id: "call_f", name: "fusion", arguments: "{}")),
        .finish(.toolCalls),
    ]
    static let analysis = #"{"consensus":["x"],"contradictions":[],"partial_coverage":[],"unique_insights":[{"model":"p/b","insight":"z"}],"blind_spots":[]}"#

    func machine(tools: [ToolDefinition] = [], judgeTools: [ToolDefinition] = [], limits: FusionSessionMachine.Limits? = nil,
                 parameters: String = #"{"analysis_models":["p/a","p/b"],"model":"p/judge"}"#) throws -> FusionSessionMachine {
        let request = ModelRequest(model: "p/outer", messages: [ModelMessage(role: .user, text: "Q?")], stream: true)
        var withTools = request
        withTools.tools = [.function(name: "lookup", description: nil, parameters: nil, strict: nil),
                           .other(try JSONValue.parse(Array(#"{"type":"fusion","parameters":\#(parameters)}"#.utf8)))]
        guard case .fusion(let fusion) = try FusionPlan.make(request: withTools, settings: .simulated, depth: 0) else {
            throw StreamDecodingError("not fusion")
        }
        return FusionSessionMachine(request: fusion, settings: .simulated,
                                    limits: limits ?? .init(memberTimeoutMilliseconds: 1_000, judgeTimeoutMilliseconds: 1_000,
                                                            outerTimeoutMilliseconds: 5_000, defaultMaxTokens: 4096),
                                    panelTools: tools, judgeTools: judgeTools)
    }

    func started(_ actions: [FusionSessionMachine.Action]) -> [FusionSessionMachine.Call] {
        actions.compactMap { if case .startCall(let call) = $0 { call } else { nil } }
    }

    func outputs(_ actions: [FusionSessionMachine.Action]) -> [FusionSessionMachine.Output] {
        actions.compactMap { if case .output(let output) = $0 { output } else { nil } }
    }

    func outcome(_ actions: [FusionSessionMachine.Action]) -> FusionSessionMachine.Outcome? {
        actions.compactMap { if case .finish(let outcome) = $0 { outcome } else { nil } }.first
    }

    /// Feeds `events` to call `id`, then its end; returns every action.
    func run(_ m: inout FusionSessionMachine, _ id: FusionSessionMachine.CallID, _ events: [ModelEvent],
             end: StreamEnd = .complete, at time: Double) -> [FusionSessionMachine.Action] {
        var actions: [FusionSessionMachine.Action] = []
        for event in events { actions += m.handle(.callEvent(id, event), at: time) }
        return actions + m.handle(.callEnded(id, end), at: time)
    }

    let fusionCall: [ModelEvent] = [
        .text("Let me ask the panel. "),
        .toolCall(ToolCallFragment(index: 0, id: "call_f", name: "fusion", arguments: #"{"quest"#)),
        .toolCall(ToolCallFragment(index: 0, arguments: #"ion":"Q?"}"#)),
        .finish(.toolCalls), .usage(Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15)),
    ]

    @Test func aDirectAnswerGoesToTheClientAndEndsTheRequest() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        #expect(first.role == .outer(final: false) && first.model == "p/outer")
        #expect(first.request.tools.compactMap(\.functionName) == ["lookup", "fusion"])
        let actions = run(&m, first.id, [.text("Hi"), .finish(.stop), .usage(Usage(totalTokens: 3))], at: 5)
        #expect(outputs(actions) == [.answer(.text("Hi")), .answer(.finish(.stop))])
        #expect(outcome(actions) == .completed)
        #expect(!m.deliberated && m.firstTokenAt == 5 && m.finishReason == .stop)
        #expect(m.calls.map(\.role) == ["outer"] && m.totalUsage.totalTokens == 3)
    }

    /// An Anthropic outer model's own stop (`stop_sequence` with its sequence, `pause_turn`) and
    /// message fields reach the client when its turn is the answer, as proxied (review 71A #2: a
    /// made-up `end_turn`); a turn that called fusion keeps them, its finish is the session's.
    @Test func anAnswersOwnStopDetailReachesTheClientAndAFusionTurnsDoesNot() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let direct = run(&m, first.id, [.text("Hi STOP"), .stopDetail(reason: "stop_sequence", sequence: "STOP"), .finish(.stop)], at: 5)
        #expect(outputs(direct) == [.answer(.text("Hi STOP")), .answer(.stopDetail(reason: "stop_sequence", sequence: "STOP")), .answer(.finish(.stop))])
        var called = try machine()
        let outer = try #require(started(called.start(at: 0)).first)
        let events = fusionCall.flatMap { $0 == .finish(.toolCalls) ? [.stopDetail(reason: "tool_use", sequence: nil), $0] : [$0] }
        #expect(!outputs(run(&called, outer.id, events, at: 5)).contains { if case .answer(.stopDetail) = $0 { true } else { false } })
    }

    /// A call named in a later fragment is held until it is: the fusion call is never shown,
    /// another is shown whole (review 73 #1: a late-named fusion call reached the client as a
    /// call named ""). A turn that called fusion keeps its message fields; the answer's reach
    /// the client once it ends (review 73 #3).
    @Test func aCallNamedLateIsHeldUntilItIs() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let late: [ModelEvent] = [
            .messageExtras(AnthropicMessageExtras(message: ["container": .object(["id": .string("c1")])])),
            .toolCall(ToolCallFragment(index: 0, id: "call_f", arguments: #"{"quest"#)),
            .toolCall(ToolCallFragment(index: 0, name: "fusion", arguments: #"ion":"Q?"}"#)),
            .finish(.toolCalls),
        ]
        let afterOuter = run(&m, first.id, late, at: 5)
        #expect(!outputs(afterOuter).contains { if case .answer(.toolCall) = $0 { true } else if case .answer(.messageExtras) = $0 { true } else { false } },
                "\(outputs(afterOuter))")
        #expect(started(afterOuter).map(\.role) == [.member(index: 0), .member(index: 1)], "the deliberation runs")
        var direct = try machine()
        let outer = try #require(started(direct.start(at: 0)).first)
        let lookup: [ModelEvent] = [
            .toolCall(ToolCallFragment(index: 0, id: "call_l", arguments: #"{"a":"#)),
            .toolCall(ToolCallFragment(index: 0, name: "lookup", arguments: "1}")),
            .messageExtras(AnthropicMessageExtras(message: ["container": .object(["id": .string("c2")])])),
            .finish(.toolCalls),
        ]
        let shown = outputs(run(&direct, outer.id, lookup, at: 5))
        #expect(shown.contains(.answer(.toolCall(ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: #"{"a":1}"#)))), "\(shown)")
        #expect(shown.contains(.answer(.messageExtras(AnthropicMessageExtras(message: ["container": .object(["id": .string("c2")])])))), "\(shown)")
    }

    /// Servers that end a tool call's turn with "stop" (sglang, vLLM, GLM; OpenAI for a named
    /// tool choice): that finish is the session's to report, not the client's first chunk
    /// (review 48 Fusion #3: a chat client saw an empty finished choice before the answer).
    @Test func aFusionTurnEndingWithStopDoesNotFinishTheClientsAnswer() throws {
        for reason in [FinishReason.stop, .length] {
            var m = try machine()
            let first = try #require(started(m.start(at: 0)).first)
            let afterOuter = run(&m, first.id, fusionCall.map { $0 == .finish(.toolCalls) ? .finish(reason) : $0 }, at: 10)
            #expect(!outputs(afterOuter).contains { if case .answer(.finish) = $0 { true } else { false } }, "\(reason)")
            #expect(started(afterOuter).map(\.role) == [.member(index: 0), .member(index: 1)])
        }
    }

    @Test func aWholeDeliberationRunsInOrderAndTheFinalTurnGetsTheResult() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let afterOuter = run(&m, first.id, fusionCall, at: 10)
        // Our tool call never reaches the client, its text does.
        #expect(outputs(afterOuter).prefix(1) == [.answer(.text("Let me ask the panel. "))])
        #expect(!outputs(afterOuter).contains(.answer(.finish(.toolCalls))))
        #expect(outputs(afterOuter).contains(.progress(.toolCalled(arguments: #"{"question":"Q?"}"#, callID: "call_f"))))
        let members = started(afterOuter)
        #expect(members.map(\.role) == [.member(index: 0), .member(index: 1)])
        #expect(members.map(\.model) == Self.panel)
        #expect(members[0].request.messages.last?.text == "Q?" && members[0].request.tools.isEmpty)
        #expect(members[0].request.maxOutputTokens == 4096, "a member's output is bounded by default")
        // Members stream, then end: the judge starts after the last.
        var actions = m.handle(.callEvent(members[1].id, .text("B says y.")), at: 11)
        #expect(outputs(actions) == [.progress(.memberDelta(index: 1, model: "p/b", text: "B says y."))])
        // Running totals (Gemini's, vLLM's, LiteLLM's streams repeat them): the last is the call's.
        actions = run(&m, members[1].id, [.usage(Usage(totalTokens: 4)), .usage(Usage(totalTokens: 7))], at: 12)
        #expect(started(actions).isEmpty)
        actions = run(&m, members[0].id, [.reasoning("hmm"), .text("A says x.")], at: 13)
        #expect(outputs(actions).first == .progress(.memberReasoningDelta(index: 0, model: "p/a", text: "hmm")),
                "a member's reasoning is shown live")
        let judge = try #require(started(actions).first)
        #expect(judge.role == .judge && judge.model == "p/judge")
        #expect(judge.request.temperature == 0 && judge.request.responseFormat?["type"] == .string("json_object"))
        // Under a neutral label: which one is the shuffle's business (NeutralLabelsTests).
        let prompt = judge.request.messages.last?.text ?? ""
        #expect(prompt.contains("\">\nA says x.\n</answer>") && prompt.contains("<answer label=\"Response ") && !prompt.contains("p/a"))
        actions = run(&m, judge.id, [.text(Self.analysis), .usage(Usage(totalTokens: 2)), .usage(Usage(totalTokens: 5))], at: 20)
        let final = try #require(started(actions).first)
        #expect(final.role == .outer(final: true))
        #expect(outputs(actions).contains(.finalAnswerStarts(model: "p/outer")))
        let history = final.request.messages
        #expect(history.count == 3 && history[1].toolCalls.map(\.id) == ["call_f"] && history[1].text == "Let me ask the panel. ")
        let result = try JSONValue.parse(Array(history[2].text.utf8))
        #expect(history[2].toolCallID == "call_f" && result["status"] == .string("ok"))
        #expect(result["responses"]?.arrayValue?.count == 2 && result["analysis"]?["consensus"] == .array([.string("x")]))
        #expect(final.request.tools.compactMap(\.functionName) == ["lookup"], "fusion runs once")
        actions = run(&m, final.id, [.text("Final."), .finish(.stop), .usage(Usage(totalTokens: 20))], at: 30)
        #expect(outputs(actions) == [.answer(.text("Final.")), .answer(.finish(.stop)),
                                     .progress(.phase(PhaseReport(.final, .completed, duration: 10, summary: "6 characters")))])
        #expect(outcome(actions) == .completed)
        #expect(m.calls.map(\.role) == ["outer", "panel", "panel", "judge", "outer_final"])
        #expect(m.calls.map(\.status) == ["ok", "ok", "ok", "ok", "ok"])
        #expect(m.totalUsage.totalTokens == 15 + 7 + 5 + 20, "each call counted once, by its last report (review 68C #1)")
        #expect(m.fusionResult?.answered.count == 2)
    }

    /// The shell starts calls ahead of the outputs decided with them (`Action.callsFirst`): the
    /// members start before the deliberation's progress is rendered; outputs keep their order,
    /// and nothing but a call moves.
    @Test func callsMoveAheadOfTheOutputsBeforeThemOnly() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let afterOuter = run(&m, first.id, fusionCall, at: 10) + [.cancelTimer(.deadline), .output(.progress(.judgeStarted(model: "x", attempt: 1)))]
        let ordered = FusionSessionMachine.Action.callsFirst(afterOuter)
        #expect(started(ordered).map(\.id) == started(afterOuter).map(\.id) && started(ordered).count == 2)
        #expect(outputs(ordered) == outputs(afterOuter))
        let firstOutput = try #require(afterOuter.firstIndex { if case .output = $0 { true } else { false } })
        let kinds = ordered.map { action -> String in
            switch action {
            case .startCall: "call"
            case .output: "output"
            case .cancelTimer: "timer"
            default: "other"
            }
        }
        // The members' calls first, then every output decided before them, then the timer, then what followed it.
        #expect(Array(kinds.prefix(firstOutput + 2)) == Array(repeating: "call", count: 2) + Array(repeating: "output", count: firstOutput))
        #expect(Array(kinds.suffix(2)) == ["timer", "output"])
        #expect(FusionSessionMachine.Action.callsFirst([]).isEmpty)
    }

    @Test func aTruncatedMemberIsAFailureNotAnAnswer() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        var actions = run(&m, members[0].id, [.text("Half an ans")], end: .truncated, at: 2)
        #expect(outputs(actions).contains { if case .progress(.memberFailed(0, _, .truncated, _, _)) = $0 { true } else { false } })
        actions = run(&m, members[1].id, [.text("Whole.")], at: 3)
        #expect(started(actions).first?.role == .judge)
        #expect(m.calls.first { $0.role == "panel" && $0.status == "truncated" } != nil)
    }

    @Test func aTruncatedOuterTurnFailsTheRequest() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let actions = run(&m, first.id, [.text("Cut")], end: .truncated, at: 1)
        guard case .failed(let error)? = outcome(actions) else { Issue.record("not failed"); return }
        #expect(error.code == "upstream_truncated")
    }

    @Test func cancellingStopsEveryRunningCallAndLateEventsAreIgnored() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        let cancelled = m.cancel().compactMap { if case .cancelCall(let id) = $0 { id } else { nil } }
        #expect(Set(cancelled) == Set(members.map(\.id)))
        #expect(m.handle(.callEvent(members[0].id, .text("late")), at: 2).isEmpty)
        #expect(m.handle(.callEnded(members[0].id, .complete), at: 2).isEmpty)
        #expect(m.isFinished)
    }

    @Test func theCallersToolCalledAlongsideFusionHandsTheTurnBack() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        var actions = run(&m, first.id, Self.parallelTurn, at: 1)
        #expect(outputs(actions).first == .answer(.toolCall(ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: "{}"))))
        let members = started(actions)
        _ = run(&m, members[0].id, [.text("a")], at: 2)
        let judge = try #require(started(run(&m, members[1].id, [.text("b")], at: 3)).first)
        actions = run(&m, judge.id, [.text(Self.analysis)], at: 4)
        #expect(started(actions).isEmpty, "no final turn: the caller's result is missing")
        // A real parallel turn: the caller's call (streamed above), then the fusion call with its
        // result for the client to send back, then the finish.
        let tail = outputs(actions).suffix(2)
        guard case .serverToolCalls(let answered)? = tail.first else {
            Issue.record("no fusion record before the finish: \(outputs(actions))")
            return
        }
        #expect(tail.last == .answer(.finish(.toolCalls)))
        #expect(answered.map(\.call.id) == ["call_f"] && answered.map(\.call.name) == ["fusion"])
        let result = try JSONValue.parse(Array(answered[0].result.utf8))
        #expect(result == m.fusionResult?.json && result["status"] == .string("ok"))
        #expect(outcome(actions) == .completed && m.finishReason == .toolCalls)
        #expect(m.deferredCallerCalls.map(\.id) == ["call_l"] && m.fusionResult != nil)
        #expect(m.calls.map(\.role) == ["outer", "panel", "panel", "judge"])
    }

    /// On an API that cannot carry the answered fusion call back (Anthropic's Messages), a turn
    /// calling the caller's tool and fusion together deliberates not at all: nothing is paid for a
    /// result the next turn would have lost; the turn goes back with the caller's call.
    @Test func aParallelTurnThatCannotCarryFusionDoesNotDeliberate() throws {
        var m = try machine()
        m.deliberatesInParallelTurns = false
        let first = try #require(started(m.start(at: 0)).first)
        let actions = run(&m, first.id, Self.parallelTurn, at: 1)
        #expect(started(actions).isEmpty, "no panel")
        let shown = outputs(actions)
        #expect(shown.first == .answer(.toolCall(ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: "{}"))))
        #expect(shown.last == .answer(.finish(.toolCalls)))
        #expect(shown.contains { if case .progress(.phase(let report)) = $0 { report.status == .skipped } else { false } })
        #expect(!shown.contains { if case .serverToolCalls = $0 { true } else { false } })
        #expect(outcome(actions) == .completed && m.finishReason == .toolCalls && !m.deliberated)
        #expect(m.calls.map(\.role) == ["outer"])
        // Fusion alone in its turn still deliberates.
        var alone = try machine()
        alone.deliberatesInParallelTurns = false
        let call = try #require(started(alone.start(at: 0)).first)
        #expect(started(run(&alone, call.id, fusionCall, at: 1)).map(\.role) == [.member(index: 0), .member(index: 1)])
    }

    @Test func aParallelTurnWithTwoFusionCallsRecordsBothTheRunAndTheCappedOne() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let turn: [ModelEvent] = [
            .toolCall(ToolCallFragment(index: 0, id: "f1", name: "fusion", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 1, id: "call_l", name: "lookup", arguments: #"{"q":1}"#)),
            .toolCall(ToolCallFragment(index: 2, id: "f2", name: "fusion", arguments: #"{"question":"again"}"#)),
            .finish(.toolCalls),
        ]
        var actions = run(&m, first.id, turn, at: 1)
        #expect(outputs(actions).filter { if case .answer(.toolCall) = $0 { true } else { false } }
            == [.answer(.toolCall(ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: #"{"q":1}"#)))],
                "only the caller's call reaches the client as a call, its index 0 there (review 57 #1)")
        let members = started(actions)
        _ = run(&m, members[0].id, [.text("a")], at: 2)
        let judge = try #require(started(run(&m, members[1].id, [.text("b")], at: 3)).first)
        actions = run(&m, judge.id, [.text(Self.analysis)], at: 4)
        let answered = outputs(actions).compactMap { if case .serverToolCalls(let calls) = $0 { calls } else { nil } }.first
        #expect(answered?.map(\.call.id) == ["f1", "f2"])
        #expect(answered?.last?.result.contains("fusion_invocation_capped") == true)
        #expect(answered?.first?.result.contains("fusion_invocation_capped") == false)
    }

    /// Fusion calls that came without an id (LM Studio's, some vLLM streams') get ids of their
    /// own from the request's stem, which the records (and the final turn) name them by: an empty
    /// one is refused when the client sends the turn back (review 60C #2).
    @Test func fusionCallsWithoutAnIDGetOne() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let turn: [ModelEvent] = [
            .toolCall(ToolCallFragment(index: 0, id: "", name: "fusion", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 1, id: "call_l", name: "lookup", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 2, id: nil, name: "fusion", arguments: "{}")),
            .finish(.toolCalls),
        ]
        let members = started(run(&m, first.id, turn, at: 1))
        _ = run(&m, members[0].id, [.text("a")], at: 2)
        let judge = try #require(started(run(&m, members[1].id, [.text("b")], at: 3)).first)
        let actions = run(&m, judge.id, [.text(Self.analysis)], at: 4)
        let answered = outputs(actions).compactMap { if case .serverToolCalls(let calls) = $0 { calls } else { nil } }.first
        #expect(answered?.map(\.call.id) == ["call_fusion_0", "call_fusion_2"], "\(String(describing: answered))")
    }

    @Test func aSecondFusionCallInOneTurnGetsACappedResult() throws {
        var m = try machine()
        let first = try #require(started(m.start(at: 0)).first)
        let turn: [ModelEvent] = [
            .toolCall(ToolCallFragment(index: 0, id: "f1", name: "fusion", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 1, id: "f2", name: "fusion", arguments: #"{"question":"again"}"#)),
            .finish(.toolCalls),
        ]
        let members = started(run(&m, first.id, turn, at: 1))
        #expect(members.count == 2)
        _ = run(&m, members[0].id, [.text("a")], at: 2)
        let judge = try #require(started(run(&m, members[1].id, [.text("b")], at: 3)).first)
        let afterJudge = run(&m, judge.id, [.text(Self.analysis)], at: 4)
        let final = try #require(started(afterJudge).first)
        // The client hears of the capped call after the deliberation it did not get.
        let shown = outputs(afterJudge).filter {
            switch $0 {
            case .progress(.completed), .progress(.invocationCapped): true
            default: false
            }
        }
        #expect(shown.count == 2 && shown.last == .progress(.invocationCapped(arguments: #"{"question":"again"}"#, callID: "f2")))
        let history = final.request.messages
        #expect(history[1].toolCalls.map(\.id) == ["f1", "f2"])
        #expect(history.suffix(2).map(\.toolCallID) == ["f1", "f2"])
        #expect(history.last?.text.contains("fusion_invocation_capped") == true)
    }

    @Test func theInnerCallLimitBoundsARequest() throws {
        var m = try machine(limits: .init(memberTimeoutMilliseconds: 1_000, judgeTimeoutMilliseconds: 1_000,
                                          outerTimeoutMilliseconds: 5_000, maxInnerCalls: 2))
        let first = try #require(started(m.start(at: 0)).first)
        let actions = run(&m, first.id, fusionCall, at: 1)
        // One member call fits, the other is failed without being made.
        #expect(started(actions).count == 1)
        #expect(outputs(actions).contains { if case .progress(.memberFailed(1, _, _, let message, _)) = $0 { message.contains("limit of 2 inner calls") } else { false } })
    }

    @Test func aMembersToolTurnsLeaveTheJudgeAndTheFinalAnswerTheirCalls() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: false)
        // Five calls: the outer model's first turn, two members, then the judge and the final answer.
        var m = try machine(tools: tools, limits: .init(memberTimeoutMilliseconds: 1_000, judgeTimeoutMilliseconds: 1_000,
                                                         outerTimeoutMilliseconds: 5_000, maxInnerCalls: 5))
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        #expect(members.count == 2)
        var actions = run(&m, members[0].id, [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}"))], at: 2)
        let toolRun = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        actions = m.handle(.toolFinished(toolRun, .init(content: "{}")), at: 3)
        #expect(started(actions).isEmpty, "a fourth call now would leave the final answer none")
        #expect(outputs(actions).contains { if case .progress(.memberFailed(0, _, .innerCallLimit, let message, _)) = $0 {
            message.contains("limit of 5 inner calls") } else { false } })
        let judge = try #require(started(run(&m, members[1].id, [.text("B says y."), .finish(.stop)], at: 4)).first)
        #expect(judge.role == .judge)
        actions = run(&m, judge.id, [.text(Self.analysis), .finish(.stop)], at: 5)
        let final = try #require(started(actions).first)
        #expect(final.role == .outer(final: true))
        actions = run(&m, final.id, [.text("Done."), .finish(.stop)], at: 6)
        #expect(outcome(actions) == .completed)
    }

    /// A member cut for latency after a web-tool turn, and a judge stopped by the deadline
    /// after one: what their finished turns spent stays in the usage charged (review 48 Fusion
    /// #2: only the cancelled turn's estimate was, the earlier turns' reported usage was lost).
    @Test func finishedToolTurnsOfACutMemberAndAStoppedJudgeAreCharged() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: false)
        var m = try machine(tools: tools, judgeTools: tools,
                            parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge","min_answers":1,"grace_ms":0,"deadline_ms":5000}"#)
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        let search: [ModelEvent] = [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}")), .finish(.toolCalls),
                                    .usage(Usage(promptTokens: 100, completionTokens: 10, totalTokens: 110))]
        var actions = run(&m, members[0].id, search, at: 2)
        let toolRun = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        actions = m.handle(.toolFinished(toolRun, .init(content: "{}")), at: 3)
        #expect(started(actions).count == 1, "the member's second turn")
        // The other member answers: quorum, no grace: the first is cut mid-turn.
        actions = run(&m, members[1].id, [.text("B says y."), .finish(.stop), .usage(Usage(promptTokens: 5, completionTokens: 5, totalTokens: 10))], at: 4)
        actions += m.handle(.timerFired(.grace), at: 4)
        let cut = try #require(m.calls.first { $0.role == "panel" && $0.model == "p/a" })
        #expect(cut.status == MemberFailureReason.cutForLatency.rawValue && cut.usage?.totalTokens == 110 && cut.toolCalls == 1, "\(cut)")
        // The judge searches, then the deadline stops it.
        let judge = try #require(started(actions).first { $0.role == .judge })
        actions = run(&m, judge.id, search, at: 5)
        let judgeTool = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        _ = m.handle(.toolFinished(judgeTool, .init(content: "{}")), at: 6)
        _ = m.handle(.timerFired(.deadline), at: 5_001)
        let stopped = try #require(m.calls.first { $0.role == "judge" })
        #expect(stopped.usage?.totalTokens == 110 && stopped.toolCalls == 1, "\(stopped)")
        #expect(m.totalUsage.totalTokens >= 110 + 10 + 110, "\(m.totalUsage)")
    }

    @Test func membersUseWebToolsWithinTheirCaps() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: true)
        var m = try machine(tools: tools, limits: .init(memberTimeoutMilliseconds: 1_000, judgeTimeoutMilliseconds: 1_000,
                                                         outerTimeoutMilliseconds: 5_000, maxWebToolCalls: 2, maxWebCallsPerTurn: 1))
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        #expect(members[0].request.tools.count == 2 && members[0].request.messages.first?.role == .system)
        let calls: [ModelEvent] = [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: #"{"query":"q"}"#)),
                                   .toolCall(ToolCallFragment(index: 1, id: "s2", name: "web_search", arguments: #"{"query":"r"}"#))]
        var actions = run(&m, members[0].id, calls, at: 2)
        let runs = actions.compactMap { if case .runTool(let run, let call) = $0 { (run, call.id) } else { nil } }
        #expect(runs.map(\.1) == ["s1"], "one call per turn runs; the other gets an error result")
        let source = Source(url: "https://e.example/1", title: "One", content: "c")
        actions = m.handle(.toolFinished(runs[0].0, .init(content: #"{"results":[1]}"#, sources: [source])), at: 3)
        let next = try #require(started(actions).first)
        #expect(next.role == .member(index: 0))
        let toolMessages = next.request.messages.filter { $0.role == .tool }
        #expect(toolMessages.map(\.toolCallID) == ["s1", "s2"])
        #expect(toolMessages[1].text.contains("too many tool calls in one turn"))
        #expect(m.sources.sources == [source] && m.searchResults == 1 && m.webToolCalls == 1)
    }

    @Test func aMemberOutOfTimeIsFailedBeforeItsNextTurn() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: false)
        var m = try machine(tools: tools)
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        var actions = run(&m, members[0].id, [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}"))], at: 2)
        let run = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        actions = m.handle(.toolFinished(run, .init(content: "{}")), at: 2_000)
        #expect(started(actions).isEmpty)
        #expect(outputs(actions).contains { if case .progress(.memberFailed(0, _, .timeout, _, _)) = $0 { true } else { false } })
    }

    /// The member's time bounds its web tools too: when it runs out mid-fetch the member fails
    /// then, and the fetch stops (review 62B #3: a member of 3 s failed at 15 s, its fetch's own
    /// timeout); a result arriving after is dropped.
    @Test func aMemberOutOfTimeWhileItsToolsRunFailsThenAndItsToolsStop() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: false)
        var m = try machine(tools: tools, limits: .init(memberTimeoutMilliseconds: 3_000, judgeTimeoutMilliseconds: 1_000,
                                                         outerTimeoutMilliseconds: 5_000))
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        var actions = run(&m, members[0].id, [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}"))], at: 501)
        let toolRun = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        let armed = actions.compactMap { if case .startTimer(.memberTools(0), let ms) = $0 { ms } else { nil } }
        #expect(armed == [2_500], "what is left of the member's 3 s")
        actions = m.handle(.timerFired(.memberTools(0)), at: 3_001)
        #expect(actions.contains { if case .cancelTool(toolRun) = $0 { true } else { false } }, "\(actions)")
        #expect(outputs(actions).contains { if case .progress(.memberFailed(0, _, .timeout, let message, _)) = $0 { message.contains("3000 ms") } else { false } })
        // Its start was shown, so is its end (review 63 #2).
        #expect(outputs(actions).contains { if case .progress(.webToolFinished(let activity)) = $0 {
            activity.error == "stopped before it finished: its member ran out of time" && activity.durationMilliseconds == 2_500 } else { false } })
        #expect(m.handle(.toolFinished(toolRun, .init(content: "{}")), at: 3_100).isEmpty, "a late result is dropped")
        // A member whose tools finish in time has its timer cancelled and goes on.
        var n = try machine(tools: tools, limits: .init(memberTimeoutMilliseconds: 3_000, judgeTimeoutMilliseconds: 1_000,
                                                         outerTimeoutMilliseconds: 5_000))
        let start = try #require(started(n.start(at: 0)).first)
        let panel = started(run(&n, start.id, fusionCall, at: 1))
        actions = run(&n, panel[0].id, [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}"))], at: 2)
        let quick = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        actions = n.handle(.toolFinished(quick, .init(content: "{}")), at: 3)
        #expect(actions.contains { if case .cancelTimer(.memberTools(0)) = $0 { true } else { false } })
        #expect(started(actions).count == 1, "its next turn")
        #expect(n.handle(.timerFired(.memberTools(0)), at: 3_001).isEmpty, "a cancelled timer's late firing does nothing")
    }

    /// A member cut for latency has its running web tools stopped with it, not left to fetch
    /// until the response ends (review 62B #4).
    @Test func aCutMembersToolsStopWithIt() throws {
        let tools = ToolLoop.webToolDefinitions(search: true, fetch: false)
        var m = try machine(tools: tools, parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge","min_answers":1,"grace_ms":0}"#)
        let first = try #require(started(m.start(at: 0)).first)
        let members = started(run(&m, first.id, fusionCall, at: 1))
        var actions = run(&m, members[0].id, [.toolCall(ToolCallFragment(index: 0, id: "s1", name: "web_search", arguments: "{}"))], at: 2)
        let toolRun = try #require(actions.compactMap { if case .runTool(let run, _) = $0 { run } else { nil } }.first)
        actions = run(&m, members[1].id, [.text("B says y."), .finish(.stop)], at: 3)
        actions += m.handle(.timerFired(.grace), at: 3)
        #expect(actions.contains { if case .cancelTool(toolRun) = $0 { true } else { false } }, "\(actions)")
        #expect(actions.contains { if case .cancelTimer(.memberTools(0)) = $0 { true } else { false } })
        #expect(outputs(actions).contains { if case .progress(.webToolFinished(let activity)) = $0 {
            activity.error?.contains("cut for latency") == true } else { false } })
    }
}
