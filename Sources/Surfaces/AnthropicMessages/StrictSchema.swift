import GatewayCore

/// Whether a JSON Schema is one OpenAI's strict structured outputs take: the root an object;
/// every object schema lists each of its properties in `required` and says
/// `additionalProperties: false`, in the schema and in every schema it holds (`properties`,
/// `items`, `anyOf`, `$defs`, …); none of the keywords strict mode refuses; within its limits
/// (10 levels of nesting, 5,000 properties, 1,000 enum values, 120,000 characters of names,
/// enum values and consts, 15,000 for an enum of over 250 values). Anything else, or a schema too
/// large to walk (over `maxNodes` schemas), is not: erring towards non-strict costs nothing
/// (the schema still guides the model), erring the other way is OpenAI's 400 (review 78 #6).
enum StrictSchema {
    static let maxNodes = 10_000
    static let maxDepth = 10
    static let maxProperties = 5_000
    static let maxEnumValues = 1_000
    static let maxNameCharacters = 120_000
    static let largeEnumValues = 250
    static let maxLargeEnumCharacters = 15_000
    static let refusedKeywords: Set<String> = ["allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
                                               "patternProperties", "unevaluatedProperties", "propertyNames"]

    static func isStrictCompatible(_ schema: JSONValue) -> Bool {
        guard schema["type"] == .string("object"), schema["anyOf"] == nil else { return false }
        var pending = [(schema, 0)]
        var visited = 0, properties = 0, enumValues = 0, characters = 0
        while let (node, depth) = pending.popLast() {
            visited += 1
            guard visited <= maxNodes, depth <= maxDepth else { return false }
            switch node {
            case .array(let items):
                pending += items.map { ($0, depth) }
            case .object(let fields):
                guard fields.keys.allSatisfy({ !refusedKeywords.contains($0) }) else { return false }
                if let values = fields["enum"]?.arrayValue {
                    enumValues += values.count
                    let length = values.reduce(0) { $0 + ($1.stringValue?.count ?? 0) }
                    characters += length
                    guard enumValues <= maxEnumValues, values.count <= largeEnumValues || length <= maxLargeEnumCharacters else { return false }
                }
                characters += fields["const"]?.stringValue?.count ?? 0
                if let members = fields["properties"]?.objectValue {
                    guard fields["additionalProperties"] == .bool(false) else { return false }
                    let required = Set((fields["required"]?.arrayValue ?? []).compactMap(\.stringValue))
                    guard members.keys.allSatisfy(required.contains) else { return false }
                    properties += members.count
                    characters += members.keys.reduce(0) { $0 + $1.count }
                    guard properties <= maxProperties else { return false }
                    pending += members.values.map { ($0, depth + 1) }
                } else if fields["type"] == .string("object") || fields["type"]?.arrayValue?.contains(.string("object")) == true {
                    // An object with no properties listed is closed only when it says so.
                    guard fields["additionalProperties"] == .bool(false) else { return false }
                }
                for key in ["items", "prefixItems", "anyOf", "oneOf"] {
                    if let value = fields[key] { pending.append((value, depth + 1)) }
                }
                for key in ["$defs", "definitions"] {
                    guard let definitions = fields[key]?.objectValue else { continue }
                    characters += definitions.keys.reduce(0) { $0 + $1.count }
                    pending += definitions.values.map { ($0, depth + 1) }
                }
                guard characters <= maxNameCharacters else { return false }
            default:
                continue
            }
        }
        return true
    }
}
