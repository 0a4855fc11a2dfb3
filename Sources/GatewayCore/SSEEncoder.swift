/// Writes Server-Sent Events in the only shapes our clients can all read.
///
/// Rules from WIRE-FACTS.md: never an `id:` line, never an empty `data:` line, every event ends
/// with a blank line. Named events only go to clients that asked for them (callers decide).
///
/// Nothing written can end a line early, whoever reads it. SSE ends lines at CR, LF and CRLF
/// (WHATWG); other line splitters also split at VT, FF, FS, GS, RS, NEL, U+2028 and U+2029
/// (Python's `str.splitlines`, behind some clients' SSE readers), and C-string readers stop at
/// NUL. Text from outside (a model's output, a URL, an error) reaches comments and event names,
/// so there every control character (C0, DEL, C1) and U+2028/U+2029 is escaped visibly (`\n`,
/// `\r`, `\u2028`). Data payloads are JSON, where such characters can only be whitespace or
/// inside strings: see `appendData`.
public enum SSEEncoder {
    public static let done: [UInt8] = Array("data: [DONE]\n\n".utf8)

    /// Appends `data: <payload>\n\n` on one line. `payload` is JSON: raw CR and LF (JSON
    /// whitespace there) are written as spaces, and NEL, U+2028 and U+2029 (which JSON allows
    /// only inside strings) as `\u` escapes, so the client decodes the same value.
    @inlinable
    public static func appendData(_ payload: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        appendDataLine("data: ", payload, to: &out)
        out.append(UInt8(ascii: "\n"))
    }

    public static func appendData(_ payload: [UInt8], to out: inout [UInt8]) {
        payload.withUnsafeBytes { appendData($0, to: &out) }
    }

    /// Makes `out[start...]`, JSON text already written in place (after a `data: ` prefix), safe
    /// as one data line, as `appendData` would have written it: CR and LF (JSON whitespace there)
    /// become spaces in place; NEL, U+2028 and U+2029 become `\u` escapes (the region is then
    /// rewritten: rare, so the per-event path copies nothing). Other C0 bytes but tab, which
    /// valid JSON cannot hold, are escaped too.
    public static func makeDataLineSafe(_ out: inout [UInt8], from start: Int) {
        var needsEscapes = false
        out.withUnsafeMutableBytes { bytes in
            var index = start
            var wordAt = start  // where eight bytes are next tried at once
            while index < bytes.count {
                // Eight bytes at a time while all are printable ASCII, as most of a chunk is (a
                // byte at a time, this was 2% of a proxied request's instructions); a word with
                // anything else goes byte by byte.
                if index >= wordAt {
                    if index + 8 <= bytes.count, JSONWriting.isPrintableASCII(UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                        index += 8
                        wordAt = index
                        continue
                    }
                    wordAt = index + 8
                }
                let byte = bytes[index]
                if (byte >= 0x20 && byte != 0xC2 && byte != 0xE2) || byte == 0x09 {
                    index += 1
                    continue
                }
                if byte == 0x0A || byte == 0x0D {
                    bytes[index] = UInt8(ascii: " ")
                } else if byte < 0x20 || JSONWriting.lineSeparator(in: UnsafeRawBufferPointer(bytes), at: index) != nil {
                    needsEscapes = true
                    return
                }
                index += 1
            }
        }
        guard needsEscapes else { return }
        let payload = Array(out[start...])
        out.removeSubrange(start...)
        payload.withUnsafeBytes { appendDataLine("", $0, to: &out) }
        out.removeLast()  // appendDataLine's line end: the caller ends the line
    }

    /// Appends `event: <name>\ndata: <payload>\n\n`; `name` is escaped like a comment.
    public static func appendEvent(name: String, data payload: [UInt8], to out: inout [UInt8]) {
        out.append(contentsOf: "event: ".utf8)
        appendVisible(name, to: &out)
        out.append(UInt8(ascii: "\n"))
        payload.withUnsafeBytes { appendDataLine("data: ", $0, to: &out) }
        out.append(UInt8(ascii: "\n"))
    }

    /// Appends one comment line (`: text\n\n`): ignored by every SSE client, visible with
    /// `curl -N`. Control characters, line separators and bidi controls in `text` are escaped
    /// visibly.
    public static func appendComment(_ text: String, to out: inout [UInt8]) {
        out.append(contentsOf: ": ".utf8)
        appendVisible(text, to: &out)
        out.append(contentsOf: "\n\n".utf8)
    }

    /// `text` as a single line for any line splitter, escaped as comments are.
    public static func lineSafe(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        appendVisible(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Runs on every comment Fusion streams (a panel's tokens): scans UTF-8 bytes and copies
    /// runs, rather than walking Characters (one of which can be "\r\n").
    static func appendVisible(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                let scalar: UInt32
                let length: Int
                switch byte {
                case 0x00..<0x20, 0x7F:
                    (scalar, length) = (UInt32(byte), 1)
                case 0xC2 where index + 1 < bytes.count && (0x80...0x9F).contains(bytes[index + 1]):  // C1 controls, NEL among them
                    (scalar, length) = (UInt32(bytes[index + 1]), 2)
                // U+2028 and U+2029 (line and paragraph separators), and the bidi embeddings,
                // overrides and isolates (U+202A–U+202E, U+2066–U+2069): on a watcher's terminal
                // they reorder the rest of the line (review 62C #9).
                case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80 && (0xA8...0xAE).contains(bytes[index + 2]):
                    (scalar, length) = (0x2000 | UInt32(bytes[index + 2] - 0x80), 3)
                case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x81 && (0xA6...0xA9).contains(bytes[index + 2]):
                    (scalar, length) = (0x2040 | UInt32(bytes[index + 2] - 0x80), 3)
                default:
                    index += 1
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                switch scalar {
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                default: JSONWriting.appendUnicodeEscape(scalar, to: &out)
                }
                index += length
                start = index
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        }
    }

    /// One `prefix<value>\n` line from JSON text (see `appendData`). Per token: copies runs of
    /// bytes and looks closer only at CR, LF, other C0 bytes but tab (impossible in valid JSON;
    /// escaped so no payload can break a line), and the lead bytes of NEL, U+2028 and U+2029.
    @inlinable
    static func appendDataLine(_ prefix: StaticString, _ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
        var start = 0
        var index = 0
        let count = value.count
        while index < count {
            let byte = value[index]
            if (byte >= 0x20 && byte != 0xC2 && byte != 0xE2) || byte == 0x09 {  // a tab is JSON whitespace, no line end
                index += 1
                continue
            }
            let length: Int
            if byte == 0x0A || byte == 0x0D {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[start..<index]))
                out.append(UInt8(ascii: " "))
                length = 1
            } else if byte < 0x20 {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[start..<index]))
                JSONWriting.appendUnicodeEscape(UInt32(byte), to: &out)
                length = 1
            } else if let escaped = JSONWriting.lineSeparator(in: value, at: index) {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[start..<index]))
                JSONWriting.appendUnicodeEscape(escaped.scalar, to: &out)
                length = escaped.length
            } else {
                index += 1
                continue
            }
            index += length
            start = index
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[start..<count]))
        out.append(UInt8(ascii: "\n"))
    }
}
