import Foundation
import GatewayCore
import Testing

/// Our golden streams against the reference streams built from the SDKs' types
/// (Fixtures/responses/reference): every event type and output item type the references have,
/// ours has too, with at least their fields (in the event, its `response`, `item` and `part`).
/// The goldens are taken together: `panel.failed`'s `error` is in the OpenRouter-exact one.
@Suite struct ResponsesReferenceShapeTests {
    typealias Shape = [String: Set<String>]

    static func shapes(in directory: URL) throws -> [String: Shape] {
        var shapes: [String: Shape] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix(".sse") {
            for event in try ResponsesStreamCheck.decode(Array(try Data(contentsOf: directory.appendingPathComponent(name)))) {
                let itemType = event.json["item"]?["type"]?.stringValue
                let key = event.type + (itemType.map { " item:\($0)" } ?? "")
                for part in ["", "response", "item", "part"] {
                    guard let object = (part.isEmpty ? event.json : event.json[part])?.objectValue else { continue }
                    shapes[key, default: [:]][part, default: []].formUnion(object.keys)
                }
            }
        }
        return shapes
    }

    @Test func ourEventsHaveEveryFieldTheReferencesHave() throws {
        let ours = try Self.shapes(in: Golden.directory)
        let reference = try Self.shapes(in: Golden.directory.appendingPathComponent("reference"))
        #expect(!reference.isEmpty)
        for (key, shape) in reference.sorted(by: { $0.key < $1.key }) {
            guard let mine = ours[key] else {
                Issue.record("no \(key) in our streams")
                continue
            }
            for (part, fields) in shape {
                let missing = fields.subtracting(mine[part] ?? [])
                #expect(missing.isEmpty, "\(key) \(part.isEmpty ? "event" : part) lacks \(missing.sorted())")
            }
        }
    }
}
