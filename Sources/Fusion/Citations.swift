import Foundation
import GatewayCore

/// A web source a panel member or the judge found (search) or read (fetch).
public struct Source: Sendable, Equatable {
    public var url: String
    public var title: String
    /// A short excerpt: the search snippet or the start of the fetched page's text.
    public var content: String

    public init(url: String, title: String, content: String) {
        self.url = url
        self.title = title
        self.content = content
    }
}

/// The sources of one request, deduplicated by URL (fragment, default port, letter case of
/// scheme and host ignored), in the order first seen. A later sighting fills in a missing title
/// or excerpt.
public struct SourceList: Sendable, Equatable {
    public private(set) var sources: [Source] = []
    private var positions: [String: Int] = [:]

    public init() {}

    public var isEmpty: Bool { sources.isEmpty }

    public mutating func add(_ source: Source) {
        let key = Self.key(source.url)
        if let position = positions[key] {
            if sources[position].title.isEmpty || sources[position].title == sources[position].url { sources[position].title = source.title }
            if sources[position].content.isEmpty { sources[position].content = source.content }
            return
        }
        positions[key] = sources.count
        sources.append(source)
    }

    /// The comparison key of a URL.
    static func key(_ url: String) -> String {
        var text = Substring(url)
        if let hash = text.firstIndex(of: "#") { text = text[..<hash] }
        guard let schemeEnd = text.range(of: "://") else { return String(text) }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd].lowercased()
        if scheme == "http", authority.hasSuffix(":80") { authority.removeLast(3) }
        if scheme == "https", authority.hasSuffix(":443") { authority.removeLast(4) }
        var path = String(rest[authorityEnd...])
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        return "\(scheme)://\(authority)\(path)"
    }

    /// `url_citation` annotations for a message whose text is `text`. Where the text cites a
    /// source (a markdown link to it, or its bare URL), `start_index`/`end_index` give that span
    /// in Unicode scalars (what Python's `str` indexes); otherwise they are left out.
    public func annotations(for text: String) -> [JSONValue] {
        let scalars = Array(text.unicodeScalars)
        return sources.map { source in
            var citation: [String: JSONValue] = [
                "url": .string(source.url), "title": .string(source.title), "content": .string(source.content),
            ]
            if let span = Self.span(of: source.url, in: scalars) {
                citation["start_index"] = .int(Int64(span.lowerBound))
                citation["end_index"] = .int(Int64(span.upperBound))
            }
            return .object(["type": .string("url_citation"), "url_citation": .object(citation)])
        }
    }

    /// The span of `[label](url)`, or of the bare URL, in `text`.
    static func span(of url: String, in text: [Unicode.Scalar]) -> Range<Int>? {
        let needle = Array(url.unicodeScalars)
        guard !needle.isEmpty, needle.count <= text.count else { return nil }
        var start = 0
        while start + needle.count <= text.count {
            if text[start] == needle[0] && Array(text[start..<(start + needle.count)]) == needle {
                let end = start + needle.count
                // Markdown link: `[label](url)`: the whole link is the citation.
                if start >= 2, text[start - 1] == "(", text[start - 2] == "]", end < text.count, text[end] == ")" {
                    var open = start - 3
                    while open >= 0 && text[open] != "[" && text[open] != "\n" { open -= 1 }
                    if open >= 0 && text[open] == "[" { return open..<(end + 1) }
                }
                return start..<end
            }
            start += 1
        }
        return nil
    }
}
