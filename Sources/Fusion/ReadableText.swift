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

    private var buffers: [Key: Buffer] = [:]

    var isEmpty: Bool { buffers.isEmpty }

    /// When the oldest waiting words are due (nil: none wait).
    var nextDue: Double? {
        buffers.values.map(\.since).min().map { $0 + Double(Self.intervalMilliseconds) }
    }

    /// Takes a delta; returns the lines it completed.
    mutating func add(index: Int, reasoning: Bool, _ text: String, at time: Double) -> [Piece] {
        let key = Key(index: index, reasoning: reasoning)
        var buffer = buffers.removeValue(forKey: key) ?? Buffer(since: time)
        buffer.text += text
        var pieces: [Piece] = []
        if text.contains(where: \.isNewline) {
            var lines = buffer.text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            let rest = lines.removeLast()
            for line in lines where !line.allSatisfy(\.isWhitespace) {
                pieces.append(Piece(index: index, reasoning: reasoning, text: String(line)))
            }
            buffer = Buffer(text: String(rest), since: time)
        }
        if !buffer.text.isEmpty { buffers[key] = buffer }
        return pieces
    }

    /// The timer fired: the whole words of every buffer that waited ~100 ms, member by member; a
    /// partial word waits (unless it is already long), and so does a lone short word ("-") for
    /// a little longer, rather than make a line of its own.
    mutating func flushDue(at time: Double) -> [Piece] {
        var pieces: [Piece] = []
        for key in buffers.keys.sorted() {
            guard let buffer = buffers[key], time - buffer.since >= Double(Self.intervalMilliseconds) - 1 else { continue }
            let text = buffer.text
            if let space = text.lastIndex(where: \.isWhitespace) {
                let words = text[..<space].trimmingPrefix { $0.isWhitespace }
                if words.count >= 3 {
                    let rest = text[text.index(after: space)...]
                    pieces.append(Piece(index: key.index, reasoning: key.reasoning, text: String(words)))
                    buffers[key] = rest.isEmpty ? nil : Buffer(text: String(rest), since: time)
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
                    buffers[key] = held
                    continue
                }
                if !shown.allSatisfy(\.isWhitespace) { pieces.append(Piece(index: key.index, reasoning: key.reasoning, text: String(shown))) }
                buffers[key] = nil
            } else {
                buffers[key]?.since = time  // half a word: it waits for the rest (never a busy timer)
                if buffer.halfWordSince == nil { buffers[key]?.halfWordSince = time }
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
            if let buffer = buffers.removeValue(forKey: key), !buffer.text.allSatisfy(\.isWhitespace) {
                pieces.append(Piece(index: index, reasoning: reasoning, text: buffer.text))
            }
        }
        return pieces
    }
}
