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
        case translating(TranslatingRelay<ChatStreamTranslation>)
        /// While the engine is taken out to be mutated: the enum must not keep a second
        /// reference to its buffers, or every mutation would copy them (per token).
        case taken
    }

    private var engine: Engine

    /// Relays an upstream speaking OpenAI's chat format.
    public static func passThrough(id: String, model: String, created: Int? = nil, maxEventBytes: Int,
                                   usageFallback: SSERelay.UsageFallback?, redactor: Redactor = .none) -> ChatStreamRelay {
        ChatStreamRelay(engine: .passThrough(SSERelay(maxEventBytes: maxEventBytes, id: id, model: model, created: created,
                                                      usageFallback: usageFallback, redactor: redactor)))
    }

    /// Translates an upstream of another format (decoded by `decoder`) into chunks.
    public static func translating(_ decoder: any ModelStreamDecoder, id: String, model: String, created: Int,
                                   includeUsage: Bool, usageFallback: SSERelay.UsageFallback? = nil) -> ChatStreamRelay {
        let writer = ChatStreamTranslation(chunks: ChatChunkWriter(id: id, model: model, created: created), includeUsage: includeUsage)
        return ChatStreamRelay(engine: .translating(TranslatingRelay(decoder: decoder, writer: writer,
                                                                     estimatedPromptTokens: usageFallback?.promptTokens)))
    }

    private init(engine: Engine) {
        self.engine = engine
    }

    public var outcome: Outcome {
        switch engine {
        case .passThrough(let relay): relay.outcome
        case .translating(let relay): relay.outcome
        case .taken: .streaming
        }
    }

    /// Chunks carrying the answer (or a part of it) forwarded so far.
    public var forwardedEvents: Int {
        switch engine {
        case .passThrough(let relay): relay.forwardedEvents
        case .translating(let relay): relay.forwardedEvents
        case .taken: 0
        }
    }

    public var usage: Usage? {
        switch engine {
        case .passThrough(let relay): Usage(openAI: relay.usage)
        case .translating(let relay): relay.usage
        case .taken: nil
        }
    }

    public var finishReason: String? {
        switch engine {
        case .passThrough(let relay): relay.finishReason
        case .translating(let relay): relay.finish?.rawValue
        case .taken: nil
        }
    }

    /// The client's usage chunk was the gateway's estimate.
    public var usageEstimated: Bool {
        switch engine {
        case .passThrough(let relay): relay.usageEstimated
        case .translating(let relay): relay.usageEstimated
        case .taken: false
        }
    }

    /// Relays `bytes` (any split) into `out`.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            let outcome = relay.relay(bytes, into: &out)
            engine = .passThrough(relay)
            return outcome
        case .translating(var relay):
            engine = .taken
            let outcome = relay.relay(bytes, into: &out)
            engine = .translating(relay)
            return outcome
        case .taken:
            return .streaming
        }
    }

    /// A whole (non-streamed) upstream answer, as the stream the client asked for.
    public mutating func relayWhole(_ events: [ModelEvent], into out: inout [UInt8]) {
        guard case .translating(var relay) = engine else { return }
        engine = .taken
        relay.relayWhole(events, into: &out)
        engine = .translating(relay)
    }

    /// The upstream body ended (`failure`: how it broke).
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            relay.upstreamDidEnd(failure: failure, into: &out)
            engine = .passThrough(relay)
        case .translating(var relay):
            engine = .taken
            relay.upstreamDidEnd(failure: failure, into: &out)
            engine = .translating(relay)
        case .taken:
            break
        }
    }

    /// Ends the stream with `error` (an error chunk with this completion's id and model) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        switch engine {
        case .passThrough(var relay):
            engine = .taken
            relay.fail(error, into: &out)
            engine = .passThrough(relay)
        case .translating(var relay):
            engine = .taken
            relay.fail(error, into: &out)
            engine = .translating(relay)
        case .taken:
            break
        }
    }
}

/// Chat completions as a `NeutralStreamWriter`: chunks, the usage chunk when the client asked
/// for usage (`"estimated": true` when it is the gateway's estimate), `[DONE]`; an error chunk
/// and `[DONE]` on failure.
public struct ChatStreamTranslation: NeutralStreamWriter {
    public var chunks: ChatChunkWriter
    public let includeUsage: Bool

    public init(chunks: ChatChunkWriter, includeUsage: Bool) {
        self.chunks = chunks
        self.includeUsage = includeUsage
    }

    public mutating func appendStart(to out: inout [UInt8]) {}

    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        chunks.append(event, to: &out)
    }

    public mutating func appendEnd(usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        if includeUsage, let usage, case .object(var json) = usage.json {
            if estimated { json["estimated"] = .bool(true) }
            chunks.appendUsage(.object(json), to: &out)
        }
        out.append(contentsOf: SSEEncoder.done)
    }

    public mutating func appendFailure(_ error: APIError, to out: inout [UInt8]) {
        chunks.appendError(error, to: &out)
        out.append(contentsOf: SSEEncoder.done)
    }
}
