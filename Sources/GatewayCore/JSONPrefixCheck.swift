/// Checks, as the bytes arrive in any split, that what has been fed so far is the beginning of
/// one JSON object (RFC 8259), without building anything. For a tool call's arguments streamed
/// in fragments to a client that parses the prefix on every delta (Anthropic's SDKs do, and raise
/// on the first fragment that cannot be the start of a JSON object): each fragment is checked
/// before it is sent.
///
/// Hand-written for the per-token path: every byte is one state transition, nothing is copied,
/// and the only allocation is the nesting stack's. Nothing here can trap: a byte that cannot
/// continue the object, or a nesting deeper than `maxDepth`, sets `failed` for good.
public struct JSONPrefixCheck: Sendable {
    public static let maxDepth = 64

    /// What has been fed is not the beginning of a JSON object (or nests deeper than `maxDepth`).
    public private(set) var failed = false
    /// The object has closed: the arguments are complete (only whitespace may follow).
    public var isComplete: Bool { !failed && expect == .trailing }
    /// Nothing but whitespace so far (arguments that are blank mean `{}`).
    public var isBlank: Bool { !failed && expect == .object }

    private enum Expect: Sendable { case object, keyOrEnd, key, colon, valueOrEnd, value, commaOrEnd, trailing }
    private enum Number: Sendable {
        case minus, zero, integer, dot, fraction, exponent, exponentSign, exponentDigits

        var isTerminal: Bool {
            switch self {
            case .zero, .integer, .fraction, .exponentDigits: true
            default: false
            }
        }

        /// The state after `byte`, or nil when `byte` is not part of the number.
        func next(_ byte: UInt8) -> Number? {
            let digit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            let exponentMark = byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
            switch self {
            case .minus: return byte == UInt8(ascii: "0") ? .zero : digit ? .integer : nil
            case .zero: return byte == UInt8(ascii: ".") ? .dot : exponentMark ? .exponent : nil
            case .integer: return digit ? .integer : byte == UInt8(ascii: ".") ? .dot : exponentMark ? .exponent : nil
            case .dot: return digit ? .fraction : nil
            case .fraction: return digit ? .fraction : exponentMark ? .exponent : nil
            case .exponent:
                return byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") ? .exponentSign : digit ? .exponentDigits : nil
            case .exponentSign, .exponentDigits: return digit ? .exponentDigits : nil
            }
        }
    }

    private var expect = Expect.object
    /// `{` or `[` per open container, innermost last.
    private var stack: [UInt8] = []
    private var inString = false
    private var stringIsKey = false
    private var escaping = false
    /// Hex digits still due in a `\u` escape.
    private var hexDigitsDue = 0
    private var number: Number?
    /// The literal being read (`true`, `false`, `null`) and how much of it has matched.
    private var literal: StaticString?
    private var literalMatched = 0

    public init() {}

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            guard !failed else { return }
            feed(byte)
        }
    }

    private mutating func feed(_ byte: UInt8) {
        if inString {
            readString(byte)
            return
        }
        if let state = number {
            if let next = state.next(byte) {
                number = next
                return
            }
            number = nil
            guard state.isTerminal else { return fail() }
            valueEnded()  // and `byte` follows the number
        }
        if let word = literal {
            guard literalMatched < word.utf8CodeUnitCount, byte == word.utf8Start[literalMatched] else { return fail() }
            literalMatched += 1
            if literalMatched == word.utf8CodeUnitCount {
                literal = nil
                valueEnded()
            }
            return
        }
        if byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { return }
        switch expect {
        case .object:
            guard byte == UInt8(ascii: "{") else { return fail() }
            open(byte)
        case .keyOrEnd, .key:
            if byte == UInt8(ascii: "\"") {
                startString(key: true)
            } else if expect == .keyOrEnd && byte == UInt8(ascii: "}") {
                close()
            } else {
                fail()
            }
        case .colon:
            guard byte == UInt8(ascii: ":") else { return fail() }
            expect = .value
        case .valueOrEnd, .value:
            if expect == .valueOrEnd && byte == UInt8(ascii: "]") {
                close()
            } else {
                startValue(byte)
            }
        case .commaOrEnd:
            let top = stack.last
            if byte == UInt8(ascii: ",") {
                expect = top == UInt8(ascii: "{") ? .key : .value
            } else if (byte == UInt8(ascii: "}") && top == UInt8(ascii: "{")) || (byte == UInt8(ascii: "]") && top == UInt8(ascii: "[")) {
                close()
            } else {
                fail()
            }
        case .trailing:
            fail()
        }
    }

    private mutating func readString(_ byte: UInt8) {
        if hexDigitsDue > 0 {
            let hex = (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
            guard hex else { return fail() }
            hexDigitsDue -= 1
        } else if escaping {
            escaping = false
            switch byte {
            case UInt8(ascii: "u"): hexDigitsDue = 4
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                 UInt8(ascii: "r"), UInt8(ascii: "t"): break
            default: fail()
            }
        } else if byte == UInt8(ascii: "\"") {
            inString = false
            if stringIsKey { expect = .colon } else { valueEnded() }
        } else if byte == UInt8(ascii: "\\") {
            escaping = true
        } else if byte < 0x20 {
            fail()  // control characters must be escaped
        }
    }

    private mutating func startString(key: Bool) {
        inString = true
        stringIsKey = key
    }

    private mutating func startValue(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["): open(byte)
        case UInt8(ascii: "\""): startString(key: false)
        case UInt8(ascii: "-"): number = .minus
        case UInt8(ascii: "0"): number = .zero
        case UInt8(ascii: "1")...UInt8(ascii: "9"): number = .integer
        case UInt8(ascii: "t"): startLiteral("true")
        case UInt8(ascii: "f"): startLiteral("false")
        case UInt8(ascii: "n"): startLiteral("null")
        default: fail()
        }
    }

    private mutating func startLiteral(_ word: StaticString) {
        literal = word
        literalMatched = 1
    }

    private mutating func open(_ bracket: UInt8) {
        guard stack.count < Self.maxDepth else { return fail() }
        stack.append(bracket)
        expect = bracket == UInt8(ascii: "{") ? .keyOrEnd : .valueOrEnd
    }

    private mutating func close() {
        stack.removeLast()
        expect = stack.isEmpty ? .trailing : .commaOrEnd
    }

    private mutating func valueEnded() {
        expect = .commaOrEnd  // a value is always inside the top-level object
    }

    private mutating func fail() {
        failed = true
    }
}
