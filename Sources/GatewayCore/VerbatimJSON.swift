/// Objects of a client's request as the client wrote them, for the encoders of other vendors'
/// bodies: an object the translation leaves as it was (a tool's parameter schema, a structured
/// output's schema) is written with the client's bytes rather than from `JSONValue`, whose
/// members have no order (review 74A #1: a schema's `reasoning` then `answer` reached the model
/// as `answer` then `reasoning`, and the model wrote its fields in that order).
///
/// An object is used when it equals (`==`) what the encoder is about to write, so a changed one
/// falls back to the sorted encoding. Collected when a translated body is encoded (`ClientBody`),
/// from a few members (`tools`, the format), bounded in bytes and count.
public struct VerbatimJSON: Sendable {
    /// Entries by member count: a lookup compares only objects of the same size.
    private var entries: [Int: [(value: JSONValue, bytes: [UInt8])]] = [:]

    public static let maxBytes = 4 << 20
    public static let maxObjects = 4_096

    public init() {}

    /// Every object of two or more members inside the top-level members `keys` of `body` (a
    /// valid JSON object).
    public init(objectsIn body: [UInt8], under keys: [StaticString]) {
        body.withUnsafeBytes { buffer in
            guard let view = JSONView(validating: buffer), view.isObject(view.root) else { return }
            var budget = (bytes: Self.maxBytes, objects: Self.maxObjects)
            view.forEachMember(in: view.root) { key, value in
                guard keys.contains(where: { key.matches($0) }) else { return }
                collect(value, in: view, budget: &budget)
            }
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The client's bytes for `value`, an object, when it wrote one equal to it.
    public func bytes(for value: JSONValue) -> [UInt8]? {
        guard case .object(let members) = value, let candidates = entries[members.count] else { return nil }
        return candidates.first { $0.value == value }?.bytes
    }

    private mutating func collect(_ range: Range<Int>, in view: JSONView, budget: inout (bytes: Int, objects: Int)) {
        switch view.bytes[range.lowerBound] {
        case UInt8(ascii: "{"):
            var count = 0
            view.forEachMember(in: range) { _, value in
                count += 1
                collect(value, in: view, budget: &budget)
            }
            guard count >= 2, budget.objects > 0, range.count <= budget.bytes else { return }
            budget.objects -= 1
            budget.bytes -= range.count
            entries[count, default: []].append((view.value(range), Array(view.bytes[range])))
        case UInt8(ascii: "["):
            var element = view.firstElement(in: range)
            while let current = element {
                collect(current, in: view, budget: &budget)
                element = view.element(after: current)
            }
        default:
            break
        }
    }

}

/// A client's request body and the members whose objects an encoder may write as the client
/// wrote them (`VerbatimJSON`): carried by the neutral request, read only when it is encoded
/// for another vendor's API (a proxied chat body goes as sent, and pays nothing for it).
public struct ClientBody: Sendable, Equatable {
    public let bytes: [UInt8]
    public let keys: [StaticString]

    public init(_ bytes: [UInt8], keys: [StaticString]) {
        self.bytes = bytes
        self.keys = keys
    }

    public var verbatim: VerbatimJSON { VerbatimJSON(objectsIn: bytes, under: keys) }

    public static func == (lhs: ClientBody, rhs: ClientBody) -> Bool {
        lhs.bytes == rhs.bytes && lhs.keys.map(\.description) == rhs.keys.map(\.description)
    }
}
