/// Incremental Server-Sent Events decoder (WHATWG "event stream" parsing rules).
///
/// Feed it bytes exactly as they arrive from the network, split anywhere; it calls back once
/// per complete event. Comment lines (`:` …) are skipped, `id:` and `retry:` are ignored
/// (a gateway must never replay them), and LF, CRLF and lone CR all end a line.
/// Nothing is allocated per event once the internal buffers have grown to the largest event.
///
/// Lines that are no SSE field at all (not `data`, `event`, `id`, `retry`, nor a comment) are
/// ignored, as WHATWG says, unless the caller asks to see them (`onOtherLine`): Gemini sends its
/// mid-stream errors as raw, pretty-printed JSON lines without `data:`.
public struct SSEDecoder: Sendable {
    /// Thrown when one event (or one line) grows past `maxEventBytes`: a bound on the memory
    /// a misbehaving upstream can make us hold.
    public struct EventTooLarge: Error, Equatable {
        public let limit: Int
        public init(limit: Int) { self.limit = limit }
    }

    public let maxEventBytes: Int
    /// Events with data dispatched and comment lines read so far: what the stream's idle timers count as
    /// the upstream's activity. A byte of an event that never ends, a blank line with no data, a
    /// line that is no field, are none (review 123 #1, 124 #1 and #4: a byte a second into an
    /// endless event held a stream for ever; a read was activity only if it ended an event,
    /// which cut steady streams whose reads end inside the next one). Its keep-alive comments
    /// are (Anthropic's pings are events).
    public private(set) var progressMarks = 0
    /// Bytes of a line whose end has not arrived yet.
    private var partialLine: [UInt8] = []
    /// `data` lines of the current event, joined by "\n".
    private var data: [UInt8] = []
    /// The current event's only data line so far, when it lies in the caller's buffer (the usual
    /// case: a whole event in one read): dispatched from there, never copied. Valid only during
    /// one `feed` call; copied into `data` before it returns or when a second line arrives.
    /// (nil between calls, so the decoder stays safe to send.)
    nonisolated(unsafe) private var borrowedData: UnsafeRawBufferPointer?
    private var eventName: [UInt8] = []
    private var hasData = false
    /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
    private var skipLeadingLF = false
    /// Bytes of a leading UTF-8 byte order mark matched so far (WHATWG: one at the stream's
    /// start is ignored); nil once the start is past.
    private var byteOrderMarkMatched: Int? = 0
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// A line `error: …` is an event of its own named `error` (its value the data), dispatched at
    /// once: llama.cpp's server reports a failure mid-stream so, then sends `data: [DONE]`.
    /// Read here, one rule for both OpenAI-wire readers (the chat relay and the decoder), rather
    /// than by a closure of each on the per-read path (`onOtherLine`).
    public let errorLinesAreEvents: Bool
    private static let errorName = Array("error".utf8)

    public init(maxEventBytes: Int = 1 << 20, errorLinesAreEvents: Bool = false) {
        self.maxEventBytes = maxEventBytes
        self.errorLinesAreEvents = errorLinesAreEvents
    }

    /// Decodes `bytes`, calling `onEvent` for each complete event and `onOtherLine` for each
    /// line that is not an SSE field. The buffers passed are valid only during the call.
    public mutating func feed(
        _ bytes: UnsafeRawBufferPointer,
        onEvent: (SSEEventView) throws -> Void,
        onOtherLine: (UnsafeRawBufferPointer) throws -> Void = { _ in }
    ) throws {
        // Whatever happens, nothing may point into `bytes` once this returns.
        defer { keepBorrowedData() }
        var start = 0
        let count = bytes.count
        while let matched = byteOrderMarkMatched, start < count {
            if bytes[start] == Self.byteOrderMark[matched] {
                start += 1
                byteOrderMarkMatched = matched + 1 == Self.byteOrderMark.count ? nil : matched + 1
            } else {
                // Not a mark after all: the bytes taken for one begin the first line.
                partialLine.append(contentsOf: Self.byteOrderMark[..<matched])
                byteOrderMarkMatched = nil
            }
        }
        if skipLeadingLF, count > 0 {
            skipLeadingLF = false
            if bytes[0] == UInt8(ascii: "\n") { start = 1 }
        }
        var index = start
        while index < count {
            // Eight bytes at a time to the first that may end a line (below 0x0E; JSON's text has
            // no raw control): a byte at a time was most of the reader's own cost per event.
            if index + 8 <= count {
                let candidates = ByteWords.below(ByteWords.load(bytes, at: index), 0x0E)
                if candidates == 0 {
                    index += 8
                    continue
                }
                index += ByteWords.firstFlagged(candidates)
            }
            let byte = bytes[index]
            if byte != UInt8(ascii: "\n") && byte != UInt8(ascii: "\r") {
                index += 1
                continue
            }
            // A complete line: bytes[start..<index], prefixed by any partial line carried over.
            if partialLine.isEmpty {
                try processLine(UnsafeRawBufferPointer(rebasing: bytes[start..<index]), inCallerBuffer: true,
                                onEvent: onEvent, onOtherLine: onOtherLine)
            } else {
                try appendPartial(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
                // Moved out (not copied) while it is processed, then back with its capacity.
                var line: [UInt8] = []
                swap(&line, &partialLine)
                defer {
                    line.removeAll(keepingCapacity: true)
                    swap(&line, &partialLine)
                }
                try line.withUnsafeBytes { try processLine($0, inCallerBuffer: false, onEvent: onEvent, onOtherLine: onOtherLine) }
            }
            if byte == UInt8(ascii: "\r") {
                if index + 1 < count {
                    if bytes[index + 1] == UInt8(ascii: "\n") { index += 1 }
                } else {
                    skipLeadingLF = true
                }
            }
            index += 1
            start = index
        }
        if start < count {
            try appendPartial(UnsafeRawBufferPointer(rebasing: bytes[start..<count]))
        }
    }

    /// The body ended: a last line that never got its line end is read as a line, so one that
    /// is no SSE field reaches `onOtherLine` (Gemini's raw JSON error may end with its closing
    /// brace; google-genai reads what is left at the end too). An event still waiting for its
    /// blank line is dropped, as WHATWG says.
    public mutating func finish(onOtherLine: (UnsafeRawBufferPointer) throws -> Void) throws {
        var line: [UInt8] = []
        swap(&line, &partialLine)
        defer {
            data.removeAll(keepingCapacity: true)
            eventName.removeAll(keepingCapacity: true)
            hasData = false
        }
        guard !line.isEmpty else { return }
        try line.withUnsafeBytes { try processLine($0, inCallerBuffer: false, onEvent: { _ in }, onOtherLine: onOtherLine) }
    }

    /// Convenience for tests and fixtures.
    public mutating func feed(_ bytes: [UInt8], onEvent: (SSEEventView) throws -> Void) throws {
        try bytes.withUnsafeBytes { try feed($0, onEvent: onEvent) }
    }

    /// Copies a borrowed data line into `data` (its buffer is about to go away or be appended to).
    private mutating func keepBorrowedData() {
        guard let borrowed = borrowedData else { return }
        borrowedData = nil
        data.append(contentsOf: borrowed)
    }

    private mutating func appendPartial(_ bytes: UnsafeRawBufferPointer) throws {
        guard partialLine.count + bytes.count + data.count + (borrowedData?.count ?? 0) <= maxEventBytes else {
            throw EventTooLarge(limit: maxEventBytes)
        }
        partialLine.append(contentsOf: bytes)
    }

    private mutating func processLine(
        _ line: UnsafeRawBufferPointer,
        inCallerBuffer: Bool,
        onEvent: (SSEEventView) throws -> Void,
        onOtherLine: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        if line.isEmpty {
            // Blank line: dispatch. An event without data lines is not an event.
            if hasData {
                // `data:` alone is an empty event every reader drops: no progress (review 126 #2).
                if !data.isEmpty || borrowedData?.isEmpty == false { progressMarks &+= 1 }
                if let borrowed = borrowedData {
                    try eventName.withUnsafeBytes { nameBytes in
                        try onEvent(SSEEventView(name: nameBytes, data: borrowed))
                    }
                } else {
                    try data.withUnsafeBytes { dataBytes in
                        try eventName.withUnsafeBytes { nameBytes in
                            try onEvent(SSEEventView(name: nameBytes, data: dataBytes))
                        }
                    }
                }
            }
            borrowedData = nil
            data.removeAll(keepingCapacity: true)
            eventName.removeAll(keepingCapacity: true)
            hasData = false
            return
        }
        if line[0] == UInt8(ascii: ":") {  // comment (keep-alive)
            progressMarks &+= 1
            return
        }

        var colon = 0
        while colon < line.count && line[colon] != UInt8(ascii: ":") { colon += 1 }
        let field = UnsafeRawBufferPointer(rebasing: line[0..<colon])
        var valueStart = colon < line.count ? colon + 1 : line.count
        if valueStart < line.count && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = UnsafeRawBufferPointer(rebasing: line[valueStart..<line.count])

        if field.isLiteral("data") {
            let held = data.count + (borrowedData?.count ?? 0)
            guard held + value.count + 1 <= maxEventBytes else {
                throw EventTooLarge(limit: maxEventBytes)
            }
            if !hasData && inCallerBuffer {
                borrowedData = value  // the common case: one line, dispatched without a copy
            } else {
                keepBorrowedData()
                if hasData { data.append(UInt8(ascii: "\n")) }
                data.append(contentsOf: value)
            }
            hasData = true
        } else if field.isLiteral("event") {
            eventName.removeAll(keepingCapacity: true)
            eventName.append(contentsOf: value)
        } else if errorLinesAreEvents && field.isLiteral("error") {
            progressMarks &+= 1
            try Self.errorName.withUnsafeBytes { try onEvent(SSEEventView(name: $0, data: value)) }
        } else if !field.isLiteral("id") && !field.isLiteral("retry") {
            try onOtherLine(line)
        }
        // `id` and `retry` are ignored on purpose (a gateway must never replay them).
    }
}

/// One decoded event; its buffers are only valid inside the decoder's callback.
public struct SSEEventView {
    /// The `event:` name, empty for the default "message" event.
    public let name: UnsafeRawBufferPointer
    public let data: UnsafeRawBufferPointer

    /// True for OpenAI's end-of-stream sentinel `data: [DONE]`, white space after it allowed (as
    /// OpenAI's SDKs read it: review 68A #6).
    /// Byte comparisons, not `elementsEqual` over slices: those allocated 18 times a request in
    /// the debug build the perf gate counts.
    public var isDone: Bool {
        let start = data.startIndex
        guard data.count >= 6, data[start] == 0x5B, data[start + 1] == 0x44, data[start + 2] == 0x4F,  // "[DO"
              data[start + 3] == 0x4E, data[start + 4] == 0x45, data[start + 5] == 0x5D else { return false }  // "NE]"
        var index = start + 6
        while index < data.endIndex {
            guard data[index] == 0x20 || data[index] == 0x09 else { return false }
            index += 1
        }
        return true
    }

    public var nameString: String { String(decoding: name, as: UTF8.self) }
    public var dataString: String { String(decoding: data, as: UTF8.self) }
}
