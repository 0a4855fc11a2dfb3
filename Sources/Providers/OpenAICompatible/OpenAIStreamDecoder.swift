import GatewayCore

/// OpenAI's chat completion stream (`data: {chunk}` events, then `data: [DONE]`) as events.
/// `[DONE]` ends it complete only after a finish reason: OpenAI always sends one, and a server
/// that reports a failure some other way (llama.cpp's `error:` line) still ends with `[DONE]`
/// (review 68A #1, 68C #5: such answers passed as complete, Messages said `end_turn`).
struct OpenAIStreamDecoder: ModelStreamDecoder {
    private var sse: SSEDecoder
    private let redactor: Redactor
    private var ended = false
    private var sawFinish = false
    private var sawDone = false
    private var usageAfterFinish = false
    /// The answer was cut (`length`, `content_filter`): what comes after is not part of it.
    /// The cut choice's index: another choice's chunks are `OpenAIChunk.events`' to read or skip
    /// (review 75B #3: a choice 1 cut before choice 0 began dropped choice 0's whole answer).
    private var cut = false
    private var cutChoice: Int64?
    private var state = OpenAIChunk.StreamState()
    /// The first chunk's `id` (OpenAI's `chatcmpl-…`, OpenRouter's `gen-…`), sanitized; read
    /// once (a server that sends none is not searched on every chunk).
    private(set) var upstreamID: String?
    private var idRead = false
    private var numbering = ToolCallNumbering(limit: Int(OpenAIChunk.maxToolCallIndex) + 1)

    init(maxEventBytes: Int, redactor: Redactor) {
        sse = SSEDecoder(maxEventBytes: maxEventBytes, errorLinesAreEvents: true)
        self.redactor = redactor
    }

    mutating func decode(_ bytes: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) -> Bool {
        guard !ended else { return true }
        // The callback may not touch `self` while `sse` is mutated: it collects into locals.
        var done = false
        var sawDone = false
        var failure: StreamDecodingError?
        var finished = false
        let finishedBefore = sawFinish
        var usageAfterFinish = false
        var cut = self.cut
        var cutChoice = self.cutChoice
        defer {
            self.cut = cut
            self.cutChoice = cutChoice
        }
        // Taken out while the chunk is read, so the local is its only reference and a tool call's
        // fragment changes it in place (a shared copy would copy its dictionaries on write).
        var numbering = self.numbering
        self.numbering = ToolCallNumbering(limit: numbering.limit)
        defer { self.numbering = numbering }
        let redactor = redactor
        var state = self.state
        defer { self.state = state }
        var upstreamID = self.upstreamID
        var idRead = self.idRead
        defer {
            self.upstreamID = upstreamID
            self.idRead = idRead
        }
        do {
            try sse.feed(bytes) { event in
                guard !done, failure == nil, !event.data.isEmpty else { return }
                if event.isDone {
                    done = true
                    sawDone = true
                    return
                }
                if event.name.elementsEqual("error".utf8) {
                    done = true
                    emit(.error(OpenAIErrors.streamError(OpenAIErrors.namedEventError(event.data), redactor: redactor)))
                    return
                }
                guard let chunk = JSONView(validating: event.data), chunk.isObject(chunk.root) else {
                    failure = StreamDecodingError("the upstream sent an event that is not a JSON object")
                    return
                }
                if !idRead {
                    idRead = true
                    upstreamID = chunk.member("id", in: chunk.root).flatMap(chunk.string).flatMap { UpstreamIdentifier.sanitized($0, redactor: redactor) }
                }
                // Read only after a cut (rare): which choice this chunk is.
                let sameChoice = !cut || (OpenAIChunk.choiceIndex(in: chunk) ?? 0) == cutChoice  // no index: choice 0
                OpenAIChunk.events(chunk, redactor: redactor, state: &state) { modelEvent in
                    guard !done else { return } // after an error, nothing more of this chunk
                    // A cut answer's end stands: text, calls or a `stop` after a `length` were
                    // spliced onto it and its cut was lost (review 71C #8), as Gemini's reader
                    // ignores what follows a finish. Only a cut: relays put `stop` on every chunk.
                    if cut && sameChoice {
                        if case .usage = modelEvent {} else if case .error = modelEvent {} else { return }
                    }
                    switch modelEvent {
                    case .usage:
                        // OpenAI's usage chunk, after every choice's answer: no choice of its own
                        // (vLLM's continuous usage rides on answer chunks: review 73 #2).
                        if finished || finishedBefore, chunk.member("choices", in: chunk.root).map({ chunk.firstElement(in: $0) == nil }) ?? true {
                            usageAfterFinish = true
                        }
                    case .finish(let reason):
                        finished = true
                        cut = reason == .length || reason == .contentFilter
                        if cut { cutChoice = OpenAIChunk.choiceIndex(in: chunk) ?? 0 }
                    case .error: done = true
                    case .toolCall(let fragment):
                        if let numbered = numbering.number(fragment) {
                            emit(.toolCall(numbered))
                        } else {
                            done = true
                            emit(.error(.upstreamProtocol("The upstream sent more than \(numbering.limit) tool calls.")))
                        }
                        return
                    default: break
                    }
                    emit(modelEvent)
                }
            }
        } catch {
            throw StreamDecodingError("the upstream sent an event larger than \(sse.maxEventBytes) bytes")
        }
        if finished { sawFinish = true }
        if usageAfterFinish { self.usageAfterFinish = true }
        if let failure { throw failure }
        if sawDone { self.sawDone = true }
        if done { ended = true }
        return ended
    }

    /// Complete after a finish reason, or after an error (reported as the call's failure); a
    /// `[DONE]` alone, or no end at all, is a cut answer.
    func end() -> StreamEnd { sawFinish || (ended && !sawDone) ? .complete : .truncated }

    var answerIsWhole: Bool { sawFinish && usageAfterFinish }
}
