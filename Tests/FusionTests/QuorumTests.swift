import Fusion
import GatewayCore
import Providers
import Testing

/// Quorum with grace and the deadline, in the deliberation's state machine: which members are
/// cut and when, what the judge is told, what the result says. No sockets, no clock: the tests
/// fire the timers.
@Suite struct QuorumTests {
    static let models = ["p/a", "p/b", "p/c"]
    static let analysis = #"{"consensus":["x"],"contradictions":[],"partial_coverage":[],"unique_insights":[],"blind_spots":[]}"#

    func deliberation(_ quorum: Deliberation.Quorum) -> (Deliberation, [Deliberation.Action]) {
        var d = Deliberation(question: "Q?", models: Self.models, judge: "p/judge", judgeFallback: nil, quorum: quorum)
        let actions = d.start(at: 0)
        return (d, actions)
    }

    func answer(_ d: inout Deliberation, _ index: Int, _ text: String, at time: Double) -> [Deliberation.Action] {
        d.handle(.memberDelta(index: index, text: text), at: time) + d.handle(.memberFinished(index: index, usage: nil), at: time)
    }

    func cut(_ actions: [Deliberation.Action]) -> [Int] {
        actions.compactMap { if case .cancelMember(let index) = $0 { index } else { nil } }
    }

    func judgePrompt(_ actions: [Deliberation.Action]) -> String? {
        actions.compactMap { if case .startJudge(_, _, let messages) = $0 { messages.last?.text } else { nil } }.first
    }

    func result(_ actions: [Deliberation.Action]) -> FusionResult? {
        actions.compactMap { if case .finish(let result) = $0 { result } else { nil } }.first
    }

    func timers(_ actions: [Deliberation.Action]) -> [String] {
        actions.compactMap {
            switch $0 {
            case .startTimer(let timer, let ms): "start \(timer) \(ms)"
            case .cancelTimer(let timer): "cancel \(timer)"
            default: nil
            }
        }
    }

    @Test func withoutAQuorumTheJudgeWaitsForEveryMember() {
        var (d, start) = deliberation(Deliberation.Quorum())
        #expect(timers(start).isEmpty, "no deadline, no timer")
        #expect(judgePrompt(answer(&d, 0, "A.", at: 1) + answer(&d, 1, "B.", at: 2)) == nil)
        #expect(judgePrompt(answer(&d, 2, "C.", at: 3)) != nil)
    }

    @Test func quorumReachedWithNoGraceCutsTheRestAtOnce() throws {
        var (d, _) = deliberation(Deliberation.Quorum(minAnswers: 2, graceMilliseconds: 0))
        _ = d.handle(.memberDelta(index: 2, text: "C so far"), at: 1)
        #expect(cut(answer(&d, 0, "A.", at: 2)).isEmpty)
        let actions = answer(&d, 1, "B.", at: 3)
        #expect(cut(actions) == [2])
        #expect(actions.contains(.progress(.memberCut(index: 2, model: "p/c", characters: 8, cause: .grace))))
        // The judge is told who was cut, and does not see the partial answer.
        let prompt = try #require(judgePrompt(actions))
        #expect(prompt.contains("<answer model=\"p/a\">") && prompt.contains("<answer model=\"p/b\">") && !prompt.contains("C so far"))
        #expect(prompt.contains("Not included (the panel is partial") && prompt.contains("- p/c: cut for latency before it finished"))
        // Late events of the cut member change nothing.
        #expect(d.handle(.memberDelta(index: 2, text: " more"), at: 4).isEmpty)
        #expect(d.handle(.memberFinished(index: 2, usage: nil), at: 4).isEmpty)
        let final = try #require(result(d.handle(.judgeDelta(text: Self.analysis), at: 5) + d.handle(.judgeFinished(usage: nil), at: 6)))
        let json = final.json
        #expect(json["panel"] == .object(["requested": .int(3), "answered": .int(2), "degraded": .bool(true),
                                          "cut_for_latency": .int(1), "min_answers": .int(2)]))
        let failed = try #require(json["failed_models"]?.arrayValue?.first)
        #expect(failed["model"] == .string("p/c") && failed["reason"] == .string("cut_for_latency"))
        #expect(failed["partial_content"] == .string("C so far") && failed["characters"] == .int(8))
        #expect(json["note"]?.stringValue?.contains("Cut for latency before finishing: p/c.") == true, "the final answer hears it")
        #expect(d.stats.first { $0.model == "p/c" }?.status == "cut_for_latency")
    }

    @Test func graceLetsStragglersFinishThenCutsThem() throws {
        var (d, _) = deliberation(Deliberation.Quorum(minAnswers: 1, graceMilliseconds: 250))
        var actions = answer(&d, 1, "B.", at: 10)
        #expect(timers(actions) == ["start grace 250"] && judgePrompt(actions) == nil)
        // One more finishes within the grace period: it is in.
        actions = answer(&d, 0, "A.", at: 100)
        #expect(timers(actions).isEmpty && cut(actions).isEmpty)
        // The grace period runs out: the last is cut and the judge starts.
        actions = d.handle(.timerFired(.grace), at: 260)
        #expect(cut(actions) == [2])
        let prompt = try #require(judgePrompt(actions))
        #expect(prompt.contains("p/a") && prompt.contains("p/b") && prompt.contains("- p/c: cut for latency"))
        #expect(actions.contains { if case .progress(.phase(let report)) = $0 { report.summary == "2 of 3 answered, 1 cut for latency" } else { false } })
    }

    @Test func everyoneFinishingWithinTheGraceDisarmsItsTimer() throws {
        var (d, _) = deliberation(Deliberation.Quorum(minAnswers: 2, graceMilliseconds: 500))
        _ = answer(&d, 0, "A.", at: 1)
        #expect(timers(answer(&d, 1, "B.", at: 2)) == ["start grace 500"])
        let actions = answer(&d, 2, "C.", at: 3)
        #expect(timers(actions) == ["cancel grace"] && cut(actions).isEmpty && judgePrompt(actions) != nil)
        #expect(d.handle(.timerFired(.grace), at: 600).isEmpty, "a late fire changes nothing")
    }

    @Test func failuresDoNotCountTowardsTheQuorum() {
        var (d, _) = deliberation(Deliberation.Quorum(minAnswers: 2, graceMilliseconds: 0))
        _ = d.handle(.memberFailed(index: 0, reason: .timeout, message: "slow"), at: 1)
        _ = d.handle(.memberFinished(index: 1, usage: nil), at: 2)  // no visible text: not usable
        let actions = answer(&d, 2, "C.", at: 3)
        #expect(cut(actions).isEmpty, "nothing left running")
        #expect(judgePrompt(actions)?.contains("- p/a: no answer (timeout)") == true)
        #expect(judgePrompt(actions)?.contains("- p/b: no answer (empty_completion)") == true)
    }

    @Test func theDeadlineCutsWhatStillRuns() throws {
        var (d, start) = deliberation(Deliberation.Quorum(deadlineMilliseconds: 3_000))
        #expect(timers(start) == ["start deadline 3000"])
        _ = answer(&d, 0, "A.", at: 100)
        _ = d.handle(.memberDelta(index: 1, text: "half"), at: 200)
        let actions = d.handle(.timerFired(.deadline), at: 3_000)
        #expect(cut(actions) == [1, 2])
        #expect(actions.contains(.progress(.memberCut(index: 1, model: "p/b", characters: 4, cause: .deadline))))
        // The deadline bounds the judge too: none starts after it (nor is its phase said to,
        // review 19 F10); the answer goes on without analysis.
        #expect(judgePrompt(actions) == nil)
        #expect(!actions.contains { if case .progress(.phase(let report)) = $0 { report.phase == .judge && report.status == .started } else { false } })
        let final = try #require(result(actions))
        #expect(final.answered.map(\.model) == ["p/a"] && final.analysis == nil && final.judgeFailure?.reason == .timeout)
        #expect(timers(actions).isEmpty, "the deadline fired: nothing left armed")
    }

    @Test func theDeadlineStopsAJudgeStillWriting() throws {
        var (d, _) = deliberation(Deliberation.Quorum(deadlineMilliseconds: 1_000))
        for index in 0..<3 { _ = answer(&d, index, "Answer \(index).", at: 10) }
        _ = d.handle(.judgeDelta(text: #"{"consensus":["shown"],"contra"#), at: 20)
        let actions = d.handle(.timerFired(.deadline), at: 1_000)
        // Its item is withdrawn, the result goes on without analysis.
        #expect(actions.contains(.progress(.judgeItemWithdrawn(model: "p/judge", attempt: 1, field: "consensus", index: 0))))
        let final = try #require(result(actions))
        #expect(final.analysis == nil && final.judgeFailure?.reason == .timeout && final.answered.count == 3)
        #expect(!actions.contains { if case .startJudge = $0 { true } else { false } }, "no retry after the deadline")
        #expect(d.stats.last?.status == "judge_timeout")
    }

    @Test func allCutIsAnErrorResultWithEveryMemberCut() throws {
        var (d, _) = deliberation(Deliberation.Quorum(deadlineMilliseconds: 500))
        _ = d.handle(.memberDelta(index: 0, text: "partial"), at: 100)
        let actions = d.handle(.timerFired(.deadline), at: 500)
        #expect(cut(actions) == [0, 1, 2] && judgePrompt(actions) == nil)
        // The judge's phase is said skipped, as when the deadline leaves an answer no judge (review 110 #3).
        #expect(actions.contains(.progress(.phase(PhaseReport(.judge, .skipped, summary: "no analysis: no member answered")))), "\(actions)")
        let final = try #require(result(actions))
        #expect(final.isError && final.json["failure_reason"] == .string("all_panels_failed"))
        #expect(final.failed.map(\.reason) == [.cutForLatency, .cutForLatency, .cutForLatency])
        #expect(final.failed.first?.partial == "partial")
        // Said as it was, with the panel block every result has (review 19 F3).
        #expect(final.json["error"] == .string("every panel model was cut for latency before it finished"))
        #expect(final.json["panel"] == .object(["requested": .int(3), "answered": .int(0), "degraded": .bool(true), "cut_for_latency": .int(3)]))
        #expect(timers(actions).isEmpty, "the deadline fired: nothing left armed")
    }

    @Test func finishingDisarmsTheDeadline() throws {
        var (d, _) = deliberation(Deliberation.Quorum(deadlineMilliseconds: 9_000))
        for index in 0..<3 { _ = answer(&d, index, "Answer \(index).", at: 10) }
        let actions = d.handle(.judgeDelta(text: Self.analysis), at: 20) + d.handle(.judgeFinished(usage: nil), at: 21)
        #expect(timers(actions) == ["cancel deadline"] && result(actions)?.analysis != nil)
    }

    /// A preset's quorum is for its own panel, or for any panel when the preset is named: a panel of
    /// the client's own under the default preset waits for every member.
    @Test func aPresetsQuorumAppliesToItsPanelOrWhenNamed() throws {
        let settings = FusionSettings(outerModel: "p/outer", presets: [
            "fast": .init(analysisModels: ["p/a", "p/b", "p/c"], minAnswers: 2, graceMilliseconds: 50),
        ], defaultPreset: "fast")
        func parameters(_ json: String) throws -> FusionParameters {
            try FusionParameters(json: try JSONValue.parse(Array(json.utf8)), settings: settings, path: "tools[0].parameters")
        }
        let presetPanel = try parameters("{}")
        #expect(presetPanel.minAnswers == 2 && presetPanel.graceMilliseconds == 50)
        let ownPanel = try parameters(#"{"analysis_models":["p/x","p/y","p/z","p/w"]}"#)
        #expect(ownPanel.minAnswers == nil && ownPanel.graceMilliseconds == nil, "every member is waited for")
        let named = try parameters(#"{"preset":"fast","analysis_models":["p/x"]}"#)
        #expect(named.minAnswers == 1 && named.graceMilliseconds == 50, "named: the preset's, capped by the panel")
        let asked = try parameters(#"{"analysis_models":["p/x","p/y"],"min_answers":1,"grace_ms":10}"#)
        #expect(asked.minAnswers == 1 && asked.graceMilliseconds == 10)
    }
}
