import Foundation
import Glibc
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
    /// in Unicode scalars (what Python's `str` indexes); a source it does not cite gets the empty
    /// span at the text's end (the OpenAI SDK declares both fields required).
    ///
    /// The answer and the URLs come from models and web pages: the search is bounded. Spans are
    /// looked for in the first `maxScannedBytes` of the text, for URLs of at most `maxURLBytes`,
    /// and all sources together may read at most `scanBudgetBytes` (every byte `memchr` passes
    /// and every comparison's full length are charged); past those bounds a source gets the
    /// empty span.
    public func annotations(for text: String) -> [JSONValue] {
        var utf8 = Array(text.utf8.prefix(Self.maxScannedBytes + 1))
        if utf8.count > Self.maxScannedBytes {
            // Cut before the first byte left out, on a scalar's first byte.
            var length = Self.maxScannedBytes
            while length > 0 && utf8[length] & 0xC0 == 0x80 { length -= 1 }
            utf8.removeSubrange(length...)
        }
        let positions = ScalarPositions(utf8)
        let end = Int64(text.unicodeScalars.count)
        var budget = Self.scanBudgetBytes
        return sources.map { source in
            let span = source.url.utf8.count <= Self.maxURLBytes ? Self.span(of: Array(source.url.utf8), in: utf8, budget: &budget) : nil
            let citation: [String: JSONValue] = [
                "url": .string(source.url), "title": .string(source.title), "content": .string(source.content),
                "start_index": .int(span.map { Int64(positions.scalarIndex(ofByte: $0.lowerBound)) } ?? end),
                "end_index": .int(span.map { Int64(positions.scalarIndex(ofByte: $0.upperBound)) } ?? end),
            ]
            return .object(["type": .string("url_citation"), "url_citation": .object(citation)])
        }
    }

    static let maxScannedBytes = 1 << 20
    static let maxURLBytes = 2_048
    static let scanBudgetBytes = 64 << 20
    /// How far before a cited URL its markdown label's `[` is looked for.
    static let maxLabelBytes = 1_024

    /// Whether a URL found in `text` ends before `end` rather than going on into a longer one
    /// (review 106 #5: `…/ok` was cited inside the link to `…/ok?x`, `…/page` inside `…/page2`):
    /// the text's end, white space, other text (not ASCII), a closing bracket, `"` or `|`; or a run
    /// of marks a URL may also hold (sentence punctuation, an ellipsis, `'`, emphasis) followed
    /// by one of those (review 108 #6: `…/ok.」`, `"…/ok."`, `_…/ok_`; review 113 #3: not inside
    /// `/wiki/Ender's_Game`).
    static func urlEnds(at end: Int, in text: [UInt8]) -> Bool {
        func ends(_ byte: UInt8) -> Bool { byte >= 0x80 || byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D || closing.contains(byte) }
        guard end < text.count else { return true }
        if ends(text[end]) { return true }
        var after = end
        while after < text.count, trailingMarks.contains(text[after]) { after += 1 }
        return after > end && (after == text.count || ends(text[after]))
    }

    /// Whether a URL found at `start` begins there rather than inside another (review 108 #6:
    /// `http://x/ok` inside `https://web.archive.org/web/2020/http://x/ok` or `…?next=http://x/ok`):
    /// the text's start, white space, other text (not ASCII), an opening bracket or quote, or
    /// emphasis.
    static func urlStarts(at start: Int, in text: [UInt8]) -> Bool {
        guard start > 0 else { return true }
        let previous = text[start - 1]
        return previous >= 0x80 || previous == 0x20 || previous == 0x0A || previous == 0x09 || previous == 0x0D || opening.contains(previous)
    }

    static let closing = Set(")>]}\"`|".utf8)  // `|` is no URL's (RFC 3986): a table's cell ends there
    static let opening = Set("(<[{\"'*_~`|".utf8)
    static let trailingMarks = Set(".,;:!?'*_~".utf8)

    /// The span, in UTF-8 bytes, of `[label](url)`, or of the bare URL, at the URL's first
    /// occurrence in `text` that ends there (`urlEnds`); nil when it does not occur, or `budget` (bytes read) runs out first.
    static func span(of url: [UInt8], in text: [UInt8], budget: inout Int) -> Range<Int>? {
        guard !url.isEmpty, url.count <= text.count else { return nil }
        let found: Int? = text.withUnsafeBytes { haystack in
            url.withUnsafeBytes { needle in
                let base = haystack.baseAddress!
                var position = 0
                let last = haystack.count - needle.count
                while position <= last && budget > 0 {
                    guard let hit = memchr(base + position, Int32(needle[0]), last - position + 1) else {
                        budget -= last - position + 1
                        return nil
                    }
                    let candidate = base.distance(to: UnsafeRawPointer(hit))
                    budget -= candidate - position + needle.count
                    if memcmp(hit, needle.baseAddress!, needle.count) == 0, Self.urlStarts(at: candidate, in: text),
                       Self.urlEnds(at: candidate + needle.count, in: text) {
                        return candidate
                    }
                    position = candidate + 1
                }
                return nil
            }
        }
        guard let start = found else { return nil }
        let end = start + url.count
        // Markdown link: `[label](url)`: the whole link is the citation. The label's `[` is the
        // one its `]` closes: a label may hold brackets (a page's title: review 106 #5's nit).
        if start >= 2, text[start - 1] == UInt8(ascii: "("), text[start - 2] == UInt8(ascii: "]"), end < text.count, text[end] == UInt8(ascii: ")") {
            var open = start - 3
            var depth = 1
            let lowest = max(0, start - 3 - Self.maxLabelBytes)
            while open >= lowest && text[open] != UInt8(ascii: "\n") {
                if text[open] == UInt8(ascii: "]") { depth += 1 }
                if text[open] == UInt8(ascii: "[") {
                    depth -= 1
                    if depth == 0 { return open..<(end + 1) }
                }
                open -= 1
            }
        }
        return start..<end
    }
}

/// Byte offsets of UTF-8 text to scalar indexes: a count of scalars at every 4 KiB, then the
/// scalars' first bytes counted within one block (no pass over the whole text per source).
struct ScalarPositions {
    private let bytes: [UInt8]
    private var blockStarts: [Int] = [0]
    static let block = 4_096

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var count = 0
        for (offset, byte) in bytes.enumerated() {
            if offset > 0 && offset % Self.block == 0 { blockStarts.append(count) }
            if byte & 0xC0 != 0x80 { count += 1 }
        }
    }

    func scalarIndex(ofByte offset: Int) -> Int {
        let block = offset / Self.block
        var count = blockStarts[min(block, blockStarts.count - 1)]
        for index in (min(block, blockStarts.count - 1) * Self.block)..<offset where bytes[index] & 0xC0 != 0x80 { count += 1 }
        return count
    }
}
