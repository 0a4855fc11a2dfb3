import Foundation
import GatewayCore

/// What `web_fetch` makes of a response: URL rules, content types, text for the model. No I/O.
public enum WebPage {
    /// An absolute http(s) URL without credentials, or why not.
    public static func validate(_ text: String) -> Result<URL, WebToolError> {
        // Bounded as search results' URLs are: a URL reaches the model's context, the sources and
        // the client's citations whole, outside the page's character cap (review 62B #7: a page
        // redirected to 100 KB of URL).
        guard text.utf8.count <= SearchBackend.maxURLBytes else {
            return .failure(WebToolError("URLs longer than \(SearchBackend.maxURLBytes) bytes are not fetched"))
        }
        guard var url = URL(string: escapedWhereInvalid(text.trimmingCharacters(in: .whitespaces))), let scheme = url.scheme?.lowercased() else {
            return .failure(WebToolError("not a valid absolute URL: \(quoted(text))"))
        }
        guard scheme == "http" || scheme == "https" else {
            return .failure(WebToolError("only http and https URLs can be fetched, not \(scheme):"))
        }
        if url.scheme != scheme, let lowered = URL(string: scheme + url.absoluteString.dropFirst(scheme.utf8.count)) {
            url = lowered  // `HTTPS://`: one form for citations, their deduplication and clients' link checks
        }
        guard let host = url.host, !host.isEmpty else { return .failure(WebToolError("the URL has no host")) }
        guard url.absoluteString.utf8.count <= SearchBackend.maxURLBytes else {  // once escaped
            return .failure(WebToolError("URLs longer than \(SearchBackend.maxURLBytes) bytes are not fetched"))
        }
        guard url.user == nil && url.password == nil else {
            return .failure(WebToolError("URLs with credentials are not fetched"))
        }
        return .success(url)
    }

    /// A URL quoted in an error (the model's context, the client's events): 200 bytes at most,
    /// without controls or bidi overrides (review 108 #4).
    static func quoted(_ text: String) -> String {
        DisplayText.cleaned(text.shortened(toBytes: 200), oneLine: true)
    }

    /// `text` with what a URL cannot hold after its authority (spaces, quotes, controls, text
    /// that is not ASCII) percent-encoded, and nothing else: Foundation's `URL(string:)` encodes
    /// such a component whole, its `%XX` escapes too, and `?q=%C3%A9&r=é` became a request for
    /// `?q=%25C3%25A9…`, another page (review 108 #1). The host is left to `URL` (IDN).
    static func escapedWhereInvalid(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.contains(where: { !isURLByte($0) }) else { return text }
        // After `scheme://host`: the first `/`, `?` or `#` past the `//`.
        var start = 0
        if let slashes = text.range(of: "://") {
            start = text.utf8.distance(from: text.startIndex, to: slashes.upperBound)
            while start < bytes.count, ![UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#")].contains(bytes[start]) { start += 1 }
        }
        var out = Array(bytes[..<start])
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in bytes[start...] {
            if isURLByte(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 3986's unreserved and reserved characters, and `%`.
    private static func isURLByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: punctuation.contains(byte)
        }
    }

    private static let punctuation = Set("-._~:/?#[]@!$&'()*+,;=%".utf8)

    /// A redirect's `Location` resolved against the URL that sent it, and validated.
    public static func redirectTarget(_ location: String, from base: URL) -> Result<URL, WebToolError> {
        // Bounded in bytes before anything is quoted: 200 Characters may be any number of bytes
        // (review 106 #2: one letter and 40,000 combining marks, 80 KB in a tool result).
        guard location.utf8.count <= SearchBackend.maxURLBytes else {
            return .failure(WebToolError("redirect refused: URLs longer than \(SearchBackend.maxURLBytes) bytes are not fetched"))
        }
        guard let target = URL(string: escapedWhereInvalid(location), relativeTo: base)?.absoluteURL else {
            return .failure(WebToolError("redirect to an invalid URL: \(quoted(location))"))
        }
        return validate(target.absoluteString).mapError { WebToolError("redirect refused: \($0.message)") }
    }

    public enum ContentKind: Equatable, Sendable { case html, text, unsupported(String) }

    /// Media type and charset of a `Content-Type` header value.
    public static func contentType(_ header: String?) -> (kind: ContentKind, charset: String?) {
        guard let header, !header.isEmpty else { return (.text, nil) }  // unlabelled: sniffed below
        let parts = header.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        let media = parts.first?.lowercased() ?? ""
        var charset: String?
        for part in parts.dropFirst() where part.lowercased().hasPrefix("charset=") {
            charset = String(part.dropFirst(8)).trimmingCharacters(in: CharacterSet(charactersIn: "\"' "))
        }
        switch media {
        case "text/html", "application/xhtml+xml": return (.html, charset)
        case "application/json", "application/xml", "text/xml", "application/rss+xml", "application/atom+xml",
             "application/ld+json", "application/javascript":
            return (.text, charset)
        default:
            if media.hasPrefix("text/") || media.hasSuffix("+json") { return (.text, charset) }
            return (.unsupported(media), charset)
        }
    }

    /// The page as the model sees it: readable text, at most `maxCharacters` (cut at a line or
    /// word boundary where one is near, and marked).
    public static func render(body: [UInt8], contentType header: String?, maxCharacters: Int,
                              downloadTruncated: Bool) -> Result<(title: String?, text: String, truncated: Bool), WebToolError> {
        var (kind, charset) = contentType(header)
        if header == nil || header?.isEmpty == true, looksLikeHTML(body) { kind = .html }
        var title: String?
        var text: String
        var note = "[truncated]"
        var truncated = downloadTruncated
        switch kind {
        case .unsupported(let media):
            // The page chose the value: bounded, as everything of it that reaches the model (review 55B #3).
            return .failure(WebToolError("unsupported content type \(media.shortened(toBytes: 100)): only HTML and text pages can be read"))
        case .html:
            let page = HTMLText.extract(body, encoding: charset)
            title = page.title
            text = page.text
            if page.cut {
                // The model must not take the start of the page for all of it (review 62B #2).
                truncated = true
                note = "[truncated: the rest of the page is nested too deeply to read]"
            }
        case .text:
            // In its charset, as an HTML page's (review 55B #2: Latin-1 lost its letters, UTF-16
            // was called binary); a NUL in the text, not in the bytes, says binary.
            let decoded = PageBytes.utf8(body, charset: charset, html: false)
            if decoded.contains(0) { return .failure(WebToolError("the response is binary, not text")) }
            text = String(decoding: decoded, as: UTF8.self)
        }
        // Counted in Unicode scalars, which bound bytes (4 at most) and so tokens: a Character
        // may carry any number of combining marks, and counted in those, a page of one letter and
        // a million accents passed whole (review 45 web #2). Scalars ≤ UTF-8 bytes: most pages
        // are decided without counting.
        let scalars = text.unicodeScalars
        if text.utf8.count > maxCharacters,
           let limit = scalars.index(scalars.startIndex, offsetBy: maxCharacters, limitedBy: scalars.endIndex), limit < scalars.endIndex {
            var cut = scalars[..<limit]
            if let boundary = cut.lastIndex(where: { $0 == "\n" || $0 == " " }),
               cut.distance(from: boundary, to: cut.endIndex) < 200 {
                cut = cut[..<boundary]
            }
            text = String(String.UnicodeScalarView(cut))
            truncated = true
        }
        if truncated { text += "\n\n" + note }
        return .success((title, text, truncated))
    }

    static func looksLikeHTML(_ body: [UInt8]) -> Bool {
        let head = String(decoding: body.prefix(512), as: UTF8.self).lowercased()
        return head.contains("<!doctype html") || head.contains("<html") || head.contains("<body")
    }
}

/// Why a web tool call failed: said to the model as the tool's result, and streamed.
public struct WebToolError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
