import GatewayCore
import Providers

/// One Fusion request as a state machine: the outer model's first turn (which may call the
/// fusion tool), the deliberation (`Deliberation`, with each member's and the judge's web tool
/// loop, `ToolLoop`), and the outer model's final turn. Events in (call events, call ends, tool
/// results, the client leaving, each with its time), actions out (start or cancel a call, run a
/// tool, output for the client, finish). No I/O and no clock: `FusionSession` in the gateway is
/// the thin shell that performs the actions; every ordering and failure is testable without
/// sockets.
public struct FusionSessionMachine: Sendable {
    /// A call's identity: also its producer tag in the session's fan-in channel (0 is the
    /// client's own bytes), so a late event of a cancelled call is recognised and ignored.
    public typealias CallID = UInt16
    public typealias ToolRunID = Int

    public enum Role: Sendable, Equatable {
        case outer(final: Bool)
        case member(index: Int)
        case judge
    }

    /// A call to start.
    public struct Call: Sendable, Equatable {
        public var id: CallID
        public var role: Role
        /// The model slug to route (the request's `model` is set to the upstream's name by the shell).
        public var model: String
        public var request: ModelRequest
        /// The whole call's time budget; nil for none (the outer model's turns: an answer may
        /// stream for as long as it takes, its silence bounded by the upstream idle timeout, as a
        /// proxied stream's is; review 55C #1).
        public var timeoutMilliseconds: UInt64?
    }

    /// The bounds of one deliberation.
    public struct Limits: Sendable, Equatable {
        public var memberTimeoutMilliseconds: UInt64
        public var judgeTimeoutMilliseconds: UInt64
        /// One outer call's budget; nil for none (the upstream idle timeout bounds its silences).
        public var outerTimeoutMilliseconds: UInt64?
        /// Inner calls (outer, panel turns, judge turns) one request may make.
        public var maxInnerCalls: Int
        /// Web tool calls one request may make, over every member and the judge.
        public var maxWebToolCalls: Int
        public var maxWebCallsPerTurn: Int
        /// The output limit of panel and judge calls when the request sets none.
        public var defaultMaxTokens: Int64?

        public init(memberTimeoutMilliseconds: UInt64, judgeTimeoutMilliseconds: UInt64, outerTimeoutMilliseconds: UInt64?,
                    maxInnerCalls: Int = 200, maxWebToolCalls: Int = 64, maxWebCallsPerTurn: Int = 4, defaultMaxTokens: Int64? = nil) {
            self.memberTimeoutMilliseconds = memberTimeoutMilliseconds
            self.judgeTimeoutMilliseconds = judgeTimeoutMilliseconds
            self.outerTimeoutMilliseconds = outerTimeoutMilliseconds
            self.maxInnerCalls = maxInnerCalls
            self.maxWebToolCalls = maxWebToolCalls
            self.maxWebCallsPerTurn = maxWebCallsPerTurn
            self.defaultMaxTokens = defaultMaxTokens
        }
    }

    public enum Event: Sendable {
        case callEvent(CallID, ModelEvent)
        /// The call's stream ended; `end` tells whether it was complete. `answeredBy`: the model
        /// that answered when it was not the one asked (an outer turn's fallback from `models`).
        case callEnded(CallID, StreamEnd, answeredBy: String? = nil)
        /// `statusCode`: the upstream's HTTP status when it refused the call (nil otherwise).
        case callFailed(CallID, APIError, MemberFailureReason, statusCode: Int? = nil, answeredBy: String? = nil)
        case toolFinished(ToolRunID, ToolOutcome)
        /// A timer armed by `startTimer` ran out.
        case timerFired(FusionTimer)
    }

    /// What a web tool call produced.
    public struct ToolOutcome: Sendable, Equatable {
        /// The tool message's content for the model (JSON).
        public var content: String
        public var sources: [Source]
        public var error: String?

        public init(content: String, sources: [Source] = [], error: String? = nil) {
            self.content = content
            self.sources = sources
            self.error = error
        }

        public static func failure(_ message: String) -> ToolOutcome {
            ToolOutcome(content: String(decoding: JSONValue.object(["error": .string(message)]).serialized(), as: UTF8.self),
                        error: message)
        }
    }

    public enum Action: Sendable {
        case startCall(Call)
        case cancelCall(CallID)
        case runTool(ToolRunID, ToolCall)
        /// A web tool call nobody waits for any more (its member cut or out of time, the
        /// deliberation over): its fetch stops now.
        case cancelTool(ToolRunID)
        /// Arm (or re-arm) a one-shot timer: the shell feeds back `.timerFired` when it runs out.
        case startTimer(FusionTimer, milliseconds: UInt64)
        case cancelTimer(FusionTimer)
        /// The outer turn that called fusion also called the client's tools and has ended: those
        /// calls can change no more, so the shell asks its renderer now whether they can be sent,
        /// and a call cut short or not JSON fails the request before a deliberation is paid for
        /// (review 72B #6: the whole panel ran, was charged, then the response failed).
        case checkCallerCalls
        case output(Output)
        /// The request is over: the shell cancels what still runs and files the record.
        case finish(Outcome)

        /// The order a shell performs `actions` in: a call moves ahead of the outputs just before
        /// it, so the upstream works while the client's progress is rendered and written. The
        /// outputs keep their order, and nothing else moves (a call's events can only arrive
        /// after the shell has performed the whole list).
        public static func callsFirst(_ actions: [Action]) -> [Action] {
            var ordered: [Action] = []
            var held: [Action] = []
            for action in actions {
                switch action {
                case .startCall: ordered.append(action)
                case .output: held.append(action)
                default:
                    ordered += held
                    held.removeAll()
                    ordered.append(action)
                }
            }
            return ordered + held
        }
    }

    /// What the client is to see, in order.
    public enum Output: Sendable, Equatable {
        case progress(FusionProgress)
        case finalAnswerStarts(model: String)
        /// A piece of the completion the client asked for (text, reasoning, its own tool calls, the finish).
        case answer(ModelEvent)
        /// The turn goes back to the client with its own tool calls, but it also called fusion:
        /// the fusion calls and their results, for the client to send back with the turn (so
        /// the next request's conversation holds the whole parallel turn). Just before the finish.
        case serverToolCalls([ServerToolCall])
    }

    /// A call to the fusion tool that the gateway answered, with the result the outer model is
    /// to see for it.
    public struct ServerToolCall: Sendable, Equatable {
        public var call: ToolCall
        /// The tool message's content (the fusion result's JSON, or the capped result).
        public var result: String

        public init(call: ToolCall, result: String) {
            self.call = call
            self.result = result
        }
    }

    public enum Outcome: Sendable, Equatable {
        case completed
        /// Nothing more can be done for the client: the error is theirs to see.
        case failed(APIError)
    }

    public let request: FusionRequest
    public let limits: Limits
    /// Web tools offered to the panel and to the judge (empty: none).
    public let panelTools: [ToolDefinition]
    public let judgeTools: [ToolDefinition]
    let judgeFallback: String?
    let panelContext: FusionSettings.PanelContext
    let quorum: Deliberation.Quorum
    let labels: NeutralLabels
    public let prices: PriceBook
    /// Members' text joined into readable pieces (nil: the client gets only exact deltas).
    var readable: ReadableText?
    var armedTimers: Set<FusionTimer> = []
    /// What the deliberation was estimated to cost before it started (nil: no prices).
    public internal(set) var costEstimate: CostEstimate?

    enum Phase: Sendable, Equatable { case idle, outerFirst, deliberating, outerFinal, finished }
    var phase = Phase.idle
    var nextCallID: CallID = 1
    var callsStarted = 0
    var roles: [CallID: Role] = [:]
    var outer: OuterTurn?
    var outerCall: CallID?
    var firstTurn: OuterTurn?
    var deliberation: Deliberation?
    var members = MemberRuns()
    var judge: JudgeRun?
    var toolRuns: [ToolRunID: (owner: ToolOwner, position: Int)] = [:]
    var pendingTools: [ToolOwner: PendingTools] = [:]
    var nextToolRun: ToolRunID = 1
    /// Web tool calls running: what they are and when they started (for their progress events).
    var runningActivities: [ToolRunID: (activity: WebToolActivity, startedAt: Double)] = [:]

    /// Accounting, read by the shell when it files the record.
    var firstOuterStats: MemberStats?
    var finalOuterStats: MemberStats?
    /// Every call that ended, in order: outer, panel and judge, final outer.
    public var calls: [MemberStats] {
        [firstOuterStats].compactMap { $0 } + (deliberation?.stats ?? []) + [finalOuterStats].compactMap { $0 }
    }
    public internal(set) var sources = SourceList()
    public internal(set) var fusionResult: FusionResult?
    public internal(set) var finishReason: FinishReason?
    /// When the first visible answer text was produced (session time).
    public internal(set) var firstTokenAt: Double?
    public internal(set) var webToolCalls = 0
    /// Calls cancelled because their member was cut for latency (counted as cut, not cancelled).
    public internal(set) var cutCalls: Set<CallID> = []
    public internal(set) var searchResults = 0
    /// The caller's own tool calls made in the same turn as the fusion call: the turn is handed
    /// back to the client with them (it alone can answer them), the fusion calls answered
    /// (`Output.serverToolCalls`).
    public internal(set) var deferredCallerCalls: [ToolCall] = []
    /// Whether the deliberation ran.
    public var deliberated: Bool { deliberation != nil }
    /// Whether a turn that calls the caller's tools and fusion together deliberates. It does
    /// when the client's API can carry the answered fusion call back with the turn
    /// (`Output.serverToolCalls`); otherwise the turn goes back with the caller's calls alone and
    /// nothing is paid for: the model can call fusion again once their results are in.
    public var deliberatesInParallelTurns = true
    /// Removes the gateway's secrets from what one model wrote before another reads it: the
    /// panel's answers in the judge's prompt, and the result (answers, partial answers, the
    /// analysis) the outer model gets. A member echoing its provider's key must not hand it to
    /// another provider.
    public var redactor = Redactor.none

    struct MemberRun: Sendable {
        var loop: ToolLoop
        var startedAt: Double
        var call: CallID?
        /// Summed over its turns (its calls); within a call the last report is the call's total.
        var usage: Usage?
        /// `usage` as the current call started: a call's reports are running totals (Gemini's,
        /// vLLM's and LiteLLM's OpenAI-compatible streams repeat them), never added to each
        /// other (review 68C #1).
        var usageBeforeCall: Usage?
    }

    /// The panel's runs by member index, in an array (a panel has at most 8): a member's event
    /// reads and changes its run where it stands, where a dictionary's subscript copied the run
    /// to compare its call (counted on every member event).
    struct MemberRuns: Sendable {
        private var runs: [MemberRun?] = []

        subscript(index: Int) -> MemberRun? {
            _read {
                if index < runs.count { yield runs[index] } else { yield nil }
            }
            _modify {
                if index >= runs.count { runs.append(contentsOf: repeatElement(nil, count: index + 1 - runs.count)) }
                yield &runs[index]
            }
        }

        /// The members that have a run.
        var indices: [Int] { runs.indices.filter { runs[$0] != nil } }
    }

    struct JudgeRun: Sendable {
        var model: String
        var loop: ToolLoop
        var startedAt: Double
        var call: CallID?
        /// As a member's (`MemberRun`).
        var usage: Usage?
        var usageBeforeCall: Usage?
        /// The current call ended at its output limit (`finish_reason: length`, or cut by the
        /// gateway's bound on an upstream that ignored it).
        var reachedLimit = false
        /// Bumped at every (re)start: tool results of an earlier judge are dropped.
        var generation: Int
    }

    enum ToolOwner: Sendable, Hashable {
        case member(Int)
        case judge(generation: Int)
    }

    struct PendingTools: Sendable {
        var results: [String]
        var remaining: Int
    }

    /// `readableProgress`: also produce `memberText` pieces (for a client reading comments).
    /// `labelSeed` pins the shuffle of the judge's neutral labels (nil: random per request).
    public init(request: FusionRequest, settings: FusionSettings, limits: Limits, panelTools: [ToolDefinition],
                judgeTools: [ToolDefinition], readableProgress: Bool = true, labelSeed: UInt64? = nil) {
        self.request = request
        self.limits = limits
        self.panelTools = panelTools
        self.judgeTools = judgeTools
        judgeFallback = settings.judgeFallbackModel
        panelContext = settings.panelContext
        prices = settings.prices
        let parameters = request.parameters
        quorum = Deliberation.Quorum(minAnswers: parameters.minAnswers,
                                     graceMilliseconds: parameters.graceMilliseconds ?? settings.graceMilliseconds,
                                     deadlineMilliseconds: parameters.deadlineMilliseconds ?? settings.deadlineMilliseconds)
        var system = SystemRandomNumberGenerator()
        labels = NeutralLabels(models: parameters.analysisModels, neutral: settings.neutralLabels,
                               seed: settings.shuffleLabels ? labelSeed ?? system.next() : nil)
        readable = readableProgress ? ReadableText() : nil
    }

    public var isFinished: Bool { phase == .finished }

    /// Every call's usage summed.
    public var totalUsage: Usage { calls.compactMap(\.usage).reduce(Usage(), +) }

    // MARK: events

    /// The request arrived: the outer model's first turn starts.
    public mutating func start(at time: Double) -> [Action] {
        guard phase == .idle else { return [] }
        phase = .outerFirst
        guard request.forced else { return startOuter(FusionPrompts.outerFirstRequest(request), final: false, at: time) }
        // Forced fusion: the outer model's first turn could only call the tool, so it is not
        // made; the panel starts at once, the conversation as the question.
        var turn = OuterTurn(final: false, at: time, fusionCallID: request.fusionCallID)
        let arguments = String(decoding: JSONValue.object(["question": .string(request.lastUserText)]).serialized(), as: UTF8.self)
        _ = turn.received(.toolCall(ToolCallFragment(index: 0, id: request.fusionCallID, name: FusionPlan.toolName, arguments: arguments)), at: time)
        firstTurn = turn
        return startDeliberation(turn.fusionCall!, at: time)
    }

    mutating func record(_ stats: MemberStats, final: Bool) {
        if final { finalOuterStats = stats } else { firstOuterStats = stats }
    }

    public mutating func handle(_ event: Event, at time: Double) -> [Action] {
        guard phase != .finished, phase != .idle else { return [] }
        switch event {
        case .callEvent(let id, let modelEvent):
            switch roles[id] {
            case .outer?: return outerEvent(id, modelEvent, at: time)
            case .member(let index)?: return memberEvent(index, id, modelEvent, at: time)
            case .judge?: return judgeEvent(id, modelEvent, at: time)
            case nil: return []  // a cancelled call's late event
            }
        case .callEnded(let id, let end, let answeredBy):
            guard let role = roles.removeValue(forKey: id) else { return [] }
            switch role {
            case .outer: return outerEnded(id, end, model: answeredBy ?? request.outerModel, at: time)
            case .member(let index): return memberEnded(index, id, end, at: time)
            case .judge: return judgeEnded(id, end, at: time)
            }
        case .callFailed(let id, let error, let reason, let statusCode, let answeredBy):
            guard let role = roles.removeValue(forKey: id) else { return [] }
            switch role {
            case .outer: return outerFailed(id, error, reason, model: answeredBy ?? request.outerModel, at: time)
            case .member(let index):
                guard members[index]?.call == id else { return [] }
                members[index]?.call = nil
                return deliberate(.memberFailed(index: index, reason: reason, message: error.message, usage: members[index]?.usage,
                                                statusCode: statusCode), at: time)
            case .judge:
                guard judge?.call == id else { return [] }
                judge?.call = nil
                let judgeReason: JudgeFailureReason = reason == .timeout ? .timeout : .upstreamError
                return deliberate(.judgeFailed(message: error.message, reason: judgeReason, usage: judge?.usage), at: time)
            }
        case .toolFinished(let run, let outcome):
            return toolFinished(run, outcome, at: time)
        case .timerFired(let timer):
            guard armedTimers.remove(timer) != nil else { return [] }  // cancelled meanwhile
            if timer == .readableText { return readableTimerFired(at: time) }
            if case .memberTools = timer { return toolTimeRanOut(timer, at: time) }
            if case .judgeTools = timer { return toolTimeRanOut(timer, at: time) }
            return deliberate(.timerFired(timer), at: time)
        }
    }

    /// The client left (or was dropped): everything stops.
    public mutating func cancel() -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls()
    }

    // MARK: the outer model

    mutating func startOuter(_ outerRequest: ModelRequest, final: Bool, at time: Double) -> [Action] {
        outer = OuterTurn(final: final, at: time, fusionCallID: request.fusionCallID)
        guard let id = allocate(.outer(final: final)) else {
            return fail(.upstreamUnavailable("this request reached its limit of \(limits.maxInnerCalls) inner calls",
                                             code: "inner_call_limit"), at: time)
        }
        outerCall = id
        return [.startCall(Call(id: id, role: .outer(final: final), model: request.outerModel, request: outerRequest,
                                timeoutMilliseconds: limits.outerTimeoutMilliseconds))]
            + (final ? [.output(.progress(.phase(PhaseReport(.final, .started, summary: request.outerModel)))),
                        .output(.finalAnswerStarts(model: request.outerModel))] : [])
    }

    mutating func outerEvent(_ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard outerCall == id, var turn = outer else { return [] }
        outer = nil  // so the turn's text grows in place, not copied at every delta
        let forward = turn.received(event, at: time)
        outer = turn
        guard let forward else { return [] }
        if case .text(let text) = forward, !text.isEmpty, firstTokenAt == nil { firstTokenAt = time }
        if case .finish(let reason) = forward { finishReason = reason }
        return [.output(.answer(forward))]
    }

    /// `model`: the model that answered the turn (the one asked, or a fallback of it).
    mutating func outerEnded(_ id: CallID, _ end: StreamEnd, model: String, at time: Double) -> [Action] {
        guard outerCall == id, let turn = outer else { return [] }
        outerCall = nil
        if end == .truncated {
            record(turn.stats(model: model, status: MemberFailureReason.truncated.rawValue, at: time), final: turn.final)
            return fail(.upstreamUnavailable("The stream from the outer model ended before its answer was complete.",
                                             code: "upstream_truncated"), at: time)
        }
        let stats = turn.stats(model: model, status: "ok", at: time)
        record(stats, final: turn.final)
        // The answering turn's message fields (a turn that called fusion keeps its own).
        let extras: [Action] = turn.extras.map { [.output(.answer(.messageExtras($0)))] } ?? []
        if turn.final {
            let report = PhaseReport(.final, .completed, duration: time - turn.startedAt, summary: "\(stats.characters) characters")
            return extras + [.output(.progress(.phase(report)))] + complete(at: time)
        }
        guard let fusionCall = turn.fusionCall else { return extras + complete(at: time) }
        if !deliberatesInParallelTurns && !turn.callerCalls.isEmpty {
            deferredCallerCalls = turn.callerCalls
            finishReason = .toolCalls
            let report = PhaseReport(.panel, .skipped,
                                     summary: "the turn also called your tools: fusion was not run; the model can call it again with their results")
            return [.output(.progress(.phase(report))), .output(.answer(.finish(.toolCalls)))] + complete(at: time)
        }
        firstTurn = turn
        return (turn.callerCalls.isEmpty ? [] : [.checkCallerCalls]) + startDeliberation(fusionCall, at: time)
    }

    mutating func outerFailed(_ id: CallID, _ error: APIError, _ reason: MemberFailureReason, model: String, at time: Double) -> [Action] {
        guard outerCall == id, let turn = outer else { return [] }
        outerCall = nil
        record(turn.stats(model: model, status: reason.rawValue, at: time), final: turn.final)
        return fail(error, at: time)
    }

    // MARK: ending

    mutating func complete(at time: Double) -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls() + [.finish(.completed)]
    }

    mutating func fail(_ error: APIError, at time: Double) -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls() + [.finish(.failed(error))]
    }

    mutating func cancelAllCalls() -> [Action] {
        let running = roles.keys.sorted()
        let timers = armedTimers.sorted { "\($0)" < "\($1)" }
        let tools = toolRuns.keys.sorted()
        armedTimers.removeAll()
        roles.removeAll()
        toolRuns.removeAll()
        pendingTools.removeAll()
        runningActivities.removeAll()
        outerCall = nil
        for index in members.indices { members[index]?.call = nil }
        judge?.call = nil
        return running.map { .cancelCall($0) } + tools.map { .cancelTool($0) } + timers.map { .cancelTimer($0) }
    }

    /// A call id for `role`, unless the request's inner calls are spent: `keeping` of them stay
    /// for the calls that must follow this one (the judge's, the final answer's).
    mutating func allocate(_ role: Role, keeping reserved: Int = 0) -> CallID? {
        guard callsStarted + reserved < limits.maxInnerCalls, nextCallID < CallID.max else { return nil }
        callsStarted += 1
        let id = nextCallID
        nextCallID += 1
        roles[id] = role
        return id
    }
}
