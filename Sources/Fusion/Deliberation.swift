import GatewayCore
import Providers

/// The panel and the judge as a state machine: events in (deltas, completions, failures, with
/// their time), actions out (start a call, report progress, finish). No I/O and no clock of its
/// own, so every ordering and failure path is testable without sockets.
public struct Deliberation: Sendable {
    public enum Event: Sendable {
        case memberDelta(index: Int, text: String)
        /// The member's stream ended normally (its text may still be empty); `toolCalls` web tool
        /// calls were made on the way.
        case memberFinished(index: Int, usage: Usage?, toolCalls: Int = 0)
        case memberFailed(index: Int, reason: MemberFailureReason, message: String, usage: Usage? = nil)
        case judgeDelta(text: String)
        /// The judge's turn ended in web tool calls: its text so far was not the analysis.
        case judgeCalledTools
        case judgeFinished(usage: Usage?, toolCalls: Int = 0)
        /// Upstream error or timeout.
        case judgeFailed(message: String, reason: JudgeFailureReason = .upstreamError, usage: Usage? = nil)
    }

    public enum Action: Sendable, Equatable {
        case startMember(index: Int, model: String)
        /// Start (or restart) the judge; any previous judge call is over.
        case startJudge(model: String, attempt: Int, messages: [ModelMessage])
        case progress(FusionProgress)
        case finish(FusionResult)
    }

    enum MemberState: Sendable, Equatable { case running, answered, failed }

    public let question: String
    public let models: [String]
    private var states: [MemberState]
    private var texts: [String]
    private var started: [Double]
    private var firstToken: [Double?]
    private var failures: [Int: (reason: MemberFailureReason, message: String)] = [:]
    public private(set) var stats: [MemberStats] = []

    private let judgeModel: String
    private let judgeFallback: String?
    private var currentJudge: String
    private var judgeAttempt = 0
    private var judgeMessages: [ModelMessage] = []
    private var judgeText = ""
    private var judgeStarted = 0.0
    private var judgeFirstToken: Double?
    private var finished = false
    /// The judge is offered web tools (its prompt says so).
    public var judgeHasTools = false

    public init(question: String, models: [String], judge: String, judgeFallback: String?) {
        self.question = question
        self.models = models
        judgeModel = judge
        self.judgeFallback = judgeFallback == judge ? nil : judgeFallback
        currentJudge = judge
        states = Array(repeating: .running, count: models.count)
        texts = Array(repeating: "", count: models.count)
        started = Array(repeating: 0, count: models.count)
        firstToken = Array(repeating: nil, count: models.count)
    }

    /// Every member starts at once.
    public mutating func start(at time: Double) -> [Action] {
        var actions: [Action] = []
        for (index, model) in models.enumerated() {
            started[index] = time
            actions.append(.startMember(index: index, model: model))
            actions.append(.progress(.memberStarted(index: index, model: model)))
        }
        return actions
    }

    public mutating func handle(_ event: Event, at time: Double) -> [Action] {
        guard !finished else { return [] }
        switch event {
        case .memberDelta(let index, let text):
            guard states[index] == .running, !text.isEmpty else { return [] }
            if firstToken[index] == nil { firstToken[index] = time - started[index] }
            texts[index] += text
            return [.progress(.memberDelta(index: index, model: models[index], text: text))]

        case .memberFinished(let index, let usage, let toolCalls):
            guard states[index] == .running else { return [] }
            if texts[index].trimmingWhitespace().isEmpty {
                return memberFailed(index, .emptyCompletion, "the model returned no visible text", usage: usage, at: time)
            }
            states[index] = .answered
            let memberStats = MemberStats(model: models[index], role: "panel", status: "ok", usage: usage,
                                          firstTokenMilliseconds: firstToken[index], durationMilliseconds: time - started[index],
                                          characters: texts[index].count, toolCalls: toolCalls)
            stats.append(memberStats)
            return [.progress(.memberCompleted(index: index, model: models[index], stats: memberStats))] + panelDoneIfComplete(at: time)

        case .memberFailed(let index, let reason, let message, let usage):
            guard states[index] == .running else { return [] }
            return memberFailed(index, reason, message, usage: usage, at: time)

        case .judgeDelta(let text):
            guard judgeAttempt > 0, !text.isEmpty else { return [] }
            if judgeFirstToken == nil { judgeFirstToken = time - judgeStarted }
            judgeText += text
            return [.progress(.judgeDelta(model: currentJudge, text: text))]

        case .judgeCalledTools:
            judgeText = ""
            return []

        case .judgeFinished(let usage, let toolCalls):
            guard judgeAttempt > 0 else { return [] }
            switch JudgeAnalysis.parse(judgeText, panel: Set(models)) {
            case .success(let analysis):
                recordJudge(status: "ok", usage: usage, toolCalls: toolCalls, at: time)
                finished = true
                let result = makeResult(analysis: analysis, judgeFailure: nil)
                return [.progress(.judgeCompleted(model: currentJudge, analysis: analysis)), .finish(result)]
            case .failure(let failure):
                recordJudge(status: failure.reason.rawValue, usage: usage, toolCalls: toolCalls, at: time)
                return judgeFailed(failure, at: time)
            }

        case .judgeFailed(let message, let reason, let usage):
            guard judgeAttempt > 0 else { return [] }
            recordJudge(status: reason.rawValue, usage: usage, at: time)
            return judgeFailed(JudgeFailure(reason, message), at: time)
        }
    }

    private mutating func memberFailed(_ index: Int, _ reason: MemberFailureReason, _ message: String, usage: Usage?,
                                       at time: Double) -> [Action] {
        states[index] = .failed
        failures[index] = (reason, message)
        stats.append(MemberStats(model: models[index], role: "panel", status: reason.rawValue, usage: usage,
                                 firstTokenMilliseconds: firstToken[index], durationMilliseconds: time - started[index],
                                 characters: texts[index].count))
        return [.progress(.memberFailed(index: index, model: models[index], reason: reason, message: message))]
            + panelDoneIfComplete(at: time)
    }

    private mutating func panelDoneIfComplete(at time: Double) -> [Action] {
        guard !states.contains(.running) else { return [] }
        let answers = answered
        guard !answers.isEmpty else {
            finished = true
            return [.finish(makeResult(analysis: nil, judgeFailure: nil))]
        }
        judgeMessages = FusionPrompts.judgeMessages(question: question, answers: answers, tools: judgeHasTools)
        return startJudge(model: judgeModel, attempt: 1, messages: judgeMessages, at: time)
    }

    private mutating func startJudge(model: String, attempt: Int, messages: [ModelMessage], at time: Double) -> [Action] {
        currentJudge = model
        judgeAttempt = attempt
        judgeText = ""
        judgeStarted = time
        judgeFirstToken = nil
        return [.startJudge(model: model, attempt: attempt, messages: messages),
                .progress(.judgeStarted(model: model, attempt: attempt))]
    }

    /// Invalid JSON or schema: one retry with the error. Then (or on an upstream failure or an
    /// empty reply) the fallback judge, if any. Then the result without analysis.
    private mutating func judgeFailed(_ failure: JudgeFailure, at time: Double) -> [Action] {
        let retryable = failure.reason == .notValidJSON || failure.reason == .schemaMismatch
        if retryable && judgeAttempt == 1 {
            let retry = FusionPrompts.judgeRetryMessages(judgeMessages, reply: judgeText, problem: failure.message)
            return [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: true))]
                + startJudge(model: currentJudge, attempt: 2, messages: retry, at: time)
        }
        if let fallback = judgeFallback, currentJudge != fallback {
            return [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: true))]
                + startJudge(model: fallback, attempt: 1, messages: judgeMessages, at: time)
        }
        finished = true
        return [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: false)),
                .finish(makeResult(analysis: nil, judgeFailure: failure))]
    }

    private mutating func recordJudge(status: String, usage: Usage?, toolCalls: Int = 0, at time: Double) {
        stats.append(MemberStats(model: currentJudge, role: "judge", status: status, usage: usage,
                                 firstTokenMilliseconds: judgeFirstToken, durationMilliseconds: time - judgeStarted,
                                 characters: judgeText.count, toolCalls: toolCalls))
    }

    private var answered: [(model: String, content: String)] {
        models.indices.filter { states[$0] == .answered }.map { (models[$0], texts[$0]) }
    }

    private func makeResult(analysis: JSONValue?, judgeFailure: JudgeFailure?) -> FusionResult {
        FusionResult(
            answered: answered,
            failed: models.indices.compactMap { index in failures[index].map { (models[index], $0.reason, $0.message) } },
            panelSize: models.count, analysis: analysis, judgeModel: analysis == nil ? nil : currentJudge,
            judgeFailure: judgeFailure)
    }
}
