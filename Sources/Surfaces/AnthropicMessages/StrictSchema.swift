import GatewayCore

/// Whether a JSON Schema is one OpenAI's strict structured outputs take: every object schema
/// lists each of its properties in `required` and says `additionalProperties: false`, in the
/// schema and in every schema it holds (`properties`, `items`, `anyOf`, `$defs`, …). A schema
/// too large or too deep to walk (over `maxNodes` schemas) is not.
enum StrictSchema {
    static let maxNodes = 10_000

    static func isStrictCompatible(_ schema: JSONValue) -> Bool {
        var pending = [schema]
        var visited = 0
        while let node = pending.popLast() {
            visited += 1
            guard visited <= maxNodes else { return false }
            switch node {
            case .array(let items):
                pending += items
            case .object(let fields):
                if let properties = fields["properties"]?.objectValue {
                    guard fields["additionalProperties"] == .bool(false) else { return false }
                    let required = Set((fields["required"]?.arrayValue ?? []).compactMap(\.stringValue))
                    guard properties.keys.allSatisfy(required.contains) else { return false }
                    pending += properties.values
                } else if fields["type"] == .string("object") || fields["type"]?.arrayValue?.contains(.string("object")) == true {
                    // An object with no properties listed is closed only when it says so.
                    guard fields["additionalProperties"] == .bool(false) else { return false }
                }
                for key in ["items", "prefixItems", "anyOf", "oneOf", "allOf", "not"] {
                    if let value = fields[key] { pending.append(value) }
                }
                for key in ["$defs", "definitions"] {
                    if let definitions = fields[key]?.objectValue { pending += definitions.values }
                }
            default:
                continue
            }
        }
        return true
    }
}
