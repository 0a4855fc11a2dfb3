/// Reads into a document `JSONScanner` has validated without building a `JSONValue` tree: an
/// object's member or an array's first element by byte range, and only the values asked for,
/// built by `JSONBuilder` so each reads exactly as `JSONValue.parse` reads it in the whole
/// document (the last of duplicate keys wins; keys are compared unescaped).
///
/// For the per-chunk path: a tree per upstream chunk (a dictionary per object, a string per
/// key) was a fifth of the gateway's CPU in a deliberation, to read the two or three members a
/// decoder needs. Hand-written for that reason; the walk relies on the scanner's validation, so
/// a `JSONView` only exists for valid bytes, and every range given to it must be one it returned
/// (`root`, a member, an element).
public struct JSONView {
    public let bytes: UnsafeRawBufferPointer
    /// The document's value, without surrounding whitespace.
    public let root: Range<Int>

    /// Nil unless `bytes` is exactly one valid JSON value. `bytes` must outlive the view.
    public init?(validating bytes: UnsafeRawBufferPointer) {
        guard JSONScanner.isValid(bytes) else { return nil }
        self.bytes = bytes
        var start = 0
        var end = bytes.count
        while Self.isWhitespace(bytes[start]) { start += 1 }
        while Self.isWhitespace(bytes[end - 1]) { end -= 1 }
        root = start..<end
    }

    /// Whether the value at `range` is an object.
    public func isObject(_ range: Range<Int>) -> Bool { bytes[range.lowerBound] == UInt8(ascii: "{") }

    /// Whether the value at `range` reads as `null`: `null`, or a number beyond Double's range.
    public func isNull(_ range: Range<Int>) -> Bool {
        switch bytes[range.lowerBound] {
        case UInt8(ascii: "n"): true
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): value(range) == .null
        default: false
        }
    }

    /// A member's key, as it stands in the document.
    public struct Key {
        @usableFromInline let view: JSONView
        /// The key string, quotes included.
        @usableFromInline let range: Range<Int>
        /// Neither an escape nor a non-ASCII byte in it (found as its end was): then only the
        /// same bytes spell an ASCII key, decided by length and bytes alone.
        @usableFromInline let plain: Bool

        /// Whether this key is `key` (ASCII), unescaped. Inlined where it is asked (a chunk's
        /// reader asks a dozen times a chunk): a plain key is its length and bytes.
        @inlinable
        public func matches(_ key: StaticString) -> Bool {
            let count = key.utf8CodeUnitCount
            if range.count - 2 == count {
                let start = view.bytes.baseAddress! + range.lowerBound + 1
                var offset = 0
                while offset < count, start.load(fromByteOffset: offset, as: UInt8.self) == key.utf8Start[offset] { offset += 1 }
                if offset == count { return true }
            }
            return !plain && range.count - 2 > count && matchesSpelledOtherwise(key)
        }

        /// An escaped key (`"cont\u0065nt"`) or a non-ASCII one may still be `key` (Swift
        /// compares strings by canonical equivalence, as `parse`'s dictionary does: the Kelvin
        /// sign is a K); either spelling is longer than the ASCII it stands for.
        @usableFromInline
        func matchesSpelledOtherwise(_ key: StaticString) -> Bool {
            view.value(range).stringValue == key.description
        }
    }

    /// Calls `body` with each member of the object at `range`, in document order (so for
    /// duplicate keys the last call is the value `parse` keeps); nothing when it is not an object.
    /// One pass: read every member you need in one call.
    public func forEachMember(in range: Range<Int>, _ body: (_ key: Key, _ value: Range<Int>) -> Void) {
        guard isObject(range) else { return }
        var index = skipWhitespace(from: range.lowerBound + 1)
        guard bytes[index] != UInt8(ascii: "}") else { return }
        while true {
            index = skipWhitespace(from: index)
            let keyStart = index
            let plain: Bool
            (index, plain) = endOfKey(at: index)
            let key = Key(view: self, range: keyStart..<index, plain: plain)
            index = skipWhitespace(from: index) + 1  // ':'
            let valueStart = skipWhitespace(from: index)
            index = endOfValue(at: valueStart)
            body(key, valueStart..<index)
            index = skipWhitespace(from: index)
            let separator = bytes[index]
            index += 1
            if separator == UInt8(ascii: "}") { return }
        }
    }

    /// The value of member `key` (ASCII) of the object at `range`: the last of duplicates, as
    /// `parse` reads them. Nil when absent or when `range` is not an object.
    public func member(_ key: StaticString, in range: Range<Int>) -> Range<Int>? {
        var found: Range<Int>?
        forEachMember(in: range) { name, value in
            if name.matches(key) { found = value }
        }
        return found
    }

    /// The first element of the array at `range`; nil when it is empty or not an array.
    public func firstElement(in range: Range<Int>) -> Range<Int>? {
        guard bytes[range.lowerBound] == UInt8(ascii: "[") else { return nil }
        let start = skipWhitespace(from: range.lowerBound + 1)
        guard bytes[start] != UInt8(ascii: "]") else { return nil }
        return start..<endOfValue(at: start)
    }

    /// The element after `element` (one this view returned) in its array; nil after the last.
    public func element(after element: Range<Int>) -> Range<Int>? {
        let index = skipWhitespace(from: element.upperBound)
        guard bytes[index] == UInt8(ascii: ",") else { return nil }
        let start = skipWhitespace(from: index + 1)
        return start..<endOfValue(at: start)
    }

    /// The value at `range`, as `JSONValue.parse` reads it.
    public func value(_ range: Range<Int>) -> JSONValue {
        var builder = JSONBuilder(bytes: UnsafeRawBufferPointer(rebasing: bytes[range]), strict: false)
        return (try? builder.value()) ?? .null  // lenient: never throws
    }

    /// The string at `range`; nil when it is not a string.
    public func string(_ range: Range<Int>) -> String? {
        guard bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return value(range).stringValue
    }

    // MARK: walking valid bytes

    private static func isWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 }

    private func skipWhitespace(from index: Int) -> Int {
        var index = index
        while Self.isWhitespace(bytes[index]) { index += 1 }
        return index
    }

    /// Just past the string whose opening quote is at `index`. Eight bytes at a time while
    /// none is a quote or a backslash (model text is most of a chunk).
    private func endOfString(at index: Int) -> Int {
        var index = index + 1
        let base = bytes.baseAddress!
        while index + 8 <= bytes.count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let stops = ByteWords.equal(word, 0x22) | ByteWords.equal(word, 0x5C)
            if stops != 0 {
                index += ByteWords.firstFlagged(stops)
                break
            }
            index += 8
        }
        while bytes[index] != UInt8(ascii: "\"") { index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1 }
        return index + 1
    }

    /// Just past the key whose opening quote is at `index`, and whether it is plain (no escape,
    /// no byte above ASCII). A byte at a time: keys are short.
    private func endOfKey(at index: Int) -> (end: Int, plain: Bool) {
        var index = index + 1
        var plain = true
        while true {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { return (index + 1, plain) }
            if byte == UInt8(ascii: "\\") {
                plain = false
                index += 2
                continue
            }
            if byte >= 0x80 { plain = false }
            index += 1
        }
    }

    /// Just past the value starting at `index`.
    private func endOfValue(at index: Int) -> Int {
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return endOfString(at: index)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = index
            while true {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index = endOfString(at: index)
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default:
                    break
                }
                index += 1
            }
        default:  // a number or a literal: up to the next structural byte or whitespace
            var index = index
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09: return index
                default: index += 1
                }
            }
            return index
        }
    }
}
