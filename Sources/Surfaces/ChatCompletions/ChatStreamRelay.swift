import GatewayCore
import Providers

/// A chat completions client's stream, from an upstream stream in any wire format, without
/// sockets. When the upstream speaks the client's format the bytes are relayed (`SSERelay`:
/// validated, re-framed, given the completion's `id` and `model`, never decoded); otherwise the
/// provider's decoder turns them into `ModelEvent`s and `ChatChunkWriter` writes the chunks.
/// Either way: every chunk carries one id and the model the client asked for, a stream cut short
/// ends in an error chunk, usage comes last when the client asked for it, then `[DONE]`.
public struct ChatStreamRelay {
    public typealias Outcome = SSERelay.Outcome

    private enum Engine {
        case passThrough(SSERelay)
        case translating(any ModelStreamDecoder, ChatChunkWriter)
        /// While the engine is taken out to be mutated: the enum must not keep a second
        /// reference to its buffers, or every mutation would copy them (per token).
        case taken
    }

    private var engine: Engine
    private let includeUsage: Bool
    private let usageFallback: SSERelay.UsageFallback?
    /// Translating: what the upstream reported, and how the relay stands.
    private var translatedUsage: Usage?
    private var translatedFinish: FinishReason?
    private var translatedEvents = 0
    private var translatedOutcome = Outcome.streaming

    /// Relays an upstream speaking OpenAI's chat format.
    public static func passThrough(id: String, model: String, created: Int? = nil, maxEventBytes: Int,
                                   usageFallback: SSERelay.UsageFallback?, redactor: Redactor = .none) -> ChatStreamRelay {
        ChatStreamRelay(engine: .passThrough(SSERelay(maxEventBytes: maxEventBytes, id: id, model: model, created: created,
                                                      usageFallback: usageFallback, redactor: redactor)),
                        includeUsage: usageFallback != nil, usageFallback: usageFallback)
    }

    /// Translates an upstream of another format (decoded by `decoder`) into chunks.
    public static func translating(_ decoder: any ModelStreamDecoder, id: String, model: String, created: Int,
                                   includeUsage: Bool, usageFallback: SSERelay.UsageFallback? = nil) -> ChatStreamRelay {
        ChatStreamRelay(engine: .translating(decoder, ChatChunkWriter(id: id, model: model, created: created)),
                        includeUsage: includeUsage, usageFallback: usageFallback)
    }

    private init(engine: Engine, includeUsage: Bool, usageFallback: SSERelay.UsageFallback?) {
        self.engine = engine
        self.includeUsage = includeUsage
        self.usageFallback = usageFallback
    }

    public var outcome: Outcome {
        if case .passThrough(let relay) = engine { return relay.outcome }
        return translatedOutcome
    }

    /// Chunks carrying the answer (or a part of it) forwarded so far.
    public var forwardedEvents: Int {
        if case .passThrough(let relay) = engine { return relay.forwardedEvents }
        return translatedEvents
    }

    public var usage: Usage? {
        if case .passThrough(let relay) = engine { return Usage(openAI: relay.usage) }
        return translatedUsage
    }

    public var finishReason: String? {
        if case .passThrough(let relay) = engine { return relay.finishReason }
        return translatedFinish?.rawValue
    }

    /// The client's usage chunk was the gateway's estimate.
    public var usageEstimated: Bool {
        if case .passThrough(let relay) = engine { return relay.usageEstimated }
        return false
    }

    /// Relays `bytes` (any split) into `out`.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            let outcome = relay.relay(bytes, into: &out)
            engine = .passThrough(relay)
            return outcome
        case .translating(var decoder, var writer):
            guard translatedOutcome == .streaming else { return translatedOutcome }
            engine = .taken
            var events: [ModelEvent] = []
            let ended: Bool
            do {
                ended = try decoder.decode(bytes) { events.append($0) }
            } catch {
                engine = .translating(decoder, writer)
                fail(.upstreamProtocol("the upstream sent an invalid stream: \(error.message)"), into: &out)
                return translatedOutcome
            }
            for event in events where translatedOutcome == .streaming { translate(event, writer: &writer, into: &out) }
            engine = .translating(decoder, writer)
            if ended && translatedOutcome == .streaming { finishTranslated(into: &out) }
            return translatedOutcome
        case .taken:
            return outcome
        }
    }

    /// A whole (non-streamed) upstream answer, as the stream the client asked for.
    public mutating func relayWhole(_ events: [ModelEvent], into out: inout [UInt8]) {
        guard case .translating(let decoder, var writer) = engine else { return }
        for event in events where translatedOutcome == .streaming { translate(event, writer: &writer, into: &out) }
        engine = .translating(decoder, writer)
        if translatedOutcome == .streaming { finishTranslated(into: &out) }
    }

    /// The upstream body ended (`failure`: how it broke).
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            relay.upstreamDidEnd(failure: failure, into: &out)
            engine = .passThrough(relay)
        case .taken:
            break
        case .translating(let decoder, _):
            guard translatedOutcome == .streaming else { return }
            if let failure {
                fail(failure, into: &out)
            } else if decoder.end() == .complete || translatedFinish != nil {
                finishTranslated(into: &out)
            } else {
                fail(.upstreamTruncated(), into: &out)
            }
        }
    }

    /// Ends the stream with `error` (an error chunk with this completion's id and model) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            relay.fail(error, into: &out)
            engine = .passThrough(relay)
        case .taken:
            break
        case .translating(_, let writer):
            guard translatedOutcome == .streaming else { return }
            writer.appendError(error, to: &out)
            out.append(contentsOf: SSEEncoder.done)
            translatedOutcome = .failed(error)
        }
    }

    private mutating func translate(_ event: ModelEvent, writer: inout ChatChunkWriter, into out: inout [UInt8]) {
        switch event {
        case .usage(let usage):
            translatedUsage = usage  // per stream: the last report is the total
        case .error(let error):
            writer.appendError(error, to: &out)
            out.append(contentsOf: SSEEncoder.done)
            translatedOutcome = .failed(error)
        case .finish(let reason):
            translatedFinish = reason
            writer.append(event, to: &out)
        case .text, .reasoning, .toolCall:
            translatedEvents += 1
            writer.append(event, to: &out)
        }
    }

    private mutating func finishTranslated(into out: inout [UInt8]) {
        guard case .translating(_, let writer) = engine else { return }
        if includeUsage {
            if let usage = translatedUsage {
                writer.appendUsage(usage.json, to: &out)
            } else if let fallback = usageFallback {
                let estimate = Usage(promptTokens: fallback.promptTokens, completionTokens: Int64(translatedEvents),
                                     totalTokens: fallback.promptTokens + Int64(translatedEvents))
                guard case .object(var json) = estimate.json else { return }
                json["estimated"] = .bool(true)
                writer.appendUsage(.object(json), to: &out)
            }
        }
        out.append(contentsOf: SSEEncoder.done)
        translatedOutcome = .done
    }
}
