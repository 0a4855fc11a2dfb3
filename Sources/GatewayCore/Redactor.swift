import Foundation

/// Removes secrets (provider and gateway keys) from text an upstream sent, before it reaches a
/// client, a record or a log. Not only the exact key: upstreams echo keys back in other forms
/// (cut short, upper-cased, base64 in a Basic credential, hex, percent-encoded in a URL, JSON `\u`
/// escapes, split by an invisible character), so a
/// run of at least three quarters of a secret (or of one of those forms), compared without
/// ASCII case and ignoring invisible (default-ignorable) characters, is redacted. Not less: a client can make text
/// come back (a model repeats it, an error names the model it asked for), and if a shorter run
/// were redacted, whether a guess came back redacted would tell it the key a byte at a time from
/// its known prefix (`sk-ant-api03-`); three quarters is far beyond any guess. One pass over the
/// text's bytes: 12-byte windows, a bit filter and a lookup of the windows a secret has, no
/// allocation unless one matches (it runs on every log line and every client-bound byte).
public struct Redactor: Sendable, Equatable {
    public var secrets: [String] { tables.secrets }
    public static let none = Redactor(secrets: [])
    /// The window of the first pass; a secret shorter than this is matched whole.
    public static let window = 12

    /// Twelve folded bytes, packed.
    private struct Run: Hashable {
        var high: UInt64 = 0
        var low: UInt32 = 0

        mutating func push(_ byte: UInt8) {
            high = high << 8 | UInt64(low >> 24)
            low = low << 8 | UInt32(byte)
        }

        /// 16 bits of a multiplicative hash: the position in `filter`.
        var filterSlot: Int { Int(truncatingIfNeeded: ((high &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(low) &* 0xC2B2_AE3D_27D4_EB4F)) >> 48) }
    }

    /// Where a window occurs: in which form, from which byte.
    private struct Place: Sendable {
        let form: Int
        let offset: Int
    }

    /// What the redactor looks for, built once and shared: a redactor is passed by value into
    /// every stream's reader, so its copies are one reference (five arrays and a dictionary were
    /// six retains and releases a copy, on every upstream read: counted in a deliberation).
    private final class Tables: Sendable {
        let secrets: [String]
        /// Every secret and its base64 forms, folded, each with the shortest run of it redacted.
        let forms: [(bytes: [UInt8], minimum: Int)]
        /// Every `window`-byte run of every form, and where it occurs.
        let runs: [Run: [Place]]
        /// Secrets (and their forms) shorter than `window`, folded: matched whole.
        let short: [[UInt8]]
        /// The folded bytes any secret's forms contain, as a 256-bit set: a byte outside it ends any
        /// run, so only runs of `window` such bytes are looked up (text rarely has them).
        let alphabet: [UInt64]
        /// A 65,536-bit filter of `runs` (`Run.filterSlot`): a run whose bit is clear is no secret's,
        /// decided without hashing it for the set (most runs of ordinary text; under 1% pass).
        let filter: [UInt64]

        init(secrets: [String], forms: [(bytes: [UInt8], minimum: Int)], runs: [Run: [Place]], short: [[UInt8]], alphabet: [UInt64], filter: [UInt64]) {
            self.secrets = secrets
            self.forms = forms
            self.runs = runs
            self.short = short
            self.alphabet = alphabet
            self.filter = filter
        }
    }

    private let tables: Tables
    private var forms: [(bytes: [UInt8], minimum: Int)] { tables.forms }
    private var runs: [Run: [Place]] { tables.runs }
    private var short: [[UInt8]] { tables.short }
    private var alphabet: [UInt64] { tables.alphabet }
    private var filter: [UInt64] { tables.filter }

    /// Secrets shorter than 4 characters are ignored (they would redact ordinary words).
    public init(secrets: [String]) {
        let secrets = Array(Set(secrets.filter { $0.utf8.count >= 4 })).sorted { $0.utf8.count > $1.utf8.count }
        var runs: [Run: [Place]] = [:]
        var forms: [(bytes: [UInt8], minimum: Int)] = []
        var short: [[UInt8]] = []
        for secret in secrets {
            for form in Self.forms(of: secret) {
                let bytes = Self.kept(Array(form.utf8)).map(\.byte)
                guard bytes.count >= Self.window else {
                    short.append(bytes)
                    continue
                }
                var run = Run()
                for (index, byte) in bytes.enumerated() {
                    run.push(byte)
                    if index >= Self.window - 1 { runs[run, default: []].append(Place(form: forms.count, offset: index + 1 - Self.window)) }
                }
                forms.append((bytes, max(Self.window, (bytes.count * 3 + 3) / 4)))
            }
        }
        var alphabet = [UInt64](repeating: 0, count: 4)
        for secret in secrets {
            for form in Self.forms(of: secret) {
                for entry in Self.kept(Array(form.utf8)) { alphabet[Int(entry.byte >> 6)] |= 1 << UInt64(entry.byte & 63) }
            }
        }
        var filter = [UInt64](repeating: 0, count: 1024)
        for run in runs.keys { filter[run.filterSlot >> 6] |= 1 << UInt64(run.filterSlot & 63) }
        tables = Tables(secrets: secrets, forms: forms, runs: runs, short: short, alphabet: alphabet, filter: filter)
    }

    public static func == (lhs: Redactor, rhs: Redactor) -> Bool { lhs.secrets == rhs.secrets }

    public func callAsFunction(_ text: String) -> String {
        guard !secrets.isEmpty else { return text }
        var copy = text  // `withUTF8` may make it contiguous
        guard copy.withUTF8({ mayContainSecret($0) }) else { return text }
        return redacted(Array(text.utf8))
    }

    /// `bytes` with every secret run replaced, or nil when there is none (the usual case,
    /// decided without allocating). Bytes bound for a client pass here (`ClientStream`): a
    /// secret is made of letters, digits and a few marks, never JSON's quotes, backslashes or
    /// structure, nor SSE's line ends, so a run lies inside one JSON string and "[redacted]"
    /// keeps the JSON and the event intact.
    /// A secret shorter than `window` is not looked for here: as a whole word it would cut
    /// ordinary text and SSE's own field names (a gateway key named "event"). A run that would
    /// begin inside a JSON escape (the letter of `\t`, the digits of `\u0041`) begins after it.
    public func redacting(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard !forms.isEmpty else { return nil }
        let found = bytes.withMemoryRebound(to: UInt8.self) { mayContainSecret($0, short: false, json: true) }
        guard found else { return nil }
        let text = Array(bytes)
        let cleaned = Array(redacted(text, short: false, json: true).utf8)
        return cleaned == text ? nil : cleaned
    }

    /// The allocation-free first pass: whether any run of a secret (or a short secret) is there.
    /// With `json`, the bytes are JSON: an escape is read as the character it stands for.
    private func mayContainSecret(_ utf8: UnsafeBufferPointer<UInt8>, short withShort: Bool = true, json: Bool = false) -> Bool {
        // Every client-bound byte passes here: the sets are read through pointers, and only
        // non-ASCII bytes are checked for zero-width characters.
        let found = alphabet.withUnsafeBufferPointer { alphabet in
            filter.withUnsafeBufferPointer { filter in
                var run = Run()
                var filled = 0
                var index = 0
                while index < utf8.count {
                    let raw = utf8[index]
                    if raw >= 0xC2 || raw < 0x20 || raw == 0x7F {
                        let width = Self.zeroWidth(utf8, at: index)
                        if width > 0 {
                            index += width
                            continue
                        }
                    }
                    var byte = Self.fold(raw)
                    if json && raw == UInt8(ascii: "\\"), case let escape = Self.jsonEscape(utf8, at: index), escape.width > 1 {
                        index += escape.width
                        guard let decoded = escape.byte else { continue }  // an invisible or control character
                        byte = Self.fold(decoded)
                    } else {
                        index += 1
                    }
                    guard alphabet[Int(byte >> 6)] & (1 << UInt64(byte & 63)) != 0 else {
                        filled = 0
                        continue
                    }
                    run.push(byte)
                    filled += 1
                    if filled >= Self.window {
                        let slot = run.filterSlot
                        if filter[slot >> 6] & (1 << UInt64(slot & 63)) != 0, runs[run] != nil { return true }
                    }
                }
                return false
            }
        }
        return found || (withShort && short.contains { secret in Self.contains(secret, in: utf8) })
    }

    /// Whether `needle` (folded) is in `haystack`, zero-width characters aside: the short
    /// secrets, matched whole (`redacted` then finds where).
    private static func contains(_ needle: [UInt8], in haystack: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let first = needle.first else { return false }
        var index = 0
        while index < haystack.count {
            if fold(haystack[index]) == first {
                var matched = 1
                var probe = index + 1
                while matched < needle.count && probe < haystack.count {
                    let width = zeroWidth(haystack, at: probe)
                    if width > 0 { probe += width; continue }
                    guard fold(haystack[probe]) == needle[matched] else { break }
                    matched += 1
                    probe += 1
                }
                if matched == needle.count { return true }
            }
            index += 1
        }
        return false
    }

    /// The second pass, when the first found a window of a secret: every run of at least
    /// three quarters of a form replaced (the window grown both ways along its form).
    private func redacted(_ bytes: [UInt8], short withShort: Bool = true, json: Bool = false) -> String {
        let kept = Self.kept(bytes, json: json)
        var covered = [Bool](repeating: false, count: kept.count)
        var run = Run()
        for (index, entry) in kept.enumerated() {
            run.push(entry.byte)
            guard index >= Self.window - 1, let places = runs[run] else { continue }
            let start = index + 1 - Self.window
            for place in places {
                let form = forms[place.form]
                var before = 0
                while before < start && before < place.offset && kept[start - before - 1].byte == form.bytes[place.offset - before - 1] { before += 1 }
                var after = 0
                while index + after + 1 < kept.count && place.offset + Self.window + after < form.bytes.count
                    && kept[index + after + 1].byte == form.bytes[place.offset + Self.window + after] { after += 1 }
                guard before + Self.window + after >= form.minimum else { continue }
                for position in (start - before)...(index + after) { covered[position] = true }
            }
        }
        for secret in short where withShort && secret.count <= kept.count {
            for start in 0...(kept.count - secret.count) where kept[start].byte == secret[0] {
                guard (0..<secret.count).allSatisfy({ kept[start + $0].byte == secret[$0] }) else { continue }
                for position in start..<(start + secret.count) { covered[position] = true }
            }
        }
        // Each covered run becomes one "[redacted]", with the zero-width characters inside it.
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var next = 0
        var index = 0
        while index < kept.count {
            guard covered[index] else { index += 1; continue }
            var end = index
            while end + 1 < kept.count, covered[end + 1] { end += 1 }
            // A run may start or end inside a multi-byte character: widen it to whole characters.
            var from = kept[index].offset
            while from > next, bytes[from] & 0xC0 == 0x80 { from -= 1 }
            var to = kept[end].end
            while to < bytes.count, bytes[to] & 0xC0 == 0x80 { to += 1 }
            if json { from = min(Self.pastEscape(bytes, from), to) }
            guard from < to else {
                index = end + 1
                continue
            }
            out.append(contentsOf: bytes[next..<from])
            out.append(contentsOf: "[redacted]".utf8)
            next = to
            index = end + 1
        }
        out.append(contentsOf: bytes[next...])
        return String(decoding: out, as: UTF8.self)
    }

    /// `offset`, or where the JSON escape it lies inside ends: after the letter of `\n` (an odd
    /// run of backslashes before it), after the four digits of `\u00e9`.
    private static func pastEscape(_ bytes: [UInt8], _ offset: Int) -> Int {
        func escapes(_ position: Int) -> Bool {  // an odd run of backslashes ends at `position`
            var count = 0
            while position - count >= 0 && bytes[position - count] == UInt8(ascii: "\\") { count += 1 }
            return count % 2 == 1
        }
        for back in 1...5 where offset - back >= 0 && escapes(offset - back) {
            if back == 1 { return offset + (bytes[offset] == UInt8(ascii: "u") ? 5 : 1) }
            return bytes[offset - back + 1] == UInt8(ascii: "u") ? offset - back + 6 : offset
        }
        return offset
    }

    /// The bytes that are not part of an invisible or control character, folded, with where each was (from
    /// `offset` up to `end`); with `json`, each escape read as the character it stands for.
    private static func kept(_ bytes: [UInt8], json: Bool = false) -> [(byte: UInt8, offset: Int, end: Int)] {
        bytes.withUnsafeBufferPointer { utf8 in
            var kept: [(byte: UInt8, offset: Int, end: Int)] = []
            kept.reserveCapacity(utf8.count)
            var index = 0
            while index < utf8.count {
                let width = zeroWidth(utf8, at: index)
                if width > 0 {
                    index += width
                    continue
                }
                if json && utf8[index] == UInt8(ascii: "\\"), case let escape = jsonEscape(utf8, at: index), escape.width > 1 {
                    if let decoded = escape.byte { kept.append((fold(decoded), index, index + escape.width)) }
                    index += escape.width
                    continue
                }
                kept.append((fold(utf8[index]), index, index + 1))
                index += 1
            }
            return kept
        }
    }

    /// The JSON escape at `index` (a backslash): the ASCII character it stands for, nil for an
    /// invisible or control character (skipped, as one written out is), 0x01 (in no secret) for any other
    /// character, and its width; width 1 when the escape is cut off by the end of the bytes.
    /// Encoders escape some characters and not others (Go `<>&`, PHP `/`, some every mark): a
    /// key with one letter as `\u0034` is the whole key to every client's parser (review 83A #2).
    static func jsonEscape(_ utf8: UnsafeBufferPointer<UInt8>, at index: Int) -> (byte: UInt8?, width: Int) {
        guard index + 1 < utf8.count else { return (UInt8(ascii: "\\"), 1) }
        switch utf8[index + 1] {
        case UInt8(ascii: "u"):
            guard index + 5 < utf8.count else { return (UInt8(ascii: "\\"), 1) }
            // Not an escape JSON allows: the backslash and the `u` read as one mark.
            guard let value = hexQuad(utf8, at: index + 2) else { return (0x01, 2) }
            // A surrogate pair's two escapes are one character (a tag, U+E0001, is invisible).
            if (0xD800...0xDBFF).contains(value), let low = surrogate(utf8, at: index + 6) {
                return isInvisible(0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)) ? (nil, 12) : (0x01, 12)
            }
            if value < 0x80 { return (0x20..<0x7F).contains(value) ? (UInt8(value), 6) : (nil, 6) }  // a control: invisible
            return isInvisible(value) ? (nil, 6) : (0x01, 6)
        case UInt8(ascii: "/"): return (UInt8(ascii: "/"), 2)
        case UInt8(ascii: "\\"): return (UInt8(ascii: "\\"), 2)
        case UInt8(ascii: "\""): return (0x01, 2)  // in no secret
        default: return (nil, 2)  // `\n`, `\t` and the other controls: invisible, as a raw one is
        }
    }

    /// The low surrogate a `\uDC00`–`\uDFFF` escape at `index` stands for, else nil.
    private static func surrogate(_ utf8: UnsafeBufferPointer<UInt8>, at index: Int) -> UInt32? {
        guard index + 5 < utf8.count, utf8[index] == UInt8(ascii: "\\"), utf8[index + 1] == UInt8(ascii: "u"),
              let value = hexQuad(utf8, at: index + 2) else { return nil }
        return (0xDC00...0xDFFF).contains(value) ? value : nil
    }

    /// The four hexadecimal digits at `index` (in bounds), either case; nil when one is not.
    private static func hexQuad(_ utf8: UnsafeBufferPointer<UInt8>, at index: Int) -> UInt32? {
        var value: UInt32 = 0
        for byte in utf8[index..<(index + 4)] {
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            value = value << 4 | digit
        }
        return value
    }

    /// The secret and the forms an upstream may echo it in: base64, hex, percent-encoded (every
    /// byte, or only those a URL reserves) and JSON's `\u` escapes (review 21 F1).
    static func forms(of secret: String) -> [String] {
        [secret] + base64Forms(secret) + encodedForms(secret)
    }

    /// The secret in hex, percent-encoded and as JSON `\u` escapes (letters folded later, so
    /// upper-case hex matches too).
    static func encodedForms(_ secret: String) -> [String] {
        let bytes = Array(secret.utf8)
        let digits = Array("0123456789abcdef".utf8)
        func hex(_ byte: UInt8) -> [UInt8] { [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
        let unreserved = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))
        let escape = Array("\\u00".utf8)
        // A model whose text spells the key as escapes: its JSON bytes double the backslash.
        let escapedEscape = Array("\\\\u00".utf8)
        var forms: [[UInt8]] = [
            bytes.flatMap(hex),
            bytes.flatMap { [UInt8(ascii: "%")] + hex($0) },
            bytes.flatMap { $0 < 0x80 ? escape + hex($0) : [$0] },
            bytes.flatMap { $0 < 0x80 ? escapedEscape + hex($0) : [$0] },
        ]
        let urlEncoded: [UInt8] = bytes.flatMap { unreserved.contains($0) ? [$0] : [UInt8(ascii: "%")] + hex($0) }
        if urlEncoded != bytes { forms.append(urlEncoded) }
        return forms.map { String(decoding: $0, as: UTF8.self) }
    }

    /// The secret in base64 at the three alignments it can take inside a longer encoded text
    /// (`Basic base64(user:key)`), each without the characters its neighbours change.
    static func base64Forms(_ secret: String) -> [String] {
        let bytes = Array(secret.utf8)
        var forms: [String] = []
        for offset in 0..<3 {
            let encoded = Data(Array(repeating: UInt8(0), count: offset) + bytes).base64EncodedString()
            let inner = encoded.dropFirst(offset == 0 ? 0 : 4).dropLast(4)
            if inner.count >= 4 { forms.append(String(inner)) }
        }
        return forms
    }

    /// ASCII letters compared without case.
    private static func fold(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte + 0x20 : byte }

    /// The length of an invisible character at `index` (a lead byte), else 0: any
    /// default-ignorable code point (zero-width spaces and joiners, U+00AD, U+034F, the
    /// bidirectional controls, variation selectors, tags, Hangul fillers…), which a key may be
    /// split by and still read whole (review 84 #4: U+034F let one through; the list was five).
    /// So is a control character (NUL, DEL, ESC, a line break…): a terminal shows a key split
    /// by one whole (review 85 #1: DEL let one through to a `curl -N` watcher).
    private static func zeroWidth(_ utf8: UnsafeBufferPointer<UInt8>, at index: Int) -> Int {
        let byte = utf8[index]
        if byte < 0x20 || byte == 0x7F { return 1 }
        guard byte >= 0xC2 else { return 0 }
        let width = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
        guard index + width <= utf8.count else { return 0 }
        var value = UInt32(byte) & (width == 2 ? 0x1F : width == 3 ? 0x0F : 0x07)
        for offset in 1..<width {
            let next = utf8[index + offset]
            guard next & 0xC0 == 0x80 else { return 0 }
            value = value << 6 | UInt32(next & 0x3F)
        }
        return isInvisible(value) ? width : 0
    }

    /// A default-ignorable code point.
    static func isInvisible(_ value: UInt32) -> Bool {
        Unicode.Scalar(value)?.properties.isDefaultIgnorableCodePoint ?? false
    }
}
