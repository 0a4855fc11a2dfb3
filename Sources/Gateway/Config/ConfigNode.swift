import Yams

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
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
