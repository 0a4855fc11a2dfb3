import Foundation
import GatewayCore
import HTTPServer

/// The gateway's perimeter decisions on a request's head, before any body is read or any work
/// starts: the `Host` it may be addressed as, its key, its content type, and which browser
/// origins may call it (CORS). Socket-free: every rule is tested without a server.
struct RequestPolicy: Sendable {
    /// Keys clients must present; empty: no authentication.
    let keys: [String]
    /// Origins whose pages may call the gateway (`server.cors.allow_origins`; `*` for any).
    let allowedOrigins: [String]
    /// `Host` values accepted besides loopback ones when bound to loopback (DNS rebinding), or
    /// the only ones accepted when non-empty on any address (`server.allowed_hosts`).
    let allowedHosts: [String]
    /// Bound to a loopback address: only loopback `Host` names are accepted (unless allowed).
    let loopbackOnly: Bool

    init(keys: [String], allowedOrigins: [String], allowedHosts: [String], bindHost: String) {
        self.keys = keys
        self.allowedOrigins = allowedOrigins
        self.allowedHosts = allowedHosts.map { $0.lowercased() }
        loopbackOnly = Self.isLoopback(bindHost)
    }

    static let corsMethods = "GET, HEAD, POST, OPTIONS"
    static let corsHeaders = "Authorization, Content-Type, X-Fusion-Depth, X-OpenRouter-Fusion-Depth, Anthropic-Version, X-Api-Key"
    static let exposedHeaders = "X-Generation-Id, X-Request-Id, Request-Id, Retry-After, X-Should-Retry"

    /// Nil lets the request in; otherwise the error to answer with (and close).
    func refusal(for head: HTTPRequest) -> APIError? {
        if let error = hostRefusal(head) { return error }
        // What is open without a key takes no body: refused before one byte of it is read, or
        // anyone could make the gateway buffer `max_body_bytes` per connection for the body's
        // long deadline (review 44 perimeter #1).
        if head.method == "OPTIONS" || Self.isPublic(head), Self.declaresBody(head) {
            return APIError(status: 413, type: "invalid_request_error", code: "body_too_large",
                            message: "This route takes no request body; it was not read.")
        }
        // A preflight carries no key (browsers never send one) and has no body.
        if head.method == "OPTIONS" { return nil }
        if !keys.isEmpty, !Self.isPublic(head), let key = Self.apiKeyHeader(head), let bearer = Self.bearerKey(head), key != bearer {
            // Which would the request be billed to? Refused, not guessed (review 22 F6).
            return APIError(status: 401, type: "authentication_error", code: "invalid_api_key",
                            message: "Two different keys: send one, as 'Authorization: Bearer <key>' or as 'x-api-key: <key>', not both.",
                            headers: [("WWW-Authenticate", "Bearer")])
        }
        if !keys.isEmpty && !Self.isPublic(head) && !isAuthorized(head) {
            return APIError(status: 401, type: "authentication_error", code: "invalid_api_key",
                            message: "Missing or invalid API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with one of this gateway's keys.",
                            headers: [("WWW-Authenticate", "Bearer")])
        }
        // A page on another origin can POST a "simple" form or text/plain body without a
        // preflight; a JSON content type cannot be sent that way (CSRF). Only where a POST is
        // served: elsewhere the route's 404 or 405 says more.
        if head.method == "POST" && ClientAPI(path: head.path) != nil && !Self.isJSON(head.header("content-type")) {
            return APIError(status: 415, type: "invalid_request_error", code: "unsupported_media_type",
                            message: "POST bodies must be sent with 'Content-Type: application/json' (in UTF-8, its only charset).")
        }
        return nil
    }

    /// A body follows the head: any transfer coding, or a length other than 0.
    static func declaresBody(_ head: HTTPRequest) -> Bool {
        if head.header("transfer-encoding") != nil { return true }
        guard let length = head.header("content-length") else { return false }
        // "00" is no body either; a length that is no number is one (the decoder refuses it).
        return UInt64(length.trimmingCharacters(in: .whitespaces)).map { $0 > 0 } ?? true
    }

    /// Open without a key: the health check (load balancers) and the playground's static files
    /// (the page asks for a key itself; `/v1/…` still needs one).
    static func isPublic(_ head: HTTPRequest) -> Bool {
        let path = head.path
        return path == "/health" || ((head.method == "GET" || head.method == "HEAD")
            && (path == "/" || path == "/playground" || path.hasPrefix("/playground/")))
    }

    private func hostRefusal(_ head: HTTPRequest) -> APIError? {
        guard loopbackOnly || !allowedHosts.isEmpty, let header = head.header("host") else { return nil }  // HTTP/1.0 may omit it
        // Probes and scrapers ask by address (`10.0.0.11:8080`, a pod's IP): `/health` says
        // nothing a page could steal, and `/metrics` needs a key where the gateway has keys
        // (review 121 #2: every documented Prometheus target and probe was a 421). Without keys
        // `/metrics` keeps the check: on loopback a rebound page could read it.
        if head.path == "/health" || (head.path == "/metrics" && !keys.isEmpty) { return nil }
        let host = Self.hostName(header)
        if allowedHosts.contains(host) || (loopbackOnly && Self.isLoopback(host)) { return nil }
        return APIError(status: 421, type: "invalid_request_error", code: "misdirected_request",
                        message: "This gateway does not answer to the host name '\(host)' (see server.allowed_hosts).")
    }

    /// A key as `Authorization: Bearer <key>`, or in `x-api-key` (how Anthropic's SDKs send it).
    private func isAuthorized(_ head: HTTPRequest) -> Bool {
        if let key = Self.apiKeyHeader(head), ConstantTime.matchesAny(key, keys) { return true }
        guard let key = Self.bearerKey(head) else { return false }
        return ConstantTime.matchesAny(key, keys)
    }

    /// The key a request presents, what authenticates it and what owns the generation records it
    /// makes: `x-api-key` when it is one of the keys (Anthropic's clients send it), else the
    /// `Authorization: Bearer` key.
    func presentedKey(_ head: HTTPRequest) -> String? {
        if let key = Self.apiKeyHeader(head), ConstantTime.matchesAny(key, keys) { return key }
        return Self.bearerKey(head)
    }

    /// `x-api-key` (Anthropic's SDKs); nil when absent or empty (review 53 #10: an empty header
    /// beside a Bearer key was "two different keys"). Its surrounding white space is the field's,
    /// dropped by the decoder (RFC 9110 §5.5).
    static func apiKeyHeader(_ head: HTTPRequest) -> String? {
        guard let key = head.header("x-api-key"), !key.isEmpty else { return nil }
        return key
    }

    /// The key of `Authorization: Bearer <key>` (the scheme in any case, spaces around the key
    /// allowed: RFC 9110's `1*SP` and a field value's optional white space).
    static func bearerKey(_ head: HTTPRequest) -> String? {
        guard let header = head.header("authorization") else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let key = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        return key.isEmpty ? nil : key
    }

    /// The CORS headers for a response to `request`, when its `Origin` is allowed (otherwise only
    /// `Vary: Origin`: the browser then refuses the page the response). With CORS configured,
    /// every response says it varies by `Origin`, those without one included: a cache in front
    /// must not hand an allowed frontend an answer made for another origin, or for none.
    func corsHeaders(for request: HTTPRequest) -> [(String, String)] {
        guard !allowedOrigins.isEmpty else { return [] }
        guard let origin = request.header("origin"), allowedOrigins.contains("*") || allowedOrigins.contains(origin) else { return [("Vary", "Origin")] }
        return [("Access-Control-Allow-Origin", allowedOrigins.contains("*") ? "*" : origin), ("Vary", "Origin"),
                ("Access-Control-Expose-Headers", Self.exposedHeaders)]
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    func preflight(_ request: HTTPRequest) -> (status: Int, headers: [(String, String)]) {
        let cors = corsHeaders(for: request)
        guard cors.contains(where: { $0.0 == "Access-Control-Allow-Origin" }) else { return (403, cors) }
        return (204, cors + [("Access-Control-Allow-Methods", Self.corsMethods),
                             ("Access-Control-Allow-Headers", Self.allowedHeaders(requested: request.header("access-control-request-headers"))),
                             ("Access-Control-Max-Age", "600"), ("Vary", "Access-Control-Request-Headers")])
    }

    /// The headers a preflight allows: ours, and those the page asks for. The official SDKs send
    /// their own in browsers (`x-stainless-*`, `anthropic-dangerous-direct-browser-access`,
    /// `anthropic-beta`, OpenRouter's `HTTP-Referer` and `X-Title`), and new ones come with new
    /// versions; a fixed list would block them. An allowed origin may send any header: the key
    /// is still checked. Only header names (tokens) are echoed, at most 64 of them.
    static func allowedHeaders(requested: String?) -> String {
        guard let requested else { return corsHeaders }
        var names = corsHeaders
        var known = Set(corsHeaders.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        for name in requested.split(separator: ",").prefix(64) {
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, trimmed.utf8.count <= 64, trimmed.utf8.allSatisfy(isTokenByte),
                  known.insert(trimmed.lowercased()).inserted else { continue }
            names += ", " + trimmed
        }
        return names
    }

    /// RFC 9110 §5.6.2's `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Whether a `Content-Type` names JSON: `application/json`, any ASCII case, blanks around it,
    /// any parameters after `;` but a charset other than UTF-8 (a body is read as UTF-8: one in
    /// UTF-16 was accepted, then refused as not JSON without saying why, review 48 surfaces #9).
    /// Compared byte by byte (no lowercased copy: this runs for every POST).
    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let bytes = contentType.utf8
        let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
        let mediaType = trimmingBlanks(Substring(bytes[..<semicolon]))
        guard mediaType.asciiCaseInsensitiveEquals("application/json") else { return false }
        guard semicolon < bytes.endIndex else { return true }
        for parameter in Substring(bytes[bytes.index(after: semicolon)...]).split(separator: ";", omittingEmptySubsequences: true) {
            let trimmed = trimmingBlanks(parameter)
            guard trimmed.utf8.count >= 8, Substring(trimmed.utf8.prefix(8)).asciiCaseInsensitiveEquals("charset=") else { continue }
            var value = Substring(trimmed.utf8.dropFirst(8))
            if value.utf8.count >= 2, value.utf8.first == 0x22, value.utf8.last == 0x22 { value = Substring(value.utf8.dropFirst().dropLast()) }
            guard value.asciiCaseInsensitiveEquals("utf-8") || value.asciiCaseInsensitiveEquals("utf8") else { return false }
        }
        return true
    }

    /// Why a configured origin (`server.cors.allow_origins`) could never equal a browser's
    /// `Origin` header, which is `scheme://host[:port]` in lower case, without a path and without
    /// the scheme's default port; nil when it can. An entry that never matches would leave the
    /// operator's frontend blocked with no hint why.
    static func originProblem(_ origin: String) -> String? {
        if origin == "*" { return nil }
        if origin == "null" {
            return "'null' is the origin of sandboxed and file:// pages, which any site can make: allow the page's real origin, or '*'"
        }
        let example = "(e.g. 'https://app.example.com' or 'http://localhost:5173')"
        guard let separator = origin.range(of: "://") else { return "'\(origin)' is not an origin: scheme://host[:port] \(example)" }
        let scheme = origin[..<separator.lowerBound]
        let authority = origin[separator.upperBound...]
        guard let first = scheme.utf8.first, isLetter(first), scheme.utf8.allSatisfy({ isLetter($0) || isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E }),
              !authority.isEmpty, authority.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F && $0 != 0x3F && $0 != 0x23 })
        else { return "'\(origin)' can never match: an origin is scheme://host[:port], without a path, a trailing slash or spaces \(example)" }
        if origin != origin.lowercased() { return "'\(origin)' can never match: browsers send origins in lower case ('\(origin.lowercased())')" }
        let defaultPort = [("http", ":80"), ("https", ":443")].first { $0.0 == scheme }?.1
        if let defaultPort, authority.hasSuffix(defaultPort), !authority.hasSuffix("]") {
            return "'\(origin)' can never match: browsers leave out the default port ('\(scheme)://\(authority.dropLast(defaultPort.count))')"
        }
        return nil
    }

    /// Why a configured host name (`server.allowed_hosts`) could never equal a request's `Host`
    /// as it is compared (its name, lower-cased, without port or IPv6 brackets); nil when it can.
    static func hostProblem(_ host: String) -> String? {
        let valid = !host.isEmpty && host.utf8.allSatisfy { isLetter($0) || isDigit($0) || $0 == 0x2E || $0 == 0x2D || $0 == 0x5F || $0 == 0x3A }
        guard valid, hostName(host) == host.lowercased() else {
            return "'\(host)' can never match: give a host name or address alone, without scheme, port, brackets or path (e.g. 'gateway.example.com', '10.0.0.5', '::1')"
        }
        return nil
    }

    private static func isLetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// `Host` without its port (`[::1]:8080` → `::1`), lowercased.
    static func hostName(_ host: String) -> String {
        let host = trimmingBlanks(Substring(host)).lowercased()
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") { return String(host[host.index(after: host.startIndex)..<close]) }
        if host.utf8.lazy.filter({ $0 == UInt8(ascii: ":") }).count == 1, let colon = host.firstIndex(of: ":") { return String(host[..<colon]) }
        return host
    }

    /// Spaces and tabs around a header value removed: the optional whitespace of RFC 9110 §5.6.3
    /// (Foundation's `trimmingCharacters` costs microseconds per request on this path).
    static func trimmingBlanks(_ text: Substring) -> Substring {
        let bytes = text.utf8
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start = bytes.index(after: start) }
        while end > start, bytes[bytes.index(before: end)] == 0x20 || bytes[bytes.index(before: end)] == 0x09 { end = bytes.index(before: end) }
        return Substring(bytes[start..<end])
    }

    static func isLoopback(_ host: String) -> Bool {
        let name = hostName(host)
        if name == "localhost" || name.hasSuffix(".localhost") || name == "::1" { return true }
        var address = in_addr()
        return inet_pton(AF_INET, name, &address) == 1 && UInt32(bigEndian: address.s_addr) >> 24 == 127
    }
}
