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
        /// The whole call's time budget.
        public var timeoutMilliseconds: UInt64
    }

    /// The bounds of one deliberation.
    public struct Limits: Sendable, Equatable {
        public var memberTimeoutMilliseconds: UInt64
        public var judgeTimeoutMilliseconds: UInt64
        /// One outer call's budget (the upstream idle timeout bounds it in practice).
        public var outerTimeoutMilliseconds: UInt64
        /// Inner calls (outer, panel turns, judge turns) one request may make.
        public var maxInnerCalls: Int
        /// Web tool calls one request may make, over every member and the judge.
        public var maxWebToolCalls: Int
        public var maxWebCallsPerTurn: Int
        /// The output limit of panel and judge calls when the request sets none.
        public var defaultMaxTokens: Int64?

        public init(memberTimeoutMilliseconds: UInt64, judgeTimeoutMilliseconds: UInt64, outerTimeoutMilliseconds: UInt64,
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
        /// The call's stream ended; `end` tells whether it was complete.
        case callEnded(CallID, StreamEnd)
        case callFailed(CallID, APIError, MemberFailureReason)
        case toolFinished(ToolRunID, ToolOutcome)
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
        case output(Output)
        /// The request is over: the shell cancels what still runs and files the record.
        case finish(Outcome)
    }

    /// What the client is to see, in order.
    public enum Output: Sendable, Equatable {
        case progress(FusionProgress)
        case finalAnswerStarts(model: String)
        /// A piece of the completion the client asked for (text, reasoning, its own tool calls, the finish).
        case answer(ModelEvent)
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
    private let judgeFallback: String?
    private let panelContext: FusionSettings.PanelContext

    private enum Phase: Sendable, Equatable { case idle, outerFirst, deliberating, outerFinal, finished }
    private var phase = Phase.idle
    private var nextCallID: CallID = 1
    private var callsStarted = 0
    private var roles: [CallID: Role] = [:]
    private var outer: OuterTurn?
    private var outerCall: CallID?
    private var firstTurn: OuterTurn?
    private var deliberation: Deliberation?
    private var members: [Int: MemberRun] = [:]
    private var judge: JudgeRun?
    private var toolRuns: [ToolRunID: (owner: ToolOwner, position: Int)] = [:]
    private var pendingTools: [ToolOwner: PendingTools] = [:]
    private var nextToolRun: ToolRunID = 1

    /// Accounting, read by the shell when it files the record.
    private var outerStats: [MemberStats] = []
    /// Every call that ended, in order: outer, panel and judge, final outer.
    public var calls: [MemberStats] {
        Array(outerStats.prefix(1)) + (deliberation?.stats ?? []) + outerStats.dropFirst()
    }
    public private(set) var sources = SourceList()
    public private(set) var fusionResult: FusionResult?
    public private(set) var finishReason: FinishReason?
    /// When the first visible answer text was produced (session time).
    public private(set) var firstTokenAt: Double?
    public private(set) var webToolCalls = 0
    public private(set) var searchResults = 0
    /// The caller's own tool calls made in the same turn as the fusion call: the turn is handed
    /// back to the client with them (it alone can answer them).
    public private(set) var deferredCallerCalls: [ToolCall] = []
    /// Whether the deliberation ran.
    public var deliberated: Bool { deliberation != nil }

    private struct MemberRun: Sendable {
        var loop: ToolLoop
        var startedAt: Double
        var call: CallID?
        var usage: Usage?
    }

    private struct JudgeRun: Sendable {
        var model: String
        var loop: ToolLoop
        var startedAt: Double
        var call: CallID?
        var usage: Usage?
        /// Bumped at every (re)start: tool results of an earlier judge are dropped.
        var generation: Int
    }

    private enum ToolOwner: Sendable, Hashable {
        case member(Int)
        case judge(generation: Int)
    }

    private struct PendingTools: Sendable {
        var results: [String]
        var remaining: Int
    }

    public init(request: FusionRequest, settings: FusionSettings, limits: Limits, panelTools: [ToolDefinition],
                judgeTools: [ToolDefinition]) {
        self.request = request
        self.limits = limits
        self.panelTools = panelTools
        self.judgeTools = judgeTools
        judgeFallback = settings.judgeFallbackModel
        panelContext = settings.panelContext
    }

    public var isFinished: Bool { phase == .finished }

    /// Every call's usage summed.
    public var totalUsage: Usage { calls.compactMap(\.usage).reduce(Usage(), +) }

    // MARK: events

    /// The request arrived: the outer model's first turn starts.
    public mutating func start(at time: Double) -> [Action] {
        guard phase == .idle else { return [] }
        phase = .outerFirst
        return startOuter(FusionPrompts.outerFirstRequest(request), final: false, at: time)
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
        case .callEnded(let id, let end):
            guard let role = roles.removeValue(forKey: id) else { return [] }
            switch role {
            case .outer: return outerEnded(id, end, at: time)
            case .member(let index): return memberEnded(index, id, end, at: time)
            case .judge: return judgeEnded(id, end, at: time)
            }
        case .callFailed(let id, let error, let reason):
            guard let role = roles.removeValue(forKey: id) else { return [] }
            switch role {
            case .outer: return outerFailed(id, error, reason, at: time)
            case .member(let index):
                guard members[index]?.call == id else { return [] }
                members[index]?.call = nil
                return deliberate(.memberFailed(index: index, reason: reason, message: error.message, usage: members[index]?.usage),
                                  at: time)
            case .judge:
                guard judge?.call == id else { return [] }
                judge?.call = nil
                let judgeReason: JudgeFailureReason = reason == .timeout ? .timeout : .upstreamError
                return deliberate(.judgeFailed(message: error.message, reason: judgeReason, usage: judge?.usage), at: time)
            }
        case .toolFinished(let run, let outcome):
            return toolFinished(run, outcome, at: time)
        }
    }

    /// The client left (or was dropped): everything stops.
    public mutating func cancel() -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls()
    }

    // MARK: the outer model

    private mutating func startOuter(_ outerRequest: ModelRequest, final: Bool, at time: Double) -> [Action] {
        outer = OuterTurn(final: final, at: time)
        guard let id = allocate(.outer(final: final)) else {
            return fail(.upstreamUnavailable("this request reached its limit of \(limits.maxInnerCalls) inner calls",
                                             code: "inner_call_limit"), at: time)
        }
        outerCall = id
        return [.startCall(Call(id: id, role: .outer(final: final), model: request.outerModel, request: outerRequest,
                                timeoutMilliseconds: limits.outerTimeoutMilliseconds))]
            + (final ? [.output(.finalAnswerStarts(model: request.outerModel))] : [])
    }

    private mutating func outerEvent(_ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard outerCall == id, var turn = outer else { return [] }
        let forward = turn.received(event, at: time)
        outer = turn
        guard let forward else { return [] }
        if case .text(let text) = forward, !text.isEmpty, firstTokenAt == nil { firstTokenAt = time }
        if case .finish(let reason) = forward { finishReason = reason }
        return [.output(.answer(forward))]
    }

    private mutating func outerEnded(_ id: CallID, _ end: StreamEnd, at time: Double) -> [Action] {
        guard outerCall == id, let turn = outer else { return [] }
        outerCall = nil
        if end == .truncated {
            outerStats.append(turn.stats(model: request.outerModel, status: MemberFailureReason.truncated.rawValue, at: time))
            return fail(.upstreamUnavailable("The stream from the outer model ended before its answer was complete.",
                                             code: "upstream_truncated"), at: time)
        }
        outerStats.append(turn.stats(model: request.outerModel, status: "ok", at: time))
        guard !turn.final, let fusionCall = turn.fusionCall else { return complete(at: time) }
        firstTurn = turn
        return startDeliberation(fusionCall, at: time)
    }

    private mutating func outerFailed(_ id: CallID, _ error: APIError, _ reason: MemberFailureReason, at time: Double) -> [Action] {
        guard outerCall == id, let turn = outer else { return [] }
        outerCall = nil
        outerStats.append(turn.stats(model: request.outerModel, status: reason.rawValue, at: time))
        return fail(error, at: time)
    }

    // MARK: the deliberation

    private mutating func startDeliberation(_ call: ToolCall, at time: Double) -> [Action] {
        phase = .deliberating
        finishReason = nil
        let arguments = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:])
        var question = arguments["question"]?.stringValue ?? ""
        if question.trimmingWhitespace().isEmpty { question = request.lastUserText }
        var deliberation = Deliberation(question: question, models: request.parameters.analysisModels,
                                        judge: request.judgeModel, judgeFallback: judgeFallback)
        deliberation.judgeHasTools = !judgeTools.isEmpty
        let actions = deliberation.start(at: time)
        self.deliberation = deliberation
        return [.output(.progress(.toolCalled(arguments: call.arguments)))] + perform(actions, at: time)
    }

    private mutating func deliberate(_ event: Deliberation.Event, at time: Double) -> [Action] {
        guard phase == .deliberating, var deliberation else { return [] }
        let actions = deliberation.handle(event, at: time)
        self.deliberation = deliberation
        return perform(actions, at: time)
    }

    private mutating func perform(_ actions: [Deliberation.Action], at time: Double) -> [Action] {
        var out: [Action] = []
        for action in actions {
            guard phase == .deliberating else { break }
            switch action {
            case .startMember(let index, _):
                out += startMember(index, at: time)
            case .startJudge(let model, _, let messages):
                out += startJudge(model, messages, at: time)
            case .progress(let progress):
                out.append(.output(.progress(progress)))
            case .finish(var result):
                result.sources = sources.sources.map { ($0.url, $0.title) }
                fusionResult = result
                out.append(.output(.progress(.completed(result: result))))
                out += finishDeliberation(result, at: time)
            }
        }
        return out
    }

    private mutating func startMember(_ index: Int, at time: Double) -> [Action] {
        let question = deliberation?.question ?? request.lastUserText
        var messages = FusionPrompts.panelMessages(request, question: question, context: panelContext)
        if !panelTools.isEmpty { messages.insert(ModelMessage(role: .system, text: FusionPrompts.panelToolNote), at: 0) }
        members[index] = MemberRun(loop: ToolLoop(messages: messages, tools: panelTools, maxSteps: request.parameters.maxToolCalls),
                                   startedAt: time)
        return callMember(index, at: time)
    }

    /// One turn of member `index`'s tool loop.
    private mutating func callMember(_ index: Int, at time: Double) -> [Action] {
        guard let run = members[index] else { return [] }
        guard let timeout = remaining(limits.memberTimeoutMilliseconds, since: run.startedAt, at: time) else {
            return deliberate(.memberFailed(index: index, reason: .timeout,
                                            message: "no answer within \(limits.memberTimeoutMilliseconds) ms (web tool calls included)",
                                            usage: run.usage), at: time)
        }
        guard let id = allocate(.member(index: index)) else {
            return deliberate(.memberFailed(index: index, reason: .upstreamError,
                                            message: "the request reached its limit of \(limits.maxInnerCalls) inner calls",
                                            usage: run.usage), at: time)
        }
        members[index]?.call = id
        let model = request.parameters.analysisModels[index]
        let base = FusionPrompts.innerRequest(model: model, messages: [], parameters: request.parameters,
                                              defaultMaxTokens: limits.defaultMaxTokens)
        return [.startCall(Call(id: id, role: .member(index: index), model: model, request: run.loop.request(base),
                                timeoutMilliseconds: timeout))]
    }

    private mutating func memberEvent(_ index: Int, _ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard members[index]?.call == id else { return [] }
        members[index]?.loop.received(event)
        switch event {
        case .usage(let usage):
            let sum = (members[index]?.usage ?? Usage()) + usage  // summed over its turns
            members[index]?.usage = sum
            return []
        case .text(let text) where !text.isEmpty:
            return deliberate(.memberDelta(index: index, text: text), at: time)
        default:
            return []
        }
    }

    private mutating func memberEnded(_ index: Int, _ id: CallID, _ end: StreamEnd, at time: Double) -> [Action] {
        guard var run = members[index], run.call == id else { return [] }
        run.call = nil
        guard end == .complete else {
            members[index] = run
            return deliberate(.memberFailed(index: index, reason: .truncated,
                                            message: "the stream ended before the answer was complete", usage: run.usage), at: time)
        }
        let turnEnd = run.loop.endTurn()
        members[index] = run
        switch turnEnd {
        case .answered:
            return deliberate(.memberFinished(index: index, usage: run.usage, toolCalls: run.loop.callCount), at: time)
        case .callTools(let toolCalls):
            let model = request.parameters.analysisModels[index]
            return runTools(toolCalls, owner: .member(index), participant: .member(index: index, model: model), at: time)
        }
    }

    private mutating func startJudge(_ model: String, _ messages: [ModelMessage], at time: Double) -> [Action] {
        var out: [Action] = []
        if let previous = judge?.call {
            roles[previous] = nil
            out.append(.cancelCall(previous))
        }
        judge = JudgeRun(model: model, loop: ToolLoop(messages: messages, tools: judgeTools, maxSteps: request.parameters.maxToolCalls),
                         startedAt: time, generation: (judge?.generation ?? 0) + 1)
        return out + callJudge(at: time)
    }

    private mutating func callJudge(at time: Double) -> [Action] {
        guard let run = judge else { return [] }
        guard let timeout = remaining(limits.judgeTimeoutMilliseconds, since: run.startedAt, at: time) else {
            return deliberate(.judgeFailed(message: "no analysis within \(limits.judgeTimeoutMilliseconds) ms (web tool calls included)",
                                           reason: .timeout, usage: run.usage), at: time)
        }
        guard let id = allocate(.judge) else {
            return deliberate(.judgeFailed(message: "the request reached its limit of \(limits.maxInnerCalls) inner calls",
                                           usage: run.usage), at: time)
        }
        judge?.call = id
        let base = FusionPrompts.innerRequest(model: run.model, messages: [], parameters: request.parameters,
                                              defaultMaxTokens: limits.defaultMaxTokens, judge: true)
        return [.startCall(Call(id: id, role: .judge, model: run.model, request: run.loop.request(base), timeoutMilliseconds: timeout))]
    }

    private mutating func judgeEvent(_ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard judge?.call == id else { return [] }
        judge?.loop.received(event)
        switch event {
        case .usage(let usage):
            let sum = (judge?.usage ?? Usage()) + usage
            judge?.usage = sum
            return []
        case .text(let text) where !text.isEmpty:
            return deliberate(.judgeDelta(text: text), at: time)
        default:
            return []
        }
    }

    private mutating func judgeEnded(_ id: CallID, _ end: StreamEnd, at time: Double) -> [Action] {
        guard var run = judge, run.call == id else { return [] }
        run.call = nil
        guard end == .complete else {
            judge = run
            return deliberate(.judgeFailed(message: "the stream ended before the analysis was complete", usage: run.usage), at: time)
        }
        let turnEnd = run.loop.endTurn()
        judge = run
        switch turnEnd {
        case .answered:
            return deliberate(.judgeFinished(usage: run.usage, toolCalls: run.loop.callCount), at: time)
        case .callTools(let toolCalls):
            return deliberate(.judgeCalledTools, at: time)
                + runTools(toolCalls, owner: .judge(generation: run.generation), participant: .judge(model: run.model), at: time)
        }
    }

    /// What is left of a `budget` (ms) started at `start`, or nil if nothing.
    private func remaining(_ budget: UInt64, since start: Double, at time: Double) -> UInt64? {
        let left = Double(budget) - (time - start)
        return left >= 1 ? UInt64(left) : nil
    }

    // MARK: web tools

    /// Runs one turn's tool calls (at most `maxWebCallsPerTurn`, and within the request's total;
    /// the rest are answered with an error), streaming each start and outcome.
    private mutating func runTools(_ toolCalls: [ToolCall], owner: ToolOwner, participant: Participant, at time: Double) -> [Action] {
        pendingTools[owner] = PendingTools(results: Array(repeating: "", count: toolCalls.count), remaining: toolCalls.count)
        var out: [Action] = []
        for (position, call) in toolCalls.enumerated() {
            let activity = WebToolActivity(participant: participant, name: call.name, arguments: call.arguments)
            out.append(.output(.progress(.webToolStarted(activity))))
            let run = nextToolRun
            nextToolRun += 1
            toolRuns[run] = (owner, position)
            if position >= limits.maxWebCallsPerTurn {
                out += toolFinished(run, .failure("too many tool calls in one turn: at most \(limits.maxWebCallsPerTurn) run, this one did not"),
                                    at: time, activity: activity)
            } else if webToolCalls >= limits.maxWebToolCalls {
                out += toolFinished(run, .failure("this request reached its limit of \(limits.maxWebToolCalls) web tool calls"),
                                    at: time, activity: activity)
            } else {
                webToolCalls += 1
                runningActivities[run] = (activity, time)
                out.append(.runTool(run, call))
            }
        }
        return out
    }

    private var runningActivities: [ToolRunID: (activity: WebToolActivity, startedAt: Double)] = [:]

    private mutating func toolFinished(_ run: ToolRunID, _ outcome: ToolOutcome, at time: Double,
                                       activity known: WebToolActivity? = nil) -> [Action] {
        guard phase == .deliberating, let (owner, position) = toolRuns.removeValue(forKey: run) else { return [] }
        let started = runningActivities.removeValue(forKey: run)
        var activity = known ?? started?.activity
        activity?.durationMilliseconds = started.map { time - $0.startedAt } ?? 0
        activity?.resultBytes = outcome.content.utf8.count
        activity?.error = outcome.error
        activity?.sources = outcome.sources.count
        for source in outcome.sources { sources.add(source) }
        if activity?.name == WebToolNames.search { searchResults += outcome.sources.count }
        var out: [Action] = activity.map { [.output(.progress(.webToolFinished($0)))] } ?? []
        guard var pending = pendingTools[owner] else { return out }
        pending.results[position] = outcome.content
        pending.remaining -= 1
        guard pending.remaining == 0 else {
            pendingTools[owner] = pending
            return out
        }
        pendingTools[owner] = nil
        switch owner {
        case .member(let index):
            members[index]?.loop.complete(results: pending.results)
            out += callMember(index, at: time)
        case .judge(let generation):
            guard judge?.generation == generation else { return out }  // a restarted judge
            judge?.loop.complete(results: pending.results)
            out += callJudge(at: time)
        }
        return out
    }

    // MARK: the final answer

    private mutating func finishDeliberation(_ result: FusionResult, at time: Double) -> [Action] {
        // Running tools and members still streaming (none normally) are over.
        var out = cancelAllCalls()
        guard let turn = firstTurn, let fusionCall = turn.fusionCall else { return out + complete(at: time) }
        let callerCalls = turn.callerCalls
        if !callerCalls.isEmpty {
            // A parallel turn: the caller's calls (already streamed) need the caller's results
            // before the model can go on; the turn goes back to the client.
            deferredCallerCalls = callerCalls
            finishReason = .toolCalls
            return out + [.output(.answer(.finish(.toolCalls)))] + complete(at: time)
        }
        phase = .outerFinal
        let capped = String(decoding: JSONValue.object([
            "status": .string("error"), "failure_reason": .string("fusion_invocation_capped"),
            "error": .string("fusion runs once per request; this call was not run"),
        ]).serialized(), as: UTF8.self)
        let results = [(fusionCall.id, String(decoding: result.json.serialized(), as: UTF8.self))]
            + turn.extraFusionCalls.map { ($0.id, capped) }
        out += startOuter(FusionPrompts.outerFinalRequest(request, assistantContent: turn.text,
                                                          calls: [fusionCall] + turn.extraFusionCalls, results: results),
                          final: true, at: time)
        return out
    }

    // MARK: ending

    private mutating func complete(at time: Double) -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls() + [.finish(.completed)]
    }

    private mutating func fail(_ error: APIError, at time: Double) -> [Action] {
        guard phase != .finished else { return [] }
        phase = .finished
        return cancelAllCalls() + [.finish(.failed(error))]
    }

    private mutating func cancelAllCalls() -> [Action] {
        let running = roles.keys.sorted()
        roles.removeAll()
        toolRuns.removeAll()
        pendingTools.removeAll()
        runningActivities.removeAll()
        outerCall = nil
        for index in members.keys { members[index]?.call = nil }
        judge?.call = nil
        return running.map { .cancelCall($0) }
    }

    private mutating func allocate(_ role: Role) -> CallID? {
        guard callsStarted < limits.maxInnerCalls, nextCallID < CallID.max else { return nil }
        callsStarted += 1
        let id = nextCallID
        nextCallID += 1
        roles[id] = role
        return id
    }
}
