import GatewayCore

/// A client's JSON body re-encoded after the gateway edited some of its top-level members,
/// everything else kept as the client wrote it.
public enum ClientOrderedObject {
    /// `fields` (the body's top-level members after the gateway's edits) in the order the client
    /// sent them: a member the gateway left alone is its bytes as sent (a structured-output
    /// schema's property order is the order the model writes its fields; a number past 64 bits
    /// keeps its digits), a `changed` one is re-encoded, a member under a `renamed` key takes
    /// its new name in place, and members the client did not send come last (review 74A #1:
    /// the whole body was re-encoded with its keys sorted, `answer` before `reasoning`).
    /// `replacements`: a member's value as bytes the caller made from the client's (tool ids
    /// spliced into `messages`), written in place of re-encoding it.
    public static func encode(_ fields: [String: JSONValue], changed: Set<String>, renamed: [String: String], rawBody: [UInt8],
                              replacements: [String: [UInt8]] = [:]) -> [UInt8] {
        guard let members = JSONScanner.topLevelMembers(in: rawBody) else { return JSONValue.object(fields).serialized() }
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(rawBody.count + 64)
        var written: Set<String> = []
        func append(_ key: String, _ write: (inout [UInt8]) -> Void) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            JSONWriting.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            write(&out)
            written.insert(key)
        }
        for member in members {
            let key = renamed[member.key] ?? member.key
            guard !written.contains(key), let value = fields[key] else { continue }
            if let bytes = replacements[key], key == member.key {
                append(key) { $0.append(contentsOf: bytes) }
            } else if changed.contains(key) || key != member.key {
                append(key) { $0.append(contentsOf: value.serialized()) }
            } else {
                append(key) { $0.append(contentsOf: rawBody[member.value]) }  // duplicate keys were refused
            }
        }
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) where !written.contains(key) {
            append(key) { $0.append(contentsOf: value.serialized()) }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
