/// Text the user gave (a model name, a path, a URL) as the bench prints it to a terminal.
public enum TerminalText {
    /// As typed, or quoted with every control, format, line or paragraph separator character
    /// written `\u{…}`: such a character would otherwise reach the terminal raw (an escape
    /// sequence sets its title or clears it; a bidi override reorders the line). Swift's debug
    /// form leaves C1 controls, bidi overrides and zero-width characters raw (review 104 #6).
    public static func shown(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = "\""
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                if scalar == "\"" || scalar == "\\" { out += "\\" }
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}
