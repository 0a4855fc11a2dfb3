/// Text from a page or a search backend as it is shown to people: a citation's `title` and
/// `content`, a search result's title and snippet. Escaped JSON carries any character safely,
/// but clients show these fields as they are, and a terminal or a page then obeys what is in
/// them: an ANSI escape, a bell, a carriage return over the line, a right-to-left override that
/// reverses a title (review 106 #4). Controls (C0 and C1) other than line breaks and tabs, and
/// the bidi embedding, override and isolate characters, are dropped; a title is one line.
public enum DisplayText {
    public static func cleaned(_ text: String, oneLine: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { isDropped($0) || isLineBreak($0) && (oneLine || $0 != "\n" && $0 != "\t") }) else { return text }
        var out = String.UnicodeScalarView()
        var previous: Unicode.Scalar = " "
        for scalar in text.unicodeScalars {
            defer { previous = scalar }
            if isLineBreak(scalar) {
                // Every line break a line feed (a carriage return alone, a form feed, NEL: review
                // 108 #5), a CR LF one; one line for a title. A tab stays a tab.
                if scalar == "\n" && previous == "\r" { continue }
                out.append(oneLine ? " " : scalar == "\t" ? "\t" : "\n")
            } else if !isDropped(scalar) {
                out.append(scalar)
            }
        }
        return String(out)
    }

    static func isLineBreak(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x85, 0x2028, 0x2029: true
        default: false
        }
    }

    static func isDropped(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x85: false  // line breaks and tabs: above
        case 0x00...0x1F, 0x7F...0x9F: true  // C0 (a carriage return too), DEL, C1
        case 0x202A...0x202E, 0x2066...0x2069: true  // bidi embeddings, overrides, isolates
        default: false
        }
    }
}
