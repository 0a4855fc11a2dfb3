import Foundation
import Yams

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }

    /// A file that is not YAML, said by position and problem only: Yams' own description quotes
    /// the file's lines (a duplicated key's whole mapping), and they may hold keys written in
    /// `server.api_keys` that would reach the startup log (review 52B #4).
    static func invalidYAML(_ error: any Error, source: String) -> ConfigError {
        func at(_ mark: Mark) -> String { "line \(mark.line), column \(mark.column)" }
        func within(_ context: YamlError.Context?) -> String { context.map { " (\($0.text), from \(at($0.mark)))" } ?? "" }
        let detail = switch error as? YamlError {
        case let .scanner(context, problem, mark, _)?, let .parser(context, problem, mark, _)?, let .composer(context, problem, mark, _)?:
            "\(at(mark)): \(problem)\(within(context))"
        case let .reader(problem, offset, _, _)?:
            "\(problem)\(offset.map { " at byte \($0)" } ?? "")"
        case let .duplicatedKeysInMapping(duplicates, context)?:
            "the mapping at \(at(context.mark)) has a key more than once: \(duplicates.sorted().joined(separator: ", "))"
        case nil:
            "not readable as YAML"
        case let other?:
            "\(other)"
        }
        return ConfigError("\(source): invalid YAML: \(detail)")
    }
}

extension ConfigError {
    /// An upstream's base URL, checked whole, not by its prefix (review 52B #2): `http:///v1` (an
    /// empty `${HOST}`) went, key and all, to a host named `v1`, and a query or fragment
    /// swallowed the path the gateway appends (`/chat/completions`).
    static func checkBaseURL(_ url: String, path: String) throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ConfigError("\(path) must start with http:// or https://")
        }
        guard !url.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true }),
              let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw ConfigError("\(path) must be a URL with a host name, e.g. https://api.example.com/v1 (is a variable in it unset?)")
        }
        guard components.query == nil, components.fragment == nil else {
            throw ConfigError("\(path) takes no query or fragment: the gateway appends the API's path to it")
        }
        guard components.user == nil, components.password == nil else {
            throw ConfigError("\(path) takes no credentials: name the key's variable in api_key_env (or headers_env)")
        }
    }
}

/// A YAML node with the path used in error messages.
struct ConfigNode {
    let node: Node
    let path: String

    /// The document itself: `path` is its source (a file's path), which its keys follow after a
    /// colon ("gateway.yaml: server.port must be …").
    let isRoot: Bool

    init(_ node: Node, path: String, isRoot: Bool = false) throws {
        self.node = node
        self.path = path
        self.isRoot = isRoot
    }

    func members() throws -> [(String, ConfigNode)] {
        guard let mapping = node.mapping else { throw ConfigError("\(path) must be a mapping") }
        return try mapping.map { key, value in
            guard let name = key.string else { throw ConfigError("\(path): keys must be strings") }
            return (name, try ConfigNode(value, path: isRoot ? "\(path): \(name)" : "\(path).\(name)"))
        }
    }

    func allowOnly(_ keys: Set<String>, hint: String? = nil) throws {
        for (name, _) in try members() where !keys.contains(name) {
            var message = "\(path): unknown key '\(name)' (allowed: \(keys.sorted().joined(separator: ", ")))"
            if let hint { message += "; \(hint)" }
            throw ConfigError(message)
        }
    }

    func child(_ key: String) throws -> ConfigNode? {
        try members().first { $0.0 == key }?.1
    }

    func string(_ key: String) throws -> String? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.scalar?.string else { throw ConfigError("\(child.path) must be a string") }
        return value
    }

    /// One of an enumeration's raw values, each named in the error.
    func choice<Value: RawRepresentable & CaseIterable>(_ key: String, of type: Value.Type) throws -> Value? where Value.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let value = Value(rawValue: text) else {
            throw ConfigError("\(path).\(key) must be " + Value.allCases.map { "'\($0.rawValue)'" }.joined(separator: " or "))
        }
        return value
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.int, range.contains(value) else {
            throw ConfigError("\(child.path) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func milliseconds(_ key: String) throws -> UInt64? {
        try int(key, in: 1...86_400_000).map(UInt64.init)
    }

    func bool(_ key: String) throws -> Bool? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.bool else { throw ConfigError("\(child.path) must be true or false") }
        return value
    }

    func stringList(_ key: String) throws -> [String]? {
        guard let child = try child(key) else { return nil }
        guard let sequence = child.node.sequence else { throw ConfigError("\(child.path) must be a list of strings") }
        return try sequence.map { item in
            guard let value = item.string else { throw ConfigError("\(child.path) must be a list of strings") }
            return value
        }
    }
}
