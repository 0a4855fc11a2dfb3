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
        line(level: level, label: label, message: message, fields: GatewayLogHandler.fields(metadata, nil), redactor: redactor)
    }

    /// `fields`: sorted by key (`GatewayLogHandler.fields`).
    static func line(level: Logger.Level, label: String, message: String, fields: GatewayLogHandler.Fields, redactor: RedactorChain) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(640)
        appendTimestamp(to: &out)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: level.rawValue.utf8)
        out.append(UInt8(ascii: " "))
        appendEscaped(redactor(label), to: &out)
        out.append(contentsOf: ": ".utf8)
        appendEscaped(redactor(message), to: &out)
        for field in fields {
            out.append(UInt8(ascii: " "))
            switch field.key {
            case .own(let key): out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            case .metadata(let key): appendEscaped(redactor(key), to: &out)
            }
            out.append(UInt8(ascii: "="))
            switch field.value {
            case .text(let text): appendQuotedIfNeeded(redactor(text), to: &out)
            // The gateway's own figures: digits, a sign, a point, `e`, `inf`, `nan`; nothing to
            // escape, quote or redact.
            case .int(let number): out.append(contentsOf: String(number).utf8)
            case .double(let number): out.append(contentsOf: number.description.utf8)
            case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
            case .metadata(let value): appendQuotedIfNeeded(redactor(value.description), to: &out)
            }
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
        withBytes(of: text) { bytes in _ = appendEscaped(bytes, quote: false, to: &out) }
    }

    static func appendQuotedIfNeeded(_ text: String, to out: inout [UInt8]) {
        withBytes(of: text) { bytes in
            let start = out.count
            // Written plain first (the common case: a number, an id); redone in quotes when it
            // was escaped or holds a byte that would end or split it.
            if !bytes.isEmpty && !appendEscaped(bytes, quote: false, to: &out) { return }
            out.removeSubrange(start...)
            out.append(UInt8(ascii: "\""))
            _ = appendEscaped(bytes, quote: true, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    private static func withBytes(of text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        if text.utf8.withContiguousStorageIfAvailable(body) == nil {
            Array(text.utf8).withUnsafeBufferPointer(body)
        }
    }

    /// Appends `bytes` (valid UTF-8) escaped; with `quote`, a `"` as `\"`. Returns whether the
    /// text needs quotes: something was escaped, or it holds a space, a quote or `=`.
    ///
    /// Characters that join their neighbour into one grapheme cluster are escaped where that
    /// neighbour is the line's own: a reader stepping through characters (Swift's `Character`)
    /// would not see a quote, `=`, space or backslash joined to a mark, and would read a value's
    /// text as fields of its own (reviews 83A #3, 84 #1, #3). So a mark that joins what precedes
    /// it (a combining or spacing mark, a joiner, a variation selector) is escaped at a value's
    /// start and after an escape, and one that joins what follows it (a prepended concatenation
    /// mark, U+0600) is always escaped: an escape begins and ends with ASCII of its own.
    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, quote: Bool, to out: inout [UInt8]) -> Bool {
        var needsQuotes = false
        var afterEscape = true  // the value's start follows the line's own `=`, `"` or space
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            // A run of plain ASCII (printable, and none of `\`, `"` or `=`) is copied whole: a
            // byte at a time, appending was most of a request's log line.
            if isPlain(byte) {
                var end = index + 1
                while end < bytes.count && isPlain(bytes[end]) { end += 1 }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<end]))
                afterEscape = false
                index = end
                continue
            }
            if byte >= 0xC2 {
                let width = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
                guard index + width <= bytes.count else { break }  // valid UTF-8 never ends inside a character
                let scalar = decodedScalar(bytes, at: index, width: width)
                if Joining.mustEscape(scalar, afterEscape: afterEscape) {
                    appendScalarEscape(scalar, to: &out)
                    needsQuotes = true
                    afterEscape = true
                } else {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<(index + width)]))
                    afterEscape = false
                }
                index += width
                continue
            }
            index += 1
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0x00..<0x20, 0x7F: appendScalarEscape(UInt32(byte), to: &out)
            case UInt8(ascii: "\"") where quote: out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\""), UInt8(ascii: " "), UInt8(ascii: "="):
                out.append(byte)
                needsQuotes = true
                afterEscape = false
                continue
            default:
                out.append(byte)
                afterEscape = false
                continue
            }
            needsQuotes = true
            afterEscape = true
        }
        return needsQuotes
    }

    /// Printable ASCII written as it is, wherever it stands: not a space, `\`, `"` or `=`.
    @inline(__always) private static func isPlain(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "=")
    }

    /// Which characters join a neighbour (`LogTextLine.appendEscaped`).
    enum Joining {
        /// Escaped: C1 controls, the line and paragraph separators, a character that joins what
        /// follows it, and after an escape (or at a value's start) one that joins what precedes it.
        static func mustEscape(_ value: UInt32, afterEscape: Bool) -> Bool {
            if (0x80...0x9F).contains(value) || value == 0x2028 || value == 0x2029 { return true }
            guard let scalar = Unicode.Scalar(value) else { return true }
            if mayPrepend(value) && joins(scalar, "a") { return true }
            return afterEscape && joins("a", scalar)
        }

        /// Where the characters that join what follows them (Grapheme_Cluster_Break=Prepend) are:
        /// Arabic, Syriac and Malayalam marks and a few in the supplementary Indic blocks. Only
        /// these are asked about (asking costs a string per character).
        private static func mayPrepend(_ value: UInt32) -> Bool {
            (0x0600...0x08FF).contains(value) || value == 0x0D4E || (0x11000...0x11FFF).contains(value)
        }

        /// Whether the two scalars make one grapheme cluster.
        static func joins(_ left: Unicode.Scalar, _ right: Unicode.Scalar) -> Bool {
            var pair = String.UnicodeScalarView()
            pair.append(left)
            pair.append(right)
            return String(pair).count == 1
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
