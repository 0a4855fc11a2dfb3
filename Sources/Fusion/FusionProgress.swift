import GatewayCore
import Providers

/// Progress of a deliberation, as the client sees it live (see `FusionProgressEncoder`).
public enum FusionProgress: Sendable, Equatable {
    /// The outer model called the fusion tool (`callID`: its call's id, which a client that keeps
    /// the Responses item sends back); `forced`: the request left it no other choice, so the call
    /// was not made but stands for it (the panel started at once).
    case toolCalled(arguments: String, callID: String = "", forced: Bool = false)
    case memberStarted(index: Int, model: String)
    case memberDelta(index: Int, model: String, text: String)
    /// A panel member's reasoning ("thinking") text, as it streams: not part of its answer.
    case memberReasoningDelta(index: Int, model: String, text: String)
    case memberCompleted(index: Int, model: String, stats: MemberStats)
    /// `statusCode`: the upstream's HTTP status when it refused the call (`FailedMember.statusCode`).
    case memberFailed(index: Int, model: String, reason: MemberFailureReason, message: String, statusCode: Int? = nil)
    /// `labels`: the neutral label → model map the judge's raw text (`judgeDelta`) is written
    /// under (empty when the judge reads model names).
    case judgeStarted(model: String, attempt: Int, labels: [String: String] = [:])
    case judgeDelta(model: String, attempt: Int, text: String)
    case judgeCompleted(model: String, analysis: JSONValue)
    case judgeFailed(model: String, reason: JudgeFailureReason, message: String, willRetry: Bool)
    /// A panel member or the judge called a web tool, and what came of it.
    case webToolStarted(WebToolActivity)
    case webToolFinished(WebToolActivity)
    case completed(result: FusionResult)
    /// The outer model called the fusion tool more than once in its turn: this call was not run
    /// (its result says `fusion_invocation_capped`). After `completed`.
    case invocationCapped(arguments: String, callID: String = "")
    /// What the deliberation will cost, before it starts (only with prices in the config): the
    /// first progress of a deliberation.
    case estimate(CostEstimate)
    /// A phase started, ended (with its duration and a one-line summary) or was skipped.
    case phase(PhaseReport)
    /// A member's text in a readable piece (a line, or the words of ~100 ms): for people. The
    /// exact deltas stay in `memberDelta` / `memberReasoningDelta`; a renderer shows one or the other.
    case memberText(index: Int, model: String, text: String, reasoning: Bool)
    /// A member still running when the quorum's grace or the deadline ran out: its call was
    /// cancelled, `characters` is what it had written.
    case memberCut(index: Int, model: String, characters: Int, cause: CutCause)
    /// One element of the judge's analysis, the moment the judge has written it: models mapped
    /// back from the neutral labels, checked on its own; provisional until `judgeCompleted`.
    case judgeItem(model: String, attempt: Int, item: AnalysisItem)
    /// An item shown earlier no longer stands: that attempt's analysis failed (a retry, the
    /// fallback judge or no analysis follows). Sent last shown first.
    case judgeItemWithdrawn(model: String, attempt: Int, field: String, index: Int)
}

/// Why a member was cut.
public enum CutCause: String, Sendable, Equatable {
    /// `min_answers` were in and the grace period ran out.
    case grace
    /// The deliberation's deadline passed.
    case deadline
}

/// The phases of a Fusion request, in order.
public enum FusionPhase: String, Sendable, Equatable {
    case outer, panel, judge, final
}

/// A phase's start or end, for status lines and `fusion.phase` events.
public struct PhaseReport: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable { case started, completed, skipped }

    public var phase: FusionPhase
    public var status: Status
    /// When it ended, how long it took (ms).
    public var durationMilliseconds: Double?
    /// One line for people: what came of it ("2 of 3 answered, 1 cut for latency").
    public var summary: String

    public init(_ phase: FusionPhase, _ status: Status, duration: Double? = nil, summary: String = "") {
        self.phase = phase
        self.status = status
        durationMilliseconds = duration
        self.summary = summary
    }
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
