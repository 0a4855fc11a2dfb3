/// Builds a `JSONValue` from bytes that `JSONScanner` has already validated, so it need not
/// re-check syntax (nesting is bounded by the scanner, so recursion is too).
///
/// Strict (for client requests), it refuses what parsers read differently and says where: a
/// duplicate key, a number beyond Double's range. Lenient, the last duplicate wins and such a
/// number becomes null. The path is only kept when strict. Strict, it also bounds the work one
/// request can ask for: no array or object holds more than `maxElements` (a 16 MiB body of
/// 400,000 tiny messages cost seconds of a loop and hundreds of MB before this).
struct JSONBuilder {
    enum Ambiguity: Error {
        case duplicateKey(String, path: String)
        /// Two top-level keys equal but for case (`model` and `MODEL`): Go's `encoding/json`
        /// (Ollama's OpenAI layer) matches fields ignoring case, the last one winning, so it
        /// would read the one the gateway did not check (review 48 surfaces #1).
        case keysDifferingInCase(String, String)
        /// A top-level key equal but for case to one the gateway reads or writes upstream
        /// (`Stream`): alone it is no duplicate, but beside the field the gateway writes
        /// (`stream`) a Go upstream reads the two as one (the CI fuzzer found it).
        case keyInAnotherCase(String, expected: String)
        case numberOutOfRange(path: String)
        case tooManyElements(path: String)
    }

    static let maxElements = 10_000

    private enum PathComponent {
        case key(String)
        case index(Int)
    }

    let bytes: UnsafeRawBufferPointer
    let strict: Bool
    /// Strict only: top-level keys equal but for case are refused too.
    let refusingCaseVariants: Bool
    private var index = 0
    private var path: [PathComponent] = []

    init(bytes: UnsafeRawBufferPointer, strict: Bool, refusingCaseVariants: Bool = false) {
        self.bytes = bytes
        self.strict = strict
        self.refusingCaseVariants = strict && refusingCaseVariants
    }

    /// The top-level fields of the three APIs that the gateway reads, or writes into an upstream
    /// body beside what a client sent, by their folded spelling.
    static let guardedKeys: [String: String] = Dictionary(uniqueKeysWithValues: [
        "model", "models", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens",
        "n", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p", "top_k", "stop", "stop_sequences",
        "response_format", "reasoning", "reasoning_effort", "user", "plugins", "seed", "metadata", "input", "instructions",
        "system", "thinking", "output_config", "text", "include",
    ].map { (caseFolded($0), $0) })

    /// `key` with every letter in one case, as Go's `strings.EqualFold` compares (simple case
    /// folding: `K` (Kelvin) is `k`, `ſ` is `s`, `ς` is `σ`; `ß` stays `ß`).
    static func caseFolded(_ key: String) -> String {
        // Most keys are lowercase ASCII already: returned as they are, no scalar walk.
        if key.utf8.allSatisfy({ $0 < 0x80 && $0 &- 0x41 >= 26 }) { return key }
        var out = String.UnicodeScalarView()
        for scalar in key.unicodeScalars {
            if scalar.isASCII {
                out.append(scalar.value &- 0x41 < 26 ? Unicode.Scalar(UInt8(scalar.value | 0x20)) : scalar)
                continue
            }
            // Up, then down: a letter's whole orbit lands on one (single-scalar mappings only,
            // as simple folding: `ß` → "SS" is a full mapping, and Go does not fold it).
            let upper = scalar.properties.uppercaseMapping.unicodeScalars
            let base = upper.count == 1 ? upper.first! : scalar
            let lower = base.properties.lowercaseMapping.unicodeScalars
            out.append(lower.count == 1 ? lower.first! : base)
        }
        return String(out)
    }

    mutating func value() throws(Ambiguity) -> JSONValue {
        skipWhitespace()
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var members: [String: JSONValue] = [:]
            // The top level's keys folded, strict only: the fields a request's policy reads live there.
            var folded: [String: String]? = refusingCaseVariants && path.isEmpty ? [:] : nil
            skipWhitespace()
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            while true {
                skipWhitespace()
                let key = string()
                skipWhitespace()
                index += 1  // ':'
                if strict {
                    guard members[key] == nil else { throw .duplicateKey(key, path: pathText) }
                    if folded != nil {
                        let fold = Self.caseFolded(key)
                        if let other = folded?.updateValue(key, forKey: fold) { throw .keysDifferingInCase(other, key) }
                        if let expected = Self.guardedKeys[fold], expected != key { throw .keyInAnotherCase(key, expected: expected) }
                    }
                    guard members.count < Self.maxElements else { throw .tooManyElements(path: pathText) }
                    path.append(.key(key))
                }
                members[key] = try value()
                if strict { path.removeLast() }
                skipWhitespace()
                let separator = bytes[index]
                index += 1
                if separator == UInt8(ascii: "}") { return .object(members) }
            }
        case UInt8(ascii: "["):
            index += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
            while true {
                if strict {
                    guard items.count < Self.maxElements else { throw .tooManyElements(path: pathText) }
                    path.append(.index(items.count))
                }
                items.append(try value())
                if strict { path.removeLast() }
                skipWhitespace()
                let separator = bytes[index]
                index += 1
                if separator == UInt8(ascii: "]") { return .array(items) }
            }
        case UInt8(ascii: "\""):
            return .string(string())
        case UInt8(ascii: "t"): index += 4; return .bool(true)
        case UInt8(ascii: "f"): index += 5; return .bool(false)
        case UInt8(ascii: "n"): index += 4; return .null
        default:
            return try number()
        }
    }

    /// `messages[0].content`, as errors name a field in `param`.
    private var pathText: String {
        var text = ""
        for component in path {
            switch component {
            case .key(let key): text += text.isEmpty ? key : "." + key
            case .index(let index): text += "[\(index)]"
            }
        }
        return text
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    /// At an opening quote.
    private mutating func string() -> String {
        index += 1
        let start = index
        while bytes[index] != UInt8(ascii: "\"") && bytes[index] != UInt8(ascii: "\\") { index += 1 }
        if bytes[index] == UInt8(ascii: "\"") {  // no escapes: the common case
            defer { index += 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        }
        var utf8 = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while bytes[index] != UInt8(ascii: "\"") {
            let byte = bytes[index]
            index += 1
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                continue
            }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4()
                if (0xD800..<0xDC00).contains(scalar), index + 1 < bytes.count,
                    bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                {
                    let save = index
                    index += 2
                    let low = hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        index = save
                    }
                }
                utf8.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
            default: utf8.append(escape)  // \" \\ \/
            }
        }
        index += 1
        return String(decoding: utf8, as: UTF8.self)
    }

    private mutating func hex4() -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8 = byte <= UInt8(ascii: "9") ? byte - UInt8(ascii: "0") : (byte | 0x20) - UInt8(ascii: "a") + 10
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func number() throws(Ambiguity) -> JSONValue {
        let start = index
        var integral = true
        scan: while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"): index += 1
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): integral = false; index += 1
            default: break scan
            }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if integral, let value = Int64(text) { return .int(value) }
        // Valid JSON number syntax always converts; beyond Double's range it converts to ±inf.
        let value = Double(text) ?? .nan
        guard value.isFinite else {
            if strict { throw .numberOutOfRange(path: pathText) }
            return .null
        }
        return .double(value)
    }
}
