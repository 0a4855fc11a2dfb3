import Fusion
import GatewayCore
import Providers

/// A Fusion session's output for an Anthropic client: streamed, the deliberation as SSE comments
/// (Anthropic's SDKs skip comments, as they skip events without a name or `ping`s; `curl -N`
/// shows them) and the answer as one Messages stream over both outer turns, whose
/// `message_delta` carries the fusion result under `fusion` and the per-call usage under
/// `usage.fusion` (as chat's usage chunk does: a streaming client can tell a degraded panel from
/// a full one; the SDKs keep unknown fields); whole, one `message` with the fusion result under
/// `fusion`. Named progress events (`event: fusion.…`, as chat's) only when the client asked
/// (`stream_options.include_fusion_events`): the SDKs hand unknown event names to raw-event
/// readers, and their `messages.stream()` helpers skip them.
///
/// Sources are not rendered as citations on this surface (Anthropic's citation blocks point into
/// documents the client sent); the final answer's text carries its links.
public struct FusionMessagesRenderer: Sendable {
    public let stream: Bool
    private var writer: MessagesStreamWriter
    private var whole: MessagesResponse
    private let progress: FusionProgressEncoder
    /// The outer model's words before the fusion call end in a word (not white space); only
    /// that turn is looked at, not the final answer's tokens.
    private var answerEndsInWord = false
    private var finalAnswerStarted = false

    public init(id: String, model: String, stream: Bool, namedEvents: Bool = false, stopSequences: [String] = []) {
        writer = MessagesStreamWriter(id: id, model: model, stopSequences: stopSequences)
        whole = MessagesResponse(id: id, model: model, stopSequences: stopSequences)
        self.stream = stream
        progress = FusionProgressEncoder(form: namedEvents ? .namedEvents : .comments)
    }

    /// Appends what `output` shows the client (nothing when not streamed: see `message`).
    public mutating func render(_ output: FusionSessionMachine.Output, at milliseconds: Double, into out: inout [UInt8]) {
        switch output {
        case .progress(let update):
            guard stream else { return }
            startBeforeEvents(&out)
            progress.append(update, at: milliseconds, to: &out)
        case .finalAnswerStarts(let model):
            // The words before the fusion call and the answer share a text block: a paragraph
            // break between them, not "…it is so.Drawing on…" (review 20 B3).
            let needsBreak = answerEndsInWord
            finalAnswerStarted = true
            guard stream else {
                if needsBreak { whole.add(.text("\n\n")) }
                return
            }
            startBeforeEvents(&out)
            progress.appendFinalAnswerStarts(model: model, at: milliseconds, to: &out)
            if needsBreak { writer.append(.text("\n\n"), to: &out) }
        case .answer(let event):
            if !finalAnswerStarted, case .text(let text) = event, let last = text.last { answerEndsInWord = !last.isWhitespace }
            if stream { writer.append(event, to: &out) } else { whole.add(event) }
        case .serverToolCalls:
            // Not on Messages: Anthropic's API has no block a client would send back for a
            // gateway's tool call, so a turn calling the caller's tools and fusion does not
            // deliberate (`FusionSession`): it comes back with the caller's tool_use blocks.
            break
        }
    }

    /// Whether the stream's `message_start`, which names the model, is still to be written: it
    /// waits for the answer's first event (or, with named progress events, the first of those).
    public var namesModelLater: Bool { stream && !writer.started }

    /// The outer turn's model that answers (a fallback's when one took over), for the
    /// `message_start` still to come: the whole answer, the record and `usage.fusion` name it
    /// too (review 102 #1: the stream named the model that failed).
    public mutating func name(answeringModel model: String) { writer.name(model: model) }

    /// A streamed answer's tool-call fragment that can no longer be a JSON object, or that goes
    /// back to an ended call (`MessagesStreamWriter.refusal(ofToolCall:)`); a whole one is
    /// checked as its body is made.
    mutating func refusal(ofAnswer output: FusionSessionMachine.Output) -> APIError? {
        guard stream, case .answer(.toolCall(let fragment)) = output else { return nil }
        return writer.refusal(ofToolCall: fragment)
    }

    /// A streamed answer whose call's arguments never closed.
    func refusalAtEnd() -> APIError? {
        stream ? writer.refusalAtEnd() : nil
    }

    /// Named events come after `message_start`: the SDKs' stream helpers refuse any event
    /// before it (comments are no events, so they may come first).
    private mutating func startBeforeEvents(_ out: inout [UInt8]) {
        if progress.form == .namedEvents { writer.appendStart(to: &out) }
    }

    /// The end of a streamed answer, with the usage summed over every call; when a deliberation
    /// ran, its result and each call's usage.
    /// `estimated`: some of `usage` is the gateway's estimate (said at its top level, as chat's
    /// and Responses' usage say it: review 71A #3).
    public mutating func renderEnd(usage: Usage, estimated: Bool = false, fusion: FusionResult? = nil, calls: [MemberStats]? = nil,
                                   into out: inout [UInt8]) {
        writer.appendEnd(usage: usage, estimated: estimated, fusion: (fusion?.json, calls.map(FusionTotals.breakdown)), to: &out)
    }

    /// An error after the stream began.
    public func renderError(_ error: APIError, into out: inout [UInt8]) {
        MessagesErrors.appendEvent(error, to: &out)
    }

    /// The whole, non-streamed response body; when a deliberation ran, its result and each
    /// call's usage (`usage.fusion`, as the streamed `message_delta` and chat's body carry it).
    public func message(usage: Usage, estimated: Bool = false, fusion: FusionResult?, calls: [MemberStats]? = nil,
                        model: String? = nil) throws(APIError) -> [UInt8] {
        var response = whole
        if let model { response.model = model }
        if estimated { response.addEstimatedUsage(usage) } else { response.add(.usage(usage)) }
        return try response.body(extra: fusion.map { ["fusion": $0.json] } ?? [:], fusionCalls: calls.map(FusionTotals.breakdown))
    }
}
