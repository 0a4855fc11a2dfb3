/// Objects of a client's request as the client wrote them, for the encoders of other vendors'
/// bodies: a tool's parameter schema or a structured output's schema that the translation leaves
/// as it was is written with the client's bytes rather than from `JSONValue`, whose members have
/// no order (review 74A #1: a schema's `reasoning` then `answer` reached the model as `answer`
/// then `reasoning`, and the model wrote its fields in that order).
///
/// Linear in the body (review 76 #1: every object of the body was compared with every collected
/// one, and one crafted request held its loop for 30 s; message content took a schema's bytes):
/// only objects at most `maxDepth` levels into the schema-bearing members are collected and
/// looked up (`JSONValue.serialized(verbatim:in:)`: the tools and the format, never messages),
/// each found by a hash of its value, then compared (`==`).
public struct VerbatimJSON: Sendable {
    private struct Entry: Sendable {
        let value: JSONValue
        let bytes: [UInt8]
    }

    private var entries: [Int: [Entry]] = [:]
    /// A tool's schema is at most this deep in the members (`tools[0].functionDeclarations[1].parametersJsonSchema`).
    public static let maxDepth = 4
    public static let maxBytes = 4 << 20
    public static let maxObjects = 4_096

    public init() {}

    /// The objects of two or more members, at most `maxDepth` deep, in the top-level members
    /// `keys` of `body` (a valid JSON object).
    public init(objectsIn body: [UInt8], under keys: [StaticString]) {
        body.withUnsafeBytes { buffer in
            guard let view = JSONView(validating: buffer), view.isObject(view.root) else { return }
            var budget = (bytes: Self.maxBytes, objects: Self.maxObjects)
            view.forEachMember(in: view.root) { key, value in
                guard keys.contains(where: { key.matches($0) }) else { return }
                collect(value, depth: 0, in: view, budget: &budget)
            }
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The client's bytes for `value`, an object, when it wrote one equal to it.
    public func bytes(for value: JSONValue) -> [UInt8]? {
        guard case .object = value, let candidates = entries[Self.hash(value)] else { return nil }
        return candidates.first { $0.value == value }?.bytes
    }

    private mutating func collect(_ range: Range<Int>, depth: Int, in view: JSONView, budget: inout (bytes: Int, objects: Int)) {
        guard depth <= Self.maxDepth else { return }
        switch view.bytes[range.lowerBound] {
        case UInt8(ascii: "{"):
            var count = 0
            view.forEachMember(in: range) { _, value in
                count += 1
                collect(value, depth: depth + 1, in: view, budget: &budget)
            }
            guard count >= 2, budget.objects > 0, range.count <= budget.bytes else { return }
            budget.objects -= 1
            budget.bytes -= range.count
            let value = view.value(range)
            entries[Self.hash(value), default: []].append(Entry(value: value, bytes: Array(view.bytes[range])))
        case UInt8(ascii: "["):
            var element = view.firstElement(in: range)
            while let current = element {
                collect(current, depth: depth + 1, in: view, budget: &budget)
                element = view.element(after: current)
            }
        default:
            break
        }
    }

    /// A hash of the value as `==` compares it (an object's members in any order).
    static func hash(_ value: JSONValue) -> Int {
        var hasher = Hasher()
        combine(value, into: &hasher)
        return hasher.finalize()
    }

    private static func combine(_ value: JSONValue, into hasher: inout Hasher) {
        switch value {
        case .null: hasher.combine(0)
        case .bool(let flag): hasher.combine(flag)
        case .int(let number): hasher.combine(number)
        case .double(let number): hasher.combine(number)
        case .string(let text): hasher.combine(text)
        case .array(let items):
            hasher.combine(items.count)
            for item in items { combine(item, into: &hasher) }
        case .object(let members):
            hasher.combine(members.count)
            // Order-free: the members' hashes summed (a dictionary's order is not its content).
            var sum = 0
            for (key, member) in members {
                var inner = Hasher()
                inner.combine(key)
                combine(member, into: &inner)
                sum &+= inner.finalize()
            }
            hasher.combine(sum)
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
