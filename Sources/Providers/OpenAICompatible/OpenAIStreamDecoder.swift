import GatewayCore

/// OpenAI's chat completion stream (`data: {chunk}` events, then `data: [DONE]`) as events.
/// `[DONE]` ends it complete only after a finish reason: OpenAI always sends one, and a server
/// that reports a failure some other way (llama.cpp's `error:` line) still ends with `[DONE]`
/// (review 68A #1, 68C #5: such answers passed as complete, Messages said `end_turn`).
struct OpenAIStreamDecoder: ModelStreamDecoder {
    private var sse: SSEDecoder
    var progressMarks: Int { sse.progressMarks }
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
        // The SSE reader is taken out while it reads, so the callback changes the rest of `self`
        // in place (copying the state out and back, as before, copied every dictionary of it on
        // every read: counted, ~2,000 instructions a read in a deliberation).
        var sse = SSEDecoder(maxEventBytes: self.sse.maxEventBytes, errorLinesAreEvents: true)
        swap(&sse, &self.sse)
        defer { swap(&sse, &self.sse) }
        var done = false
        var sawDone = false
        var failure: StreamDecodingError?
        var finished = false
        let finishedBefore = sawFinish
        var usageAfterFinish = false
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
                // Another named event is no chat chunk: skipped, as the chat relay skips it (review
                // 89: a member's answer took the text of an `event: foo` chunk the proxy drops).
                if !event.name.isEmpty && !event.name.elementsEqual("message".utf8) { return }
                guard let chunk = JSONView(validating: event.data), chunk.isObject(chunk.root) else {
                    failure = StreamDecodingError("the upstream sent an event that is not a JSON object")
                    return
                }
                if !self.idRead {
                    self.idRead = true
                    self.upstreamID = chunk.member("id", in: chunk.root).flatMap(chunk.string).flatMap { UpstreamIdentifier.sanitized($0, redactor: redactor) }
                }
                // Read only after a cut (rare): which choice this chunk is.
                let sameChoice = !self.cut || (OpenAIChunk.choiceIndex(in: chunk) ?? 0) == self.cutChoice  // no index: choice 0
                OpenAIChunk.events(chunk, redactor: redactor, state: &self.state) { modelEvent in
                    guard !done else { return } // after an error, nothing more of this chunk
                    // A cut answer's end stands: text, calls or a `stop` after a `length` were
                    // spliced onto it and its cut was lost (review 71C #8), as Gemini's reader
                    // ignores what follows a finish. Only a cut: relays put `stop` on every chunk.
                    if self.cut && sameChoice {
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
                        self.cut = reason == .length || reason == .contentFilter
                        if self.cut { self.cutChoice = OpenAIChunk.choiceIndex(in: chunk) ?? 0 }
                    case .error: done = true
                    case .toolCall(let fragment):
                        if let numbered = self.numbering.number(fragment) {
                            emit(.toolCall(numbered))
                        } else {
                            done = true
                            emit(.error(.upstreamProtocol("The upstream sent more than \(self.numbering.limit) tool calls.")))
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
