import GatewayCore
import Logging

/// One field of a log line as the handler writes it.
struct LogField {
    enum Value {
        /// Text from anywhere (a model name, an upstream's id, an error message): redacted and
        /// escaped on its way out.
        case text(String)
        /// A number or flag the gateway computed (a count, a time, a status): written as is.
        case int(Int64)
        case double(Double)
        case bool(Bool)
        /// A value from swift-log's metadata (the logger's own fields, any code's entry).
        case metadata(Logger.Metadata.Value)
    }

    enum Key {
        /// A constant of the gateway's own code (`LogFields`), plain ASCII: written as it is.
        case own(StaticString)
        /// A metadata key (any code's): redacted and escaped as a value is.
        case metadata(String)

        /// The key's bytes (a metadata key's made contiguous if it is not).
        func withUTF8<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
            switch self {
            case .own(let key): return body(UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            case .metadata(var key): return key.withUTF8(body)
            }
        }

        var string: String {
            switch self {
            case .own(let key): key.description
            case .metadata(let key): key
            }
        }

        /// Byte order (a line's fields are sorted by key).
        static func ordered(_ left: Key, _ right: Key) -> Bool {
            left.withUTF8 { left in right.withUTF8 { right in left.lexicographicallyPrecedes(right) } }
        }

        /// The key's first eight bytes as one number that orders as they do (zeros past a short
        /// key's end, so a key sorts before the longer keys it begins).
        var prefix: UInt64 {
            withUTF8 { bytes in
                var value: UInt64 = 0
                for index in 0..<8 { value = value << 8 | UInt64(index < bytes.count ? bytes[index] : 0) }
                return value
            }
        }
    }

    let key: Key
    let value: Value
}

/// A log entry's fields as the gateway's own code builds them (the `request finished` and
/// `inner call finished` lines): typed values under constant keys, in one array. Through
/// swift-log's metadata the request's line was a dictionary of twenty-odd boxed values, hashed,
/// copied out, sorted and each turned into a `String`: 84,000 instructions, an eighth of a
/// proxied request's (`Benchmarks/scripts/instructions-per-request.py`). `Logger.info(_:fields:)`
/// hands them to `GatewayLogHandler` as they are, and to any other handler as metadata.
struct LogFields {
    private(set) var fields: [LogField] = []

    init(capacity: Int) { fields.reserveCapacity(capacity) }

    mutating func add(_ key: StaticString, _ value: String) { append(key, .text(value)) }
    mutating func add(_ key: StaticString, _ value: Int) { append(key, .int(Int64(value))) }
    mutating func add(_ key: StaticString, _ value: Int64) { append(key, .int(value)) }
    mutating func add(_ key: StaticString, _ value: Double) { append(key, .double(value)) }
    mutating func add(_ key: StaticString, _ value: Bool) { append(key, .bool(value)) }

    /// The fields, moved out (no copy on their way to the handler).
    mutating func take() -> [LogField] {
        var taken: [LogField] = []
        swap(&taken, &fields)
        return taken
    }

    private mutating func append(_ key: StaticString, _ value: LogField.Value) {
        fields.append(LogField(key: .own(key), value: value))
    }

    /// The same fields for a handler that is not the gateway's (tests' capturing handlers).
    var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        for field in fields {
            switch field.value {
            case .text(let text): metadata[field.key.string] = .string(text)
            case .int(let number): metadata[field.key.string] = .stringConvertible(number)
            case .double(let number): metadata[field.key.string] = .stringConvertible(number)
            case .bool(let flag): metadata[field.key.string] = .stringConvertible(flag)
            case .metadata(let value): metadata[field.key.string] = value
            }
        }
        return metadata
    }
}

extension Logger {
    /// An `info` entry with typed fields (see `LogFields`); written only at `info` or below.
    func info(_ message: StaticString, fields: consuming LogFields) {
        guard logLevel <= .info else { return }
        if let handler = handler as? GatewayLogHandler {
            var taken = fields.take()
            handler.log(level: .info, message: message.description, fields: &taken)
        } else {
            info("\(message.description)", metadata: fields.metadata)
        }
    }
}

extension [LogField] {
    /// Sorted by key in byte order, as `LogField.Key.ordered` orders them: by each key's first
    /// eight bytes as one number, the whole keys compared only where those are equal. Sorting
    /// the fields with the key comparison itself was ~13,000 instructions a request line
    /// (a hundred comparisons through two closures each).
    mutating func sortByKey() {
        guard count > 1 else { return }
        withUnsafeMutableBufferPointer { fields in
            var prefixes: [UInt64] = []
            prefixes.reserveCapacity(fields.count)
            for index in fields.indices { prefixes.append(fields[index].key.prefix) }
            var order = [Int](fields.indices)
            order.sort { left, right in
                prefixes[left] != prefixes[right] ? prefixes[left] < prefixes[right] : LogField.Key.ordered(fields[left].key, fields[right].key)
            }
            // Field `order[i]` goes to `i`, cycle by cycle, each step a move (copying the fields,
            // or `swapAt`, retained and released every value's storage). A placed position is
            // marked by `order[i] = i`.
            let base = fields.baseAddress!
            for start in fields.indices where order[start] != start {
                var current = start
                while order[current] != start {
                    let next = order[current]
                    let carried = (base + current).move()
                    (base + current).moveInitialize(from: base + next, count: 1)
                    (base + next).initialize(to: carried)
                    order[current] = current
                    current = next
                }
                order[current] = current
            }
        }
    }
}
