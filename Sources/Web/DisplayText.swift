/// Text from a page or a search backend as it is shown to people: a citation's `title` and
/// `content`, a search result's title and snippet. Escaped JSON carries any character safely,
/// but clients show these fields as they are, and a terminal or a page then obeys what is in
/// them: an ANSI escape, a bell, a carriage return over the line, a right-to-left override that
/// reverses a title (review 106 #4). Controls (C0 and C1) other than line breaks and tabs, and
/// the bidi embedding, override and isolate characters, are dropped; a title is one line.
public enum DisplayText {
    public static func cleaned(_ text: String, oneLine: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { isDropped($0) || (oneLine && isLineBreak($0)) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars where !isDropped(scalar) {
            out.append(oneLine && isLineBreak(scalar) ? " " : scalar)
        }
        return String(out)
    }

    static func isLineBreak(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\n" || scalar == "\t" || scalar == "\u{2028}" || scalar == "\u{2029}"
    }

    static func isDropped(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A: false  // tab, line feed: text's own
        case 0x00...0x1F, 0x7F...0x9F: true  // C0 (a carriage return too), DEL, C1
        case 0x202A...0x202E, 0x2066...0x2069: true  // bidi embeddings, overrides, isolates
        default: false
        }
    }
}
