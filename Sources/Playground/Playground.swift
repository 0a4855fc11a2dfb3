import GatewayCore

/// The browser playground: one page of HTML, CSS and JavaScript modules written for this
/// project, embedded in the binary at build time (SwiftPM's `.embedInCode`), so
/// `fusion-gateway serve` shows it at `/` and `/playground` with nothing to install, offline.
///
/// The page uses only the public API (`GET /v1/models`, `POST /v1/chat/completions` with named
/// Fusion events). Its files are static and hold no secret, so the gateway serves them before its
/// key check; the page asks for a key itself and sends it with every API call.
public enum Playground {
    /// What to send: status, headers and content.
    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        /// The content. A 304's is the 200's: the server sends its length, not its bytes
        /// (RFC 9110 §8.6, §15.4.5), as for a response to HEAD.
        public var body: [UInt8]
    }

    /// The strict policy every playground response carries: scripts and styles only from the
    /// gateway's own files (no inline code, no eval), fetches only to the gateway, no framing.
    public static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static let securityHeaders: [(String, String)] = [
        ("Content-Security-Policy", contentSecurityPolicy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]

    /// The response to `method path` (path without its query), or nil when the path is not the
    /// playground's: `/`, `/playground`, and everything under `/playground/` (unknown files
    /// there are a 404, other methods than GET and HEAD a 405). `ifNoneMatch` is the request's
    /// `If-None-Match` header.
    public static func response(method: String, path: String, ifNoneMatch: String?) -> Response? {
        let name: String
        switch path {
        case "/", "/playground", "/playground/": name = "index.html"
        case _ where path.hasPrefix("/playground/"): name = String(path.dropFirst("/playground/".count))
        default: return nil
        }
        guard method == "GET" || method == "HEAD" else {
            return Response(error: .methodNotAllowed(method, path: path, allowed: "GET, HEAD"))
        }
        guard let asset = PlaygroundAsset.named[name] else {
            return Response(error: .notFound(path: path))
        }
        let headers = [("Content-Type", asset.contentType), ("ETag", asset.etag), ("Cache-Control", "no-cache")]
            + securityHeaders
        // `no-cache`: the browser revalidates every time, so a new binary's files are picked up
        // at once; an unchanged file costs a 304 and no bytes.
        if let ifNoneMatch, ETag.matches(asset.etag, ifNoneMatch: ifNoneMatch) {
            return Response(status: 304, headers: headers, body: asset.body)
        }
        return Response(status: 200, headers: headers, body: asset.body)
    }

    /// Every file served and its size in bytes (for tests and size checks).
    public static var files: [(path: String, contentType: String, bytes: Int)] {
        PlaygroundAsset.all.map { ("/playground/\($0.name)", $0.contentType, $0.body.count) }
    }
}

extension Playground.Response {
    init(error: APIError) {
        self.init(status: error.status,
                  headers: [("Content-Type", "application/json")] + error.headers + Playground.securityHeaders,
                  body: error.body)
    }
}

/// One embedded file with its content type and entity tag.
struct PlaygroundAsset: Sendable {
    let name: String
    let contentType: String
    let body: [UInt8]
    let etag: String

    init(_ name: String, _ contentType: String, _ body: [UInt8]) {
        self.name = name
        self.contentType = contentType
        self.body = body
        etag = ETag.strong(for: body)
    }

    static let all: [PlaygroundAsset] = [
        PlaygroundAsset("index.html", "text/html; charset=utf-8", PackageResources.index_html),
        PlaygroundAsset("app.css", "text/css; charset=utf-8", PackageResources.app_css),
        PlaygroundAsset("icon.svg", "image/svg+xml", PackageResources.icon_svg),
        PlaygroundAsset("app.js", "text/javascript; charset=utf-8", PackageResources.app_js),
        PlaygroundAsset("sse.js", "text/javascript; charset=utf-8", PackageResources.sse_js),
        PlaygroundAsset("api.js", "text/javascript; charset=utf-8", PackageResources.api_js),
        PlaygroundAsset("run.js", "text/javascript; charset=utf-8", PackageResources.run_js),
        PlaygroundAsset("judge-items.js", "text/javascript; charset=utf-8", PackageResources.judge_items_js),
        PlaygroundAsset("dom.js", "text/javascript; charset=utf-8", PackageResources.dom_js),
        PlaygroundAsset("text.js", "text/javascript; charset=utf-8", PackageResources.text_js),
        PlaygroundAsset("timeline.js", "text/javascript; charset=utf-8", PackageResources.timeline_js),
        PlaygroundAsset("view.js", "text/javascript; charset=utf-8", PackageResources.view_js),
    ]

    static let named: [String: PlaygroundAsset] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

/// Entity tags from a hash of the content: the same bytes always get the same tag, so a
/// browser's cached copy stays valid exactly as long as the binary serves those bytes.
enum ETag {
    /// `"<16 hex digits>"`: 64-bit FNV-1a of the content. A cache validator, not a security
    /// boundary (nothing is trusted on a match but the browser's own copy).
    static func strong(for bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "\"" + String(repeating: "0", count: 16 - hex.count) + hex + "\""
    }

    /// Whether `If-None-Match` (a list of tags, or `*`) matches `etag`, by the weak comparison
    /// RFC 9110 §13.1.2 prescribes for it (`W/"x"` matches `"x"`).
    static func matches(_ etag: String, ifNoneMatch: String) -> Bool {
        for candidate in ifNoneMatch.split(separator: ",") {
            var tag = candidate.drop { $0 == " " || $0 == "\t" }
            while tag.last == " " || tag.last == "\t" { tag.removeLast() }
            if tag == "*" { return true }
            if tag.hasPrefix("W/") { tag.removeFirst(2) }
            if tag == etag[...] { return true }
        }
        return false
    }
}
