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
    /// Bytes of a line whose end has not arrived yet.
    private var partialLine: [UInt8] = []
    /// `data` lines of the current event, joined by "\n".
    private var data: [UInt8] = []
    private var eventName: [UInt8] = []
    private var hasData = false
    /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
    private var skipLeadingLF = false

    public init(maxEventBytes: Int = 1 << 20) {
        self.maxEventBytes = maxEventBytes
        partialLine.reserveCapacity(256)
        data.reserveCapacity(1024)
    }

    /// Decodes `bytes`, calling `onEvent` for each complete event and `onOtherLine` for each
    /// line that is not an SSE field. The buffers passed are valid only during the call.
    public mutating func feed(
        _ bytes: UnsafeRawBufferPointer,
        onEvent: (SSEEventView) throws -> Void,
        onOtherLine: (UnsafeRawBufferPointer) throws -> Void = { _ in }
    ) throws {
        var start = 0
        let count = bytes.count
        if skipLeadingLF, count > 0 {
            skipLeadingLF = false
            if bytes[0] == UInt8(ascii: "\n") { start = 1 }
        }
        var index = start
        while index < count {
            let byte = bytes[index]
            if byte != UInt8(ascii: "\n") && byte != UInt8(ascii: "\r") {
                index += 1
                continue
            }
            // A complete line: bytes[start..<index], prefixed by any partial line carried over.
            if partialLine.isEmpty {
                try processLine(UnsafeRawBufferPointer(rebasing: bytes[start..<index]), onEvent: onEvent, onOtherLine: onOtherLine)
            } else {
                try appendPartial(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
                let line = partialLine
                partialLine.removeAll(keepingCapacity: true)
                try line.withUnsafeBytes { try processLine($0, onEvent: onEvent, onOtherLine: onOtherLine) }
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

    /// Convenience for tests and fixtures.
    public mutating func feed(_ bytes: [UInt8], onEvent: (SSEEventView) throws -> Void) throws {
        try bytes.withUnsafeBytes { try feed($0, onEvent: onEvent) }
    }

    private mutating func appendPartial(_ bytes: UnsafeRawBufferPointer) throws {
        guard partialLine.count + bytes.count + data.count <= maxEventBytes else {
            throw EventTooLarge(limit: maxEventBytes)
        }
        partialLine.append(contentsOf: bytes)
    }

    private mutating func processLine(
        _ line: UnsafeRawBufferPointer,
        onEvent: (SSEEventView) throws -> Void,
        onOtherLine: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        if line.isEmpty {
            // Blank line: dispatch. An event without data lines is not an event.
            if hasData {
                try data.withUnsafeBytes { dataBytes in
                    try eventName.withUnsafeBytes { nameBytes in
                        try onEvent(SSEEventView(name: nameBytes, data: dataBytes))
                    }
                }
            }
            data.removeAll(keepingCapacity: true)
            eventName.removeAll(keepingCapacity: true)
            hasData = false
            return
        }
        if line[0] == UInt8(ascii: ":") { return }  // comment (keep-alive)

        var colon = 0
        while colon < line.count && line[colon] != UInt8(ascii: ":") { colon += 1 }
        let field = UnsafeRawBufferPointer(rebasing: line[0..<colon])
        var valueStart = colon < line.count ? colon + 1 : line.count
        if valueStart < line.count && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = UnsafeRawBufferPointer(rebasing: line[valueStart..<line.count])

        if field.elementsEqual("data".utf8) {
            guard data.count + value.count + 1 <= maxEventBytes else {
                throw EventTooLarge(limit: maxEventBytes)
            }
            if hasData { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: value)
            hasData = true
        } else if field.elementsEqual("event".utf8) {
            eventName.removeAll(keepingCapacity: true)
            eventName.append(contentsOf: value)
        } else if !field.elementsEqual("id".utf8) && !field.elementsEqual("retry".utf8) {
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

    /// True for OpenAI's end-of-stream sentinel `data: [DONE]`.
    public var isDone: Bool { data.elementsEqual("[DONE]".utf8) }

    public var nameString: String { String(decoding: name, as: UTF8.self) }
    public var dataString: String { String(decoding: data, as: UTF8.self) }
}
