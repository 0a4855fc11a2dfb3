/// Joins panel members' tokens into pieces a person can read in `curl -N`: each line as soon as
/// it ends, and otherwise the whole words a member wrote in ~100 ms (the session arms
/// `FusionTimer.readableText` for `nextDue` and calls `flushDue` when it fires). Three members' single
/// words no longer interleave line by line. Only for people: programs get the exact deltas.
struct ReadableText: Sendable {
    /// How long words may wait for the end of their line.
    static let intervalMilliseconds: UInt64 = 100
    /// A "word" this long (a URL, a token run) is shown without waiting for a space.
    static let longWordBytes = 32

    struct Piece: Sendable, Equatable {
        var index: Int
        var reasoning: Bool
        var text: String
    }

    private struct Key: Hashable, Comparable, Sendable {
        var index: Int
        var reasoning: Bool
        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.index, lhs.reasoning ? 1 : 0) < (rhs.index, rhs.reasoning ? 1 : 0) }
    }

    private struct Buffer: Sendable {
        var text = ""
        /// When its oldest words arrived (session ms).
        var since = 0.0
        /// When a half word began to wait for its end (nil: none waits).
        var halfWordSince: Double?
    }

    /// A half word waits for its end this long at most (a long token run at a slow pace).
    static let halfWordMilliseconds = 3 * Double(intervalMilliseconds)

    /// At most two a member (16 in all), in key order: searched in place, where a dictionary
    /// hashed its key twice a delta (every member delta passes here).
    private var buffers: [(key: Key, buffer: Buffer)] = []

    var isEmpty: Bool { buffers.isEmpty }

    /// When the oldest waiting words are due (nil: none wait).
    var nextDue: Double? {
        buffers.lazy.map(\.buffer.since).min().map { $0 + Double(Self.intervalMilliseconds) }
    }

    private subscript(key: Key) -> Buffer? {
        get { buffers.first { $0.key == key }?.buffer }
        set {
            let slot = buffers.firstIndex { $0.key >= key } ?? buffers.count
            let present = slot < buffers.count && buffers[slot].key == key
            switch (newValue, present) {
            case (let buffer?, true): buffers[slot].buffer = buffer
            case (let buffer?, false): buffers.insert((key, buffer), at: slot)
            case (nil, true): buffers.remove(at: slot)
            case (nil, false): break
            }
        }
    }

    /// Takes a delta; returns the lines it completed.
    mutating func add(index: Int, reasoning: Bool, _ text: String, at time: Double) -> [Piece] {
        guard !text.isEmpty else { return [] }
        let key = Key(index: index, reasoning: reasoning)
        let slot: Int
        if let found = buffers.firstIndex(where: { $0.key == key }) {
            slot = found
        } else {
            slot = buffers.firstIndex { $0.key > key } ?? buffers.count
            buffers.insert((key, Buffer(since: time)), at: slot)
        }
        buffers[slot].buffer.text += text  // in place: the array and the string are unique
        guard Self.hasLineEnd(text) else { return [] }
        // Split where `Character.isNewline` would (a line end is always a character of its own,
        // but for CR LF, whose empty "line" between is skipped as any blank line is), by bytes:
        // walking `Character`s cost ~450 instructions each.
        var pieces: [Piece] = []
        var whole = buffers[slot].buffer.text
        let rest: String = whole.withUTF8 { bytes in
            var start = 0
            var position = 0
            while position < bytes.count {
                guard let length = Self.lineEnd(in: bytes, at: position) else {
                    position += 1
                    continue
                }
                let line = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                if !line.allSatisfy(\.isWhitespace) { pieces.append(Piece(index: index, reasoning: reasoning, text: line)) }
                position += length
                start = position
            }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start...]), as: UTF8.self)
        }
        if rest.isEmpty {
            buffers.remove(at: slot)
        } else {
            buffers[slot].buffer = Buffer(text: rest, since: time)
        }
        return pieces
    }

    /// Whether `text` has a line end, by bytes: most deltas have none.
    static func hasLineEnd(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var index = 0
            while index < bytes.count {
                if lineEnd(in: bytes, at: index) != nil { return true }
                index += 1
            }
            return false
        }
    }

    /// The length of the line end at `index` (nil: none there): a scalar `Character.isNewline`
    /// holds for: LF, VT, FF, CR, NEL (C2 85), LS and PS (E2 80 A8, E2 80 A9).
    @inline(__always)
    private static func lineEnd(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        switch bytes[index] {
        case 0x0A...0x0D:
            return 1
        case 0xC2:
            return index + 1 < bytes.count && bytes[index + 1] == 0x85 ? 2 : nil
        case 0xE2:
            return index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9) ? 3 : nil
        default:
            return nil
        }
    }

    /// The timer fired: the whole words of every buffer that waited ~100 ms, member by member; a
    /// partial word waits (unless it is already long), and so does a lone short word ("-") for
    /// a little longer, rather than make a line of its own.
    mutating func flushDue(at time: Double) -> [Piece] {
        var pieces: [Piece] = []
        for key in buffers.map(\.key) {
            guard let buffer = self[key], time - buffer.since >= Double(Self.intervalMilliseconds) - 1 else { continue }
            let text = buffer.text
            if let space = text.lastIndex(where: \.isWhitespace) {
                let words = text[..<space].trimmingPrefix { $0.isWhitespace }
                if words.count >= 3 {
                    let rest = text[text.index(after: space)...]
                    pieces.append(Piece(index: key.index, reasoning: key.reasoning, text: String(words)))
                    self[key] = rest.isEmpty ? nil : Buffer(text: String(rest), since: time)
                    continue
                }
                // A lone short word ("-", "1.") would make a line of its own: it joins what
                // follows, unless that can go now (review 48 Fusion #4: a list item of Chinese,
                // or a long token, after "- " waited for its line's end).
            }
            let waitedLong = time - (buffer.halfWordSince ?? time) >= Self.halfWordMilliseconds - 1
            if text.utf8.count >= Self.longWordBytes || Self.endsInSpacelessScript(text) || waitedLong {
                // Chinese, Japanese, Korean, Thai: any character boundary is a place to break
                // (review 19 F8: such text waited for 80 bytes, ~400 ms a line); a run without
                // spaces that has waited ~300 ms goes out as it is (review 20 B6). A last
                // character the next delta may still extend waits for it, as a half word does
                // (review 80B #3: a line began with a lone sound mark or flag half, or ended in a
                // ZWJ).
                let shown = text.trimmingPrefix { $0.isWhitespace }
                if !waitedLong, let last = shown.indices.last, Self.mayGrow(shown[last]) {
                    let before = shown[..<last]
                    // A character held alone keeps its wait: it goes out within a half word's time.
                    var held = Buffer(text: String(shown[last...]), since: time, halfWordSince: buffer.halfWordSince ?? time)
                    if !before.allSatisfy(\.isWhitespace) {
                        pieces.append(Piece(index: key.index, reasoning: key.reasoning, text: String(before)))
                        held.halfWordSince = time
                    }
                    self[key] = held
                    continue
                }
                if !shown.allSatisfy(\.isWhitespace) { pieces.append(Piece(index: key.index, reasoning: key.reasoning, text: String(shown))) }
                self[key] = nil
            } else {
                var waiting = buffer
                waiting.since = time  // half a word: it waits for the rest (never a busy timer)
                if waiting.halfWordSince == nil { waiting.halfWordSince = time }
                self[key] = waiting
            }
        }
        return pieces
    }

    /// Whether the next delta may still extend `character`: an emoji (a skin tone, a variation
    /// selector, a ZWJ and another emoji, a flag's second half may follow), a ZWJ, or a character
    /// of a script written without spaces (a sound mark may follow kana, a jamo a syllable). A
    /// Latin letter is not held: models write composed text, and holding it would cut a word at
    /// a line's end.
    static func mayGrow(_ character: Character) -> Bool {
        // From U+2000: digits, `#` and `*` have the emoji property too.
        character.unicodeScalars.contains { $0.value == 0x200D || ($0.properties.isEmoji && $0.value >= 0x2000) }
            || endsInSpacelessScript(String(character))
    }

    /// Whether the text's last character is of a script written without spaces between words.
    static func endsInSpacelessScript(_ text: String) -> Bool {
        guard let scalar = text.unicodeScalars.last else { return false }
        switch scalar.value {
        case 0x0E00...0x0E7F, 0x0E80...0x0EFF, 0x1000...0x109F, 0x1780...0x17FF,  // Thai, Lao, Myanmar, Khmer
             0x3000...0x30FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xAC00...0xD7AF,  // CJK punctuation, kana, ideographs, Hangul
             0xF900...0xFAFF, 0xFF00...0xFFEF, 0x20000...0x3134F:                  // compatibility ideographs, full-width forms, extensions
            return true
        default:
            return false
        }
    }

    /// Member `index` is done: everything it still holds.
    mutating func flush(index: Int) -> [Piece] {
        var pieces: [Piece] = []
        for reasoning in [true, false] {
            let key = Key(index: index, reasoning: reasoning)
            let buffer = self[key]
            self[key] = nil
            if let buffer, !buffer.text.allSatisfy(\.isWhitespace) {
                pieces.append(Piece(index: index, reasoning: reasoning, text: buffer.text))
            }
        }
        return pieces
    }
}
