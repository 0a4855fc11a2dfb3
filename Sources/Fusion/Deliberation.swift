import GatewayCore
import Providers

/// The panel and the judge as a state machine: events in (deltas, completions, failures, timers
/// firing, with their time), actions out (start or cancel a call, arm a timer, report progress,
/// finish). No I/O and no clock of its own, so every ordering and failure path is testable
/// without sockets. The judge's half is in `Deliberation+Judge.swift`.
///
/// The panel ends when no member runs any more. With a quorum (`min_answers`) it may end
/// sooner: once that many usable answers (non-empty visible text) are in, the others get at
/// most `grace_ms` more, then are cut (their calls cancelled) and reported `cut_for_latency`;
/// the deliberation's deadline cuts whatever still runs, the judge included.
public struct Deliberation: Sendable {
    public enum Event: Sendable {
        case memberDelta(index: Int, text: String)
        /// The member's stream ended normally (its text may still be empty); `toolCalls` web tool
        /// calls were made on the way.
        case memberFinished(index: Int, usage: Usage?, toolCalls: Int = 0)
        case memberFailed(index: Int, reason: MemberFailureReason, message: String, usage: Usage? = nil, statusCode: Int? = nil)
        case judgeDelta(text: String)
        /// The judge's turn ended in web tool calls: its text so far was not the analysis.
        case judgeCalledTools
        /// `reachedLimit`: the reply ended at its output limit (see `judgeFailed`).
        case judgeFinished(usage: Usage?, toolCalls: Int = 0, reachedLimit: Bool = false)
        /// Upstream error or timeout.
        case judgeFailed(message: String, reason: JudgeFailureReason = .upstreamError, usage: Usage? = nil)
        /// A timer armed by `startTimer` ran out.
        case timerFired(FusionTimer)
    }

    public enum Action: Sendable, Equatable {
        case startMember(index: Int, model: String)
        /// The member is cut: cancel its call (and whatever of its tool loop runs).
        case cancelMember(index: Int)
        /// Start (or restart) the judge; any previous judge call is over.
        case startJudge(model: String, attempt: Int, messages: [ModelMessage])
        case progress(FusionProgress)
        case startTimer(FusionTimer, milliseconds: UInt64)
        case cancelTimer(FusionTimer)
        case finish(FusionResult)
    }

    /// When the judge may start before every member is done.
    public struct Quorum: Sendable, Equatable {
        /// Usable answers that are enough (nil: all of them).
        public var minAnswers: Int?
        public var graceMilliseconds: UInt64
        /// The panel's and the judge's budget together (nil: none).
        public var deadlineMilliseconds: UInt64?

        public init(minAnswers: Int? = nil, graceMilliseconds: UInt64 = 0, deadlineMilliseconds: UInt64? = nil) {
            self.minAnswers = minAnswers
            self.graceMilliseconds = graceMilliseconds
            self.deadlineMilliseconds = deadlineMilliseconds
        }
    }

    enum MemberState: Sendable, Equatable { case running, answered, failed, cut }

    public let question: String
    public let models: [String]
    public let quorum: Quorum
    public internal(set) var labels: NeutralLabels
    var states: [MemberState]
    var texts: [String]
    var started: [Double]
    var firstToken: [Double?]
    var failures: [Int: (reason: MemberFailureReason, message: String, statusCode: Int?)] = [:]
    public internal(set) var stats: [MemberStats] = []
    /// What the finished turns of a member's or the judge's tool loop spent (the session's
    /// sums): charged when it is cut or stopped before its last turn reports (review 48 Fusion
    /// #2: a cut member's earlier turns, paid upstream, were left out of the usage charged).
    public struct Spent: Sendable {
        public var usage: Usage?
        public var toolCalls = 0
        public init(usage: Usage? = nil, toolCalls: Int = 0) {
            self.usage = usage
            self.toolCalls = toolCalls
        }
    }
    public var memberSpent: [Int: Spent] = [:]
    /// The current judge attempt's (reset as each starts).
    public var judgeSpent = Spent()
    var panelStartedAt = 0.0
    var graceArmed = false
    var deadlineArmed = false
    var panelOver = false

    let judgeModel: String
    let judgeFallback: String?
    var currentJudge: String
    var judgeAttempt = 0
    var judgeMessages: [ModelMessage] = []
    /// Whom the analysis may cite: the members whose answers the judge was given.
    var citable = JudgeAnalysis.Citable(panel: [])
    /// The judge's reply so far (this attempt; since its last tool call).
    var judgeText = "" { didSet { if judgeText.isEmpty { judgeWroteText = false } } }
    /// Whether `judgeText` holds anything but whitespace: kept, not re-scanned per delta (review
    /// 48 Fusion #1: JSON mode's known failure, a reply of endless whitespace, cost a scan of
    /// the whole reply per delta on the loop, quadratic: 16,384 deltas took 29 s).
    var judgeWroteText = false
    var judgeStarted = 0.0
    var judgePhaseStartedAt: Double?
    var judgeFirstToken: Double?
    var tokenizer = AnalysisTokenizer()
    /// Items of the current attempt shown to the client, in order (withdrawn if it fails).
    var shownItems: [(field: String, index: Int)] = []
    /// Their values by field, in order: the analysis, when the reply is one clean object
    /// (`JudgeAnalysis.assembled`).
    var itemValues: [String: [JSONValue]] = [:]
    /// An item broke the schema: the attempt will fail, nothing more of it is shown.
    var itemsSuspended = false
    var finished = false
    /// The judge is offered web tools (its prompt says so).
    public var judgeHasTools = false

    public init(question: String, models: [String], judge: String, judgeFallback: String?, quorum: Quorum = Quorum(),
                labels: NeutralLabels? = nil) {
        self.question = question
        self.models = models
        self.quorum = quorum
        self.labels = labels ?? NeutralLabels(models: models, neutral: false, seed: nil)
        judgeModel = judge
        self.judgeFallback = judgeFallback == judge ? nil : judgeFallback
        currentJudge = judge
        states = Array(repeating: .running, count: models.count)
        texts = Array(repeating: "", count: models.count)
        started = Array(repeating: 0, count: models.count)
        firstToken = Array(repeating: nil, count: models.count)
    }

    /// Every member starts at once; the deadline, if any, starts counting.
    public mutating func start(at time: Double) -> [Action] {
        panelStartedAt = time
        var actions: [Action] = [.progress(.phase(PhaseReport(.panel, .started, summary: Self.counted(models.count, "member"))))]
        for (index, model) in models.enumerated() {
            started[index] = time
            actions.append(.startMember(index: index, model: model))
            actions.append(.progress(.memberStarted(index: index, model: model)))
        }
        if let deadline = quorum.deadlineMilliseconds {
            deadlineArmed = true
            actions.append(.startTimer(.deadline, milliseconds: deadline))
        }
        return actions
    }

    public mutating func handle(_ event: Event, at time: Double) -> [Action] {
        guard !finished else { return [] }
        switch event {
        case .memberDelta(let index, let text):
            guard states.indices.contains(index), states[index] == .running, !text.isEmpty else { return [] }
            if firstToken[index] == nil { firstToken[index] = time - started[index] }
            texts[index] += text
            return [.progress(.memberDelta(index: index, model: models[index], text: text))]

        case .memberFinished(let index, let usage, let toolCalls):
            guard states.indices.contains(index), states[index] == .running else { return [] }
            if !texts[index].hasVisibleText {
                return memberFailed(index, .emptyCompletion, "the model returned no visible text", usage: usage, at: time)
            }
            states[index] = .answered
            let memberStats = MemberStats(model: models[index], role: "panel", status: "ok", usage: usage,
                                          firstTokenMilliseconds: firstToken[index], durationMilliseconds: time - started[index],
                                          characters: texts[index].count, toolCalls: toolCalls, member: index)
            stats.append(memberStats)
            return [.progress(.memberCompleted(index: index, model: models[index], stats: memberStats))]
                + quorumReached(at: time) + panelDoneIfComplete(at: time)

        case .memberFailed(let index, let reason, let message, let usage, let statusCode):
            guard states.indices.contains(index), states[index] == .running else { return [] }
            return memberFailed(index, reason, message, usage: usage, statusCode: statusCode, at: time)

        case .timerFired(let timer):
            return timerFired(timer, at: time)

        case .judgeDelta, .judgeCalledTools, .judgeFinished, .judgeFailed:
            return judgeEvent(event, at: time)
        }
    }

    private mutating func memberFailed(_ index: Int, _ reason: MemberFailureReason, _ message: String, usage: Usage?,
                                       statusCode: Int? = nil, at time: Double) -> [Action] {
        states[index] = .failed
        failures[index] = (reason, message, statusCode)
        stats.append(MemberStats(model: models[index], role: "panel", status: reason.rawValue, usage: usage,
                                 firstTokenMilliseconds: firstToken[index], durationMilliseconds: time - started[index],
                                 characters: texts[index].count, member: index))
        return [.progress(.memberFailed(index: index, model: models[index], reason: reason, message: message, statusCode: statusCode))]
            + panelDoneIfComplete(at: time)
    }

    var answeredCount: Int { states.filter { $0 == .answered }.count }

    /// Enough usable answers are in: the stragglers get the grace period, or are cut now.
    private mutating func quorumReached(at time: Double) -> [Action] {
        guard let minAnswers = quorum.minAnswers, !panelOver, answeredCount >= minAnswers, states.contains(.running),
              !graceArmed else { return [] }
        if quorum.graceMilliseconds == 0 { return cutRunning(.grace, at: time) }
        graceArmed = true
        return [.startTimer(.grace, milliseconds: quorum.graceMilliseconds)]
    }

    private mutating func timerFired(_ timer: FusionTimer, at time: Double) -> [Action] {
        switch timer {
        case .grace:
            graceArmed = false
            guard !panelOver else { return [] }
            return cutRunning(.grace, at: time) + panelDoneIfComplete(at: time)
        case .deadline:
            deadlineArmed = false
            if !panelOver { return cutRunning(.deadline, at: time) + panelDoneIfComplete(at: time, deadlinePassed: true) }
            return judgeOutOfTime(at: time)
        case .readableText, .memberTools, .judgeTools:
            return []  // the session's, not the deliberation's
        }
    }

    /// Cancels every member still running; each is reported with what it had written.
    private mutating func cutRunning(_ cause: CutCause, at time: Double) -> [Action] {
        var actions: [Action] = []
        for index in models.indices where states[index] == .running {
            states[index] = .cut
            let waited = Int((time - started[index]).rounded())
            let message = cause == .grace
                ? "cut for latency: \(Self.counted(answeredCount, "answer")) \(answeredCount == 1 ? "was" : "were") in and the grace period (\(quorum.graceMilliseconds) ms) ran out; it had run \(waited) ms"
                : "cut for latency: the deliberation's deadline (\(quorum.deadlineMilliseconds ?? 0) ms) passed; it had run \(waited) ms"
            failures[index] = (.cutForLatency, message, nil)
            stats.append(MemberStats(model: models[index], role: "panel", status: MemberFailureReason.cutForLatency.rawValue,
                                     usage: memberSpent[index]?.usage, firstTokenMilliseconds: firstToken[index],
                                     durationMilliseconds: time - started[index], characters: texts[index].count,
                                     toolCalls: memberSpent[index]?.toolCalls ?? 0, member: index))
            actions.append(.cancelMember(index: index))
            actions.append(.progress(.memberCut(index: index, model: models[index], characters: texts[index].count, cause: cause)))
        }
        return actions
    }

    /// `deadlinePassed`: the deliberation's deadline ended the panel, so there is no time left
    /// for a judge: the answers go on without an analysis (`judge_timeout`), as when the deadline
    /// stops a judge still writing.
    private mutating func panelDoneIfComplete(at time: Double, deadlinePassed: Bool = false) -> [Action] {
        guard !panelOver, !states.contains(.running) else { return [] }
        panelOver = true
        var actions: [Action] = graceArmed ? [.cancelTimer(.grace)] : []
        graceArmed = false
        actions.append(.progress(.phase(PhaseReport(.panel, .completed, duration: time - panelStartedAt, summary: panelSummary))))
        let answers = answered
        guard !answers.isEmpty else {
            // A phase row for every deliberation, as when the deadline leaves none to the judge
            // (review 110 #3).
            actions.append(.progress(.phase(PhaseReport(.judge, .skipped, summary: "no analysis: no member answered"))))
            return actions + finish(makeResult(analysis: nil, judgeFailure: nil))
        }
        let included = models.indices.filter { states[$0] == .answered }
        labels.markNotCompared(models.indices.filter { states[$0] != .answered })
        let missing = labels.order.compactMap { index -> (label: String, why: String)? in
            guard let failure = failures[index] else { return nil }
            return (labels.labels[index], failure.reason == .cutForLatency
                ? "cut for latency before it finished (its partial answer is not shown)"
                : "no answer (\(failure.reason.rawValue))")
        }
        let ordered = labels.order.filter(included.contains).map { (label: labels.labels[$0], content: texts[$0]) }
        // By label: one per member, so a cut member of a model that repeats cannot be cited
        // through its twin's name (review 62C #3).
        citable = JudgeAnalysis.Citable(panel: Set(labels.labels + models),
                                        compared: Set(included.map { labels.labels[$0] } + included.map { models[$0] }))
        judgeMessages = FusionPrompts.judgeMessages(question: question, answers: ordered, missing: missing, neutral: labels.isNeutral,
                                                    tools: judgeHasTools)
        judgePhaseStartedAt = time
        guard !deadlinePassed else {
            let failure = JudgeFailure(.timeout, "the deliberation's deadline (\(quorum.deadlineMilliseconds ?? 0) ms) passed before the judge could start")
            let result = makeResult(analysis: nil, judgeFailure: failure)
            return actions + [.progress(.judgeFailed(model: judgeModel, reason: failure.reason, message: failure.message, willRetry: false)),
                              .progress(.phase(PhaseReport(.judge, .skipped, summary: "no analysis: the deadline passed before the judge could start")))]
                + finish(result)
        }
        actions.append(.progress(.phase(PhaseReport(.judge, .started, summary: "comparing " + Self.counted(answers.count, "answer")))))
        return actions + startJudge(model: judgeModel, attempt: 1, messages: judgeMessages, at: time)
    }

    var panelSummary: String {
        let cut = states.filter { $0 == .cut }.count
        let failed = states.filter { $0 == .failed }.count
        var summary = "\(answeredCount) of \(models.count) answered"
        if cut > 0 { summary += ", \(cut) cut for latency" }
        if failed > 0 { summary += ", \(failed) failed" }
        return summary
    }

    /// The result is final: timers still armed are disarmed.
    mutating func finish(_ result: FusionResult) -> [Action] {
        finished = true
        var actions: [Action] = []
        if graceArmed { actions.append(.cancelTimer(.grace)) }
        if deadlineArmed { actions.append(.cancelTimer(.deadline)) }
        graceArmed = false
        deadlineArmed = false
        return actions + [.finish(result)]
    }

    var answered: [(model: String, content: String)] {
        models.indices.filter { states[$0] == .answered }.map { (models[$0], texts[$0]) }
    }

    func makeResult(analysis: JSONValue?, judgeFailure: JudgeFailure?) -> FusionResult {
        var result = FusionResult(
            answered: answered,
            failed: models.indices.compactMap { index in
                failures[index].map {
                    FailedMember(model: models[index], reason: $0.reason, message: $0.message,
                                 partial: $0.reason == .cutForLatency ? texts[index] : nil, statusCode: $0.statusCode)
                }
            },
            panelSize: models.count, analysis: analysis, judgeModel: analysis == nil ? nil : currentJudge,
            judgeFailure: judgeFailure)
        result.minAnswers = quorum.minAnswers
        return result
    }
}

/// The timers a Fusion session arms (the shell runs them; the machines only see them fire).
public enum FusionTimer: Sendable, Hashable {
    /// `min_answers` are in: how long the other members may still finish.
    case grace
    /// The deliberation's budget.
    case deadline
    /// Members' text waiting to be shown as a readable piece.
    case readableText
    /// What is left of member `index`'s time (`member_timeout_ms`) while its web tools run.
    case memberTools(Int)
    /// What is left of the judge's time (`judge_timeout_ms`) while its web tools run.
    case judgeTools(generation: Int)
}

extension Deliberation {
    /// "1 answer", "3 answers": progress lines are read by people.
    static func counted(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
}
