import GatewayCore

/// Why a panel member produced no answer.
public enum MemberFailureReason: String, Sendable, Equatable {
    case upstreamError = "upstream_error"
    case rateLimited = "rate_limited"
    case timeout
    case unreachable
    case emptyCompletion = "empty_completion"
    case invalidResponse = "invalid_response"
}

/// Progress of a deliberation, as the client sees it live (see `FusionEventEncoder`).
public enum FusionProgress: Sendable, Equatable {
    case toolCalled(arguments: String)
    case memberStarted(index: Int, model: String)
    case memberDelta(index: Int, model: String, text: String)
    case memberCompleted(index: Int, model: String, stats: MemberStats)
    case memberFailed(index: Int, model: String, reason: MemberFailureReason, message: String)
    case judgeStarted(model: String, attempt: Int)
    case judgeDelta(model: String, text: String)
    case judgeCompleted(model: String, analysis: JSONValue)
    case judgeFailed(model: String, reason: JudgeFailureReason, message: String, willRetry: Bool)
    /// A panel member or the judge called a web tool, and what came of it.
    case webToolStarted(WebToolActivity)
    case webToolFinished(WebToolActivity)
    case completed(result: FusionResult)
}

/// Who runs a tool loop.
public enum Participant: Sendable, Equatable {
    case member(index: Int, model: String)
    case judge(model: String)

    public var model: String {
        switch self {
        case .member(_, let model), .judge(let model): model
        }
    }
}

/// One web tool call, as streamed: when it starts (no outcome yet) and when it ends.
public struct WebToolActivity: Sendable, Equatable {
    public var participant: Participant
    public var name: String
    public var arguments: String
    /// Bytes of the result given to the model.
    public var resultBytes = 0
    public var durationMilliseconds = 0.0
    /// Search results returned, or 1 for a page read.
    public var sources = 0
    public var error: String?

    public init(participant: Participant, name: String, arguments: String) {
        self.participant = participant
        self.name = name
        self.arguments = arguments
    }
}

/// Per-call accounting, for the usage breakdown and the generation record.
public struct MemberStats: Sendable, Equatable {
    public var model: String
    public var role: String
    public var status: String
    public var usage: Usage?
    public var firstTokenMilliseconds: Double?
    public var durationMilliseconds: Double
    public var characters: Int
    /// Web tool calls made (over all turns of its tool loop).
    public var toolCalls = 0

    public init(model: String, role: String, status: String, usage: Usage?, firstTokenMilliseconds: Double?,
                durationMilliseconds: Double, characters: Int, toolCalls: Int = 0) {
        self.toolCalls = toolCalls
        self.model = model
        self.role = role
        self.status = status
        self.usage = usage
        self.firstTokenMilliseconds = firstTokenMilliseconds
        self.durationMilliseconds = durationMilliseconds
        self.characters = characters
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "model": .string(model), "role": .string(role), "status": .string(status),
            "duration_ms": .double((durationMilliseconds * 1000).rounded() / 1000), "characters": .int(Int64(characters)),
        ]
        if toolCalls > 0 { object["tool_calls"] = .int(Int64(toolCalls)) }
        if let firstTokenMilliseconds { object["ttft_ms"] = .double((firstTokenMilliseconds * 1000).rounded() / 1000) }
        if let usage {
            object["prompt_tokens"] = .int(usage.promptTokens)
            object["completion_tokens"] = .int(usage.completionTokens)
            object["total_tokens"] = .int(usage.totalTokens)
            object["cost"] = .double(usage.cost)
        }
        return .object(object)
    }
}

/// What the fusion tool returns to the outer model.
public struct FusionResult: Sendable, Equatable {
    public var answered: [(model: String, content: String)]
    public var failed: [(model: String, reason: MemberFailureReason, message: String)]
    public var panelSize: Int
    public var analysis: JSONValue?
    public var judgeModel: String?
    public var judgeFailure: JudgeFailure?
    /// Web sources the panel and judge found or read (url, title), for the outer model to cite.
    public var sources: [(url: String, title: String)] = []

    public var isError: Bool { answered.isEmpty }

    public static func == (lhs: FusionResult, rhs: FusionResult) -> Bool {
        lhs.json == rhs.json
    }

    /// `{"status","analysis","responses","failed_models",…}` or the error form.
    public var json: JSONValue {
        let failedModels: JSONValue = .array(failed.map {
            .object(["model": .string($0.model), "reason": .string($0.reason.rawValue), "message": .string($0.message)])
        })
        if isError {
            return .object([
                "status": .string("error"), "error": .string("all panel models failed"),
                "failure_reason": .string("all_panels_failed"), "failed_models": failedModels,
            ])
        }
        var object: [String: JSONValue] = [
            "status": .string("ok"),
            "responses": .array(answered.map { .object(["model": .string($0.model), "content": .string($0.content)]) }),
            // A degraded panel never looks like a full one.
            "panel": .object(["requested": .int(Int64(panelSize)), "answered": .int(Int64(answered.count)),
                              "degraded": .bool(answered.count < panelSize)]),
        ]
        if !failed.isEmpty { object["failed_models"] = failedModels }
        if !sources.isEmpty {
            object["sources"] = .array(sources.map { .object(["url": .string($0.url), "title": .string($0.title)]) })
        }
        if let analysis {
            object["analysis"] = analysis
            if let judgeModel { object["judge"] = .string(judgeModel) }
        } else if let judgeFailure {
            object["analysis_failure"] = .object(["reason": .string(judgeFailure.reason.rawValue),
                                                  "message": .string(judgeFailure.message)])
        }
        return .object(object)
    }
}

/// The panel and the judge as a state machine: events in (deltas, completions, failures, with
/// their time), actions out (start a call, report progress, finish). No I/O and no clock of its
/// own, so every ordering and failure path is testable without sockets.
public struct Deliberation: Sendable {
    public enum Event: Sendable {
        case memberDelta(index: Int, text: String)
        /// The member's stream ended normally (its text may still be empty); `toolCalls` web tool
        /// calls were made on the way.
        case memberFinished(index: Int, usage: Usage?, toolCalls: Int = 0)
        case memberFailed(index: Int, reason: MemberFailureReason, message: String)
        case judgeDelta(text: String)
        /// The judge's turn ended in web tool calls: its text so far was not the analysis.
        case judgeCalledTools
        case judgeFinished(usage: Usage?, toolCalls: Int = 0)
        /// Upstream error or timeout.
        case judgeFailed(message: String)
    }

    public enum Action: Sendable, Equatable {
        case startMember(index: Int, model: String)
        /// Start (or restart) the judge; any previous judge call is over.
        case startJudge(model: String, attempt: Int, messages: [JSONValue])
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
    private var judgeMessages: [JSONValue] = []
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

        case .memberFailed(let index, let reason, let message):
            guard states[index] == .running else { return [] }
            return memberFailed(index, reason, message, usage: nil, at: time)

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

        case .judgeFailed(let message):
            guard judgeAttempt > 0 else { return [] }
            recordJudge(status: JudgeFailureReason.upstreamError.rawValue, usage: nil, at: time)
            return judgeFailed(JudgeFailure(.upstreamError, message), at: time)
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

    private mutating func startJudge(model: String, attempt: Int, messages: [JSONValue], at time: Double) -> [Action] {
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
