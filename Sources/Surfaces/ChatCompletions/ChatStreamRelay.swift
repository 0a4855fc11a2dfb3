import Fusion
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

    /// The engine lives in a box: the proxy reads this relay's counters and calls it per event,
    /// and a struct of buffers read or passed from a class's property is copied (every buffer
    /// retained and released) each time; a box is one reference. Value semantics are kept by
    /// copying the box before a mutation when it is shared (never, on the proxy's path).
    private final class Box<Relay> {
        var relay: Relay
        init(_ relay: Relay) { self.relay = relay }
    }

    private enum Engine {
        case passThrough(Box<SSERelay>)
        case translating(Box<TranslatingRelay<ChatStreamTranslation>>)
        /// While the box is taken out to be mutated: the enum must not hold a second reference,
        /// or the box would never be known unique.
        case taken
    }

    private var engine: Engine

    /// Relays an upstream speaking OpenAI's chat format.
    /// `includeUsage`: the client asked for usage (it is accounted either way).
    public static func passThrough(id: String, model: String, created: Int? = nil, maxEventBytes: Int, includeUsage: Bool = true,
                                   usageFallback: SSERelay.UsageFallback?, redactor: Redactor = .none, choices: Int = 1) -> ChatStreamRelay {
        ChatStreamRelay(engine: .passThrough(Box(SSERelay(maxEventBytes: maxEventBytes, id: id, model: model, created: created,
                                                          includeUsage: includeUsage, usageFallback: usageFallback, redactor: redactor,
                                                          choices: choices))))
    }

    /// Translates an upstream of another format (decoded by `decoder`) into chunks.
    public static func translating(_ decoder: any ModelStreamDecoder, id: String, model: String, created: Int,
                                   includeUsage: Bool, usageFallback: SSERelay.UsageFallback? = nil, price: ModelPrice? = nil) -> ChatStreamRelay {
        let writer = ChatStreamTranslation(chunks: ChatChunkWriter(id: id, model: model, created: created), includeUsage: includeUsage)
        return ChatStreamRelay(engine: .translating(Box(TranslatingRelay(decoder: decoder, writer: writer,
                                                                         estimatedPromptTokens: usageFallback?.promptTokens, price: price))))
    }

    private init(engine: Engine) {
        self.engine = engine
    }

    public var outcome: Outcome {
        switch engine {
        case .passThrough(let box): box.relay.outcome
        case .translating(let box): box.relay.outcome
        case .taken: .streaming
        }
    }

    /// Bytes of an answer event reached the client (`ClientRelay.answerShown`): a chunk passed
    /// through is shown as it came.
    public var answerShown: Bool {
        switch engine {
        case .passThrough(let box): box.relay.forwardedEvents > 0
        case .translating(let box): box.relay.answerShown
        case .taken: false
        }
    }

    /// Chunks carrying the answer (or a part of it) forwarded so far.
    public var forwardedEvents: Int {
        switch engine {
        case .passThrough(let box): box.relay.forwardedEvents
        case .translating(let box): box.relay.forwardedEvents
        case .taken: 0
        }
    }

    /// Events with data and comment lines read from the upstream (`SSEDecoder.progressMarks`).
    public var progressMarks: Int {
        switch engine {
        case .passThrough(let box): box.relay.progressMarks
        case .translating(let box): box.relay.progressMarks
        case .taken: 0
        }
    }

    public var usage: Usage? {
        switch engine {
        case .passThrough(let box): Usage(openAI: box.relay.usage)
        case .translating(let box): box.relay.usage
        case .taken: nil
        }
    }

    /// The upstream's own count of the prompt, said first (Anthropic's `message_start`): a chat
    /// client's stream cut short is charged it, not the prompt by its size (review 22 F1).
    public var promptUsage: Usage? {
        switch engine {
        case .translating(let box): box.relay.promptUsage
        case .passThrough, .taken: nil
        }
    }

    public var wholeAnswerOutputTokens: Int64? {
        switch engine {
        case .passThrough(let box): box.relay.wholeAnswerOutputTokens
        case .translating, .taken: nil
        }
    }

    public var upstreamID: String? {
        switch engine {
        case .passThrough(let box): box.relay.upstreamID
        case .translating(let box): box.relay.decoderUpstreamID
        case .taken: nil
        }
    }

    public var finishReason: String? {
        switch engine {
        case .passThrough(let box): box.relay.finishReason
        case .translating(let box): box.relay.finish?.rawValue
        case .taken: nil
        }
    }

    /// The client's usage chunk was the gateway's estimate.
    public var estimatedUsage: Usage? {
        switch engine {
        case .passThrough, .taken: nil  // its estimate is `usage` (the usage chunk it wrote)
        case .translating(let box): box.relay.estimatedUsage
        }
    }

    public var usageEstimated: Bool {
        switch engine {
        case .passThrough(let box): box.relay.usageEstimated
        case .translating(let box): box.relay.usageEstimated
        case .taken: false
        }
    }

    /// Runs `passThrough` or `translating` on the engine, in place (its box copied first if
    /// another copy of this relay shares it).
    private mutating func update<Result>(passThrough: (inout SSERelay) -> Result,
                                         translating: (inout TranslatingRelay<ChatStreamTranslation>) -> Result) -> Result {
        switch engine {
        case .passThrough(var box):
            engine = .taken
            defer { engine = .passThrough(box) }
            if !isKnownUniquelyReferenced(&box) { box = Box(box.relay) }
            return passThrough(&box.relay)
        case .translating(var box):
            engine = .taken
            defer { engine = .translating(box) }
            if !isKnownUniquelyReferenced(&box) { box = Box(box.relay) }
            return translating(&box.relay)
        case .taken:
            preconditionFailure("ChatStreamRelay used while it is being mutated")
        }
    }

    /// Relays `bytes` (any split) into `out`.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        update(passThrough: { $0.relay(bytes, into: &out) }, translating: { $0.relay(bytes, into: &out) })
    }

    /// A whole (non-streamed) upstream answer, as the stream the client asked for: an
    /// OpenAI-format `body` as the stream its server would have sent (`ChatCompletionBody.asStream`),
    /// relayed; another format's `events`, translated.
    public mutating func relayWhole(_ events: [ModelEvent], body: [UInt8], into out: inout [UInt8]) {
        update(passThrough: { relay in
            guard let (stream, outputBytes) = ChatCompletionBody.asStream(body, choices: relay.choicesAsked) else {
                relay.fail(.upstreamProtocol("the upstream's response is not a chat completion"), into: &out)
                return
            }
            // The answer's output at about four bytes a token, as `ModelEvent.estimatedOutputTokens`,
            // and never below what choice 0's events say.
            let estimate = max(outputBytes > 0 ? ModelEvent.tokens(outputBytes: outputBytes) : 0, ModelEvent.estimatedOutputTokens(events) ?? 0)
            relay.relayWhole(stream, estimatedOutputTokens: estimate > 0 ? estimate : nil, into: &out)
        }, translating: { $0.relayWhole(events, into: &out) })
    }

    /// The upstream body ended (`failure`: how it broke).
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        update(passThrough: { $0.upstreamDidEnd(failure: failure, into: &out) },
               translating: { $0.upstreamDidEnd(failure: failure, into: &out) })
    }

    /// Ends the stream with `error` (an error chunk with this completion's id and model) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        update(passThrough: { $0.fail(error, into: &out) }, translating: { $0.fail(error, into: &out) })
    }
}

/// Chat completions as a `NeutralStreamWriter`: chunks, the usage chunk when the client asked
/// for usage (`"estimated": true` when it is the gateway's estimate), `[DONE]`; an error chunk
/// and `[DONE]` on failure.
public struct ChatStreamTranslation: NeutralStreamWriter {
    public var chunks: ChatChunkWriter
    public let includeUsage: Bool
    /// Signed reasoning, sent as `reasoning_details` once each block ends (`ReasoningDetail`).
    private var reasoning = ReasoningBlockBuilder()
    private var reasoningDetails = 0
    /// The upstream's finish, written at the end, as Messages' `message_delta` and Responses'
    /// `response.completed` are: a finish the upstream sent and then failed before any answer
    /// (`message_delta`, then an error) has shown the client nothing, so a retry or a fallback
    /// still answers in one stream (review 102 #2: the failed model's `finish_reason: "stop"`
    /// went out, then the fallback's whole answer and its own finish).
    private var finish: FinishReason?

    public init(chunks: ChatChunkWriter, includeUsage: Bool) {
        self.chunks = chunks
        self.includeUsage = includeUsage
    }

    public mutating func appendStart(to out: inout [UInt8]) {}

    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        if case .finish(let reason) = event {
            finish = reason
            return
        }
        chunks.append(event, to: &out)
        switch event {
        case .reasoning, .reasoningSignature, .redactedReasoning:
            guard let block = reasoning.add(event) else { return }
            chunks.appendReasoningDetails([ReasoningDetail.json(block, index: reasoningDetails)], to: &out)
            reasoningDetails += 1
        default:
            break
        }
    }

    public mutating func appendEnd(usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        if let finish { chunks.append(.finish(finish), to: &out) }
        appendUsage(usage, estimated: estimated, to: &out)
        out.append(contentsOf: SSEEncoder.done)
    }

    /// The usage so far before the error chunk the client's SDK raises on (when it asked for usage).
    public mutating func appendFailure(_ error: APIError, usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        appendUsage(usage, estimated: estimated, to: &out)
        chunks.appendError(error, to: &out)
        out.append(contentsOf: SSEEncoder.done)
    }

    private func appendUsage(_ usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        guard includeUsage, let usage, case .object(var json) = usage.json else { return }
        if estimated { json["estimated"] = .bool(true) }
        chunks.appendUsage(.object(json), to: &out)
    }
}
