/// Where Redis is: `redis://host[:port][/db]` (TCP; no TLS). Credentials never come from the
/// URL: a password in it is refused, so it cannot end up in a config file or a log line.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    /// An ACL user (Redis 6+); nil authenticates as the default user.
    public var username: String?

    public init(host: String, port: Int = 6379, database: Int = 0, username: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
    }

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Parses a URL; every number is range-checked (no conversion can trap).
    public static func parse(url: String) throws(Invalid) -> RedisEndpoint {
        guard url.hasPrefix("redis://") else {
            if url.hasPrefix("rediss://") { throw Invalid(description: "TLS (rediss://) is not supported: reach Redis over a private network or a TLS tunnel") }
            throw Invalid(description: "the URL must start with redis://")
        }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard path.count <= 5, path.allSatisfy(\.isASCIIDigit), let number = Int(path), (0...65535).contains(number) else {
                    throw Invalid(description: "the database (after the '/') must be a number in 0...65535")
                }
                database = number
            }
        }
        var username: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard !credentials.contains(":") else {
                throw Invalid(description: "no password in the URL: name an environment variable holding it (password_env)")
            }
            username = credentials.isEmpty ? nil : String(credentials)
        }
        var host = rest
        var port = 6379
        if rest.hasPrefix("[") {  // [::1]:6379
            guard let close = rest.firstIndex(of: "]") else { throw Invalid(description: "an IPv6 address must be enclosed in [ ]") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Invalid(description: "unexpected text after the IPv6 address") }
                port = try parsePort(after.dropFirst())
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            port = try parsePort(rest[rest.index(after: colon)...])
        }
        guard !host.isEmpty, host.count <= 253, !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "?" || $0 == "#" }) else {
            throw Invalid(description: "the URL has no valid host")
        }
        return RedisEndpoint(host: String(host), port: port, database: database, username: username)
    }

    private static func parsePort(_ text: Substring) throws(Invalid) -> Int {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy(\.isASCIIDigit), let port = Int(text), (1...65535).contains(port) else {
            throw Invalid(description: "the port must be a number in 1...65535")
        }
        return port
    }

    /// For logs: never a secret (the URL holds none).
    public var description: String {
        let address = host.contains(":") ? "[\(host)]" : host
        return "redis://\(username.map { "\($0)@" } ?? "")\(address):\(port)/\(database)"
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
