import Foundation
import Logging

/// The `text` log format's line, `<ts> <level> <logger>: <msg> key=value …`, written byte by byte
/// into one buffer. A proxied request's `request finished` line has twenty-odd fields; built from
/// interpolated strings (each escape and each quote a new `String`, quotes replaced through
/// Foundation) it was 9% of the gateway's CPU samples in a proxied request (stop 59's profile),
/// more than parsing the request.
///
/// Escaping: a backslash and the line-breaking and control characters (C0, DEL, C1, U+2028,
/// U+2029) become escapes (`\\`, `\n`, `\r`, `\t`, `\u{hex}`), so one entry is one line and every
/// escape reads back as one thing. A value is quoted when it is empty, was escaped, or holds a
/// space, a quote or `=`, and inside quotes `"` is `\"`: a value ends only at its own quote, so
/// nothing in it reads as a field of its own.
enum LogTextLine {
    static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, redactor: RedactorChain) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(640)
        appendTimestamp(to: &out)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: level.rawValue.utf8)
        out.append(UInt8(ascii: " "))
        appendEscaped(redactor(label), to: &out)
        out.append(contentsOf: ": ".utf8)
        appendEscaped(redactor(message), to: &out)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            out.append(UInt8(ascii: " "))
            appendEscaped(redactor(key), to: &out)
            out.append(UInt8(ascii: "="))
            appendQuotedIfNeeded(redactor(value.description), to: &out)
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// UTC, to the millisecond: `2026-11-30T17:19:31.042Z`.
    static func appendTimestamp(to out: inout [UInt8]) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        appendDecimal(Int(parts.tm_year) + 1900, digits: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDecimal(Int(parts.tm_mon) + 1, digits: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDecimal(Int(parts.tm_mday), digits: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDecimal(Int(parts.tm_hour), digits: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(Int(parts.tm_min), digits: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(Int(parts.tm_sec), digits: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendDecimal(Int(now.tv_nsec / 1_000_000), digits: 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    /// A non-negative number in at least `digits` digits, zero-padded (a negative one as 0).
    static func appendDecimal(_ value: Int, digits: Int, to out: inout [UInt8]) {
        let value = max(0, value)
        var divisor = 1
        var width = 1
        while value / divisor >= 10 || width < digits {
            divisor *= 10
            width += 1
        }
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        let edges = Edges(text)
        withBytes(of: text) { bytes in _ = appendEscaped(bytes, quote: false, edges: edges, to: &out) }
    }

    static func appendQuotedIfNeeded(_ text: String, to out: inout [UInt8]) {
        let edges = Edges(text)
        withBytes(of: text) { bytes in
            let start = out.count
            // Written plain first (the common case: a number, an id); redone in quotes when it
            // was escaped or holds a byte that would end or split it.
            if !bytes.isEmpty && !appendEscaped(bytes, quote: false, edges: edges, to: &out) { return }
            out.removeSubrange(start...)
            out.append(UInt8(ascii: "\""))
            _ = appendEscaped(bytes, quote: true, edges: edges, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    /// The first and last characters of a text that would join the line's own delimiters around
    /// it into one grapheme cluster (review 83A #3): a first combining mark, joiner or spacing
    /// mark (`"` + U+0301 is one character), a last prepended concatenation mark (U+0600 + `"`).
    /// A reader stepping through characters would not see that quote, `=` or space, and would
    /// read the value's text as fields of its own; such a character is written as an escape.
    /// The byte counts of the first and last scalars so escaped (0: none).
    struct Edges {
        var first = 0
        var last = 0

        init(_ text: String) {
            let scalars = text.unicodeScalars
            if let scalar = scalars.first, scalar.value >= 0x80, Self.joins("a", scalar) { first = UTF8.width(scalar) }
            if let scalar = scalars.last, scalar.value >= 0x80, Self.joins(scalar, "a") {
                // A one-scalar text escaped whole by `first` already.
                last = first > 0 && text.utf8.count == first ? 0 : UTF8.width(scalar)
            }
        }

        /// Whether the two scalars make one grapheme cluster.
        static func joins(_ left: Unicode.Scalar, _ right: Unicode.Scalar) -> Bool {
            var pair = String.UnicodeScalarView()
            pair.append(left)
            pair.append(right)
            return String(pair).count == 1
        }
    }

    private static func withBytes(of text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        if text.utf8.withContiguousStorageIfAvailable(body) == nil {
            Array(text.utf8).withUnsafeBufferPointer(body)
        }
    }

    /// Appends `bytes` (valid UTF-8) escaped; with `quote`, a `"` as `\"`. Returns whether the
    /// text needs quotes: something was escaped, or it holds a space, a quote or `=`.
    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, quote: Bool, edges: Edges, to out: inout [UInt8]) -> Bool {
        var needsQuotes = false
        var index = 0
        while index < bytes.count {
            let atFirst = index == 0 && edges.first > 0
            if atFirst || (edges.last > 0 && index == bytes.count - edges.last) {
                let width = atFirst ? edges.first : edges.last
                appendScalarEscape(decodedScalar(bytes, at: index, width: width), to: &out)
                index += width
                needsQuotes = true
                continue
            }
            let byte = bytes[index]
            // A character that joins what follows it (a prepended concatenation mark), before
            // an escape: it would hide the escape's backslash from a reader stepping through
            // characters, and the escaped quote after it would read as the value's end.
            if byte >= 0xC2 {
                let width = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
                if index + width < bytes.count, escapes(bytes, at: index + width, quote: quote) {
                    let scalar = decodedScalar(bytes, at: index, width: width)
                    if let character = Unicode.Scalar(scalar), Edges.joins(character, "a") {
                        appendScalarEscape(scalar, to: &out)
                        index += width
                        needsQuotes = true
                        continue
                    }
                }
            }
            index += 1
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8); needsQuotes = true
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8); needsQuotes = true
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8); needsQuotes = true
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8); needsQuotes = true
            case 0x00..<0x20, 0x7F: appendScalarEscape(UInt32(byte), to: &out); needsQuotes = true
            case UInt8(ascii: "\""):
                if quote { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
                needsQuotes = true
            case UInt8(ascii: " "), UInt8(ascii: "="):
                out.append(byte)
                needsQuotes = true
            // C1 controls: U+0080–U+009F, `C2 80`–`C2 9F`.
            case 0xC2 where index < bytes.count && (0x80...0x9F).contains(bytes[index]):
                appendScalarEscape(UInt32(bytes[index]), to: &out)
                index += 1
                needsQuotes = true
            // The line and paragraph separators: U+2028 and U+2029, `E2 80 A8` and `E2 80 A9`.
            case 0xE2 where index + 1 < bytes.count && bytes[index] == 0x80 && (bytes[index + 1] == 0xA8 || bytes[index + 1] == 0xA9):
                appendScalarEscape(bytes[index + 1] == 0xA8 ? 0x2028 : 0x2029, to: &out)
                index += 2
                needsQuotes = true
            default: out.append(byte)
            }
        }
        return needsQuotes
    }

    /// Whether the character at `index` is written as an escape (beginning with a backslash).
    private static func escapes(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, quote: Bool) -> Bool {
        switch bytes[index] {
        case UInt8(ascii: "\\"), 0x00..<0x20, 0x7F: return true
        case UInt8(ascii: "\""): return quote
        case 0xC2: return index + 1 < bytes.count && (0x80...0x9F).contains(bytes[index + 1])
        case 0xE2: return index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9)
        default: return false
        }
    }

    /// The scalar of `width` bytes (2–4, valid UTF-8) at `index`.
    private static func decodedScalar(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, width: Int) -> UInt32 {
        var value = UInt32(bytes[index]) & (width == 2 ? 0x1F : width == 3 ? 0x0F : 0x07)
        for offset in 1..<width { value = value << 6 | UInt32(bytes[index + offset] & 0x3F) }
        return value
    }

    /// `\u{1b}`: the scalar's value in lower-case hexadecimal, unpadded.
    private static func appendScalarEscape(_ value: UInt32, to out: inout [UInt8]) {
        out.append(contentsOf: #"\u{"#.utf8)
        var shift: UInt32 = 28
        while shift > 0 && value >> shift == 0 { shift -= 4 }
        while true {
            let nibble = UInt8((value >> shift) & 0xF)
            out.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            if shift == 0 { break }
            shift -= 4
        }
        out.append(UInt8(ascii: "}"))
    }
}
