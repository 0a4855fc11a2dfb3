import GatewayCore
import Providers

/// Progress of a deliberation, as the client sees it live (see `FusionProgressEncoder`).
public enum FusionProgress: Sendable, Equatable {
    case toolCalled(arguments: String)
    case memberStarted(index: Int, model: String)
    case memberDelta(index: Int, model: String, text: String)
    /// A panel member's reasoning ("thinking") text, as it streams: not part of its answer.
    case memberReasoningDelta(index: Int, model: String, text: String)
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
    /// The outer model called the fusion tool more than once in its turn: this call was not run
    /// (its result says `fusion_invocation_capped`). After `completed`.
    case invocationCapped(arguments: String)
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
