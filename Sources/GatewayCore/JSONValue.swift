import Foundation

/// A JSON document as a value, for request-time work (validation, config, tests) where clarity
/// beats speed. Never used per token.
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        // JSON has no infinity or NaN (arithmetic can make them): null, not a failed document.
        case .double(let value): if value.isFinite { try container.encode(value) } else { try container.encodeNil() }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Parses a complete document leniently, as documents from upstreams, models and search
    /// APIs are read: the last of duplicate keys wins, and a number beyond Double's range
    /// (`1e999`) becomes null rather than infinity (which JSON cannot carry back out). The error
    /// says what is wrong in words a client can act on. Validated by `JSONScanner`, then built
    /// in one pass: several times faster than `JSONDecoder`, and this runs once per request on
    /// the way to the first token.
    public static func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        try bytes.withUnsafeBytes { buffer in Result { () throws(APIError) in try parse(buffer, strict: false) } }.get()
    }

    /// `parse` without copying: for an event's data still in a decoder's buffer.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(APIError) -> JSONValue {
        try parse(bytes, strict: false)
    }

    /// Parses a client's request body, whose raw bytes are forwarded upstream: ambiguities that
    /// parsers resolve differently are refused with a 400 naming the value's path in `param`.
    /// A duplicate key at any depth (`{"model":"a","model":"b"}`, also spelled `"mod\u0065l"`):
    /// we would read one value and an upstream perhaps the other, e.g. a model past an allow-list;
    /// at the top level, also keys equal but for case (`"MODEL"`), which Go servers read as one
    /// (`caseVariants: false` for documents no upstream reads, e.g. a judge's reply).
    /// A number beyond Double's range, which would otherwise reach the upstream as infinity or null.
    /// Bytes that are not UTF-8, which one reader repairs and another passes on raw. (A `\u`
    /// escape of a lone surrogate is read as U+FFFD: a browser's `JSON.stringify` writes one for
    /// text cut in the middle of an emoji, and refusing it would refuse that user.)
    public static func parseRequest(_ bytes: [UInt8], refusingCaseVariants caseVariants: Bool = true) throws(APIError) -> JSONValue {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(APIError) in try parse(buffer, strict: true, caseVariants: caseVariants) }
        }.get()
    }

    private static func parse(_ bytes: UnsafeRawBufferPointer, strict: Bool, caseVariants: Bool = false) throws(APIError) -> JSONValue {
        guard JSONScanner.isValid(bytes) else {
            throw .invalidJSON(bytes.isEmpty ? "the body is empty"
                               : JSONScanner.nestsTooDeep(bytes) ? "arrays and objects nested more than \(JSONScanner.maxDepth) deep" : "syntax error")
        }
        // Outside strings the scanner has refused every byte over 0x7F already.
        if strict, let offset = UTF8Validation.firstInvalidOffset(bytes) {
            throw .invalidJSON("the text is not valid UTF-8 (at byte \(offset))")
        }
        var builder = JSONBuilder(bytes: bytes, strict: strict, refusingCaseVariants: caseVariants)
        let result = Result { () throws(JSONBuilder.Ambiguity) in try builder.value() }
        switch result {
        case .success(let value):
            return value
        case .failure(.duplicateKey(let key, let path)):
            // A client's keys echoed: cut short (review 71B #6: a repeated 4 MiB key came back twice).
            let (key, path) = (key.shortened(toBytes: 256), path.shortened(toBytes: 256))
            throw .invalidRequest("The request body has the key '\(key)' twice\(path.isEmpty ? "" : " in '\(path)'"); send each key once.",
                                  param: path.isEmpty ? key : "\(path).\(key)", code: "duplicate_key")
        case .failure(.keysDifferingInCase(let first, let second)):
            let (first, second) = (first.shortened(toBytes: 256), second.shortened(toBytes: 256))
            throw .invalidRequest("The request body has the keys '\(first)' and '\(second)', which some servers read as one field; "
                                  + "send each key once, spelled one way.", param: second, code: "duplicate_key")
        case .failure(.keyInAnotherCase(let key, let expected)):
            let key = key.shortened(toBytes: 256)
            throw .invalidRequest("The request body has the key '\(key)', which some servers read as '\(expected)'; spell it '\(expected)'.",
                                  param: key, code: "duplicate_key")
        case .failure(.tooManyElements(let path)):
            throw .invalidRequest("The \(path.isEmpty ? "request body" : "value at '\(path)'") has more than \(JSONBuilder.maxElements) elements; "
                                  + "a request may hold at most \(JSONBuilder.maxElements) in any array or object.",
                                  param: path.isEmpty ? nil : path, code: "too_many_elements")
        case .failure(.numberOutOfRange(let path)):
            throw .invalidRequest("The number at '\(path.isEmpty ? "(root)" : path)' is too large to represent (beyond a 64-bit float).",
                                  param: path.isEmpty ? nil : path, code: "number_out_of_range")
        }
    }

    /// Compact JSON, keys sorted: `JSONWriting.appendValue`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        JSONWriting.appendValue(self, to: &out)
        return out
    }

    /// This object with the client's own bytes for objects of its `members` it wrote
    /// (`VerbatimJSON`: the members that carry schemas; never the messages).
    public func serialized(verbatim: VerbatimJSON?, in members: Set<String>) -> [UInt8] {
        guard let verbatim, case .object(let fields) = self else { return serialized() }
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(256)
        for (position, member) in fields.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriting.appendString(member.key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriting.appendValue(member.value, verbatim: members.contains(member.key) ? verbatim : nil, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? { if case .string(let value) = self { return value } else { return nil } }
    public var boolValue: Bool? { if case .bool(let value) = self { return value } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let value) = self { return value } else { return nil } }
    public var objectValue: [String: JSONValue]? { if case .object(let value) = self { return value } else { return nil } }
    public var intValue: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9e15: return Int64(value)
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// The JSON type name, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}
