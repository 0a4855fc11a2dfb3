import Foundation
import GatewayCore

/// Reads files under the repository's Fixtures/ directory.
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    public static func bytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: root.appendingPathComponent(path)))
    }

    public static func names(in directory: String, withExtension ext: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(directory).path)
            .filter { $0.hasSuffix(".\(ext)") }
            .map { String($0.dropLast(ext.count + 1)) }
            .sorted()
    }
}

/// A decoded event, copied out of the decoder's callback.
public struct DecodedEvent: Equatable, CustomStringConvertible {
    public var event: String
    public var data: String

    public init(event: String, data: String) {
        self.event = event
        self.data = data
    }

    public var description: String { "[\(event)] \(data)" }
}

public func decodeAll(_ chunks: [[UInt8]], maxEventBytes: Int = 1 << 20) throws -> [DecodedEvent] {
    var decoder = SSEDecoder(maxEventBytes: maxEventBytes)
    var events: [DecodedEvent] = []
    for chunk in chunks {
        try decoder.feed(chunk) { events.append(DecodedEvent(event: $0.nameString, data: $0.dataString)) }
    }
    return events
}

/// Every way of splitting `bytes` that a test should survive: whole, byte by byte, and in two
/// pieces at each position.
public func splits(_ bytes: [UInt8]) -> [[[UInt8]]] {
    var result: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
    for cut in 1..<max(bytes.count, 1) {
        result.append([Array(bytes[..<cut]), Array(bytes[cut...])])
    }
    return result
}
