import Foundation
import Glibc

/// A page's bytes as the HTML parser may safely be given them: UTF-8 whatever the page was in
/// (its Content-Type charset, else a byte order mark, else its `<meta>` charset, else UTF-8, or
/// windows-1252 when it is not valid UTF-8), with its ASCII quote characters swapped for
/// private-use characters that `restoringQuotes` swaps back in the text.
///
/// Why: libxml2's parser is quadratic in a tag's attributes, so each tag is cut to its first
/// names before it parses (`CHTMLText_bound_tags`). Done on bytes libxml2 would tokenize
/// differently (quoted values carrying a tag past a '>', a <meta> switching to UTF-16 or
/// EBCDIC, UTF-7's `+ADw-`), any disagreement let an unbounded tag through (review 46). UTF-8
/// with no quotes, and the encoding fixed, leaves none: a tag always ends at the next '>'.
enum PageBytes {
    /// U+E000 and U+E001 in UTF-8, standing for `"` and `'`.
    static let doubleQuote: [UInt8] = [0xEE, 0x80, 0x80]
    static let singleQuote: [UInt8] = [0xEE, 0x80, 0x81]
    private static let commentStart = Array("<!--".utf8), commentEnd = Array("-->".utf8)
    private static let script = Array("script".utf8), scriptEnd = Array("</script".utf8)
    private static let style = Array("style".utf8), styleEnd = Array("</style".utf8)

    static func prepared(_ html: [UInt8], charset: String?) -> [UInt8] {
        masked(utf8(html, charset: charset))
    }

    /// The most UTF-8 bytes a page becomes, per byte it had: a charset of few bytes per letter
    /// (TSCII: 8 times) must not multiply what one download holds.
    static let maxGrowth = 4

    /// The text with the quotes (and a '>' `masked` took for a value's) back; a page's own
    /// U+E000–U+E002 (private use, meaningless to a reader) were made U+FFFD by `masked`.
    static func restoringQuotes(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { (0xE000...0xE002).contains($0.value) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0xE000: out.append("\"")
            case 0xE001: out.append("'")
            case 0xE002: out.append(">")
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// Quotes swapped, and each '>' inside a quoted attribute value swapped for U+E002 (so the tag
    /// goes on past it, as the page meant); the page's own U+E000–U+E002 become U+FFFD (so none
    /// is taken for what it stands for). Which quotes open a value is read loosely (tags,
    /// comments, scripts' and styles' bodies): a misreading costs text, never the bound, which
    /// holds on whatever this writes (`CHTMLText_bound_tags`).
    static func masked(_ utf8: [UInt8]) -> [UInt8] {
        enum State { case text, tag, quoted(UInt8), raw([UInt8]) }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count + utf8.count / 16)
        var state = State.text
        var tagName: [UInt8] = []
        var readingName = false
        var afterEquals = false  // in a tag: '=' then only blanks so far (a quote opens a value)
        var index = 0
        func at(_ offset: Int) -> UInt8? { index + offset < utf8.count ? utf8[index + offset] : nil }
        func startsHere(_ word: [UInt8]) -> Bool {
            guard index + word.count <= utf8.count else { return false }
            for (offset, byte) in word.enumerated() where utf8[index + offset] | 0x20 != byte { return false }
            return true
        }
        while index < utf8.count {
            let byte = utf8[index]
            if byte == 0xEE, at(1) == 0x80, let last = at(2), (0x80...0x82).contains(last) {
                out += [0xEF, 0xBF, 0xBD]
                index += 3
                continue
            }
            switch state {
            case .text:
                if byte == UInt8(ascii: "<"), startsHere(commentStart) {
                    state = .raw(commentEnd)
                } else if byte == UInt8(ascii: "<"), let next = at(1), next | 0x20 >= UInt8(ascii: "a") && next | 0x20 <= UInt8(ascii: "z") || next == UInt8(ascii: "/") {
                    state = .tag
                    tagName = []
                    readingName = true
                    afterEquals = false
                }
            case .tag:
                let isLetter = byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z")
                if readingName && !(isLetter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte == UInt8(ascii: "/") && tagName.isEmpty)) {
                    readingName = false
                }
                if byte == UInt8(ascii: "/") && readingName && tagName.isEmpty { tagName = [0] }  // an end tag: no body follows
                if byte == UInt8(ascii: ">") {
                    let name = tagName.map { $0 | 0x20 }
                    state = name == script ? .raw(scriptEnd) : name == style ? .raw(styleEnd) : .text
                } else if afterEquals && (byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'")) {
                    state = .quoted(byte)
                    afterEquals = false
                } else if readingName {
                    if isLetter && tagName.count < 8 { tagName.append(byte) }
                } else if byte == UInt8(ascii: "=") {
                    afterEquals = true
                } else if !(byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0C || byte == 0x0D) {
                    afterEquals = false
                }
            case .quoted(let quote):
                if byte == quote {
                    state = .tag
                } else if byte == UInt8(ascii: ">") {
                    out += [0xEE, 0x80, 0x82]  // U+E002: part of the value, not the tag's end
                    index += 1
                    continue
                }
            case .raw(let end):
                if startsHere(end) {
                    state = end == commentEnd ? .text : .tag
                    tagName = []
                    readingName = false
                    afterEquals = false
                    out += end
                    index += end.count
                    continue
                }
            }
            if byte == UInt8(ascii: "\"") {
                out += doubleQuote
            } else if byte == UInt8(ascii: "'") {
                out += singleQuote
            } else {
                out.append(byte)
            }
            index += 1
        }
        return out
    }

    /// A charset label as read, lower case, or nil for one no browser reads (then the page is
    /// sniffed as if unlabelled): an empty `charset=` was glibc's "the locale's charset", ASCII
    /// here, and every letter beyond it was lost; UTF-32 turned a whole page into U+FFFD
    /// (review 62B #6).
    static func readableLabel(_ label: String) -> String? {
        let name = label.trimmingCharacters(in: .whitespaces).lowercased()
        guard !name.isEmpty, !name.hasPrefix("utf-32"), !name.hasPrefix("utf32"), !name.hasPrefix("ucs-4"), !name.hasPrefix("ucs4") else { return nil }
        return name
    }

    /// The page in UTF-8 (valid: what could not be read is U+FFFD). `html`: a `<meta charset>`
    /// in its first KiB declares it (a text page's is only text: review 56 #7).
    static func utf8(_ bytes: [UInt8], charset declared: String?, html: Bool = true) -> [UInt8] {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return valid(Array(bytes.dropFirst(3))) }
        if bytes.starts(with: [0xFF, 0xFE]) { return utf16(bytes.dropFirst(2), bigEndian: false) }
        if bytes.starts(with: [0xFE, 0xFF]) { return utf16(bytes.dropFirst(2), bigEndian: true) }
        var name = declared.flatMap(readableLabel)
        if name == nil, html, let meta = metaCharset(bytes.prefix(1024)).flatMap(readableLabel) {
            // A page that says it is UTF-16 in ASCII is not (browsers read such a <meta> as UTF-8).
            name = meta.hasPrefix("utf-16") ? "utf-8" : meta
        }
        let result: [UInt8]
        switch name {
        case nil, "utf-8", "utf8", "unicode-1-1-utf-8":
            // Not declared, and not UTF-8: the web's commonest other, as browsers read it. A page
            // cut (at `max_bytes`, or by its server) may end inside a character, which does not
            // make the rest not UTF-8 (review 56 #1: a cut Russian JSON page came out as
            // windows-1252); but such an end is UTF-8 only if the rest shows some (review 57 #2,
            // 58 #1: Latin-1 "Café" ends in what reads as a cut character, and lost its é).
            if name == nil, !looksLikeUTF8(bytes) { return windows1252(bytes) }
            return valid(bytes)
        case "utf-16", "utf-16le": result = utf16(bytes[...], bigEndian: false)
        case "utf-16be": result = utf16(bytes[...], bigEndian: true)
        // Browsers read these labels as windows-1252 (curly quotes and € where Latin-1 has controls).
        case "iso-8859-1", "latin1", "l1", "us-ascii", "ascii", "iso_8859-1", "cp1252", "windows-1252", "x-cp1252": return windows1252(bytes)
        case let name?: result = converted(bytes, from: name) ?? valid(bytes)
        }
        guard result.count > bytes.count * maxGrowth else { return result }
        return valid(Array(result.prefix(bytes.count * maxGrowth)))  // cut at a character (`valid` drops a split one)
    }

    /// Valid UTF-8, or valid but for a character cut at the end where the rest has characters
    /// beyond ASCII (the evidence that it is UTF-8 and not a one-byte charset).
    static func looksLikeUTF8(_ bytes: [UInt8]) -> Bool {
        let partial = partialCharacterBytes(at: bytes)
        let rest = bytes.dropLast(partial)
        return String(validating: rest, as: UTF8.self) != nil && (partial == 0 || rest.contains { $0 >= 0x80 })
    }

    /// How many bytes at the end of `bytes` begin a UTF-8 character they do not finish (0–3).
    static func partialCharacterBytes(at bytes: [UInt8]) -> Int {
        // The last lead byte within the last 3: a sequence it starts needs more bytes than follow.
        for back in stride(from: 1, through: min(3, bytes.count), by: 1) {  // none for an empty page
            let byte = bytes[bytes.count - back]
            guard byte & 0xC0 == 0x80 else {  // not a continuation byte: ASCII or a lead
                let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
                return length > back ? back : 0
            }
        }
        return 0
    }

    private static func windows1252(_ bytes: [UInt8]) -> [UInt8] { converted(bytes, from: "WINDOWS-1252") ?? latin1(bytes) }

    private static func valid(_ bytes: [UInt8]) -> [UInt8] { Array(String(decoding: bytes, as: UTF8.self).utf8) }

    private static func latin1(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for byte in bytes {
            if byte < 0x80 { out.append(byte) } else { out += [0xC0 | byte >> 6, 0x80 | byte & 0x3F] }
        }
        return out
    }

    private static func utf16(_ bytes: ArraySlice<UInt8>, bigEndian: Bool) -> [UInt8] {
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var index = bytes.startIndex
        while index + 1 < bytes.endIndex {
            let (first, second) = (UInt16(bytes[index]), UInt16(bytes[index + 1]))
            units.append(bigEndian ? first << 8 | second : second << 8 | first)
            index += 2
        }
        return Array(String(decoding: units, as: UTF16.self).utf8)
    }

    /// With glibc's iconv (every charset it knows, EBCDIC and UTF-7 included); nil for a charset
    /// it does not know. Bytes it cannot read become U+FFFD, one at a time.
    private static func converted(_ bytes: [UInt8], from charset: String) -> [UInt8]? {
        guard charset.utf8.count <= 64, charset.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        let descriptor = iconv_open("UTF-8", charset)
        guard let descriptor, Int(bitPattern: descriptor) != -1 else { return nil }
        defer { iconv_close(descriptor) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        bytes.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            var source = UnsafeMutablePointer(mutating: base).withMemoryRebound(to: CChar.self, capacity: input.count) { $0 }
            var sourceLeft = input.count
            while sourceLeft > 0 {
                let (result, failure, produced) = chunk.withUnsafeMutableBufferPointer { buffer in
                    buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { start in
                        var target: UnsafeMutablePointer<CChar>? = start
                        var targetLeft = buffer.count
                        var from: UnsafeMutablePointer<CChar>? = source
                        let result = iconv(descriptor, &from, &sourceLeft, &target, &targetLeft)
                        let failure = errno
                        source = from!
                        return (result, failure, buffer.count - targetLeft)
                    }
                }
                out += chunk.prefix(produced)
                if result == -1 {
                    switch failure {
                    case E2BIG: continue  // the chunk is full: go on
                    case EINVAL:
                        out += [0xEF, 0xBF, 0xBD]  // cut off at the end
                        sourceLeft = 0
                    default:
                        out += [0xEF, 0xBF, 0xBD]  // EILSEQ: a byte it cannot read
                        source += 1
                        sourceLeft -= 1
                    }
                }
            }
        }
        return valid(out)
    }

    /// A `<meta charset=…>` or `<meta http-equiv=… content="…; charset=…">` in the page's first
    /// bytes, as browsers look for one before parsing (loosely: the first `charset=` after a
    /// `<meta`).
    static func metaCharset(_ head: ArraySlice<UInt8>) -> String? {
        let text = String(decoding: head, as: UTF8.self).lowercased()
        guard let meta = text.range(of: "<meta"), let key = text.range(of: "charset=", range: meta.upperBound..<text.endIndex) else { return nil }
        let value = text[key.upperBound...].drop { $0 == "\"" || $0 == "'" || $0 == " " }
            .prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ":" || $0 == "." }
        return value.isEmpty ? nil : String(value)
    }
}
