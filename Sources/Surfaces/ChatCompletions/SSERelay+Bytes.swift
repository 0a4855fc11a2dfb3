import GatewayCore

/// What `SSERelay` reads of a chunk's bytes beyond their syntax: whether a chunk carries the
/// answer (read only until one does), and the repairs a data line gets on its way out.
extension SSERelay {
    /// Whether a chunk says something of the answer: a choice with a finish reason, or a delta
    /// with a member other than `role` that is not null, `""`, `[]` or `{}`. Not valid JSON:
    /// true (relayed, so the scanner refuses it). Read only until the answer begins.
    static func carriesAnswer(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let view = JSONView(validating: bytes) else { return true }
        guard let choices = view.member("choices", in: view.root) else { return false }
        var next = view.firstElement(in: choices)
        while let choice = next {
            if let reason = view.member("finish_reason", in: choice), !view.isNull(reason) { return true }
            var says = false
            if let delta = view.member("delta", in: choice) {
                view.forEachMember(in: delta) { key, value in
                    guard !says, !key.matches("role"), !view.isNull(value) else { return }
                    says = !isEmpty(value, in: view)
                }
            }
            if says { return true }
            next = view.element(after: choice)
        }
        return false
    }

    /// `""`, `[]` or `{}`, however spelled (`[ ]`, white space inside: review 60 #4).
    private static func isEmpty(_ value: Range<Int>, in view: JSONView) -> Bool {
        switch view.bytes[value.lowerBound] {
        case UInt8(ascii: "\""): return view.string(value)?.isEmpty == true
        case UInt8(ascii: "["): return view.firstElement(in: value) == nil
        case UInt8(ascii: "{"):
            var members = 0
            view.forEachMember(in: value) { _, _ in members += 1 }
            return members == 0
        default: return false
        }
    }

    /// Which of the repairs below may change `out[start...]`.
    enum Repairs {
        /// Plain printable ASCII without a backslash: none.
        case none
        /// ASCII with a backslash (`\n` in text, the usual case): only a lone surrogate escape
        /// can need one, and only the escapes' repair runs.
        case escapes
        /// A byte above ASCII (UTF-8 to check, NEL, U+2028, U+2029) or below 0x20 (CR, LF, a
        /// control): all three.
        case all
    }

    /// Which repairs an event needs, in one pass eight bytes at a time where the three took
    /// three: most chunks need none or only the escapes' (a word with no byte above ASCII, below
    /// 0x20 or a backslash is passed at once).
    static func repairsNeeded(_ out: [UInt8], from start: Int) -> Repairs {
        out.withUnsafeBytes { bytes in
            var index = start
            var backslash = false
            while index + 8 <= bytes.count {
                let word = ByteWords.load(bytes, at: index)
                if ByteWords.nonASCII(word) | ByteWords.below(word, 0x20) != 0 { return .all }
                if ByteWords.equal(word, UInt8(ascii: "\\")) != 0 { backslash = true }
                index += 8
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte >= 0x80 || byte < 0x20 { return .all }
                if byte == UInt8(ascii: "\\") { backslash = true }
                index += 1
            }
            return backslash ? .escapes : .none
        }
    }

    /// Bytes that are not UTF-8 (only inside strings: the scanner refuses them elsewhere) become
    /// U+FFFD, as the other APIs' routes and the Fusion output write them: a strict client's
    /// decoder never meets them. One pass eight ASCII bytes at a time; a copy only when invalid.
    static func repairUTF8(_ out: inout [UInt8], from start: Int) {
        let invalid = out.withUnsafeBytes { UTF8Validation.firstInvalidOffset(UnsafeRawBufferPointer(rebasing: $0[start...])) != nil }
        guard invalid else { return }
        let repaired = String(decoding: out[start...], as: UTF8.self)
        out.removeSubrange(start...)
        out.append(contentsOf: repaired.utf8)
    }

    /// `\uD800`…`\uDFFF` escapes that are not a high surrogate followed by a low one (text cut
    /// inside an emoji) become `\uFFFD`, in place (the same six bytes), as the raw bytes that are
    /// not UTF-8 become U+FFFD: strict decoders (serde_json, Go's) refuse a lone surrogate. Only
    /// a chunk with a backslash is looked at, eight bytes at a time until one shows.
    static func repairSurrogateEscapes(_ out: inout [UInt8], from start: Int) {
        out.withUnsafeMutableBytes { bytes in
            var index = start
            let count = bytes.count
            while index < count {
                if index + 8 <= count {
                    let backslashes = ByteWords.equal(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self), UInt8(ascii: "\\"))
                    if backslashes == 0 {
                        index += 8
                        continue
                    }
                    index += ByteWords.firstFlagged(backslashes)  // bytes before it are no escape's
                }
                guard bytes[index] == UInt8(ascii: "\\"), index + 1 < count else { index += 1; continue }
                guard bytes[index + 1] == UInt8(ascii: "u"), let unit = hexUnit(bytes, at: index + 2) else {
                    index += 2  // another escape, `\\` included: its second byte is no escape's start
                    continue
                }
                if (0xD800...0xDBFF).contains(unit), index + 12 <= count, bytes[index + 6] == UInt8(ascii: "\\"), bytes[index + 7] == UInt8(ascii: "u"),
                   let low = hexUnit(bytes, at: index + 8), (0xDC00...0xDFFF).contains(low) {
                    index += 12  // a pair
                } else if (0xD800...0xDFFF).contains(unit) {
                    for (offset, byte) in "FFFD".utf8.enumerated() { bytes[index + 2 + offset] = byte }
                    index += 6
                } else {
                    index += 6
                }
            }
        }
    }

    /// The four hex digits at `offset` as a number; nil if they are not four hex digits.
    private static func hexUnit(_ bytes: UnsafeMutableRawBufferPointer, at offset: Int) -> Int? {
        guard offset + 4 <= bytes.count else { return nil }
        var value = 0
        for position in offset..<(offset + 4) {
            let byte = bytes[position]
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            value = value << 4 | digit
        }
        return value
    }
}
