import GatewayCore

/// Gemini's `streamGenerateContent?alt=sse` stream as events (what each chunk says:
/// `GeminiResponseReader`). Events are `data:` lines (CRLF line ends) with no `[DONE]`: the
/// chunk with a `finishReason` is the end marker, and a body that ends before one is truncated.
///
/// A mid-stream error may come as raw, pretty-printed JSON lines without `data:` (google-genai's
/// own parser buffers such lines until their braces balance): lines that are no SSE field are
/// gathered the same way (`RawJSONLines`) and read like a chunk. Per chunk, on the per-token path:
/// one `JSONValue` built in place (a chunk repeats its usage, model and response id: a few
/// dictionaries and strings each time, the allocation hot spot); a function call's `args` are
/// re-serialized by hand (`JSONWriting.compact`).
struct GeminiStreamDecoder: ModelStreamDecoder {
    private var sse: SSEDecoder
    var progressMarks: Int { sse.progressMarks }
    private var reader: GeminiResponseReader
    private var raw: RawJSONLines
    var upstreamID: String? { reader.upstreamID }

    init(maxEventBytes: Int, redactor: Redactor) {
        sse = SSEDecoder(maxEventBytes: maxEventBytes)
        reader = GeminiResponseReader(redactor: redactor)
        raw = RawJSONLines(maxBytes: maxEventBytes)
    }

    mutating func decode(_ bytes: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) -> Bool {
        guard !reader.ended else { return true }
        try read(bytes, emit: emit)
        return reader.ended
    }

    /// A raw JSON error whose closing brace ends the body, with no line end after it, is read
    /// now (review 52A #5: its message and status were lost to "the stream ended").
    mutating func finish(emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        guard !reader.ended else { return }
        try read(nil, emit: emit)
        reader.bodyEnded(emit: emit)
        // Candidates came, none of them the one asked for: refused as a whole answer is, not
        // told as a stream cut short (review 102 #3).
        if !reader.answered && reader.onlyOtherCandidates {
            throw StreamDecodingError("no candidate of index 0 (the one asked for)")
        }
    }

    /// Reads `bytes` (nil: the body's end) into events, through the SSE decoder.
    private mutating func read(_ bytes: UnsafeRawBufferPointer?, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        // The callbacks may not touch `self` while `sse` is mutated: the state is moved out for the
        // call (not copied: `self` gives up its storage).
        var reader = self.reader
        var raw = self.raw
        self.reader = GeminiResponseReader(redactor: reader.redactor)
        self.raw = RawJSONLines(maxBytes: raw.maxBytes)
        defer {
            self.reader = reader
            self.raw = raw
        }
        var failure: StreamDecodingError?
        func read(_ document: UnsafeRawBufferPointer) {
            guard failure == nil, !reader.ended else { return }
            do throws(StreamDecodingError) {
                guard let chunk = try? JSONValue.parse(document) else {
                    throw StreamDecodingError("the upstream sent a chunk that is not JSON")
                }
                try reader.read(chunk, emit: emit)
            } catch {
                failure = error
            }
        }
        func readOther(_ line: UnsafeRawBufferPointer) {
            guard failure == nil else { return }
            do throws(StreamDecodingError) {
                try raw.append(line) { read($0) }
            } catch {
                failure = error
            }
        }
        do {
            if let bytes {
                try sse.feed(bytes, onEvent: { event in
                    if !event.data.isEmpty { read(event.data) }
                }, onOtherLine: readOther)
            } else {
                try sse.finish(onOtherLine: readOther)
            }
        } catch {
            throw StreamDecodingError("the upstream sent an event larger than \(sse.maxEventBytes) bytes")
        }
        if let failure { throw failure }
    }

    func end() -> StreamEnd { reader.ended ? .complete : .truncated }
}

/// Lines outside SSE's fields, gathered until they hold one whole JSON value: braces and brackets
/// are counted outside strings (escapes understood), so a value split over lines, and a line
/// split over reads, come out whole.
struct RawJSONLines {
    let maxBytes: Int
    private var buffer: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false

    init(maxBytes: Int) { self.maxBytes = maxBytes }

    /// Adds one line; calls `complete` with the document once its value closes.
    mutating func append(_ line: UnsafeRawBufferPointer, complete: (UnsafeRawBufferPointer) -> Void) throws(StreamDecodingError) {
        guard buffer.count + line.count < maxBytes else {
            throw StreamDecodingError("the upstream sent a raw JSON value larger than \(maxBytes) bytes")
        }
        for byte in line {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            default: break
            }
        }
        buffer.append(contentsOf: line)
        buffer.append(UInt8(ascii: "\n"))
        // A string cannot span lines in JSON: one that does is what the parser will refuse.
        guard depth <= 0 || inString else { return }
        buffer.withUnsafeBytes(complete)
        buffer.removeAll(keepingCapacity: true)
        (depth, inString, escaped) = (0, false, false)
    }
}
