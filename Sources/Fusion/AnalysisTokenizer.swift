import GatewayCore

/// One element of one of the analysis' five arrays, complete.
public struct AnalysisItem: Sendable, Equatable {
    /// One of `JudgeAnalysis.fields`.
    public var field: String
    /// Its position in that field's array (0-based, in the order the judge wrote them).
    public var index: Int
    public var value: JSONValue

    public init(field: String, index: Int, value: JSONValue) {
        self.field = field
        self.index = index
        self.value = value
    }
}

/// A streaming JSON tokenizer over the judge's reply: it takes the bytes as they arrive, in any
/// split, and hands out each element of the analysis' five arrays the moment its last byte is in.
///
/// Hand-written rather than a re-parse per delta (quadratic in the reply) or a parse of each
/// element's text once it ends (a second pass over the bytes): this runs on the judge's
/// per-token path, so every byte is looked at once and values are built as they are read. Only
/// what the items need is built (the elements of the five arrays, the top-level keys); every
/// other value is checked for syntax and dropped.
///
/// Text before the first `{` (a ```json fence, a sentence) is skipped; the reply ends with the
/// top-level object. A syntax error, a nesting deeper than `maxDepth` or an element larger than
/// `maxItemBytes` stops the tokenizer (`stopped`): what it handed out stays valid JSON, and the
/// whole reply is still validated at the end (`JudgeAnalysis.parse`). Nothing here can trap:
/// every byte value is a state transition or a stop.
public struct AnalysisTokenizer: Sendable {
    public static let maxDepth = 64
    public static let maxItemBytes = 256 << 10
    public static let maxNumberBytes = 1024

    /// The reply broke the grammar or a cap; no more items come.
    public var stopped: Bool { stopReason != nil }
    /// Why it stopped (nil: it did not).
    public private(set) var stopReason: StopReason?

    public enum StopReason: Sendable, Equatable {
        /// Not JSON from this byte on (1-based, counted from the reply's first byte).
        case syntax(atByte: Int)
        case tooDeep
        case tooLarge
        case numberTooLong

        /// What the judge is told it did wrong.
        public var problem: String {
            switch self {
            case .syntax(let offset): "the reply is not valid JSON (at byte \(offset))"
            case .tooDeep: "the reply nests deeper than \(AnalysisTokenizer.maxDepth) levels"
            case .tooLarge: "an element of the reply is larger than \(AnalysisTokenizer.maxItemBytes / 1024) KiB"
            case .numberTooLong: "a number in the reply is longer than \(AnalysisTokenizer.maxNumberBytes) characters"
            }
        }
    }
    /// The top-level object closed.
    public private(set) var finished = false
    /// Where the top-level object's `{` is and where the byte after its `}` is, in the bytes fed.
    public private(set) var objectStart: Int?
    public private(set) var objectEnd: Int?
    /// How many times each analysis field's key appeared at the top level, and the fields whose
    /// value was an array: with the two offsets, what `JudgeAnalysis.assembled` needs to tell
    /// that the items handed out are the whole analysis.
    public private(set) var fieldKeyCounts: [String: Int] = [:]
    public private(set) var arrayFields: Set<String> = []
    /// Bytes fed so far, while the object is open.
    private var position = 0

    private enum Container: Sendable {
        case object(members: [String: JSONValue]?, key: String?, expecting: ObjectPosition)
        case array(elements: [JSONValue]?, expecting: ArrayPosition)
    }
    private enum ObjectPosition: Sendable { case keyOrEnd, key, colon, value, commaOrEnd }
    private enum ArrayPosition: Sendable { case valueOrEnd, value, commaOrEnd }

    private enum Lexeme: Sendable {
        case between
        /// Inside a string; `build`: keep its bytes (a key we need or a value being built).
        case string(build: Bool)
        case number
        case literal(expected: [UInt8], matched: Int, value: JSONValue)
    }

    private var started = false
    private var stack: [Container] = []
    private var lexeme = Lexeme.between
    /// The bytes of the string or number being read.
    private var buffer: [UInt8] = []
    private var escaping = false
    /// Hex digits of a `\u` escape read so far (-1: none pending).
    private var hexDigits = -1
    private var hexValue: UInt32 = 0
    /// A high surrogate waiting for its low half.
    private var highSurrogate: UInt32?
    /// The analysis field whose array is open at depth 2, and how many elements it gave.
    private var field: String?
    private var counts: [String: Int] = [:]
    /// Bytes read since the current element began (for the size cap).
    private var itemBytes = 0

    public init() {}

    /// Takes the next bytes of the reply; returns the elements they completed, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [AnalysisItem] {
        var items: [AnalysisItem] = []
        for byte in bytes {
            guard !stopped && !finished else { break }
            position += 1
            step(byte, &items)
            if finished { objectEnd = position }
        }
        return items
    }

    public mutating func feed(_ text: String) -> [AnalysisItem] {
        feed(text.utf8)
    }

    /// Inside an element of a field's array: values are built from here down.
    private var building: Bool {
        field != nil && stack.count >= 2
    }

    private mutating func stop(_ reason: StopReason? = nil) {
        guard stopReason == nil else { return }
        stopReason = reason ?? .syntax(atByte: position)
        stack.removeAll()
        buffer.removeAll()
    }

    private mutating func step(_ byte: UInt8, _ items: inout [AnalysisItem]) {
        if building {
            itemBytes += 1
            if itemBytes > Self.maxItemBytes { return stop(.tooLarge) }
        }
        switch lexeme {
        case .string(let build):
            stringByte(byte, build: build, &items)
        case .number:
            if Self.isNumberByte(byte) {
                buffer.append(byte)
                // Long enough for any number a model writes (a 65-digit one passed the final
                // parse and was refused here: review 69 #3), bounded all the same.
                if buffer.count > Self.maxNumberBytes { stop(.numberTooLong) }
                return
            }
            guard let value = Self.number(buffer) else { return stop() }
            lexeme = .between
            buffer.removeAll(keepingCapacity: true)
            completed(value, &items)
            if !stopped && !finished { between(byte, &items) }  // the byte that ended it is the next token's
        case .literal(let expected, let matched, let value):
            guard matched < expected.count, expected[matched] == byte else { return stop() }
            if matched + 1 == expected.count {
                lexeme = .between
                completed(value, &items)
            } else {
                lexeme = .literal(expected: expected, matched: matched + 1, value: value)
            }
        case .between:
            between(byte, &items)
        }
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    private static func isNumberByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
             UInt8(ascii: "e"), UInt8(ascii: "E"): true
        default: false
        }
    }

    /// Between tokens: structure, or the start of a value.
    private mutating func between(_ byte: UInt8, _ items: inout [AnalysisItem]) {
        guard started else {
            // Anything before the object (a fence, a sentence) is not the analysis.
            if byte == UInt8(ascii: "{") {
                started = true
                objectStart = position - 1
                stack.append(.object(members: nil, key: nil, expecting: .keyOrEnd))
            }
            return
        }
        if Self.isWhitespace(byte) { return }
        guard let top = stack.last else { return stop() }
        switch top {
        case .object(let members, let key, let expecting):
            switch (expecting, byte) {
            case (.keyOrEnd, UInt8(ascii: "}")):
                closeContainer(&items)
            case (.keyOrEnd, UInt8(ascii: "\"")), (.key, UInt8(ascii: "\"")):
                // Top-level keys are kept to find the fields; nested ones when building.
                lexeme = .string(build: stack.count == 1 || building)
                buffer.removeAll(keepingCapacity: true)
            case (.colon, UInt8(ascii: ":")):
                stack[stack.count - 1] = .object(members: members, key: key, expecting: .value)
            case (.value, _):
                startValue(byte, &items)
            case (.commaOrEnd, UInt8(ascii: ",")):
                stack[stack.count - 1] = .object(members: members, key: nil, expecting: .key)
            case (.commaOrEnd, UInt8(ascii: "}")):
                closeContainer(&items)
            default:
                stop()
            }
        case .array(let elements, let expecting):
            switch (expecting, byte) {
            case (.valueOrEnd, UInt8(ascii: "]")), (.commaOrEnd, UInt8(ascii: "]")):
                closeContainer(&items)
            case (.valueOrEnd, _), (.value, _):
                startValue(byte, &items)
            case (.commaOrEnd, UInt8(ascii: ",")):
                stack[stack.count - 1] = .array(elements: elements, expecting: .value)
            default:
                stop()
            }
        }
    }

    /// The first byte of a value where one is expected.
    private mutating func startValue(_ byte: UInt8, _ items: inout [AnalysisItem]) {
        if stack.count == 2, field != nil { itemBytes = 1 }  // an element of a field's array begins
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard stack.count < Self.maxDepth else { return stop(.tooDeep) }
            // A field's array opens when the top-level key naming it takes an array.
            if stack.count == 1, byte == UInt8(ascii: "["), case .object(_, let key?, _) = stack[0],
                JudgeAnalysis.fields.contains(key) {
                field = key
                arrayFields.insert(key)
            }
            let build = building || (stack.count == 1 && field != nil && byte == UInt8(ascii: "["))
            stack.append(byte == UInt8(ascii: "{") ? .object(members: build ? [:] : nil, key: nil, expecting: .keyOrEnd)
                                                   : .array(elements: build ? [] : nil, expecting: .valueOrEnd))
        case UInt8(ascii: "\""):
            lexeme = .string(build: building)
            buffer.removeAll(keepingCapacity: true)
        case UInt8(ascii: "t"): lexeme = .literal(expected: Array("true".utf8), matched: 1, value: .bool(true))
        case UInt8(ascii: "f"): lexeme = .literal(expected: Array("false".utf8), matched: 1, value: .bool(false))
        case UInt8(ascii: "n"): lexeme = .literal(expected: Array("null".utf8), matched: 1, value: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            lexeme = .number
            buffer.removeAll(keepingCapacity: true)
            buffer.append(byte)
        default:
            stop()
        }
    }

    private mutating func stringByte(_ byte: UInt8, build: Bool, _ items: inout [AnalysisItem]) {
        if hexDigits >= 0 {
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: return stop()
            }
            hexValue = hexValue << 4 | digit
            hexDigits += 1
            if hexDigits == 4 {
                hexDigits = -1
                if build { appendScalar(hexValue) }
            }
            return
        }
        if escaping {
            escaping = false
            let plain: UInt8
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): plain = byte
            case UInt8(ascii: "b"): plain = 0x08
            case UInt8(ascii: "f"): plain = 0x0C
            case UInt8(ascii: "n"): plain = 0x0A
            case UInt8(ascii: "r"): plain = 0x0D
            case UInt8(ascii: "t"): plain = 0x09
            case UInt8(ascii: "u"):
                hexDigits = 0
                hexValue = 0
                return
            default: return stop()
            }
            if build { flushSurrogate(); buffer.append(plain) }
            return
        }
        switch byte {
        case UInt8(ascii: "\\"):
            escaping = true
        case UInt8(ascii: "\""):
            lexeme = .between
            if build { flushSurrogate() }
            let text = build ? String(decoding: buffer, as: UTF8.self) : ""
            buffer.removeAll(keepingCapacity: true)
            stringEnded(text, &items)
        case 0x00..<0x20:
            stop()  // a raw control character: not JSON
        default:
            if build { flushSurrogate(); buffer.append(byte) }
        }
    }

    /// A `\u` escape's code unit: surrogate halves are paired; a lone one becomes U+FFFD.
    private mutating func appendScalar(_ unit: UInt32) {
        if (0xD800..<0xDC00).contains(unit) {
            flushSurrogate()
            highSurrogate = unit
            return
        }
        var scalar = unit
        if (0xDC00..<0xE000).contains(unit) {
            if let high = highSurrogate {
                scalar = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
                highSurrogate = nil
            } else {
                scalar = 0xFFFD
            }
        } else {
            flushSurrogate()
        }
        buffer.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
    }

    private mutating func flushSurrogate() {
        guard highSurrogate != nil else { return }
        highSurrogate = nil
        buffer.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD
    }

    /// A string ended: a key where the object expects one, else a value.
    private mutating func stringEnded(_ text: String, _ items: inout [AnalysisItem]) {
        if case .object(let members, _, let expecting) = stack.last, expecting == .keyOrEnd || expecting == .key {
            stack[stack.count - 1] = .object(members: members, key: text, expecting: .colon)
            if stack.count == 1, JudgeAnalysis.fields.contains(text) { fieldKeyCounts[text, default: 0] += 1 }
            return
        }
        completed(.string(text), &items)
    }

    private mutating func closeContainer(_ items: inout [AnalysisItem]) {
        guard let top = stack.popLast() else { return stop() }
        if stack.isEmpty {
            finished = true
            return
        }
        if stack.count == 1 { field = nil }  // a field's array closed
        switch top {
        case .object(let members, _, _): completed(members.map(JSONValue.object) ?? .null, &items)
        case .array(let elements, _): completed(elements.map(JSONValue.array) ?? .null, &items)
        }
    }

    /// A value is complete: it goes into its container, and is an item when that container is a
    /// field's array.
    private mutating func completed(_ value: JSONValue, _ items: inout [AnalysisItem]) {
        // Popped and pushed back rather than replaced in place: the container's storage stays
        // uniquely referenced, so adding to it never copies it (a quadratic trap on long arrays).
        guard var top = stack.popLast() else { return stop() }
        switch top {
        case .object(var members, let key, _):
            top = .array(elements: nil, expecting: .value)  // drops the second reference to `members`
            if let key { members?[key] = value }
            stack.append(.object(members: members, key: key, expecting: .commaOrEnd))
        case .array(var elements, _):
            top = .array(elements: nil, expecting: .value)
            if stack.count == 1, let field {
                // An element of a field's array: handed out, not kept (the whole reply is
                // validated at the end anyway).
                let index = counts[field, default: 0]
                counts[field] = index + 1
                items.append(AnalysisItem(field: field, index: index, value: value))
            } else {
                elements?.append(value)
            }
            stack.append(.array(elements: elements, expecting: .commaOrEnd))
        }
        _ = top
    }

    /// A JSON number's bytes as a value: grammar checked (RFC 8259 §6), then converted; beyond
    /// Double's range it becomes null, as the lenient whole-document parser does.
    static func number(_ bytes: [UInt8]) -> JSONValue? {
        var index = 0
        func digits() -> Int {
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - start
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let integerStart = index
        let integerDigits = digits()
        guard integerDigits > 0, !(integerDigits > 1 && bytes[integerStart] == UInt8(ascii: "0")) else { return nil }
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            integral = false
            guard digits() > 0 else { return nil }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            integral = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { return nil }
        }
        guard index == bytes.count else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        if integral, let value = Int64(text) { return .int(value) }
        guard let value = Double(text), value.isFinite else { return .null }
        return .double(value)
    }
}
