import Foundation
import GatewayCore
import Testing

/// One decoded Responses stream event.
struct ResponsesEvent: CustomStringConvertible {
    var name: String
    var json: JSONValue
    var type: String { json["type"]?.stringValue ?? "" }
    var description: String { String(decoding: json.serialized(), as: UTF8.self) }
}

/// A Responses stream as a client reads it, and the rules openai-python's `responses.stream()`
/// helper enforces (`lib/streaming/responses/_responses.py`) plus the ones it assumes: sequence
/// numbers, one terminal event, items added at increasing indexes and finished before it, deltas
/// only inside an open part, and what the deltas add up to being what the item says at the end.
enum ResponsesStreamCheck {
    static let terminals: Set<String> = ["response.completed", "response.incomplete", "response.failed"]

    static func decode(_ bytes: [UInt8]) throws -> [ResponsesEvent] {
        var decoder = SSEDecoder()
        var events: [ResponsesEvent] = []
        try decoder.feed(bytes) { events.append(ResponsesEvent(name: $0.nameString, json: try JSONValue.parse(Array($0.data)))) }
        return events
    }

    /// The problems found (none: a valid stream). `allowTopLevelError`: for OpenRouter's exact
    /// `panel.failed`, which the client asked for.
    static func problems(_ events: [ResponsesEvent], allowTopLevelError: Bool = false) -> [String] {
        var problems: [String] = []
        func fail(_ index: Int, _ message: String) { problems.append("event \(index) (\(events[index].type)): \(message)") }
        var added: [Int: JSONValue] = [:]
        var done: Set<Int> = []
        var texts: [Int: String] = [:]
        var partOpen: Set<Int> = []
        var arguments: [Int: String] = [:]
        var responseID: String?
        for (index, event) in events.enumerated() {
            let json = event.json
            if event.name != event.type { fail(index, "event name '\(event.name)' is not its type") }
            if json["sequence_number"] != .int(Int64(index)) { fail(index, "sequence_number \(json["sequence_number"] ?? .null)") }
            if json["error"] != nil && !(allowTopLevelError && event.type == "response.fusion_call.panel.failed") {
                fail(index, "a top-level 'error' makes the OpenAI SDKs abort the stream")
            }
            if index == 0 && event.type != "response.created" { fail(index, "the first event must be response.created") }
            if terminals.contains(event.type) != (index == events.count - 1) { fail(index, "exactly one terminal event, last") }
            if let response = json["response"] {
                let id = response["id"]?.stringValue
                if responseID == nil { responseID = id } else if id != responseID { fail(index, "the response id changed") }
            }
            let position = json["output_index"]?.intValue.map(Int.init)
            switch event.type {
            case "response.output_item.added":
                guard let position, position == added.count else { fail(index, "output_index not the next one"); continue }
                // OpenAI's own streams finish an item before the next begins.
                if let open = added.keys.first(where: { !done.contains($0) }) { fail(index, "added while output \(open) is still open") }
                added[position] = json["item"]
            case "response.output_item.done":
                guard let position, let item = added[position], !done.contains(position) else { fail(index, "done for no open item"); continue }
                done.insert(position)
                let final = json["item"]
                if final?["id"] != item["id"] || final?["type"] != item["type"] || final?["call_id"] != item["call_id"] {
                    fail(index, "the item's identity changed")
                }
                if let text = texts[position], final?["content"]?.arrayValue?.first?["text"]?.stringValue != text {
                    fail(index, "the message's text is not its deltas")
                }
                // Blank deltas (none, or white space) end as `{}`, as OpenAI writes a call without arguments.
                let deltas = arguments[position, default: ""]
                if item["type"] == .string("function_call"),
                   final?["arguments"]?.stringValue != (deltas.allSatisfy(\.isWhitespace) ? "{}" : deltas) {
                    fail(index, "the call's arguments are not its deltas")
                }
            case "response.content_part.added":
                if let position { partOpen.insert(position) }
            case "response.output_text.delta":
                guard let position, partOpen.contains(position), added[position]?["type"] == .string("message"), !done.contains(position) else {
                    fail(index, "text delta outside an open message part"); continue
                }
                texts[position, default: ""] += json["delta"]?.stringValue ?? ""
            case "response.output_text.done":
                if let position, json["text"]?.stringValue != texts[position, default: ""] { fail(index, "done text is not the deltas") }
            case "response.function_call_arguments.delta":
                guard let position, added[position]?["type"] == .string("function_call"), !done.contains(position) else {
                    fail(index, "arguments delta outside an open function call"); continue
                }
                arguments[position, default: ""] += json["delta"]?.stringValue ?? ""
            default:
                if let position, event.type != "response.output_item.added", added[position] == nil || done.contains(position) {
                    fail(index, "refers to output \(position), which is not open")
                }
            }
        }
        if let last = events.last, terminals.contains(last.type) {
            if Set(added.keys) != done { problems.append("items added but never done: \(Set(added.keys).subtracting(done).sorted())") }
            let output = last.json["response"]?["output"]?.arrayValue ?? []
            if output.count != added.count { problems.append("the final output has \(output.count) items, \(added.count) were added") }
            for (position, item) in output.enumerated() where item["id"] != added[position]?["id"] {
                problems.append("output[\(position)] is not the item added there")
            }
        }
        return problems
    }
}

/// Golden files under Fixtures/responses/: what the writer produces, byte for byte, so a change
/// in the wire format shows in review; the Python check replays them to the real openai SDK.
/// `FUSION_UPDATE_GOLDENS=1` rewrites them.
enum Golden {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/responses")

    static func check(_ name: String, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = directory.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["FUSION_UPDATE_GOLDENS"] == "1" {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
            return
        }
        let expected = try Data(contentsOf: url)
        #expect(Array(expected) == bytes, "\(name) differs from the golden file (FUSION_UPDATE_GOLDENS=1 rewrites it):\n\(String(decoding: bytes, as: UTF8.self))",
                sourceLocation: sourceLocation)
    }
}

extension JSONValue {
    /// An array's element, nil when out of range or not an array (tests read into documents).
    subscript(index: Int) -> JSONValue? {
        guard let array = arrayValue, array.indices.contains(index) else { return nil }
        return array[index]
    }
}
