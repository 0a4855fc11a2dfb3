@testable import Fusion
import Foundation
import Testing

/// `ReadableText` over random deltas and ticks: nothing a member wrote is lost, duplicated or
/// reordered in the pieces people read, and nothing waits long for its piece (ticks ~100 ms
/// apart, as the session's timer fires them). (A combining mark right after white space is one
/// Character with it, white space to Swift, and is not shown: the exact deltas still carry it.)
@Suite struct ReadableTextPropertyTests {
    static let fragments = ["Hello", " ", "world", ".", "\n", "- ", "1. ", "水平线", "城市", " x", "y", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                            "é", "e\u{301}", "\t", "a b c ", "Σ", "\r\n", "  ", "https://example.com/a/very/long/path?with=query"]

    @Test(arguments: 0..<200)
    func nothingIsLostOrHeldLong(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed) &* 2_654_435_761 &+ 1)
        var text = ReadableText()
        var written: [Int: String] = [:]
        var shown: [Int: String] = [:]
        var pending: [Int: [(characters: Int, at: Double)]] = [:]  // not yet shown, per member: how much and since when
        var time = 0.0
        var longestWait = 0.0
        // Compared scalar by scalar, white space aside (a combining mark after a space is one
        // Character with it in the member's text, and starts a piece of its own when shown).
        func visible(_ text: String) -> String {
            String(String.UnicodeScalarView(text.unicodeScalars.filter { !$0.properties.isWhitespace }))
        }
        func take(_ pieces: [ReadableText.Piece], at now: Double) {
            for piece in pieces {
                shown[piece.index, default: ""] += visible(piece.text)
                var left = visible(piece.text).unicodeScalars.count
                while left > 0, var first = pending[piece.index]?.first {
                    longestWait = max(longestWait, now - first.at)
                    let used = min(left, first.characters)
                    left -= used
                    first.characters -= used
                    if first.characters == 0 { pending[piece.index]?.removeFirst() } else { pending[piece.index]?[0] = first }
                }
            }
        }
        var nextTick = 100.0
        for _ in 0..<Int(generator.next() % 80 + 10) {
            time += Double(generator.next() % 60)
            while nextTick <= time {
                take(text.flushDue(at: nextTick), at: nextTick)
                nextTick += 100
            }
            let index = Int(generator.next() % 3)
            let delta = Self.fragments[Int(generator.next() % UInt64(Self.fragments.count))]
            written[index, default: ""] += delta
            // Counted as `shown` counts them: the member's whole text so far, whitespace aside.
            let before = pending[index]?.reduce(0) { $0 + $1.characters } ?? 0
            let total = visible(written[index]!).unicodeScalars.count - (shown[index]?.unicodeScalars.count ?? 0)
            if total > before { pending[index, default: []].append((total - before, time)) }
            take(text.add(index: index, reasoning: false, delta, at: time), at: time)
        }
        // Ticks go on for a second after the last delta: everything is shown by then.
        for _ in 0..<10 {
            take(text.flushDue(at: nextTick), at: nextTick)
            nextTick += 100
        }
        for index in 0..<3 { take(text.flush(index: index), at: nextTick) }
        for index in 0..<3 {
            #expect(Array((shown[index] ?? "").unicodeScalars) == Array(visible(written[index] ?? "").unicodeScalars), "member \(index), seed \(seed)")
        }
        #expect(text.isEmpty)
        #expect(longestWait <= 700, "a piece waited \(longestWait) ms (seed \(seed))")
    }

    /// Lines are split by bytes where `Character.isNewline` splits them (LF, CR, CR LF, VT, FF,
    /// NEL, LS, PS), whatever the deltas: the pieces `add` returns, and what `flush` still
    /// holds, are those of a model that splits by `Character`s (the code before stop 62's cut).
    @Test(arguments: 0..<300)
    func linesSplitAsCharactersSplitThem(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed) &* 0x9E37_79B9 &+ 7)
        let fragments = Self.fragments + ["\r", "\n", "\u{0B}", "\u{0C}", "\u{85}", "\u{2028}", "\u{2029}", "\u{301}", "\n\u{301}",
                                          "a\u{2028}b", "\u{A0}", "\u{2027}", "\u{C2}", "\u{E2}\u{80}", "👩\u{200D}", "\r\r\n\n"]
        var text = ReadableText()
        var model: [Int: String] = [:]
        for step in 0..<Int(generator.next() % 60 + 5) {
            let index = Int(generator.next() % 3)
            let delta = fragments[Int(generator.next() % UInt64(fragments.count))]
            var buffer = (model[index] ?? "") + delta
            var expected: [String] = []
            if delta.contains(where: \.isNewline) {
                var lines = buffer.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
                let rest = lines.removeLast()
                expected = lines.filter { !$0.allSatisfy(\.isWhitespace) }.map(String.init)
                buffer = String(rest)
            }
            model[index] = buffer
            let pieces = text.add(index: index, reasoning: false, delta, at: Double(step))
            #expect(pieces.map(\.text) == expected && pieces.allSatisfy { $0.index == index }, "seed \(seed), step \(step), delta \(delta.debugDescription)")
        }
        for index in 0..<3 {
            let held = model[index] ?? ""
            #expect(text.flush(index: index).map(\.text) == (held.allSatisfy(\.isWhitespace) ? [] : [held]), "seed \(seed), member \(index)")
        }
        #expect(text.isEmpty)
    }

    /// A piece shown at its time (a long run, a spaceless script) keeps back a last character
    /// the next delta may extend: no line begins with a lone sound mark, a skin tone or the
    /// second half of a flag, none ends inside a ZWJ sequence (review 80B #3). (A Latin letter
    /// is not held: a decomposed accent after a long run is the one split left.)
    @Test func piecesNeverSplitACharacter() {
        let splits: [(String, String)] = [
            ("日本", "\u{3099} dakuten\n"),
            (String(repeating: "w", count: 40) + "👍", "\u{1F3FD} tone\n"),
            (String(repeating: "y", count: 40) + "👩\u{200D}", "👧 zwj\n"),
            (String(repeating: "z", count: 40) + "🇫", "🇷 flag\n"),
        ]
        for (first, second) in splits {
            var text = ReadableText()
            var pieces = text.add(index: 0, reasoning: false, first, at: 0)
            pieces += text.flushDue(at: 100)
            pieces += text.add(index: 0, reasoning: false, second, at: 150)
            pieces += text.flushDue(at: 200)
            pieces += text.flush(index: 0)
            #expect(pieces.map(\.text).joined() == (first + second).trimmingCharacters(in: .newlines), "\(pieces)")
            let whole = Array((first + second).trimmingCharacters(in: .newlines))
            #expect(pieces.allSatisfy { piece in piece.text.allSatisfy { whole.contains($0) } }, "a character cut: \(pieces.map(\.text))")
        }
        // A held character alone still goes out within a half word's time.
        var text = ReadableText()
        var pieces = text.add(index: 0, reasoning: false, "水", at: 0)
        for tick in stride(from: 100.0, through: 500, by: 100) { pieces += text.flushDue(at: tick) }
        #expect(pieces.map(\.text) == ["水"] && text.isEmpty)
    }
}
