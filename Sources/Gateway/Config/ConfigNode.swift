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
        let lowered = url.lowercased()
        guard lowered.hasPrefix("http://") || lowered.hasPrefix("https://") else {
            throw ConfigError("\(path) must start with http:// or https://")
        }
        guard !url.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true }),
              let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw ConfigError("\(path) must be a URL with a host name, e.g. https://api.example.com/v1 (is a variable in it unset?)")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw ConfigError("\(path) has port \(port): a port is 1 to 65535")
        }
        guard components.query == nil, components.fragment == nil else {
            throw ConfigError("\(path) takes no query or fragment: the gateway appends the API's path to it")
        }
        // As written: Foundation escapes what it does not accept, curl would refuse it.
        let authorityAndPath = url[url.range(of: "://")!.upperBound...]
        let rawPath = authorityAndPath.firstIndex(of: "/").map { String(authorityAndPath[$0...]) } ?? ""
        guard Self.isURLPath(rawPath) else {
            throw ConfigError("\(path) has a path that is not a URL's (a bad %-escape, or a character to escape such as { } | or a space)")
        }
        guard components.user == nil, components.password == nil else {
            throw ConfigError("\(path) takes no credentials: name the key's variable in api_key_env (or headers_env)")
        }
    }
}

extension ConfigError {
    /// RFC 3986's path characters, with every `%` starting a two-digit hex escape.
    static func isURLPath(_ path: String) -> Bool {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/".utf8)
        let bytes = Array(path.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, bytes[index + 1].isHexDigit, bytes[index + 2].isHexDigit else { return false }
                index += 3
            } else {
                guard allowed.contains(bytes[index]) else { return false }
                index += 1
            }
        }
        return true
    }
}

private extension UInt8 {
    var isHexDigit: Bool { (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self) }
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
        return try mapping.enumerated().map { index, member in
            guard let name = member.key.string else { throw ConfigError("\(path): keys must be strings") }
            // A name that looks like a secret (one pasted where a provider's, a price's or a
            // key's name goes) is named by its place in every message below it (review 126 #1).
            let shown = Self.looksLikeASecret(name) ? "[entry \(index + 1)]" : name
            return (name, try ConfigNode(member.value, path: isRoot ? "\(path): \(shown)" : "\(path).\(shown)"))
        }
    }

    func allowOnly(_ keys: Set<String>, hint: String? = nil) throws {
        for (index, (name, _)) in try members().enumerated() where !keys.contains(name) {
            guard name != "<<" else {
                throw ConfigError("\(path): YAML merge keys (<<) and aliases are not supported: write the keys out")
            }
            // An unknown key that does not look like one (the config's are lower-case words joined
            // by '_') may be a secret pasted where a key goes: named by its place, never printed
            // (reviews 121 #7, 124 #3: a 32-character hex key was printed).
            let named = Self.looksLikeAKey(name) ? "unknown key '\(name)'" : "entry \(index + 1) is no known key"
            var message = "\(path): \(named) (allowed: \(keys.sorted().joined(separator: ", ")))"
            if let hint { message += "; \(hint)" }
            throw ConfigError(message)
        }
    }

    /// 20 characters or more, and a secret's prefix or no separator at all (`-`, `_`, `.`, `/`,
    /// `:`, a space): a random key, hex or base64. Names of providers, models and keys have
    /// separators (`openrouter/openai/gpt-4o`, `claude-3-5-sonnet-20241022`, `team-a`).
    static func looksLikeASecret(_ name: String) -> Bool {
        guard name.utf8.count >= 20 else { return false }
        let prefixes = ["sk-", "sk_", "gwk", "AIza", "ghp_", "xox", "Bearer"]
        return prefixes.contains(where: name.hasPrefix) || !name.contains(where: { "-_./: ".contains($0) })
    }

    /// Lower-case letters and '_', 1 to 40 of them: what every key of the config is, and what a
    /// random secret (with digits, upper case, '-', '+', '/') practically never is.
    static func looksLikeAKey(_ name: String) -> Bool {
        (1...40).contains(name.utf8.count) && name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || $0 == UInt8(ascii: "_") }
    }

    func child(_ key: String) throws -> ConfigNode? {
        try members().first { $0.0 == key }?.1
    }

    func string(_ key: String) throws -> String? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.scalar?.string else { throw ConfigError("\(child.path) must be a string") }
        return value
    }

    /// A `*_env` value: the name of an environment variable. Anything else is refused without
    /// being repeated: it is most likely the secret itself, pasted where its variable's name goes,
    /// and was logged and sent to clients as "the variable … is not set" (review 62D #1).
    func environmentVariable(_ key: String) throws -> String? {
        guard let child = try child(key) else { return nil }
        return try child.environmentVariableName()
    }

    /// This node as an environment variable's name (see `environmentVariable`).
    func environmentVariableName() throws -> String {
        guard let value = node.scalar?.string, Self.isEnvironmentVariableName(value) else {
            throw ConfigError("\(path) must name an environment variable (letters, digits and '_', not starting with a digit), "
                              + "not hold the secret: the value is not repeated here")
        }
        return value
    }

    static func isEnvironmentVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, (1...256).contains(name.utf8.count), !(0x30...0x39).contains(first) else { return false }
        return name.utf8.allSatisfy { ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || (0x30...0x39).contains($0) || $0 == UInt8(ascii: "_") }
    }

    /// One of an enumeration's raw values, each named in the error.
    func choice<Value: RawRepresentable & CaseIterable>(_ key: String, of type: Value.Type) throws -> Value? where Value.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let value = Value(rawValue: text) else {
            throw ConfigError("\(path).\(key) must be " + Value.allCases.map { "'\($0.rawValue)'" }.joined(separator: " or "))
        }
        return value
    }

    /// A decimal integer. YAML 1.1 also reads `010` as octal, `1:00` as base 60 (60), `4_1` as
    /// 41 and `0x10` as hex: a mistyped timeout or limit started with another value, silently
    /// (review 83B #4); only plain decimal digits are taken, without leading zeros.
    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.int, Self.isDecimal(child.node.scalar?.string ?? ""), range.contains(value) else {
            throw ConfigError("\(child.path) must be an integer in \(range.lowerBound)...\(range.upperBound), in decimal digits")
        }
        return value
    }

    /// `0`, or an optional `-` and digits not beginning with 0.
    static func isDecimal(_ text: String) -> Bool {
        let digits = text.utf8.first == UInt8(ascii: "-") ? text.utf8.dropFirst() : text.utf8[...]
        guard let first = digits.first, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return false }
        return first != UInt8(ascii: "0") || digits.count == 1
    }

    /// Digits with an optional fraction and exponent (`2.5`, `0.15`, `1e-3`, `10`): a number
    /// as a person writes one, none of YAML 1.1's other spellings.
    static func isPlainDecimal(_ text: String) -> Bool {
        var rest = Substring(text).utf8[...]
        func digits() -> Int {
            let count = rest.prefix { (0x30...0x39).contains($0) }.count
            rest = rest.dropFirst(count)
            return count
        }
        if rest.first == UInt8(ascii: "+") || rest.first == UInt8(ascii: "-") { rest = rest.dropFirst() }
        var count = digits()
        if rest.first == UInt8(ascii: ".") {
            rest = rest.dropFirst()
            count += digits()
        }
        guard count > 0 else { return false }
        if rest.first == UInt8(ascii: "e") || rest.first == UInt8(ascii: "E") {
            rest = rest.dropFirst()
            if rest.first == UInt8(ascii: "+") || rest.first == UInt8(ascii: "-") { rest = rest.dropFirst() }
            guard digits() > 0 else { return false }
        }
        return rest.isEmpty
    }

    func milliseconds(_ key: String) throws -> UInt64? {
        try int(key, in: 1...86_400_000).map(UInt64.init)
    }

    func bool(_ key: String) throws -> Bool? {
        guard let child = try child(key) else { return nil }
        guard let value = child.node.bool else { throw ConfigError("\(child.path) must be true or false") }
        return value
    }

    /// A list of strings. `textOnly` refuses an unquoted item YAML reads as a boolean, a number or
    /// a date (`api_keys: [true]`, `[12345678901234]`): for a secret that is a template's fault, not a
    /// key (review 121 #7); quoting it says it is meant. The value is never repeated.
    func stringList(_ key: String, textOnly: Bool = false) throws -> [String]? {
        guard let child = try child(key) else { return nil }
        guard let sequence = child.node.sequence else { throw ConfigError("\(child.path) must be a list of strings") }
        return try sequence.enumerated().map { index, item in
            // A YAML null (`null`, `~`, nothing) is what a template leaves for an unset value:
            // never the string "null" (review 53 #3: `api_keys: [null]` made `Bearer null` a key).
            guard item.null == nil else {
                throw ConfigError("\(child.path)[\(index)] is null (an unset template variable?): give a string")
            }
            // Anything YAML resolves as other than text (a boolean, a number, a date: review 124 #7).
            if textOnly, item.tag.description != Tag.Name.str.rawValue {
                throw ConfigError("\(child.path)[\(index)] is not plain text to YAML (a boolean, a number, a date, a tagged value…): quote it if it is meant")
            }
            guard let value = item.string else { throw ConfigError("\(child.path) must be a list of strings") }
            return value
        }
    }
}
