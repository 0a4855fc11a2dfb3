import Fusion
import GatewayCore
import Providers
import Testing

/// The session machine around a deliberation: quorum cuts cancel real calls, timers go out as
/// actions and come back as events, the final answer hears a partial panel, readable pieces
/// and phase lines, the cost estimate first.
@Suite struct SessionDeliberationTests {
    static let analysis = #"{"consensus":["x"],"contradictions":[],"partial_coverage":[],"unique_insights":[],"blind_spots":[]}"#

    func machine(parameters: String, settings: FusionSettings = .simulated, toolChoice: ToolChoice? = nil,
                 readable: Bool = true) throws -> FusionSessionMachine {
        var request = ModelRequest(model: "p/outer", messages: [ModelMessage(role: .user, text: "Q?")], stream: true)
        request.tools = [.other(try JSONValue.parse(Array(#"{"type":"fusion","parameters":\#(parameters)}"#.utf8)))]
        request.toolChoice = toolChoice
        guard case .fusion(let fusion) = try FusionPlan.make(request: request, settings: settings, depth: 0) else {
            throw StreamDecodingError("not fusion")
        }
        return FusionSessionMachine(request: fusion, settings: settings,
                                    limits: .init(memberTimeoutMilliseconds: 10_000, judgeTimeoutMilliseconds: 10_000,
                                                  outerTimeoutMilliseconds: 10_000, defaultMaxTokens: 1_000),
                                    panelTools: [], judgeTools: [], readableProgress: readable, labelSeed: 42)
    }

    func started(_ actions: [FusionSessionMachine.Action]) -> [FusionSessionMachine.Call] {
        actions.compactMap { if case .startCall(let call) = $0 { call } else { nil } }
    }

    func progress(_ actions: [FusionSessionMachine.Action]) -> [FusionProgress] {
        actions.compactMap { if case .output(.progress(let progress)) = $0 { progress } else { nil } }
    }

    /// The readable pieces shown, as "member:text".
    func texts(_ actions: [FusionSessionMachine.Action]) -> [String] {
        progress(actions).compactMap { if case .memberText(let index, _, let text, _) = $0 { "\(index):\(text)" } else { nil } }
    }

    func timers(_ actions: [FusionSessionMachine.Action]) -> [String] {
        actions.compactMap {
            switch $0 {
            case .startTimer(let timer, let ms): "start \(timer) \(ms)"
            case .cancelTimer(let timer): "cancel \(timer)"
            default: nil
            }
        }
    }

    func answer(_ m: inout FusionSessionMachine, _ call: FusionSessionMachine.Call, _ text: String, at time: Double) -> [FusionSessionMachine.Action] {
        m.handle(.callEvent(call.id, .text(text)), at: time) + m.handle(.callEnded(call.id, .complete), at: time)
    }

    /// A member that writes a secret (its provider's key echoed back) does not hand it to the
    /// judge's provider or to the outer model: the judge's prompt and the result are redacted.
    @Test func aSecretAMemberWritesReachesNeitherTheJudgeNorTheResult() throws {
        let secret = "sk-provider-SECRET-0123456789"
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge","min_answers":1,"grace_ms":0}"#,
                            toolChoice: .required)
        m.redactor = Redactor(secrets: [secret])
        let members = started(m.start(at: 0))
        // Split over deltas, as a model writes it; the other member is cut with it in its partial text.
        _ = m.handle(.callEvent(members[1].id, .text("partial sk-provider-SEC")), at: 5)
        _ = m.handle(.callEvent(members[1].id, .text("RET-0123456789 …")), at: 6)
        _ = m.handle(.callEvent(members[0].id, .text("my key is sk-provider-")), at: 8)
        let actions = answer(&m, members[0], "SECRET-0123456789.", at: 10)
        let judge = try #require(started(actions).first { $0.role == .judge })
        let prompt = judge.request.messages.map(\.text).joined(separator: "\n")
        #expect(prompt.contains("my key is [redacted]") && !prompt.contains("SECRET-0123456789"), "\(prompt)")
        let done = m.handle(.callEvent(judge.id, .text(#"{"consensus":["sk-provider-SECRET-0123456789 is a key"],"contradictions":[],"partial_coverage":[],"unique_insights":[],"blind_spots":[]}"#)), at: 20)
            + m.handle(.callEnded(judge.id, .complete), at: 21)
        let result = try #require(m.fusionResult)
        let text = String(decoding: result.json.serialized(), as: UTF8.self)
        #expect(!text.contains("SECRET-0123456789") && text.contains("[redacted]"), "\(text)")
        let final = try #require(started(done).first { $0.role == .outer(final: true) })
        #expect(!final.request.messages.map(\.text).joined().contains("SECRET-0123456789"))
    }

    @Test func aStragglerCutByTheQuorumHasItsCallCancelledAndTheFinalAnswerIsTold() throws {
        // Forced (tool_choice required): the panel starts with the request, no outer first turn.
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b","p/c"],"model":"p/judge","min_answers":2,"grace_ms":300}"#,
                            toolChoice: .required)
        let start = m.start(at: 0)
        let members = started(start)
        #expect(members.map(\.role) == [.member(index: 0), .member(index: 1), .member(index: 2)], "no outer call before the panel")
        #expect(progress(start).first == .phase(PhaseReport(.outer, .skipped, summary: "fusion is forced: the panel starts at once")))
        _ = answer(&m, members[0], "A.", at: 10)
        var actions = answer(&m, members[1], "B.", at: 20)
        #expect(timers(actions) == ["start grace 300"])
        _ = m.handle(.callEvent(members[2].id, .text("C so")), at: 30)
        actions = m.handle(.timerFired(.grace), at: 320)
        let cancelled = actions.compactMap { if case .cancelCall(let id) = $0 { id } else { nil } }
        #expect(cancelled == [members[2].id], "the straggler's transfer is closed at once")
        #expect(progress(actions).contains(.memberCut(index: 2, model: "p/c", characters: 4, cause: .grace)))
        let judge = try #require(started(actions).first)
        #expect(judge.role == .judge && judge.request.messages.last?.text.contains("cut for latency before it finished") == true)
        #expect(m.handle(.callEvent(members[2].id, .text(" late")), at: 330).isEmpty, "its late bytes are dropped")
        actions = m.handle(.callEvent(judge.id, .text(Self.analysis)), at: 400) + m.handle(.callEnded(judge.id, .complete), at: 400)
        let final = try #require(started(actions).first)
        let result = try JSONValue.parse(Array((final.request.messages.last?.text ?? "").utf8))
        #expect(result["panel"]?["cut_for_latency"] == .int(1) && result["note"]?.stringValue?.hasPrefix("The panel was partial: 2 of 3") == true)
        #expect(m.calls.map(\.status) == ["ok", "ok", "cut_for_latency", "ok"])
    }

    @Test func timersAreDisarmedWhenTheRequestEnds() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge","deadline_ms":5000}"#, toolChoice: .required)
        let start = m.start(at: 0)
        #expect(timers(start) == ["start deadline 5000"])
        _ = m.handle(.callEvent(started(start)[0].id, .text("words without end")), at: 1)
        let cancelled = timers(m.cancel())
        #expect(Set(cancelled) == ["cancel deadline", "cancel readableText"])
        #expect(m.handle(.timerFired(.deadline), at: 5_000).isEmpty)
    }

    @Test func readablePiecesAreLinesOrTheWordsOfAboutATenthOfASecond() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge"}"#, toolChoice: .required)
        let members = started(m.start(at: 0))
        var actions = m.handle(.callEvent(members[0].id, .text("Hello ")), at: 1)
        #expect(texts(actions).isEmpty && timers(actions) == ["start readableText 100"])
        #expect(progress(actions) == [.memberDelta(index: 0, model: "p/a", text: "Hello ")], "the exact delta still goes out")
        actions = m.handle(.callEvent(members[0].id, .text("world.\nNext")), at: 20)
        #expect(texts(actions) == ["0:Hello world."] && timers(actions).isEmpty, "a line goes out when it ends")
        actions = m.handle(.callEvent(members[1].id, .text("Other member's wor")), at: 30)
        actions = m.handle(.timerFired(.readableText), at: 101)
        #expect(texts(actions).isEmpty, "p/a's 'Next' is a partial word; p/b's words are not due yet")
        #expect(timers(actions) == ["start readableText 19"], "p/a's words are due at 120")
        actions = m.handle(.timerFired(.readableText), at: 120)
        #expect(texts(actions).isEmpty && timers(actions) == ["start readableText 10"], "half a word waits another interval")
        actions = m.handle(.timerFired(.readableText), at: 130)
        #expect(texts(actions) == ["1:Other member's"])
        // A member's end shows what it still holds, before its status line.
        actions = m.handle(.callEnded(members[0].id, .complete), at: 140)
        let shown = progress(actions).map { if case .memberText(_, _, let text, _) = $0 { text } else if case .memberCompleted = $0 { "completed" } else { "" } }
        #expect(shown.prefix(2) == ["Next", "completed"])
    }

    /// Text written without spaces (Chinese, Japanese) goes out every ~100 ms too, at any
    /// character (review 19 F8: it waited for 80 bytes, ~400 ms a piece); so does a long
    /// unbroken run; half an English word still waits.
    @Test func spacelessTextIsShownAtTheSamePace() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge"}"#, toolChoice: .required)
        let members = started(m.start(at: 0))
        _ = m.handle(.callEvent(members[0].id, .text("城市应该")), at: 1)
        _ = m.handle(.callEvent(members[1].id, .text("Unfinishe")), at: 2)
        // Each piece keeps its last character for the next (a sound mark may follow: review 80B #3).
        #expect(texts(m.handle(.timerFired(.readableText), at: 101)) == ["0:城市应"])
        _ = m.handle(.callEvent(members[0].id, .text("禁止汽车吗")), at: 110)
        #expect(texts(m.handle(.timerFired(.readableText), at: 211)) == ["0:该禁止汽车"], "p/b's half word still waits")
        _ = m.handle(.callEvent(members[1].id, .text("dAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")), at: 212)
        #expect(texts(m.handle(.timerFired(.readableText), at: 312)) == ["1:UnfinishedAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
    }

    /// A run without spaces at a slow pace (a token run, an identifier) waits ~300 ms for its end
    /// at most, not until it is 32 bytes long (review 20 B6).
    @Test func aHalfWordWaitsAtMostAboutThreeTenths() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge"}"#, toolChoice: .required)
        let members = started(m.start(at: 0))
        _ = m.handle(.callEvent(members[0].id, .text("x9f")), at: 1)
        #expect(texts(m.handle(.timerFired(.readableText), at: 101)).isEmpty)
        _ = m.handle(.callEvent(members[0].id, .text("Q2z")), at: 150)
        #expect(texts(m.handle(.timerFired(.readableText), at: 201)).isEmpty)
        #expect(texts(m.handle(.timerFired(.readableText), at: 301)).isEmpty)
        #expect(texts(m.handle(.timerFired(.readableText), at: 401)) == ["0:x9fQ2z"])
    }

    /// A list marker before text without spaces, or before a long token, goes out with it at the
    /// usual pace (review 48 Fusion #4: it waited for the line's end, 2.2 s in the review).
    @Test func aShortFirstWordDoesNotHoldBackWhatFollowsIt() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b"],"model":"p/judge"}"#, toolChoice: .required)
        let members = started(m.start(at: 0))
        _ = m.handle(.callEvent(members[0].id, .text("- 水平线")), at: 1)
        _ = m.handle(.callEvent(members[1].id, .text("1. " + String(repeating: "A", count: 40))), at: 2)
        // The last ideograph waits for the next piece (a sound mark may follow: review 80B #3).
        #expect(texts(m.handle(.timerFired(.readableText), at: 102)) == ["0:- 水平", "1:1. " + String(repeating: "A", count: 40)])
        _ = m.handle(.callEvent(members[1].id, .text("- Hel")), at: 110)
        #expect(texts(m.handle(.timerFired(.readableText), at: 210)).isEmpty, "half an English word after a marker waits")
        #expect(texts(m.handle(.timerFired(.readableText), at: 310)).isEmpty)
        #expect(texts(m.handle(.timerFired(.readableText), at: 410)) == ["0:线"], "a held character waits ~300 ms at most")
        #expect(texts(m.handle(.timerFired(.readableText), at: 510)) == ["1:- Hel"], "for ~300 ms at most (as any half word)")
    }

    @Test func programsGetNoReadablePieces() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a"],"model":"p/judge"}"#, toolChoice: .required, readable: false)
        let member = try #require(started(m.start(at: 0)).first)
        let actions = m.handle(.callEvent(member.id, .text("line\n")), at: 1)
        #expect(progress(actions) == [.memberDelta(index: 0, model: "p/a", text: "line\n")] && timers(actions).isEmpty)
    }

    @Test func theEstimateComesFirstWhenModelsArePriced() throws {
        var settings = FusionSettings.simulated
        settings.prices = ["p/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 4), "p/judge": ModelPrice(inputPerMillion: 10, outputPerMillion: 20)]
        var m = try machine(parameters: #"{"analysis_models":["p/a","p/b","x/c"],"model":"p/judge","max_completion_tokens":100}"#,
                            settings: settings, toolChoice: .required)
        let first = try #require(progress(m.start(at: 0)).first)
        guard case .estimate(let estimate) = first else { Issue.record("first: \(first)"); return }
        #expect(estimate.unpriced == ["x/c"] && estimate.calls.map(\.role) == ["panel", "panel", "judge"])
        let panel = estimate.calls[0]
        #expect(panel.maxOutputTokens == 100 && panel.inputTokens > 0)
        #expect(abs(panel.minimum - Double(panel.inputTokens) / 1_000_000) < 1e-12)
        #expect(abs((panel.maximum ?? 0) - Double(panel.inputTokens + 400) / 1_000_000) < 1e-12, "100 output tokens at $4/M")
        let judge = estimate.calls[2]
        // The judge may read up to every member's output limit (3 members × 100 tokens).
        #expect(abs((judge.maximum ?? 0) - (Double(judge.inputTokens + 300) * 10 + 100 * 20) / 1_000_000) < 1e-12)
        #expect(abs(estimate.minimum - estimate.calls.map(\.minimum).reduce(0, +)) < 1e-15)
        #expect(m.costEstimate == estimate)
        // The record: the estimate, and per call what it cost at the same prices.
        var calls = m.calls
        calls.append(MemberStats(model: "p/a", role: "panel", status: "ok", usage: Usage(promptTokens: 1_000, completionTokens: 500, totalTokens: 1_500),
                                 firstTokenMilliseconds: nil, durationMilliseconds: 1, characters: 1))
        let report = estimate.report(calls: calls, prices: settings.prices)
        #expect(report["actual"] == .double(0.003) && report["calls"]?.arrayValue?.first?["actual"] == .double(0.003))
        #expect(report["calls"]?.arrayValue?.first?["estimate_max"] == panel.maximum.map { .double(($0 * 1e6).rounded() / 1e6) })
        #expect(report["unpriced_models"] == .array([.string("x/c")]))
        // A judge's second attempt is outside the range: its row has no estimate of its own
        // (review 62C #8: both attempts carried the judge's).
        let judgeModel = try #require(estimate.calls.first { $0.role == "judge" }?.model)
        let attempts = (0..<2).map { _ in MemberStats(model: judgeModel, role: "judge", status: "judge_schema_mismatch", usage: nil,
                                                      firstTokenMilliseconds: nil, durationMilliseconds: 1, characters: 1) }
        let retried = estimate.report(calls: attempts, prices: settings.prices)["calls"]?.arrayValue ?? []
        #expect(retried.map { $0["estimate_min"] != nil } == [true, false], "\(retried)")
    }

    @Test func noPricesNoEstimate() throws {
        var settings = FusionSettings.simulated
        settings.prices = [:]
        var m = try machine(parameters: #"{"analysis_models":["p/a"],"model":"p/judge"}"#, settings: settings, toolChoice: .required)
        #expect(!progress(m.start(at: 0)).contains { if case .estimate = $0 { true } else { false } })
        #expect(m.costEstimate == nil)
    }

    @Test func pricesMatchByModelThenProviderThenAll() {
        let prices: PriceBook = ["a/x": ModelPrice(inputPerMillion: 1, outputPerMillion: 1), "a/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2),
                      "*": ModelPrice(inputPerMillion: 3, outputPerMillion: 3)]
        #expect(prices.price(of: "a/x")?.inputPerMillion == 1)
        #expect(prices.price(of: "a/y")?.inputPerMillion == 2)
        #expect(prices.price(of: "b/y")?.inputPerMillion == 3)
        #expect(prices.price(of: "plain")?.inputPerMillion == 3)
        #expect(PriceBook(["a/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2)]).price(of: "b/y") == nil)
        // A slug with options costs what its bare slug does (as budgets price it).
        #expect(prices.price(of: "a/x:pace_ms=5")?.inputPerMillion == 1)
        #expect(PriceBook(prices.entries.merging(["a/x:pace_ms=5": ModelPrice(inputPerMillion: 9, outputPerMillion: 9)]) { $1 }).price(of: "a/x:pace_ms=5")?.inputPerMillion == 9)
        #expect(prices.price(of: "a/y:free")?.inputPerMillion == 2)
    }

    /// Prices follow the route: with a default provider, a name without a configured provider's
    /// prefix (`normal`, OpenRouter's `openai/gpt-5`) is that provider's model.
    @Test func pricesFollowTheRouteOfAName() {
        var prices: PriceBook = ["openrouter/openai/gpt-5": ModelPrice(inputPerMillion: 1, outputPerMillion: 1),
                                 "openrouter/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2),
                                 "sim/*": ModelPrice(inputPerMillion: 3, outputPerMillion: 3)]
        #expect(prices.price(of: "openai/gpt-5") == nil, "no naming: the name as written")
        prices.naming = ModelNaming(providers: ["openrouter", "sim"], defaultProvider: "openrouter")
        #expect(prices.price(of: "openai/gpt-5")?.inputPerMillion == 1)
        #expect(prices.price(of: "openai/gpt-4o")?.inputPerMillion == 2, "the default provider's wildcard")
        #expect(prices.price(of: "normal")?.inputPerMillion == 2)
        #expect(prices.price(of: "sim/normal")?.inputPerMillion == 3, "a configured provider's prefix is its own")
        #expect(prices.price(of: "openrouter/openai/gpt-5")?.inputPerMillion == 1)
        // Keys written the way clients call the models price them however a client spells them,
        // and the most specific wildcard wins (review 49 #2, review 50 #1).
        let asWritten = PriceBook(["llama-3-70b": ModelPrice(inputPerMillion: 4, outputPerMillion: 4),
                                   "vllm/*": ModelPrice(inputPerMillion: 6, outputPerMillion: 6)],
                                  naming: ModelNaming(providers: ["vllm"], defaultProvider: "vllm"))
        #expect(asWritten.price(of: "llama-3-70b")?.inputPerMillion == 4)
        #expect(asWritten.price(of: "vllm/llama-3-70b")?.inputPerMillion == 4, "one model, one price")
        #expect(asWritten.price(of: "other")?.inputPerMillion == 6)
        let family = PriceBook(["anthropic/*": ModelPrice(inputPerMillion: 3, outputPerMillion: 3),
                                "anthropic/claude-opus-4.1": ModelPrice(inputPerMillion: 15, outputPerMillion: 15),
                                "openrouter/*": ModelPrice(inputPerMillion: 0.5, outputPerMillion: 0.5)],
                               naming: ModelNaming(providers: ["openrouter"], defaultProvider: "openrouter"))
        for spelling in ["", "openrouter/"] {
            #expect(family.price(of: spelling + "anthropic/claude-opus-4.1")?.inputPerMillion == 15)
            #expect(family.price(of: spelling + "anthropic/claude-sonnet-4")?.inputPerMillion == 3, "the family before the provider")
            #expect(family.price(of: spelling + "openai/gpt-5")?.inputPerMillion == 0.5)
        }
        // Two keys for one model at different prices: the routed spelling is used, and the
        // other is reported (the server warns at startup); the same price twice is no conflict.
        let twice = PriceBook(["llama-3-70b": ModelPrice(inputPerMillion: 4, outputPerMillion: 4),
                               "vllm/llama-3-70b": ModelPrice(inputPerMillion: 5, outputPerMillion: 5),
                               "other": ModelPrice(inputPerMillion: 1, outputPerMillion: 1),
                               "vllm/other": ModelPrice(inputPerMillion: 1, outputPerMillion: 1)],
                              naming: ModelNaming(providers: ["vllm"], defaultProvider: "vllm"))
        #expect(twice.price(of: "llama-3-70b")?.inputPerMillion == 5)
        #expect(twice.conflicts.map { "\($0.ignored) < \($0.kept)" } == ["llama-3-70b < vllm/llama-3-70b"])
        #expect(asWritten.conflicts.isEmpty && family.conflicts.isEmpty)
        let naming = ModelNaming(providers: ["a"], defaultProvider: nil)
        #expect(naming.split("b/x")! == ("b", "x"), "without a default, the first segment names the provider")
        #expect(naming.split("plain") == nil)
        // A name's `/` and `:` are bytes of it: a mark after one does not hide it (as a
        // `Character` search would), so the name routes and prices where it splits.
        #expect(naming.split("a/\u{301}x").map { $0.provider == "a" && $0.model == "\u{301}x" } == true)
        #expect(PriceBook(["a/x": ModelPrice(inputPerMillion: 7, outputPerMillion: 7)]).price(of: "a/x:\u{301}o")?.inputPerMillion == 7)
        #expect(ModelNaming(providers: ["a"], defaultProvider: "a").routed("b/x") == "a/b/x")
        // `routed` returns a name that names its provider as it is: the same as `split` joined.
        let names = ["", "/", "a", "a/", "/x", "a/x", "a/x/y", "b/x", "b", "a:o/x", "ab/x", "A/x", "a/\u{301}x", "\u{301}/x", "a:\u{301}/x"]
        for naming in [ModelNaming(providers: ["a"], defaultProvider: nil), ModelNaming(providers: ["a"], defaultProvider: "a"),
                       ModelNaming(providers: [], defaultProvider: "d"), ModelNaming(providers: ["a", "b"], defaultProvider: "b")] {
            for name in names {
                let joined = naming.split(name).map { $0.provider + "/" + $0.model } ?? name
                #expect(naming.routed(name) == joined, "\(naming) \(name)")
            }
        }
    }

    @Test func theEstimateCountsTheToolDefinitionsSentWithACall() throws {
        let prices: PriceBook = ["p/*": ModelPrice(inputPerMillion: 1_000_000, outputPerMillion: 0)]  // a dollar a token: tokens read as dollars
        let messages = [ModelMessage(role: .user, text: String(repeating: "x", count: 400))]
        let tool = ToolDefinition.function(name: "web_search", description: String(repeating: "d", count: 200),
                                           parameters: .object(["type": .string("object")]), strict: nil)
        let bare = try #require(CostEstimate.make(panel: [("p/a", messages)], judge: "p/j", judgeMessages: messages,
                                                  maxOutputTokens: 10, prices: prices))
        let tooled = try #require(CostEstimate.make(panel: [("p/a", messages)], judge: "p/j", judgeMessages: messages,
                                                    panelTools: [tool], judgeTools: [tool, tool], maxOutputTokens: 10, prices: prices))
        let toolTokens = CostEstimate.tokens(tools: [tool])
        #expect(toolTokens >= 50)
        #expect(tooled.calls[0].inputTokens == bare.calls[0].inputTokens + toolTokens)
        #expect(tooled.calls[1].inputTokens == bare.calls[1].inputTokens + CostEstimate.tokens(tools: [tool, tool]))
        var request = ModelRequest(model: "a", messages: messages, stream: true)
        request.tools = [tool]
        #expect(CostEstimate.tokens(request: request) == CostEstimate.tokens(messages) + toolTokens)
    }

    @Test func phasesReportStartEndAndSummary() throws {
        var m = try machine(parameters: #"{"analysis_models":["p/a"],"model":"p/judge"}"#)
        let outer = try #require(started(m.start(at: 0)).first)
        var actions = m.handle(.callEvent(outer.id, .toolCall(ToolCallFragment(index: 0, id: "f", name: "fusion", arguments: "{}"))), at: 5)
        actions += m.handle(.callEnded(outer.id, .complete), at: 50)
        func phases(_ actions: [FusionSessionMachine.Action]) -> [String] {
            progress(actions).compactMap { if case .phase(let report) = $0 { "\(report.phase.rawValue) \(report.status.rawValue) \(report.durationMilliseconds.map { "\(Int($0))" } ?? "-") \(report.summary)" } else { nil } }
        }
        #expect(phases(actions) == ["outer completed 50 p/outer called the fusion tool", "panel started - 1 member"])
        let member = try #require(started(actions).first)
        actions = answer(&m, member, "A.", at: 80)
        #expect(phases(actions) == ["panel completed 30 1 of 1 answered", "judge started - comparing 1 answer"])
        let judge = try #require(started(actions).first)
        actions = m.handle(.callEvent(judge.id, .text(Self.analysis)), at: 90) + m.handle(.callEnded(judge.id, .complete), at: 100)
        #expect(phases(actions).first == "judge completed 20 analysis ready: 1 point of consensus, 0 contradictions, 0 points covered partially, 0 unique insights, 0 blind spots")
        #expect(phases(actions).last == "final started - p/outer")
    }
}
