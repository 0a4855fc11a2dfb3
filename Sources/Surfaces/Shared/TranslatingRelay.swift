import Fusion
import GatewayCore
import Providers

/// One client API's stream, written from neutral events: chat completions' chunks, Anthropic's
/// Messages events, the Responses API's events. `TranslatingRelay` drives one from any
/// provider's decoder; Fusion's renderers use the same writers.
public protocol NeutralStreamWriter {
    /// What the client sees the moment its stream opens (nothing on chat completions).
    mutating func appendStart(to out: inout [UInt8])
    /// An answer event. `.error` never reaches a writer: it ends the stream (`appendFailure`).
    mutating func append(_ event: ModelEvent, to out: inout [UInt8])
    /// The end of a complete answer. `usage`: the total to report (nil: none was reported and
    /// none could be estimated); `estimated`: it is the gateway's estimate.
    mutating func appendEnd(usage: Usage?, estimated: Bool, to out: inout [UInt8])
    /// A failure ending a stream that already began, in the API's in-band error form, with the
    /// usage so far where the API carries it (`usage`, `estimated` as for `appendEnd`).
    mutating func appendFailure(_ error: APIError, usage: Usage?, estimated: Bool, to out: inout [UInt8])
    /// Why the client's API cannot carry `event`'s tool call fragment (Messages: arguments that
    /// can no longer be a JSON object), checked before it is appended; nil to append it.
    mutating func refusal(ofToolCall fragment: ToolCallFragment) -> APIError?
    /// Why the answer cannot end as it is (Messages: a tool call's arguments left unfinished).
    func refusalAtEnd() -> APIError?
    /// What the upstream said of the prompt before the answer (Anthropic's `message_start`
    /// usage), for a start that shows it (Messages).
    mutating func notePromptUsage(_ usage: Usage)
}

extension NeutralStreamWriter {
    public mutating func refusal(ofToolCall fragment: ToolCallFragment) -> APIError? { nil }
    public func refusalAtEnd() -> APIError? { nil }
    public mutating func notePromptUsage(_ usage: Usage) {}
}

/// A client's stream from an upstream of another wire format, without sockets: the provider's
/// decoder turns bytes into `ModelEvent`s and `Writer` writes them in the client's API. Tracks
/// what the record needs (usage, finish, events forwarded, how the stream ended). A body that
/// ends without its end marker and without a finish is a truncation: an in-band error, never a
/// clean end.
public struct TranslatingRelay<Writer: NeutralStreamWriter> {
    public typealias Outcome = SSERelay.Outcome

    private var decoder: any ModelStreamDecoder
    /// The answer's id as its upstream named it (`ModelStreamDecoder.upstreamID`).
    public var decoderUpstreamID: String? { decoder.upstreamID }
    /// Events and comment lines read from the upstream (`SSEDecoder.progressMarks`), as of the
    /// last read: kept here, as a getter on the stored existential would copy the decoder first
    /// on every read.
    public private(set) var progressMarks = 0
    public private(set) var writer: Writer
    /// The prompt's estimated size, for a usage estimate when the upstream reports none.
    private let estimatedPromptTokens: Int64?
    /// The model's price in the config: a usage reported without a cost (or estimated) is
    /// costed at it (`Usage.costed(at:)`).
    private let price: ModelPrice?
    public private(set) var usage: Usage?
    public private(set) var finish: FinishReason?
    /// Events carrying the answer (text, reasoning, tool call fragments) forwarded so far.
    public private(set) var forwardedEvents = 0
    /// An answer event wrote bytes to the client's stream. Not the same as `forwardedEvents`: a
    /// writer holds what it cannot show yet (a tool call's fragment before its name) and drops
    /// what its API has no form for (Anthropic's `server_tool_use` on chat and Responses). An
    /// upstream that failed after only such events failed before the client saw an answer: it
    /// is retried, fallen back from or answered with its status (review 108 #3).
    public private(set) var answerShown = false
    /// The answer's text, reasoning and tool calls forwarded, in bytes: an estimate counts them
    /// at four a token when that is more than a token an event (review 101 #1: 20 KB in one
    /// delta was charged one token).
    private var forwardedOutputBytes = 0
    /// A whole answer's output estimated by its size (`relayWhole`).
    private var wholeOutputTokens: Int64?
    public private(set) var outcome = Outcome.streaming
    /// The usage the client saw was the gateway's estimate (costed), for the record to state
    /// what the client was told.
    public private(set) var estimatedUsage: Usage?
    public var usageEstimated: Bool { estimatedUsage != nil }
    /// Reused between reads (the per-event path allocates nothing once grown).
    private var pending: [ModelEvent] = []
    /// The prompt's usage was asked of the decoder (until it is known or an event arrived).
    private var promptNoted = false
    /// The upstream's own count of the prompt, said first (Anthropic's `message_start`): a
    /// stream cut before its final usage is estimated from it rather than the body's size.
    public private(set) var promptUsage: Usage?

    public init(decoder: any ModelStreamDecoder, writer: Writer, estimatedPromptTokens: Int64? = nil, price: ModelPrice? = nil) {
        self.decoder = decoder
        self.writer = writer
        self.estimatedPromptTokens = estimatedPromptTokens
        self.price = price
    }

    public mutating func start(into out: inout [UInt8]) {
        writer.appendStart(to: &out)
    }

    private static func progressMarks(of decoder: inout any ModelStreamDecoder) -> Int { decoder.progressMarks }

    /// Translates `bytes` (any split) into `out`.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        guard outcome == .streaming else { return outcome }
        var events = pending
        pending = []
        events.removeAll(keepingCapacity: true)
        var ended = false
        var failure: StreamDecodingError?
        do {
            ended = try decoder.decode(bytes) { events.append($0) }
            progressMarks = Self.progressMarks(of: &decoder)
        } catch {
            // The events before the bad one (in the same read) are the answer so far: shown and
            // counted, then the failure (review 52A #4: text received was never shown), with what
            // the decoder held (review 61 #1).
            failure = error
            decoder.flush { events.append($0) }
        }
        if !promptNoted {
            // Anthropic says the prompt's usage first (`message_start`), before any event.
            if let usage = decoder.promptUsage {
                writer.notePromptUsage(usage)
                promptUsage = usage
                promptNoted = true
            } else {
                promptNoted = !events.isEmpty
            }
        }
        for event in events where outcome == .streaming { translate(event, into: &out) }
        pending = events
        if let failure {
            fail(.upstreamProtocol("the upstream sent an invalid stream: \(failure.message)"), into: &out)
        } else if ended && outcome == .streaming {
            // The decoder's end says whether the answer was whole: an OpenAI-wire `[DONE]` with
            // no finish reason before it was cut (review 69 #1: `end_turn` / `completed` made up).
            if decoder.end() == .complete || finish != nil {
                complete(into: &out)
            } else {
                fail(.upstreamTruncated(), into: &out)
            }
        }
        return outcome
    }

    /// A whole (non-streamed) upstream answer, as the stream the client asked for.
    public mutating func relayWhole(_ events: [ModelEvent], into out: inout [UInt8]) {
        // Without usage, the estimate the record charges: by size, not a token per event (a
        // client that asked for usage was told 1 or 2 completion tokens for a whole answer).
        wholeOutputTokens = ModelEvent.estimatedOutputTokens(events)
        for event in events where outcome == .streaming { translate(event, into: &out) }
        if outcome == .streaming { complete(into: &out) }
    }

    /// The upstream body ended (`failure`: how it broke).
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        if let failure {
            // What the decoder held of the answer goes before the failure (review 61 #1). An
            // answer the decoder knows is whole (`answerIsWhole`: a stop reason, or a finish with
            // its usage after it) ends complete when the connection then breaks or goes silent,
            // as a clean close would (review 71C #7: the SDKs raised on a whole answer).
            var held: [ModelEvent] = []
            let whole = decoder.answerIsWhole
            if whole { try? decoder.finish { held.append($0) } } else { decoder.flush { held.append($0) } }
            for event in held where outcome == .streaming { translate(event, into: &out) }
            if whole { complete(into: &out) } else { fail(failure, into: &out) }
            return
        }
        // What only the body's end completes (Gemini's raw JSON error without its line end).
        var events = pending
        pending = []
        events.removeAll(keepingCapacity: true)
        var invalid: StreamDecodingError?
        do {
            try decoder.finish { events.append($0) }
        } catch {
            invalid = error
        }
        for event in events where outcome == .streaming { translate(event, into: &out) }
        pending = events
        guard outcome == .streaming else { return }
        if let invalid {
            fail(.upstreamProtocol("the upstream sent an invalid stream: \(invalid.message)"), into: &out)
        } else if decoder.end() == .complete || finish != nil {
            complete(into: &out)
        } else {
            fail(.upstreamTruncated(), into: &out)
        }
    }

    /// Ends the stream with `error`, in the client API's in-band form.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        // Nothing of an answer went out: no estimate (a key is not charged for an attempt no
        // upstream answered; review 59B #2), only what the upstream itself reported. Nothing
        // shown is nothing gone out, as the retry and the status decide (review 111 #2).
        let total = !answerShown && wholeOutputTokens == nil ? usage : totalUsage()
        writer.appendFailure(error, usage: total, estimated: usageEstimated, to: &out)
        outcome = .failed(error)
    }

    private mutating func translate(_ event: ModelEvent, into out: inout [UInt8]) {
        switch event {
        case .usage(let reported):
            let costed = reported.costed(at: price)
            usage = Usage.kept(usage, costed)  // per stream: the last report is the total, unless it shrinks
            writer.append(.usage(costed), to: &out)
        case .error(let error):
            fail(error, into: &out)
        case .finish(let reason):
            finish = reason
            writer.append(event, to: &out)
        case .stopDetail, .messageExtras:
            writer.append(event, to: &out)
        case .toolCall(let fragment):
            if let refusal = writer.refusal(ofToolCall: fragment) {
                fail(refusal, into: &out)
                return
            }
            forwardedEvents += 1
            forwardedOutputBytes += (fragment.name?.utf8.count ?? 0) + (fragment.arguments?.utf8.count ?? 0)
            show(event, into: &out)
        case .providerBlock(.stop):
            writer.append(event, to: &out)  // a block's end: no answer of its own
        case .text(let text), .reasoning(let text), .refusal(let text):
            forwardedEvents += 1
            forwardedOutputBytes += text.utf8.count
            show(event, into: &out)
        case .reasoningSignature, .redactedReasoning, .providerBlock:
            forwardedEvents += 1
            show(event, into: &out)
        }
    }

    /// Writes an answer event, noting whether the client's stream got bytes of it.
    private mutating func show(_ event: ModelEvent, into out: inout [UInt8]) {
        let before = out.count
        writer.append(event, to: &out)
        if out.count != before { answerShown = true }
    }

    private mutating func complete(into out: inout [UInt8]) {
        // A stream that ended having answered nothing, not even a finish (an OpenAI-compatible
        // server's lone `[DONE]`): the upstream's failure, retried or fallen back from, never an
        // empty success (review 59B #3).
        if forwardedEvents == 0 && finish == nil && wholeOutputTokens == nil {
            fail(.upstreamProtocol("the upstream's stream ended without answering"), into: &out)
            return
        }
        // A call cut off by the output limit ends unfinished, as the provider ended it: the
        // finish says so (`max_tokens`), and the SDKs parse a partial input. Every fragment sent
        // was already checked to be a JSON prefix.
        if finish != .length, let refusal = writer.refusalAtEnd() {
            fail(refusal, into: &out)
            return
        }
        let total = totalUsage()
        writer.appendEnd(usage: total, estimated: usageEstimated, to: &out)
        outcome = .done
    }

    /// The usage to report: the upstream's, else (when the prompt's size is known) an estimate:
    /// the prompt as the upstream counted it or by its size, and a token per forwarded event or
    /// per four bytes of output, whichever is more (a lower bound), flagged as an estimate.
    private mutating func totalUsage() -> Usage? {
        guard usage == nil else { return usage }
        guard let prompt = promptUsage ?? estimatedPromptTokens.map({ Usage(promptTokens: $0) }) else { return nil }
        let bySize = forwardedOutputBytes > 0 ? ModelEvent.tokens(outputBytes: forwardedOutputBytes) : 0
        let estimate = Usage.estimate(prompt: prompt, completionTokens: max(Int64(forwardedEvents), bySize, wholeOutputTokens ?? 0)).costed(at: price)
        estimatedUsage = estimate
        return estimate
    }
}
