import Glibc

/// A validating JSON scanner over raw bytes: no allocation, no decoding.
///
/// The per-token path must not pay for Foundation's JSON coders (~5 µs a chunk here), yet it
/// must not forward garbage either. This checks RFC 8259 syntax in one pass and can locate a
/// top-level member's value, so callers can inspect or splice it without parsing the rest.
public struct JSONScanner {
    public static let maxDepth = 128

    private let bytes: UnsafeRawBufferPointer
    /// The last string `skipString` passed held an escape.
    private var stringHadEscape = false
    private var index = 0
    /// Numbers beyond a double's range (`1e309`) are refused: for bytes that go out to a client
    /// (`appendObject`), whose parser reads them as infinity, or fails the whole chunk (Go's
    /// `encoding/json`), as the gateway refuses them from clients (review 71B #3). Parsing
    /// upstream bytes into values reads them as null instead (`JSONValue`).
    private var finiteNumbersOnly = false

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// True when `bytes` is exactly one valid JSON value (surrounding whitespace allowed).
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.skipValue(depth: 0) else { return false }
        scanner.skipWhitespace()
        return scanner.index == bytes.count
    }

    public static func isValid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { isValid($0) }
    }

    /// Whether arrays and objects open more than `limit` deep somewhere (strings skipped): for
    /// an error message that says why an otherwise valid document was refused.
    public static func nestsTooDeep(_ bytes: UnsafeRawBufferPointer, limit: Int = maxDepth) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return false
    }

    /// The byte range of the value of top-level member `key` when `bytes` is a valid JSON object.
    /// Keys are compared as raw bytes (keys with escapes never match). Returns nil when the
    /// document is invalid, not an object, or lacks the key. The last duplicate wins, as in
    /// most JSON parsers.
    public static func rangeOfTopLevelValue(forKey key: String, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        var scanner = JSONScanner(bytes)
        var found: Range<Int>?
        var keyUTF8 = key
        let ok = keyUTF8.withUTF8 { keyBytes in
            scanner.forEachTopLevelMember { keyRange, valueRange, _ in
                if keyRange.count == keyBytes.count
                    && UnsafeRawBufferPointer(rebasing: bytes[keyRange]).elementsEqual(UnsafeRawBufferPointer(keyBytes))
                {
                    found = valueRange
                }
            }
        }
        return ok ? found : nil
    }

    /// Each top-level member of a valid JSON object, in document order (duplicates included):
    /// its key decoded (escapes read as `parse` reads them) and its value's byte range. Nil when
    /// `bytes` is not one valid JSON object.
    public static func topLevelMembers(in bytes: [UInt8]) -> [(key: String, value: Range<Int>)]? {
        bytes.withUnsafeBytes { buffer in
            var scanner = JSONScanner(buffer)
            var members: [(key: String, value: Range<Int>)] = []
            let ok = scanner.forEachTopLevelMember { keyRange, valueRange, _ in
                let raw = UnsafeRawBufferPointer(rebasing: buffer[keyRange])
                let key = raw.contains(UInt8(ascii: "\\"))
                    ? (try? JSONValue.parse(Array(buffer[(keyRange.lowerBound - 1)..<(keyRange.upperBound + 1)])))?.stringValue ?? ""
                    : String(decoding: raw, as: UTF8.self)
                members.append((key, valueRange))
            }
            return ok ? members : nil
        }
    }

    public static func rangeOfTopLevelValue(forKey key: String, in bytes: [UInt8]) -> Range<Int>? {
        bytes.withUnsafeBytes { rangeOfTopLevelValue(forKey: key, in: $0) }
    }

    /// `bytes` with the values of the given top-level string members replaced (members that are
    /// absent are left absent); nil when `bytes` is not a valid JSON object. Everything else is
    /// kept byte for byte: no decoding, no re-encoding.
    public static func replacingTopLevelValues(_ replacements: [String: String], in bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        var scanner = JSONScanner(bytes)
        var edits: [(Range<Int>, String)] = []
        let ok = scanner.forEachTopLevelMember { keyRange, valueRange, _ in
            let key = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[keyRange]), as: UTF8.self)
            if let value = replacements[key] { edits.append((valueRange, value)) }
        }
        guard ok else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 64)
        var position = 0
        for (range, value) in edits.sorted(by: { $0.0.lowerBound < $1.0.lowerBound }) {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<range.lowerBound]))
            JSONWriting.appendString(value, to: &out)
            position = range.upperBound
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position...]))
        return out
    }

    /// Appends `bytes`, a JSON object, with the `leading` members first (each `key` raw, each
    /// `value` already encoded JSON) and every member of the same name dropped from the rest,
    /// which follow in order, byte for byte. Returns false (and appends nothing) when `bytes` is
    /// not one valid JSON object: validation and rewriting are one pass. For one object (a
    /// whole answer); a stream renders its members once (`LeadingMembers`) and gives each
    /// relayed chunk the completion's own `id` and `model` through the form below.
    public static func appendObject(_ bytes: UnsafeRawBufferPointer, leading: [(key: [UInt8], value: [UInt8])],
                                    to out: inout [UInt8]) -> Bool {
        appendObject(bytes, leading: LeadingMembers(leading), to: &out)
    }

    /// A member key as every JSON parser reads it, when its raw bytes hold an escape
    /// (`"\u0069d"` is `id`): a leading member must replace it as it replaces `"id"`, or an
    /// upstream's escaped key would follow the gateway's and win in the client's parser. Nil
    /// when the raw bytes are the key (asked only of a key the scan saw an escape in).
    static func unescapedKey(_ raw: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let base = raw.baseAddress, memchr(base, Int32(UInt8(ascii: "\\")), raw.count) != nil else { return nil }
        var quoted: [UInt8] = [UInt8(ascii: "\"")]
        quoted.append(contentsOf: raw)
        quoted.append(UInt8(ascii: "\""))
        guard case .string(let key)? = try? JSONValue.parse(quoted) else { return nil }
        return Array(key.utf8)
    }

    /// `appendObject` with pre-rendered leading members: the proxy's per-event call.
    public static func appendObject(_ bytes: UnsafeRawBufferPointer, leading: LeadingMembers, to out: inout [UInt8]) -> Bool {
        let start = out.count
        out.append(UInt8(ascii: "{"))
        out.append(contentsOf: leading.rendered)
        var separate = !leading.isEmpty
        var scanner = JSONScanner(bytes)
        scanner.finiteNumbersOnly = true
        let ok = scanner.forEachTopLevelMember { keyRange, valueRange, escaped in
            let raw = UnsafeRawBufferPointer(rebasing: bytes[keyRange])
            if escaped, let key = unescapedKey(raw) {
                if key.withUnsafeBytes({ leading.contains($0) }) { return }
            } else if leading.contains(raw) {
                return
            }
            if separate { out.append(UInt8(ascii: ",")) }
            separate = true
            // From the key's opening quote to the value's end.
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[(keyRange.lowerBound - 1)..<valueRange.upperBound]))
        }
        guard ok else {
            out.removeSubrange(start...)
            return appendRebuilt(bytes, leading: leading.rendered, isLeading: { leading.contains($0) }, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return true
    }

    /// The object `bytes` rebuilt from its parsed value, `leading` first: for one the scan refused
    /// for a number beyond a double's range, which goes out as null, as the gateway reads it
    /// (review 71B #3: `1e309` reached clients). False for bytes that are no JSON object. Rare:
    /// not the per-event path.
    private static func appendRebuilt(_ bytes: UnsafeRawBufferPointer, leading: [UInt8], isLeading: (UnsafeRawBufferPointer) -> Bool,
                                      to out: inout [UInt8]) -> Bool {
        guard case .object(let members)? = try? JSONValue.parse(bytes) else { return false }
        out.append(UInt8(ascii: "{"))
        out.append(contentsOf: leading)
        var separate = !leading.isEmpty
        for (key, value) in members.sorted(by: { $0.key < $1.key }) {
            if Array(key.utf8).withUnsafeBytes(isLeading) { continue }
            if separate { out.append(UInt8(ascii: ",")) }
            separate = true
            JSONWriting.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriting.appendValue(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return true
    }

    /// Calls `body` with the raw key range (inside the quotes) and value range of each member of
    /// a top-level object. Returns false when the input is not one valid JSON object.
    /// `body` gets each member's key range (without quotes), value range, and whether the key
    /// held an escape (read as the key was skipped: the per-event copy need not look again).
    private mutating func forEachTopLevelMember(_ body: (Range<Int>, Range<Int>, Bool) -> Void) -> Bool {
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else { return false }
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                let keyStart = index + 1
                guard peek() == UInt8(ascii: "\""), skipString() else { return false }
                let keyRange = keyStart..<(index - 1)
                let keyEscaped = stringHadEscape
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                let valueStart = index
                guard skipValue(depth: 1) else { return false }
                body(keyRange, valueStart..<index, keyEscaped)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { index += 1; continue }
                guard peek() == UInt8(ascii: "}") else { return false }
                index += 1
                break
            }
        }
        skipWhitespace()
        return index == bytes.count
    }

    @inline(__always)
    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func skipValue(depth: Int) -> Bool {
        guard let byte = peek() else { return false }
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < Self.maxDepth else { return false }
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { index += 1; return true }
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\""), skipString() else { return false }
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return true
                default: return false
                }
            }
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { return false }
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { index += 1; return true }
            while true {
                skipWhitespace()
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): index += 1; return true
                default: return false
                }
            }
        case UInt8(ascii: "\""):
            return skipString()
        case UInt8(ascii: "t"): return skipLiteral("true")
        case UInt8(ascii: "f"): return skipLiteral("false")
        case UInt8(ascii: "n"): return skipLiteral("null")
        default:
            return skipNumber()
        }
    }

    /// At an opening quote: skips the string, checking escapes and control characters.
    /// (UTF-8 validity is the consumer's concern; Swift's decoders repair it.)
    private mutating func skipString() -> Bool {
        index += 1
        stringHadEscape = false
        while index < bytes.count {
            // Eight bytes at a time to the next quote, backslash or control (every event's
            // strings pass here, as the relay copies a chunk).
            if index + 8 <= bytes.count {
                let word = ByteWords.load(bytes, at: index)
                let stops = ByteWords.equal(word, UInt8(ascii: "\"")) | ByteWords.equal(word, UInt8(ascii: "\\")) | ByteWords.below(word, 0x20)
                if stops == 0 {
                    index += 8
                    continue
                }
                index += ByteWords.firstFlagged(stops)
            }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { index += 1; return true }
            if byte < 0x20 { return false }
            if byte == UInt8(ascii: "\\") {
                stringHadEscape = true
                index += 1
                guard index < bytes.count else { return false }
                switch bytes[index] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    guard index + 4 < bytes.count else { return false }
                    for offset in 1...4 where !Self.isHexDigit(bytes[index + offset]) { return false }
                    index += 5
                default:
                    return false
                }
                continue
            }
            index += 1
        }
        return false
    }

    private mutating func skipLiteral(_ literal: StaticString) -> Bool {
        guard bytes.hasLiteral(literal, at: index) else { return false }
        index += literal.utf8CodeUnitCount
        return true
    }

    private mutating func skipNumber() -> Bool {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), Self.isDigit(first) else { return false }
        let integerStart = index
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        // Without an exponent, an integer part of more than 309 digits is beyond a double's range;
        // one of 309 may be (2e308 written out: review 72A), read as the exponents are.
        let integerDigits = index - integerStart
        if finiteNumbersOnly && integerDigits > 309 { return false }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let byte = peek(), Self.isDigit(byte) else { return false }
            skipDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let byte = peek(), Self.isDigit(byte) else { return false }
            skipDigits()
            if finiteNumbersOnly { return Self.isFinite(UnsafeRawBufferPointer(rebasing: bytes[start..<index])) }
        }
        if finiteNumbersOnly && integerDigits == 309 { return Self.isFinite(UnsafeRawBufferPointer(rebasing: bytes[integerStart..<(integerStart + 309)])) }
        return true
    }

    /// A number with an exponent, or a 309-digit integer, within a double's range (rare on the
    /// per-event path: read by `strtod` from a stack copy). Past 320 bytes a number is hostile,
    /// refused.
    private static func isFinite(_ number: UnsafeRawBufferPointer) -> Bool {
        guard number.count < 320 else { return false }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 320) { buffer in
            for offset in 0..<number.count { buffer[offset] = CChar(bitPattern: number[offset]) }
            buffer[number.count] = 0
            return strtod(buffer.baseAddress!, nil).isFinite
        }
    }

    @inline(__always)
    private mutating func skipDigits() {
        while let byte = peek(), Self.isDigit(byte) { index += 1 }
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }
}

/// Byte equality of two regions (`count` may be 0, with nil bases).
@inline(__always)
func memoryEqual(_ a: UnsafeRawPointer?, _ b: UnsafeRawPointer?, _ count: Int) -> Bool {
    guard count > 0, let a, let b else { return true }
    for offset in 0..<count where a.load(fromByteOffset: offset, as: UInt8.self) != b.load(fromByteOffset: offset, as: UInt8.self) {
        return false
    }
    return true
}
