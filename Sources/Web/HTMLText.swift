internal import CHTMLText
import GatewayCore
import Glibc

/// Readable text from HTML, with libxml2's HTML parser (error-tolerant, as browsers are): what a
/// model is given instead of markup. Scripts, styles, navigation and other non-content elements
/// are dropped; blocks become paragraphs, list items `- ` lines, headings `#` lines; whitespace is
/// collapsed except in `<pre>`.
///
/// The tree walk works on libxml2's UTF-8 bytes with no allocation per node (web-bench: the
/// Swift-string version ran at a fifth of lxml's speed on the same parser).
public enum HTMLText {
    public struct Page: Sendable, Equatable {
        public var title: String?
        public var text: String
        /// The parser stopped before the page's end (nested too deeply): `text` is its start.
        public var cut = false
    }

    /// What an element means for the text.
    enum Role { case skip, block, lineItem, listItem, heading(Int), lineBreak, pre, cell, title, inline }

    private static let roles: [TagKey: Role] = {
        var roles: [TagKey: Role] = [:]
        // Whole subtrees that are not content.
        for name in ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "head",
                     "nav", "footer", "button", "select", "math"] { roles[TagKey(name)] = .skip }
        for name in ["p", "div", "section", "article", "main", "header", "aside", "blockquote", "figure", "figcaption",
                     "table", "ul", "ol", "dl", "form", "fieldset", "address", "details", "summary", "hr", "body",
                     "center"] { roles[TagKey(name)] = .block }
        for name in ["dt", "dd", "tr"] { roles[TagKey(name)] = .lineItem }
        for level in 1...6 { roles[TagKey("h\(level)")] = .heading(level) }
        roles[TagKey("li")] = .listItem
        roles[TagKey("br")] = .lineBreak
        roles[TagKey("pre")] = .pre
        roles[TagKey("td")] = .cell
        roles[TagKey("th")] = .cell
        roles[TagKey("title")] = .title
        return roles
    }()

    private static let elementNode = Int32(CHTMLText_ELEMENT)
    private static let textNode = Int32(CHTMLText_TEXT)
    private static let cdataNode = Int32(CHTMLText_CDATA)

    /// `encoding`: the charset from the Content-Type header, if any (else a byte order mark, the
    /// page's `<meta>`, UTF-8: `PageBytes`).
    public static func extract(_ html: [UInt8], encoding: String? = nil) -> Page {
        let page = extractPrepared(PageBytes.prepared(html, charset: encoding))
        return Page(title: page.title.map(PageBytes.restoringQuotes), text: PageBytes.restoringQuotes(page.text), cut: page.cut)
    }

    /// A parsed document of `PageBytes.prepared` bytes, and whether the parser stopped before
    /// their end; nil only when libxml2 cannot allocate.
    static func parse(_ prepared: [UInt8]) -> (document: OpaquePointer, halted: Bool)? {
        var halted: Int32 = 0
        let document = prepared.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { CHTMLText_parse($0.baseAddress, $0.count, &halted) }
        }
        return document.map { ($0, halted != 0) }
    }

    /// The most attributes any element has once `html` is parsed as `extract` parses it (tests:
    /// the bound on a tag's attributes holds whatever the bytes).
    static func maxAttributes(_ html: [UInt8], encoding: String? = nil) -> Int {
        guard let (document, _) = parse(PageBytes.prepared(html, charset: encoding)) else { return 0 }
        defer { CHTMLText_free(document) }
        return Int(CHTMLText_max_attributes(document))
    }

    private static func extractPrepared(_ prepared: [UInt8]) -> Page {
        guard let (document, halted) = parse(prepared) else { return Page(title: nil, text: "") }
        defer { CHTMLText_free(document) }
        guard let root = CHTMLText_root(document) else { return Page(title: nil, text: "", cut: halted) }
        var writer = TextWriter()
        var title: String?

        /// Handles a node on the way down; true if its children are to be visited.
        func enter(_ node: OpaquePointer) -> Bool {
            let type = CHTMLText_type(node)
            if type == textNode || type == cdataNode {
                if let content = CHTMLText_content(node) { writer.text(UnsafeRawPointer(content).assumingMemoryBound(to: UInt8.self)) }
                return false
            }
            guard type == elementNode else { return false }
            let role = role(of: node)
            switch role {
            case .title:
                if title == nil { title = textContent(node) }
                return false
            case .skip:
                if title == nil, let name = CHTMLText_name(node), TagKey(name) == TagKey("head") { title = titleIn(node) }
                return false
            default:
                writer.enter(role)
                return true
            }
        }

        // Depth-first without recursion or a stack (libxml2 nodes link to their parent): a
        // hostile page cannot overflow anything, and no node costs an allocation.
        var node = root
        var descend = enter(node)
        walk: while true {
            if descend, let child = CHTMLText_first_child(node) {
                node = child
                descend = enter(node)
                continue
            }
            if descend { writer.leave(role(of: node)) }  // an entered element without children
            while true {
                if node == root { break walk }
                if let next = CHTMLText_next(node) {
                    node = next
                    descend = enter(node)
                    break
                }
                guard let parent = CHTMLText_parent(node) else { break walk }
                node = parent
                writer.leave(role(of: node))
            }
        }
        let text = writer.finish()
        // A page without <title>: its first heading.
        if title?.isEmpty ?? true, let heading = text.split(separator: "\n").first(where: { $0.hasPrefix("#") }) {
            title = String(heading.drop { $0 == "#" || $0 == " " })
        }
        // A title is a line, not a second copy of the page (`<title>` or a heading of megabytes).
        return Page(title: title?.isEmpty == false ? title?.shortened(toBytes: maxTitleBytes) : nil, text: text, cut: halted)
    }

    /// The longest title kept, in UTF-8 bytes.
    public static let maxTitleBytes = 1_024

    /// `CHTMLText_bound_tags`: `html` with each start tag cut to its first attributes, as the
    /// parser is given it.
    static func boundingTags(_ html: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(1, html.count))
        let count = html.withUnsafeBufferPointer { input in
            input.withMemoryRebound(to: CChar.self) { input in
                out.withUnsafeMutableBufferPointer { output in
                    output.withMemoryRebound(to: CChar.self) { CHTMLText_bound_tags(input.baseAddress, input.count, $0.baseAddress) }
                }
            }
        }
        return Array(out.prefix(count))
    }

    /// A short HTML fragment (a search snippet with `<strong>`, `&amp;`) as plain text.
    public static func plain(_ fragment: String) -> String {
        guard fragment.contains("<") || fragment.contains("&") else { return fragment }
        return collapse(extract(Array("<html><body><p>\(fragment)</p></body></html>".utf8), encoding: "UTF-8").text)
    }

    static func collapse(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    private static func role(of node: OpaquePointer) -> Role {
        guard let name = CHTMLText_name(node) else { return .inline }
        return roles[TagKey(name)] ?? .inline
    }

    /// The text directly inside `node` (a `<title>` has only text children), collapsed.
    private static func textContent(_ node: OpaquePointer) -> String {
        var text = ""
        var child = CHTMLText_first_child(node)
        while let current = child {
            if let content = CHTMLText_content(current) { text += String(cString: content) }
            child = CHTMLText_next(current)
        }
        return collapse(text)
    }

    /// The `<title>` among `head`'s children.
    private static func titleIn(_ head: OpaquePointer) -> String? {
        var child = CHTMLText_first_child(head)
        while let current = child {
            if let name = CHTMLText_name(current), TagKey(name) == TagKey("title") { return textContent(current) }
            child = CHTMLText_next(current)
        }
        return nil
    }

    /// An element name of up to 16 bytes as two integers (libxml2's HTML parser lowercases
    /// names), for a dictionary lookup without making a String.
    struct TagKey: Hashable {
        var low: UInt64 = 0
        var high: UInt64 = 0

        init(_ name: String) { self.init(bytes: name.utf8) }

        init(_ name: UnsafePointer<CChar>) {
            self.init(bytes: UnsafeRawBufferPointer(start: name, count: strnlen(name, 17)))
        }

        private init(bytes: some Collection<UInt8>) {
            guard bytes.count <= 16 else { low = .max; high = .max; return }  // no tag we know is that long
            for (index, byte) in bytes.enumerated() {
                if index < 8 { low |= UInt64(byte) << (8 * UInt64(index)) } else { high |= UInt64(byte) << (8 * UInt64(index - 8)) }
            }
        }
    }

    /// Accumulates UTF-8 text with paragraph structure.
    private struct TextWriter {
        var out: [UInt8] = []
        var preDepth = 0
        /// Whitespace was seen since the last character written: a space is owed before the next.
        var pendingSpace = false

        private static let space = UInt8(ascii: " ")
        private static let newline = UInt8(ascii: "\n")

        init() { out.reserveCapacity(16 * 1024) }

        mutating func text(_ content: UnsafePointer<UInt8>) {
            let count = strlen(UnsafeRawPointer(content).assumingMemoryBound(to: CChar.self))
            let bytes = UnsafeBufferPointer(start: content, count: count)
            if preDepth > 0 {
                out.append(contentsOf: bytes)
                return
            }
            // Runs of non-whitespace are copied whole; HTML collapses ASCII whitespace only (U+00A0 stays).
            var index = 0
            while index < count {
                if Self.isSpace(bytes[index]) {
                    pendingSpace = true
                    index += 1
                    continue
                }
                var end = index + 1
                while end < count && !Self.isSpace(bytes[end]) { end += 1 }
                if pendingSpace, let last = out.last, last != Self.newline, last != Self.space { out.append(Self.space) }
                pendingSpace = false
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<end]))
                index = end
            }
        }

        @inline(__always) static func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D || byte == 0x0C
        }

        mutating func enter(_ role: Role) {
            switch role {
            case .lineBreak: newline()
            case .listItem:
                newline()
                out.append(contentsOf: [UInt8(ascii: "-"), Self.space])
                pendingSpace = false
            case .heading(let level):
                paragraph()
                out.append(contentsOf: repeatElement(UInt8(ascii: "#"), count: level))
                out.append(Self.space)
                pendingSpace = false
            case .pre:
                paragraph()
                preDepth += 1
            case .cell:
                if let last = out.last, last != Self.newline { out.append(contentsOf: Array(" | ".utf8)) }
            case .block: paragraph()
            case .lineItem, .skip, .title, .inline: break
            }
        }

        mutating func leave(_ role: Role) {
            switch role {
            case .pre:
                preDepth -= 1
                paragraph()
            case .heading, .block: paragraph()
            case .listItem, .lineItem: newline()
            case .lineBreak, .cell, .skip, .title, .inline: break
            }
        }

        mutating func newline() {
            trimTrailingSpaces()
            if let last = out.last, last != Self.newline { out.append(Self.newline) }
            pendingSpace = false
        }

        mutating func paragraph() {
            trimTrailingSpaces()
            pendingSpace = false
            guard let last = out.last else { return }
            if last != Self.newline {
                out.append(contentsOf: [Self.newline, Self.newline])
            } else if out.count < 2 || out[out.count - 2] != Self.newline {
                out.append(Self.newline)
            }
        }

        mutating func trimTrailingSpaces() {
            while out.last == Self.space { out.removeLast() }
        }

        /// At most one blank line in a row, blank lines made empty, none at the ends.
        func finish() -> String {
            var result: [UInt8] = []
            result.reserveCapacity(out.count)
            var lineStart = 0
            var previousBlank = true  // no blank line at the start
            var index = 0
            while index <= out.count {
                if index == out.count || out[index] == Self.newline {
                    let line = out[lineStart..<index]
                    let blank = line.allSatisfy { $0 == Self.space }
                    if !(blank && previousBlank) {
                        if !blank { result.append(contentsOf: line) }
                        result.append(Self.newline)
                    }
                    previousBlank = blank
                    lineStart = index + 1
                }
                index += 1
            }
            while result.last == Self.newline { result.removeLast() }
            return String(decoding: result, as: UTF8.self)
        }
    }
}
