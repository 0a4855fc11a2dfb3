/// Appending JSON text to a byte buffer by hand, for the handful of small documents built on hot
/// or error paths (error bodies, mock chunks), where Foundation's encoder costs ~5 µs each.
public enum JSONWriting {
    /// Appends `string` as a quoted, escaped JSON string. Besides what JSON requires (quote,
    /// backslash, C0 controls), NEL, U+2028 and U+2029 are escaped too: JSON allows them raw,
    /// but line splitters other than SSE's end lines there, and these strings go into streams.
    ///
    /// Hand-written for the per-token path (model text goes out through it in every progress
    /// event, and whole prompts into every upstream request): eight plain ASCII bytes are
    /// checked at a time, and plain runs are copied whole.
    public static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            byteClasses.withUnsafeBufferPointer { classes in
                let count = bytes.count
                let base = UnsafeRawPointer(bytes.baseAddress)
                var start = 0
                var index = 0
                while index < count {
                    if let base, index &+ 8 <= count {
                        if !needsAttention(base.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                            index &+= 8
                            continue
                        }
                        // Up to the byte that needs it (none: a high bit that starts no separator).
                        let stop = index &+ 8
                        while index < stop, classes[Int(bytes[index])] == 0 { index &+= 1 }
                        if index == stop { continue }
                    }
                    let byte = bytes[index]
                    guard classes[Int(byte)] != 0 else {
                        index &+= 1
                        continue
                    }
                    var length = 1
                    var shortEscape: UInt8 = 0
                    var scalar = UInt32(byte)
                    switch byte {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"): shortEscape = byte
                    case 0x0A: shortEscape = UInt8(ascii: "n")
                    case 0x0D: shortEscape = UInt8(ascii: "r")
                    case 0x09: shortEscape = UInt8(ascii: "t")
                    case 0x00..<0x20: break
                    default:
                        guard let separator = lineSeparator(in: UnsafeRawBufferPointer(bytes), at: index) else {
                            index &+= 1
                            continue
                        }
                        scalar = separator.scalar
                        length = separator.length
                    }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                    if shortEscape != 0 {
                        out.append(0x5C)
                        out.append(shortEscape)
                    } else {
                        appendUnicodeEscape(scalar, to: &out)
                    }
                    index &+= length
                    start = index
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Per byte: 0 is copied as is; 1 is escaped (quote, backslash, C0 control); 2 may start
    /// NEL, U+2028 or U+2029.
    static let byteClasses: [UInt8] = (0..<256).map { byte -> UInt8 in
        switch byte {
        case 0x22, 0x5C, 0x00..<0x20: 1
        case 0xC2, 0xE2: 2
        default: 0
        }
    }

    /// Whether any of eight bytes is a control, a quote, a backslash or has its high bit set.
    @inline(__always)
    static func needsAttention(_ word: UInt64) -> Bool {
        ByteWords.nonASCII(word) | ByteWords.below(word, 0x20) | ByteWords.equal(word, 0x22) | ByteWords.equal(word, 0x5C) != 0
    }

    /// Whether all eight bytes are printable ASCII or DEL (none below 0x20, none with its high bit).
    @inline(__always)
    static func isPrintableASCII(_ word: UInt64) -> Bool {
        ByteWords.nonASCII(word) | ByteWords.below(word, 0x20) == 0
    }

    public static func quoted(_ string: String) -> String {
        var out: [UInt8] = []
        appendString(string, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// NEL (C2 85), U+2028 (E2 80 A8) or U+2029 (E2 80 A9) at `index` of UTF-8 `bytes`: the
    /// scalar and its length in bytes.
    @inlinable
    static func lineSeparator(in bytes: UnsafeRawBufferPointer, at index: Int) -> (scalar: UInt32, length: Int)? {
        switch bytes[index] {
        case 0xC2 where index + 1 < bytes.count && bytes[index + 1] == 0x85:
            return (0x85, 2)
        case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9):
            return (0x2000 | UInt32(bytes[index + 2] - 0x80), 3)
        default:
            return nil
        }
    }

    /// `\uXXXX` for a scalar in the Basic Multilingual Plane.
    @inlinable
    static func appendUnicodeEscape(_ scalar: UInt32, to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        out.append(0x5C)
        out.append(UInt8(ascii: "u"))
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(digits.utf8Start[Int((scalar >> UInt32(shift)) & 0xF)])
        }
    }
}

extension JSONWriting {
    /// Appends `value` as compact JSON, object keys sorted (deterministic bytes). This is what
    /// `JSONValue.serialized()` writes: every upstream request body, every record and the end
    /// of every Fusion stream go through it, on the way to the next call or the last byte, so
    /// it is hand-written (Foundation's `JSONEncoder` took ~0.7 ms of a deliberation's
    /// 0.8 ms overhead). Its bytes are `JSONEncoder`'s (`.sortedKeys`, `.withoutEscapingSlashes`)
    /// except for strings, which escape NEL, U+2028 and U+2029 as `appendString` says and spell
    /// backspace and form feed `\u0008` and `\u000c`. Non-finite numbers are null.
    public static func appendValue(_ value: JSONValue, to out: inout [UInt8]) {
        appendValue(value, verbatim: nil, to: &out)
    }

    /// `value`, with an object the client wrote (`verbatim`) at most `VerbatimJSON.maxDepth`
    /// levels into it written as the client wrote it (deeper objects are inside those).
    public static func appendValue(_ value: JSONValue, verbatim: VerbatimJSON?, depth: Int = 0, to out: inout [UInt8]) {
        var verbatim = verbatim
        if depth > VerbatimJSON.maxDepth { verbatim = nil }
        if let verbatim, case .object = value, let bytes = verbatim.bytes(for: value) {
            out.append(contentsOf: bytes)
            return
        }
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .int(let number): out.append(contentsOf: String(number).utf8)
        case .double(let number): appendNumber(number, to: &out)
        case .string(let text): appendString(text, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (position, item) in items.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendValue(item, verbatim: verbatim, depth: depth + 1, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Keys in UTF-8 byte order, as Foundation sorts them (and cheaper than `<`, which
            // compares canonical equivalents).
            for (position, member) in members.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendValue(member.value, verbatim: verbatim, depth: depth + 1, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Swift's shortest round-trip form ("0.1", "1e+20"), which is valid JSON, with an integral
    /// value's ".0" dropped as `JSONEncoder` does ("100", "-0"); non-finite is null.
    static func appendNumber(_ number: Double, to out: inout [UInt8]) {
        guard number.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        let text = number.description
        out.append(contentsOf: text.hasSuffix(".0") ? text.utf8.dropLast(2) : text.utf8[...])
    }

    /// `value` as compact JSON text.
    public static func compact(_ value: JSONValue) -> String {
        var out: [UInt8] = []
        appendValue(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
