internal import CHTMLText

/// Readable text from HTML, with libxml2's HTML parser (error-tolerant, as browsers are): what a
/// model is given instead of markup. Scripts, styles, navigation and other non-content elements
/// are dropped; blocks become paragraphs, list items `- ` lines, headings `#` lines; whitespace is
/// collapsed except in `<pre>`.
public enum HTMLText {
    public struct Page: Sendable, Equatable {
        public var title: String?
        public var text: String
    }

    /// Elements whose whole subtree is not content.
    private static let skipped: Set<String> = [
        "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "head",
        "nav", "footer", "button", "select", "math",
    ]
    private static let blocks: Set<String> = [
        "p", "div", "section", "article", "main", "header", "aside", "blockquote", "figure", "figcaption", "table",
        "tr", "ul", "ol", "dl", "dt", "dd", "form", "fieldset", "address", "details", "summary", "hr", "body", "center",
    ]

    /// `encoding`: the charset from the Content-Type header, if any (else the page's `<meta>`, else
    /// libxml2's detection).
    public static func extract(_ html: [UInt8], encoding: String? = nil) -> Page {
        let document = html.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { CHTMLText_parse($0.baseAddress, $0.count, encoding) }
        }
        guard let document else { return Page(title: nil, text: "") }
        defer { CHTMLText_free(document) }
        guard let root = CHTMLText_root(document) else { return Page(title: nil, text: "") }
        var writer = TextWriter()
        var title: String?
        // Depth-first with an explicit stack: a hostile page cannot overflow ours.
        enum Visit { case enter(OpaquePointer), leave(String) }
        var stack: [Visit] = [.enter(root)]
        while let visit = stack.popLast() {
            switch visit {
            case .leave(let name):
                writer.leave(name)
            case .enter(let node):
                switch Int(CHTMLText_type(node)) {
                case CHTMLText_TEXT, CHTMLText_CDATA:
                    if let content = CHTMLText_content(node) { writer.text(String(cString: content)) }
                case CHTMLText_ELEMENT:
                    let name = CHTMLText_name(node).map { String(cString: $0).lowercased() } ?? ""
                    if name == "title", title == nil { title = collapse(textContent(node)) }
                    if name == "head", title == nil {  // skipped, but its <title> is wanted
                        var child = CHTMLText_first_child(node)
                        while let current = child, title == nil {
                            if CHTMLText_name(current).map({ String(cString: $0).lowercased() }) == "title" {
                                title = collapse(textContent(current))
                            }
                            child = CHTMLText_next(current)
                        }
                    }
                    if skipped.contains(name) { continue }
                    writer.enter(name)
                    stack.append(.leave(name))
                    var children: [OpaquePointer] = []
                    var child = CHTMLText_first_child(node)
                    while let current = child {
                        children.append(current)
                        child = CHTMLText_next(current)
                    }
                    stack.append(contentsOf: children.reversed().map(Visit.enter))
                default:
                    break
                }
            }
        }
        // A page without <title>: its first heading.
        let text = writer.finish()
        if title?.isEmpty ?? true, let heading = text.split(separator: "\n").first(where: { $0.hasPrefix("#") }) {
            title = String(heading.drop { $0 == "#" || $0 == " " })
        }
        return Page(title: title?.isEmpty == false ? title : nil, text: text)
    }

    /// A short HTML fragment (a search snippet with `<strong>`, `&amp;`) as plain text.
    public static func plain(_ fragment: String) -> String {
        guard fragment.contains("<") || fragment.contains("&") else { return fragment }
        return collapse(extract(Array("<html><body><p>\(fragment)</p></body></html>".utf8), encoding: "UTF-8").text)
    }

    /// The text directly inside `node` (a `<title>` has only text children).
    private static func textContent(_ node: OpaquePointer) -> String {
        var text = ""
        var child = CHTMLText_first_child(node)
        while let current = child {
            if let content = CHTMLText_content(current) { text += String(cString: content) }
            child = CHTMLText_next(current)
        }
        return text
    }

    static func collapse(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// Accumulates text with paragraph structure.
    private struct TextWriter {
        var out = ""
        var preDepth = 0
        /// A space is owed before the next word.
        var pendingSpace = false

        mutating func text(_ text: String) {
            if preDepth > 0 {
                out += text
                return
            }
            if text.first?.isWhitespace == true { pendingSpace = true }
            var first = true
            for word in text.split(whereSeparator: { $0.isWhitespace }) {
                if !first || pendingSpace, let last = out.last, last != "\n", last != " " { out += " " }
                out += word
                first = false
                pendingSpace = false
            }
            if text.last?.isWhitespace == true { pendingSpace = true }
        }

        mutating func enter(_ name: String) {
            switch name {
            case "br": newline()
            case "li": newline(); out += "- "; pendingSpace = false
            case "h1", "h2", "h3", "h4", "h5", "h6":
                paragraph()
                out += String(repeating: "#", count: Int(String(name.last!)) ?? 1) + " "
                pendingSpace = false
            case "pre": paragraph(); preDepth += 1
            case "td", "th": if let last = out.last, last != "\n" { out += " | " }
            default: if blocks.contains(name) { paragraph() }
            }
        }

        mutating func leave(_ name: String) {
            switch name {
            case "pre": preDepth -= 1; paragraph()
            case "h1", "h2", "h3", "h4", "h5", "h6": paragraph()
            case "li", "dt", "dd", "tr": newline()
            default: if blocks.contains(name) { paragraph() }
            }
        }

        mutating func newline() {
            trimTrailingSpaces()
            if !out.isEmpty && out.last != "\n" { out += "\n" }
            pendingSpace = false
        }

        mutating func paragraph() {
            trimTrailingSpaces()
            guard !out.isEmpty else { return }
            if !out.hasSuffix("\n\n") { out += out.hasSuffix("\n") ? "\n" : "\n\n" }
            pendingSpace = false
        }

        mutating func trimTrailingSpaces() {
            while let last = out.last, last == " " { out.removeLast() }
        }

        mutating func finish() -> String {
            var lines: [Substring] = []
            for line in out.split(separator: "\n", omittingEmptySubsequences: false) {
                let blank = line.allSatisfy { $0 == " " }
                if blank && (lines.last?.isEmpty ?? true) { continue }  // at most one blank line
                lines.append(blank ? "" : line)
            }
            while lines.last?.isEmpty == true { lines.removeLast() }
            return lines.joined(separator: "\n")
        }
    }
}
