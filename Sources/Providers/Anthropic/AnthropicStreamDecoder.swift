import GatewayCore

/// Anthropic's Messages stream (`event: <name>` + `data: {"type": <name>, …}` events) as events.
///
/// - `text_delta` → `.text`, `thinking_delta` → `.reasoning`, `signature_delta` →
///   `.reasoningSignature`, a `redacted_thinking` block → `.redactedReasoning`; a `citations_delta`
///   → `.providerBlock(.delta)` (of the open text block).
/// - Blocks of other types (server tools' `server_tool_use`, `web_search_tool_result`, … and
///   types yet to come) → `.providerBlock`: their start, deltas and stop, as they came.
/// - A `tool_use` block's start → a `.toolCall` fragment with its id (one of its own when an
///   earlier block had it: `UniqueToolCallIDs`) and name and no arguments
///   (the block's `input: {}` is a placeholder, not a fragment); each non-empty
///   `input_json_delta` → a fragment of arguments. The fragment index counts tool calls (0, 1, …),
///   not content blocks, as OpenAI clients expect. Its `content_block_stop` → `.providerBlock(.stop)`
///   (the open block's end), so a Messages client's block stops when Anthropic's did (review 55A
///   #3: it was held to the message's end, and the next call's input with it). Server tools'
///   blocks are not the client's to run: they are provider blocks, never tool calls.
/// - Blocks of other kinds while a tool call's block is open (Anthropic never does this; a proxy
///   translating another API's stream may): their events are held until the last open call's
///   block stops, then passed on in order. Messages and Responses clients see one block at a
///   time, and a call's block closed for a text block could not take its later input (review 57
///   #7, 58 #2: the stream ended in "went back to tool call 0"). At most `maxHeldBytes` and
///   `maxHeldEvents` are held: beyond, what was held goes on and the rest passes as it comes (as
///   before the hold: fine for chat clients; a Messages or Responses client's call then ends at
///   the text, its later input refused), never a response's worth in memory (review 60 #1). What
///   is held also goes on before a stop reason, an error or the body's end, never lost (#2).
/// - `message_delta`'s `stop_reason` → `.finish` (once; at `message_stop` if none was named),
///   after a `.stopDetail` when the finish loses what it said (`pause_turn`, `stop_sequence`);
///   usage once, at `message_stop`, from
///   the cumulative counts (`AnthropicResponse.UsageCounts`), so it is never counted twice.
/// - `message_stop` is the end marker; an `error` event → `.error` and ends the stream; `ping`
///   and unknown event types (the API may add some) are skipped. A body that ends after
///   `message_delta` named the stop reason, without `message_stop`, is complete: the answer and
///   its counts had arrived (review 55A #4: its usage was dropped for an estimate, and Fusion
///   failed the call as cut short).
///
/// Per event, on the per-token path: one `JSONValue` is built from the data in the decoder's
/// buffer (no copy, no Foundation coder): for a text delta two dictionaries and their strings,
/// the allocation hot spot. A scanner fast path for `text_delta` (locate the text, decode only
/// it) is the next step if profiles show it.
struct AnthropicStreamDecoder: ModelStreamDecoder {
    private var sse: SSEDecoder
    var progressMarks: Int { sse.progressMarks }
    private var reader: AnthropicEventReader

    init(maxEventBytes: Int, redactor: Redactor) {
        sse = SSEDecoder(maxEventBytes: maxEventBytes)
        reader = AnthropicEventReader(redactor: redactor)
    }

    mutating func decode(_ bytes: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) -> Bool {
        guard !reader.ended else { return true }
        // The callback may not touch `self` while `sse` is mutated: the reader is moved out for the
        // call (not copied: `self.reader` gives up its storage).
        var reader = self.reader
        self.reader = AnthropicEventReader(redactor: reader.redactor)
        defer { self.reader = reader }
        var failure: StreamDecodingError?
        do {
            try sse.feed(bytes) { event in
                guard failure == nil, !reader.ended, !event.data.isEmpty, !event.name.elementsEqual("ping".utf8) else { return }
                do throws(StreamDecodingError) {
                    try reader.read(event.data, name: event.name, emit: emit)
                } catch {
                    failure = error
                }
            }
        } catch {
            throw StreamDecodingError("the upstream sent an event larger than \(sse.maxEventBytes) bytes")
        }
        if let failure { throw failure }
        return reader.ended
    }

    mutating func finish(emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        reader.bodyEnded(emit: emit)
    }

    mutating func flush(emit: (ModelEvent) -> Void) {
        reader.releaseHeld(emit: emit)
    }

    func end() -> StreamEnd { reader.ended ? .complete : .truncated }

    /// The stop reason came: `message_stop` is all that was left.
    var answerIsWhole: Bool { reader.ended || reader.finished }

    var promptUsage: Usage? { reader.promptUsage }
    var upstreamID: String? { reader.upstreamID }
}

/// The state of one Anthropic stream between events.
struct AnthropicEventReader {
    static let maxToolCalls = 1024
    let redactor: Redactor
    /// `message_stop` or an `error` arrived.
    private(set) var ended = false
    private(set) var finished = false
    private var usage = AnthropicResponse.UsageCounts()
    /// A `message_delta` gave the answer's counts: before it, `message_start`'s output count is
    /// a placeholder (1), never reported as measured (review 71C #4: a 20 KB answer recorded as
    /// one token; without it the usage is estimated from `promptUsage`).
    private var answerCounted = false
    /// The usage is a measurement: the prompt counted and the answer counted after it (else the
    /// gateway estimates the call).
    private var measured: Bool { usage.promptSeen && answerCounted }
    /// The counts `message_start` gave (the prompt's, before the answer).
    private(set) var promptUsage: Usage?
    /// `message_start`'s message id (`msg_…`), for the record.
    private(set) var upstreamID: String?
    /// Content block index (the upstream's number, never converted) → tool call ordinal.
    private var toolCalls: [Int64: Int] = [:]
    /// Indexes of open blocks passed on as provider blocks.
    private var providerBlocks: Set<Int64> = []
    /// Text blocks open: each one's stop is passed on (`.providerBlock(.stop)`), so blocks with
    /// their own citations stay apart (review 45 Anthropic #2).
    private var textBlocks: Set<Int64> = []
    /// Tool calls' blocks open: each one's stop is passed on too.
    private var toolBlocks: Set<Int64> = []
    /// Tool calls no argument text has come for yet → the input their start gave (`{}` from
    /// Anthropic, whose deltas then carry it; an empty one for a tool without parameters): sent
    /// as the arguments when the block stops with no delta, so no client gets `""`, which
    /// `JSON.parse` and `json.loads` refuse (review 43 #2).
    private var unsentInputs: [Int64: String] = [:]
    /// Tool calls whose start carried a whole input (not Anthropic's `{}`): deltas after it would
    /// make the arguments ambiguous, and are refused (review 98 #5).
    private var wholeInputs: Set<Int64> = []
    /// Tool calls whose streamed input was seen to start as an object.
    private var objectInputs: Set<Int64> = []
    private var messageStarted = false
    /// The open thinking block, and whether another block's event came since it started: its
    /// thinking or signature after that would land in a block of the client's that is no longer
    /// it (a signature detached from its thinking, which Anthropic refuses sent back), so such
    /// interleaving is refused (review 98 #3). An unstopped block followed by others is not.
    private var thinkingBlock: (index: Int64, interrupted: Bool)?
    /// Kimi's endpoint gives parallel `tool_use` blocks one id (review 52A #2).
    private var ids = UniqueToolCallIDs()
    /// Events of other blocks that came while a tool call's block was open, in order (`pass`).
    private var held: [ModelEvent] = []
    private var heldBytes = 0
    /// Past a bound the hold is given up for the rest of the message.
    private var holding = true
    static let maxHeldBytes = 1 << 20
    static let maxHeldEvents = 4_096

    init(redactor: Redactor) { self.redactor = redactor }

    mutating func read(_ data: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        guard let json = try? JSONValue.parse(data), case .object = json else {
            throw StreamDecodingError("the upstream sent an event that is not a JSON object")
        }
        // Every event's data names its type; the event name is the fallback.
        switch json["type"]?.stringValue ?? String(decoding: name, as: UTF8.self) {
        case "message_start":
            // One message a stream: a second start would replace the first's prompt count
            // (review 98 #6).
            guard !messageStarted else { throw StreamDecodingError("the upstream started a second message") }
            messageStarted = true
            usage.update(json["message"]?["usage"])
            if usage.promptSeen { promptUsage = usage.promptUsage }
            if upstreamID == nil, let id = json["message"]?["id"]?.stringValue {
                upstreamID = UpstreamIdentifier.sanitized(id, redactor: redactor)
            }
            if let extras = AnthropicMessageExtras.from(json["message"], usage: json["message"]?["usage"]) { emit(.messageExtras(extras)) }
        case "content_block_start" where finished, "content_block_delta" where finished:
            // The stop reason said the answer was whole: more of it is a broken stream, not text
            // to show after the client's finish (review 64D #2). Its usage is the answer's whole
            // count, kept as an error event's is (review 65 #2).
            ended = true
            if measured { emit(.usage(usage.usage)) }
            throw StreamDecodingError("the upstream sent content after its stop reason")
        case "content_block_start":
            if thinkingBlock != nil { thinkingBlock?.interrupted = true }
            try start(json["content_block"], index: json["index"]?.intValue, emit: emit)
        case "content_block_delta":
            let index = json["index"]?.intValue
            if let thinking = thinkingBlock, index != thinking.index {
                thinkingBlock?.interrupted = true
            } else if thinkingBlock?.interrupted == true {
                throw StreamDecodingError("the upstream interleaved a thinking block with another block")
            }
            try delta(json["delta"], index: index, emit: emit)
        case "content_block_stop":
            guard let index = json["index"]?.intValue else { break }
            if thinkingBlock?.index == index { thinkingBlock = nil }
            sendUnsentInput(index, emit: emit)
            // A tool call's stop only when no other call's block is open: an upstream interleaving
            // them (a proxy translating parallel calls) stops one while another is a client's
            // open block, and the stop names no call (review 56 #6); the last one's stop ends it,
            // and what other blocks sent meanwhile follows.
            if toolBlocks.remove(index) != nil {
                guard toolBlocks.isEmpty else { break }
                emit(.providerBlock(.stop))
                releaseHeld(emit: emit)
            } else if providerBlocks.remove(index) != nil || textBlocks.remove(index) != nil {
                pass(.providerBlock(.stop), emit: emit)
            }
        case "message_delta":
            usage.update(json["usage"])
            if (json["usage"]?["output_tokens"]?.doubleValue ?? -1) >= 0 { answerCounted = true }  // a count, as `UsageCounts` reads one
            if let extras = AnthropicMessageExtras.from(json["delta"], usage: json["usage"]) { emit(.messageExtras(extras)) }
            if !finished, let reason = json["delta"]?["stop_reason"]?.stringValue {
                finished = true
                releaseHeld(emit: emit)  // the answer is whole: its text before its finish
                if let detail = AnthropicResponse.stopDetail(reason, sequence: json["delta"]?["stop_sequence"]) { emit(detail) }
                emit(.finish(AnthropicResponse.finishReason(reason, sawToolCalls: !toolCalls.isEmpty)))
            }
        case "message_stop":
            end(emit: emit)
        case "error":
            ended = true
            releaseHeld(emit: emit)  // what came before the failure is the answer so far
            // After the stop reason the usage is the answer's whole count (`message_delta`'s are
            // cumulative): kept, not replaced by an estimate (review 64D #3). Before it,
            // `message_start`'s output count is a placeholder.
            if finished && measured { emit(.usage(usage.usage)) }
            emit(.error(AnthropicErrors.streamError(json, redactor: redactor)))
        default:
            break  // ping, and event types yet to come
        }
    }

    /// The message's end: inputs not sent yet, a finish if none was named, the usage.
    private mutating func end(emit: (ModelEvent) -> Void) {
        ended = true
        for index in unsentInputs.keys.sorted() { sendUnsentInput(index, emit: emit) }
        releaseHeld(emit: emit)
        // A stream that never named its stop reason (`"stop_reason": null`) still ended
        // normally: every client surface needs a finish (chat's `finish_reason`).
        if !finished {
            finished = true
            emit(.finish(toolCalls.isEmpty ? .stop : .toolCalls))
        }
        if measured { emit(.usage(usage.usage)) }
    }

    /// The body ended without `message_stop`: the message's end if its stop reason came; else
    /// what was held goes on before the stream is judged cut short.
    mutating func bodyEnded(emit: (ModelEvent) -> Void) {
        guard !ended else { return }
        if finished { end(emit: emit) } else { releaseHeld(emit: emit) }
    }

    private mutating func start(_ block: JSONValue?, index: Int64?, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        switch block?["type"]?.stringValue {
        case "tool_use"?:
            guard let index, toolCalls[index] == nil else {
                throw StreamDecodingError("the upstream started a tool_use block without a new index")
            }
            guard toolCalls.count < Self.maxToolCalls else {
                throw StreamDecodingError("the upstream sent more than \(Self.maxToolCalls) tool calls")
            }
            // No client can run or answer a call without a name (review 71C #9).
            guard block?["name"]?.stringValue?.isEmpty == false else {
                throw StreamDecodingError("the upstream started a tool_use block without a name")
            }
            let ordinal = toolCalls.count
            toolCalls[index] = ordinal
            toolBlocks.insert(index)
            // Anthropic's input is an object; anything else would be lost (review 99 #6).
            if let input = block?["input"], input != .null, input.objectValue == nil {
                throw StreamDecodingError("the upstream started a tool_use block whose input is not a JSON object")
            }
            if case .object(let input)? = block?["input"], !input.isEmpty, let whole = block?["input"] {
                unsentInputs[index] = JSONWriting.compact(whole)
                wholeInputs.insert(index)
            } else {
                unsentInputs[index] = "{}"
            }
            emit(.toolCall(ToolCallFragment(index: ordinal, id: ids.claim(block?["id"]?.stringValue ?? ""), name: block?["name"]?.stringValue ?? "",
                                            arguments: "")))
        case "text"?:
            if let index {
                guard textBlocks.count < Self.maxToolCalls else {
                    throw StreamDecodingError("the upstream left more than \(Self.maxToolCalls) blocks open")
                }
                textBlocks.insert(index)
            }
            if let text = block?["text"]?.stringValue, !text.isEmpty { pass(.text(text), emit: emit) }
            for citation in (block?["citations"]?.arrayValue ?? []).prefix(Self.maxToolCalls) {
                pass(.providerBlock(.delta(.object(["type": .string("citations_delta"), "citation": citation]))), emit: emit)
            }
        case "thinking"? where index == nil, "redacted_thinking"? where index == nil:
            throw StreamDecodingError("the upstream started a thinking block without an index")
        case "thinking"?:
            thinkingBlock = index.map { ($0, false) }
            if let text = block?["thinking"]?.stringValue, !text.isEmpty { pass(.reasoning(text), emit: emit) }
            if let signature = block?["signature"]?.stringValue, !signature.isEmpty { pass(.reasoningSignature(signature), emit: emit) }
        case "redacted_thinking"?:
            if let data = block?["data"]?.stringValue, !data.isEmpty { pass(.redactedReasoning(data), emit: emit) }
        default:
            guard let block, case .object = block, let index, AnthropicResponse.isPassableType(block["type"]) else { return }
            guard providerBlocks.count < Self.maxToolCalls else {
                throw StreamDecodingError("the upstream left more than \(Self.maxToolCalls) blocks open")
            }
            providerBlocks.insert(index)
            pass(.providerBlock(.start(block)), emit: emit)
        }
    }

    /// A tool call's block stopped (or the message did) before any argument text came.
    private mutating func sendUnsentInput(_ index: Int64, emit: (ModelEvent) -> Void) {
        guard let input = unsentInputs.removeValue(forKey: index), let ordinal = toolCalls[index] else { return }
        emit(.toolCall(ToolCallFragment(index: ordinal, arguments: input)))
    }

    private mutating func delta(_ delta: JSONValue?, index: Int64?, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        switch delta?["type"]?.stringValue {
        case "text_delta"?:
            if let text = delta?["text"]?.stringValue, !text.isEmpty { pass(.text(text), emit: emit) }
        case "thinking_delta"? where thinkingBlock?.index != index, "signature_delta"? where thinkingBlock?.index != index:
            // Thinking of no open thinking block (never started, or stopped): it would make a
            // block of its own, a signature detached from its thinking (review 99 #3).
            throw StreamDecodingError("the upstream sent thinking for a block that is not an open thinking block")
        case "thinking_delta"?:
            if let text = delta?["thinking"]?.stringValue, !text.isEmpty { pass(.reasoning(text), emit: emit) }
        case "signature_delta"?:
            if let signature = delta?["signature"]?.stringValue, !signature.isEmpty { pass(.reasoningSignature(signature), emit: emit) }
        case "input_json_delta"?:
            // A server tool's block streams its input too: a provider block's delta.
            if let index, let ordinal = toolCalls[index] {
                guard let json = delta?["partial_json"]?.stringValue, !json.isEmpty else { break }
                guard !wholeInputs.contains(index) else {
                    throw StreamDecodingError("the upstream sent a tool call's input whole in its start and in pieces after it")
                }
                unsentInputs[index] = nil
                // Anthropic's input is an object: one that starts otherwise (`[1,2]`, `"x"`) is
                // refused here as the whole answer's and Gemini's are (review 119 #2: a chat or
                // Responses stream completed a call whose arguments were an array).
                if !objectInputs.contains(index), let first = json.utf8.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
                    guard first == UInt8(ascii: "{") else {
                        throw StreamDecodingError("the upstream sent a tool call's input that is not a JSON object")
                    }
                    objectInputs.insert(index)
                }
                emit(.toolCall(ToolCallFragment(index: ordinal, arguments: json)))
            } else if let index, providerBlocks.contains(index), let delta {
                pass(.providerBlock(.delta(delta)), emit: emit)
            } else {
                // No block of this index was started: arguments of no call (review 98 #4: they
                // were dropped without a word).
                throw StreamDecodingError("the upstream sent a tool call's input for a block it never started")
            }
        case "citations_delta"?:
            if let delta { pass(.providerBlock(.delta(delta)), emit: emit) }
        default:
            if let index, providerBlocks.contains(index), let delta, case .object = delta, AnthropicResponse.isPassableType(delta["type"]) {
                pass(.providerBlock(.delta(delta)), emit: emit)
            }
        }
    }

    /// An event of a block other than a tool call's: passed on, or held while a call's block is
    /// open (see the type's comment).
    private mutating func pass(_ event: ModelEvent, emit: (ModelEvent) -> Void) {
        guard holding, !toolBlocks.isEmpty else {
            emit(event)
            return
        }
        let size = Self.size(of: event)
        guard held.count < Self.maxHeldEvents, heldBytes + size <= Self.maxHeldBytes else {
            holding = false
            releaseHeld(emit: emit)
            emit(event)
            return
        }
        heldBytes += size
        held.append(event)
    }

    mutating func releaseHeld(emit: (ModelEvent) -> Void) {
        guard !held.isEmpty else { return }
        for event in held { emit(event) }
        held = []
        heldBytes = 0
    }

    /// The bytes an event holds (its text; a provider block's JSON as written).
    private static func size(of event: ModelEvent) -> Int {
        switch event {
        case .text(let text), .reasoning(let text), .refusal(let text), .reasoningSignature(let text), .redactedReasoning(let text): text.utf8.count
        case .providerBlock(.start(let json)), .providerBlock(.delta(let json)): JSONWriting.compact(json).utf8.count
        default: 16
        }
    }
}
