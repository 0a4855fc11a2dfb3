import GatewayCore

/// OpenAI's chat completion stream (`data: {chunk}` events, then `data: [DONE]`) as events.
struct OpenAIStreamDecoder: ModelStreamDecoder {
    private var sse: SSEDecoder
    private let redactor: Redactor
    private var ended = false
    private var sawFinish = false
    /// Tool calls (by index) whose id, and whose name, were emitted: some servers
    /// (llama-cpp-python) repeat both on every fragment, which a client's accumulator would
    /// concatenate ("lookuplookup"); only the first of each is passed on.
    private var emittedIDs: Set<Int> = []
    private var emittedNames: Set<Int> = []

    init(maxEventBytes: Int, redactor: Redactor) {
        sse = SSEDecoder(maxEventBytes: maxEventBytes)
        self.redactor = redactor
    }

    mutating func decode(_ bytes: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) -> Bool {
        guard !ended else { return true }
        // The callback may not touch `self` while `sse` is mutated: it collects into locals.
        var done = false
        var failure: StreamDecodingError?
        var finished = false
        var ids = emittedIDs
        var names = emittedNames
        let redactor = redactor
        do {
            try sse.feed(bytes) { event in
                guard !done, failure == nil, !event.data.isEmpty else { return }
                if event.isDone {
                    done = true
                    return
                }
                guard let chunk = JSONView(validating: event.data), chunk.isObject(chunk.root) else {
                    failure = StreamDecodingError("the upstream sent an event that is not a JSON object")
                    return
                }
                OpenAIChunk.events(chunk, redactor: redactor) { modelEvent in
                    switch modelEvent {
                    case .finish: finished = true
                    case .error: done = true
                    case .toolCall(var fragment):
                        if fragment.id != nil && !ids.insert(fragment.index).inserted { fragment.id = nil }
                        if fragment.name != nil && !names.insert(fragment.index).inserted { fragment.name = nil }
                        emit(.toolCall(fragment))
                        return
                    default: break
                    }
                    emit(modelEvent)
                }
            }
        } catch {
            throw StreamDecodingError("the upstream sent an event larger than \(sse.maxEventBytes) bytes")
        }
        emittedIDs = ids
        emittedNames = names
        if finished { sawFinish = true }
        if let failure { throw failure }
        if done { ended = true }
        return ended
    }

    func end() -> StreamEnd { ended || sawFinish ? .complete : .truncated }
}
