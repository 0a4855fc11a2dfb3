import GatewayCore
import Providers

/// A proxied answer on its way to the client, whatever its API: upstream bytes in, the client's
/// stream out, and what the generation record needs. `ChatStreamRelay` (chat completions, passed
/// through or translated) and `TranslatingRelay` (any writer) are the two kinds.
public protocol ClientRelay {
    var outcome: SSERelay.Outcome { get }
    /// Events carrying the answer forwarded so far (none yet: the attempt may still be retried).
    var forwardedEvents: Int { get }
    /// Bytes of an answer event reached the client's stream: from here on the attempt is not
    /// retried, and a failure is told in the stream (before, with its status).
    var answerShown: Bool { get }
    var usage: Usage? { get }
    /// The upstream's own count of the prompt, said before its answer (Anthropic's
    /// `message_start`): what an estimate for a stream cut short starts from.
    var promptUsage: Usage? { get }
    var finishReason: String? { get }
    var usageEstimated: Bool { get }
    /// The estimate the client was given in the stream's usage, when it was one (costed as the
    /// client saw it); nil otherwise.
    var estimatedUsage: Usage? { get }
    /// The answer's id as the upstream named it (`UpstreamIdentifier`), when it was read.
    var upstreamID: String? { get }
    /// Events with data and comment lines read from the upstream so far: the idle timer's activity.
    var progressMarks: Int { get }
    /// What the client sees the moment its stream opens.
    mutating func start(into out: inout [UInt8])
    mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> SSERelay.Outcome
    /// A whole upstream answer (`body`, which says `events`), as the stream the client asked for.
    mutating func relayWhole(_ events: [ModelEvent], body: [UInt8], into out: inout [UInt8])
    /// After `relayWhole`: the output it relayed, in tokens at about four bytes each, when it
    /// measured more than the events say (every choice of an OpenAI-format body); nil otherwise.
    var wholeAnswerOutputTokens: Int64? { get }
    mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8])
    mutating func fail(_ error: APIError, into out: inout [UInt8])
}

extension ChatStreamRelay: ClientRelay {
    public mutating func start(into out: inout [UInt8]) {}
}

extension TranslatingRelay: ClientRelay {
    public mutating func relayWhole(_ events: [ModelEvent], body: [UInt8], into out: inout [UInt8]) {
        relayWhole(events, into: &out)
    }

    public var finishReason: String? { finish?.rawValue }
    public var wholeAnswerOutputTokens: Int64? { nil }
    public var upstreamID: String? { decoderUpstreamID }
}
