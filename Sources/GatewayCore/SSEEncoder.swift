/// Writes Server-Sent Events in the only shapes our clients can all read.
///
/// Rules from WIRE-FACTS.md: never an `id:` line, never an empty `data:` line, every event ends
/// with a blank line. Named events only go to clients that asked for them (callers decide).
public enum SSEEncoder {
    public static let done: [UInt8] = Array("data: [DONE]\n\n".utf8)

    /// Appends `data: <payload>\n\n`. A payload containing newlines becomes several `data:`
    /// lines, which a decoder joins back with "\n".
    @inlinable
    public static func appendData(_ payload: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        appendField("data: ", payload, to: &out)
        out.append(UInt8(ascii: "\n"))
    }

    public static func appendData(_ payload: [UInt8], to out: inout [UInt8]) {
        payload.withUnsafeBytes { appendData($0, to: &out) }
    }

    /// Appends `event: <name>\ndata: <payload>\n\n`.
    public static func appendEvent(name: String, data payload: [UInt8], to out: inout [UInt8]) {
        out.append(contentsOf: "event: ".utf8)
        out.append(contentsOf: name.utf8)
        out.append(UInt8(ascii: "\n"))
        payload.withUnsafeBytes { appendField("data: ", $0, to: &out) }
        out.append(UInt8(ascii: "\n"))
    }

    /// Appends a comment line (`: text\n\n`): ignored by every SSE client, visible with `curl -N`.
    public static func appendComment(_ text: String, to out: inout [UInt8]) {
        var first = true
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !first { out.append(UInt8(ascii: "\n")) }
            first = false
            out.append(contentsOf: ": ".utf8)
            out.append(contentsOf: line.utf8)
        }
        out.append(contentsOf: "\n\n".utf8)
    }

    @inlinable
    static func appendField(_ prefix: StaticString, _ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var start = 0
        var index = 0
        let count = value.count
        while index <= count {
            if index == count || value[index] == UInt8(ascii: "\n") {
                out.append(contentsOf: UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[start..<index]))
                out.append(UInt8(ascii: "\n"))
                start = index + 1
            }
            index += 1
        }
    }
}
