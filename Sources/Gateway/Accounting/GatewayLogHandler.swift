import EventLoop
import Foundation
import GatewayCore
import Logging
import Providers

/// The gateway's log lines, for people (`text`, the default) or machines (`json`: one JSON object
/// per line: `ts`, `level`, `logger`, `msg`, then every metadata field, numbers and booleans as
/// JSON numbers and booleans). Either way one entry is one line: line breaks and control
/// characters inside a value are escaped, so nothing a client or an upstream sends can forge a
/// second entry. Every string goes through the secrets of every gateway in the process
/// (`LogRedaction`) on its way out.
public struct GatewayLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text
        case json
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public let label: String
    public let format: Format
    private let output: @Sendable ([UInt8]) -> Void
    private let redaction: LogRedaction

    /// `output` receives each whole line (default: standard error, one `write` per line).
    public init(label: String, format: Format, level: Logger.Level = .info, redaction: LogRedaction = .shared,
                output: @escaping @Sendable ([UInt8]) -> Void = GatewayLogHandler.standardError) {
        self.label = label
        self.format = format
        logLevel = level
        self.redaction = redaction
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        writeLine(level: event.level, message: "\(event.message)", fields: Self.fields(metadata, event.metadata))
    }

    /// An entry with the gateway's typed fields (`Logger.info(_:fields:)`) and this handler's
    /// metadata (the entry's win), without going through swift-log's metadata dictionary.
    func log(level: Logger.Level, message: String, fields: inout [LogField]) {
        let typed = fields.count
        for (key, value) in metadata where !fields[..<typed].contains(where: { Self.sameKey($0.key, key) }) {
            fields.append(LogField(key: .metadata(key), value: .metadata(value)))
        }
        fields.sortByKey()
        writeLine(level: level, message: message, fields: fields)
    }

    private func writeLine(level: Logger.Level, message: String, fields: Fields) {
        let redactor = redaction.redactor
        let line = format == .json
            ? Self.jsonLine(level: level, label: label, message: message, fields: fields, redactor: redactor)
            : LogTextLine.line(level: level, label: label, message: message, fields: fields, redactor: redactor)
        output(line)
    }

    private static func sameKey(_ key: LogField.Key, _ name: String) -> Bool {
        var name = name
        return key.withUTF8 { key in name.withUTF8 { key.elementsEqual($0) } }
    }

    typealias Fields = [LogField]

    /// The handler's fields and the entry's (the entry's win), sorted by key, in one array: a
    /// merged dictionary rehashed every key of every line (4% of a proxied request's
    /// instructions, counted by `Benchmarks/scripts/instructions-per-request.py`).
    static func fields(_ own: Logger.Metadata, _ entry: Logger.Metadata?) -> Fields {
        var fields: Fields = []
        fields.reserveCapacity(own.count + (entry?.count ?? 0))
        if let entry {
            for (key, value) in own where entry[key] == nil { fields.append(LogField(key: .metadata(key), value: .metadata(value))) }
            for (key, value) in entry { fields.append(LogField(key: .metadata(key), value: .metadata(value))) }
        } else {
            for (key, value) in own { fields.append(LogField(key: .metadata(key), value: .metadata(value))) }
        }
        fields.sortByKey()
        return fields
    }

    private static let writeLock = Lock(())

    /// Writes whole lines to standard error (lines from different loops never interleave).
    public static let standardError: @Sendable ([UInt8]) -> Void = { line in
        writeLock.withLock { _ in
            line.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }

    static func jsonLine(level: Logger.Level, label: String, message: String, fields: Fields, redactor: RedactorChain) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(contentsOf: #"{"ts":"#.utf8)
        out.append(UInt8(ascii: "\""))
        LogTextLine.appendTimestamp(to: &out)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: #","level":"#.utf8)
        JSONWriting.appendString(level.rawValue, to: &out)
        out.append(contentsOf: #","logger":"#.utf8)
        JSONWriting.appendString(redactor(label), to: &out)
        out.append(contentsOf: #","msg":"#.utf8)
        JSONWriting.appendString(redactor(message), to: &out)
        for field in fields {
            out.append(UInt8(ascii: ","))
            switch field.key {
            case .own(let key):
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
                out.append(UInt8(ascii: "\""))
            case .metadata(let key):
                // A field never shadows the entry's own four.
                switch key {
                case "ts", "level", "logger", "msg": JSONWriting.appendString("meta_" + key, to: &out)
                default: JSONWriting.appendString(redactor(key), to: &out)
                }
            }
            out.append(UInt8(ascii: ":"))
            appendJSON(field.value, redactor: redactor, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    private static func appendJSON(_ value: LogField.Value, redactor: RedactorChain, to out: inout [UInt8]) {
        switch value {
        case .text(let text): JSONWriting.appendString(redactor(text), to: &out)
        case .int(let number): out.append(contentsOf: String(number).utf8)
        case .double(let number) where number.isFinite: out.append(contentsOf: JSONValue.double(number).serialized())
        case .double(let number): JSONWriting.appendString(number.description, to: &out)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .metadata(let value): appendJSON(value, redactor: redactor, to: &out)
        }
    }

    private static func appendJSON(_ value: Logger.Metadata.Value, redactor: RedactorChain, to out: inout [UInt8]) {
        switch value {
        case .string(let text):
            JSONWriting.appendString(redactor(text), to: &out)
        case .stringConvertible(let convertible):
            switch convertible {
            case let flag as Bool: out.append(contentsOf: (flag ? "true" : "false").utf8)
            case let number as Int: out.append(contentsOf: String(number).utf8)
            case let number as Int64: out.append(contentsOf: String(number).utf8)
            case let number as Double where number.isFinite: out.append(contentsOf: JSONValue.double(number).serialized())
            default: JSONWriting.appendString(redactor(convertible.description), to: &out)
            }
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendJSON(element, redactor: redactor, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let members):
            out.append(UInt8(ascii: "{"))
            for (index, (key, element)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriting.appendString(redactor(key), to: &out)
                out.append(UInt8(ascii: ":"))
                appendJSON(element, redactor: redactor, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

/// The secrets every log line is cleaned of: each gateway in the process adds its provider and
/// gateway keys when it starts (`GatewayShared`). Shared, since the logging system is set up once
/// per process, before any gateway exists. Each start adds a redactor for the secrets not known
/// yet, built outside the lock: rebuilding one redactor over every secret so far made each start
/// cost more than the last (tests start hundreds of gateways; under the sanitizers a start late
/// in the suite held its loop past Redis' connect timeout).
public final class LogRedaction: Sendable {
    public static let shared = LogRedaction()
    /// Beyond this many secrets new ones are not added (one process runs one gateway; tests run many).
    static let maxSecrets = 4096
    private let state = Lock<(known: Set<String>, chain: [Redactor])>(([], []))

    public init() {}

    var redactor: RedactorChain { RedactorChain(redactors: state.withLock { $0.chain }) }

    public func add(_ secrets: [String]) {
        let fresh = state.withLock { state in Array(Set(secrets).subtracting(state.known)) }
        guard !fresh.isEmpty else { return }
        let built = Redactor(secrets: fresh)
        state.withLock { state in
            guard state.known.count < Self.maxSecrets else { return }
            state.known.formUnion(fresh)
            state.chain.append(built)
        }
    }
}

/// Redactors applied in turn (`LogRedaction`: one per gateway started in the process).
struct RedactorChain: Sendable {
    let redactors: [Redactor]

    func callAsFunction(_ text: String) -> String { redactors.reduce(text) { text, redactor in redactor(text) } }
}
