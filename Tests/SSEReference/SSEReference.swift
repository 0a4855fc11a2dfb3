// Reference readers of Server-Sent Events for tests, written from the specs, independent of the
// gateway's own SSEDecoder: what any client could make of the bytes the gateway writes.

/// A reference reader of the WHATWG event stream format (HTML §9.2.6), kept deliberately
/// naive: decode UTF-8, split lines at CRLF, LF or CR, then apply the field rules.
public enum WHATWGEventStream {
    public enum Item: Equatable, Sendable { case comment(String), event(type: String, data: String) }

    public static func parse(_ bytes: [UInt8]) -> [Item] {
        var text = String(decoding: bytes, as: UTF8.self)
        if text.unicodeScalars.first == "\u{FEFF}" { text.unicodeScalars.removeFirst() }
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var scalars = text.unicodeScalars.makeIterator()
        var pending = scalars.next()
        while let scalar = pending {
            pending = scalars.next()
            if scalar == "\r" || scalar == "\n" {
                lines.append(String(current))
                current = String.UnicodeScalarView()
                if scalar == "\r" && pending == "\n" { pending = scalars.next() }
            } else {
                current.append(scalar)
            }
        }
        // A final line without its end is discarded, as the spec says.
        var items: [Item] = []
        var data: String?
        var type = ""
        for line in lines {
            if line.isEmpty {
                if let payload = data { items.append(.event(type: type.isEmpty ? "message" : type, data: payload)) }
                data = nil
                type = ""
            } else if line.hasPrefix(":") {
                items.append(.comment(String(line.unicodeScalars.dropFirst())))
            } else {
                let (name, value) = field(line)
                switch name {
                case "event": type = value
                case "data": data = data.map { $0 + "\n" + value } ?? value
                default: break
                }
            }
        }
        return items
    }

    static func field(_ line: String) -> (String, String) {
        guard let colon = line.unicodeScalars.firstIndex(of: ":") else { return (line, "") }
        return (String(line.unicodeScalars[..<colon]), fieldValue(String(line.unicodeScalars[line.unicodeScalars.index(after: colon)...])))
    }

    /// A field's value: one leading space is dropped.
    static func fieldValue(_ raw: String) -> String {
        raw.unicodeScalars.first == " " ? String(raw.unicodeScalars.dropFirst()) : raw
    }
}

/// Lines as Python's `str.splitlines` ends them (\n, \r, \r\n, \v, \f, \x1c, \x1d, \x1e,
/// \x85, U+2028, U+2029), over the UTF-8 decoded text.
public enum PythonLines {
    public static let ends: Set<Unicode.Scalar> = ["\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{85}", "\u{2028}", "\u{2029}"]

    public static func split(_ bytes: [UInt8]) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var scalars = String(decoding: bytes, as: UTF8.self).unicodeScalars.makeIterator()
        var pending = scalars.next()
        while let scalar = pending {
            pending = scalars.next()
            if ends.contains(scalar) {
                lines.append(String(current))
                current = String.UnicodeScalarView()
                if scalar == "\r" && pending == "\n" { pending = scalars.next() }
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }
}
