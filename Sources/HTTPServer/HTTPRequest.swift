import Foundation

/// A complete HTTP/1.x request as the server hands it to a handler (or, with an empty body, to a
/// head guard).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent (path and query).
    public var target: String
    public var versionMajor: Int
    public var versionMinor: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Whether the connection may serve another request after this one.
    public var keepAlive: Bool

    public init(method: String, target: String, versionMajor: Int = 1, versionMinor: Int = 1,
                headers: [(name: String, value: String)] = [], body: [UInt8] = [], keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.headers = headers
        self.body = body
        self.keepAlive = keepAlive
    }

    /// An absolute-form target (`http://host:port/path?query`, any case of the scheme) as its
    /// origin form (`/path?query`, `/` when it has no path) and its authority; nil for any other.
    public static func originForm(of target: String) -> (target: String, authority: String)? {
        guard let first = target.utf8.first, first == UInt8(ascii: "h") || first == UInt8(ascii: "H") else { return nil }
        let lowered = target.prefix(8).lowercased()
        let schemeLength = lowered.hasPrefix("http://") ? 7 : lowered.hasPrefix("https://") ? 8 : 0
        guard schemeLength > 0 else { return nil }
        let rest = target.dropFirst(schemeLength)
        // By bytes, as `path` and the query split (review 88 F1: a `/` or `?` joined to a mark
        // ended the path for one and not the other).
        let end = rest.utf8.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        let authority = String(rest[..<end])
        guard !authority.isEmpty else { return nil }
        let path = rest[end...]
        return (path.utf8.first == UInt8(ascii: "/") ? String(path) : "/" + path, authority)
    }

    /// The target up to its query. Searched by bytes, as a URL's delimiters are: a `Character`
    /// search (grapheme breaking) cost ~7,500 instructions a call, four calls a request.
    public var path: String {
        guard let query = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return target }
        return String(target[..<query])
    }

    /// The first value of query parameter `name`, decoded as a form value ('+' is a space, then
    /// percent escapes). nil when the parameter is absent, and also when its value is not valid
    /// percent-encoded UTF-8 (`%zz`, `%+f`, a truncated `%4`, `%ff`): a broken escape never
    /// silently loses or invents bytes, it makes the value unusable as a whole.
    public func queryItem(_ name: String) -> String? {
        rawQueryValue(name).flatMap(Self.formDecoded)
    }

    /// Whether query parameter `name` is there at all, its value readable or not (a cursor that
    /// is no valid escape must be refused, not read as absent).
    public func hasQueryItem(_ name: String) -> Bool {
        rawQueryValue(name) != nil
    }

    /// The undecoded value of the first parameter whose name decodes to `name` ("" without "=").
    private func rawQueryValue(_ name: String) -> Substring? {
        guard let query = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        // Split by bytes, as the `?` was found: a `&` or `=` joined to a mark is still one.
        for pair in target[target.utf8.index(after: query)...].utf8.split(separator: UInt8(ascii: "&")) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false).map { Substring($0) }
            if Self.formDecoded(parts[0]) == name { return parts.count > 1 ? parts[1] : "" }
        }
        return nil
    }

    /// The first value of header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        for header in headers where header.name.asciiCaseInsensitiveEquals(name) { return header.value }
        return nil
    }

    /// Every value of header `name`, joined by commas (a list header sent as several lines is
    /// one list, RFC 9110 §5.3); nil when absent.
    public func headerList(_ name: String) -> String? {
        let values = headers.filter { $0.name.asciiCaseInsensitiveEquals(name) }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ",")
    }

    /// `application/x-www-form-urlencoded` decoding of one name or value.
    static func formDecoded(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

extension StringProtocol {
    /// Case-insensitive for ASCII letters only, as HTTP field names and tokens are compared.
    /// Unicode case folding (`lowercased()`) would let e.g. the Kelvin sign match "k"; a header
    /// name that is not what it looks like must not match. Compares bytes: no lowercased copy.
    /// Inlinable, so each caller's module specializes it for `String` or `Substring`: called
    /// unspecialized (through `StringProtocol`'s witnesses, a generic `zip`) it cost ~20 µs of
    /// a proxied request's ~1 ms of CPU, on every header check of every request.
    @inlinable
    public func asciiCaseInsensitiveEquals(_ other: String) -> Bool {
        // Lengths first (constant time): most names asked about are not the one at hand.
        guard utf8.count == other.utf8.count else { return false }
        var own = utf8.makeIterator()
        for expected in other.utf8 {
            guard let byte = own.next(), byte.asciiLowercased == expected.asciiLowercased else { return false }
        }
        return own.next() == nil
    }

    /// Starts with `prefix`, ASCII letters compared without case (as `asciiCaseInsensitiveEquals`).
    @inlinable
    public func hasASCIICaseInsensitivePrefix(_ prefix: String) -> Bool {
        var own = utf8.makeIterator()
        for expected in prefix.utf8 {
            guard let byte = own.next(), byte.asciiLowercased == expected.asciiLowercased else { return false }
        }
        return true
    }
}

extension UInt8 {
    @usableFromInline
    var asciiLowercased: UInt8 { self &- 0x41 < 26 ? self | 0x20 : self }
}
