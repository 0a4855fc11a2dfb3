import HTTPServer
import Testing

/// `asciiCaseInsensitiveEquals` and `hasASCIICaseInsensitivePrefix` are written by hand (a
/// generic `zip` over `StringProtocol` was a measurable share of every request): held here to
/// the plain definition, on random text of ASCII letters, digits, signs and non-ASCII letters
/// whose Unicode case mappings must not match (the Kelvin sign, `ſ`, `İ`), as strings and
/// as substrings.
@Suite struct ASCIICaseTests {
    static let alphabet: [Character] = ["a", "A", "k", "K", "s", "S", "z", "Z", "@", "[", "`", "{", "-", "0", "\u{212A}", "\u{17F}", "\u{130}", "é", "É", "🙂"]

    /// The definition: equal byte counts, each byte equal once ASCII A–Z are lowered.
    static func lowered(_ text: some StringProtocol) -> [UInt8] {
        text.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
    }

    @Test func matchTheDefinitionOnRandomText() {
        var generator = SystemRandomNumberGenerator()
        func random(_ length: Int) -> String { String((0..<length).map { _ in Self.alphabet.randomElement(using: &generator)! }) }
        for _ in 0..<5_000 {
            let a = random(Int.random(in: 0...6, using: &generator))
            // Half the time a case variant of `a`, so equal pairs are common.
            var b = Bool.random(using: &generator) ? String(a.map { Bool.random(using: &generator) ? Character($0.uppercased()) : $0 })
                                                   : random(Int.random(in: 0...6, using: &generator))
            if b.count > 6 { b = random(3) }  // `uppercased()` of ß-like letters may grow
            let equal = Self.lowered(a) == Self.lowered(b)
            let prefix = Self.lowered(a).starts(with: Self.lowered(b))
            #expect(a.asciiCaseInsensitiveEquals(b) == equal, "\(a) vs \(b)")
            #expect(a.hasASCIICaseInsensitivePrefix(b) == prefix, "\(a) starts with \(b)")
            let padded = "x" + a + "y"
            let slice = padded.dropFirst().dropLast()
            #expect(slice.asciiCaseInsensitiveEquals(b) == equal, "substring \(a) vs \(b)")
            #expect(slice.hasASCIICaseInsensitivePrefix(b) == prefix, "substring \(a) starts with \(b)")
        }
    }

    @Test func unicodeCaseMappingsDoNotMatch() {
        #expect(!"\u{212A}eep-alive".asciiCaseInsensitiveEquals("keep-alive"), "the Kelvin sign is not k")
        #expect(!"tran\u{17F}fer-encoding".asciiCaseInsensitiveEquals("transfer-encoding"), "ſ is not s")
        #expect("Content-TYPE".asciiCaseInsensitiveEquals("content-type"))
        #expect(!"content-type ".asciiCaseInsensitiveEquals("content-type"))
        #expect(!"content-typ".asciiCaseInsensitiveEquals("content-type"))
        #expect("X-Fusion-Depth".hasASCIICaseInsensitivePrefix("x-"))
        #expect(!"X".hasASCIICaseInsensitivePrefix("x-"))
        #expect("".hasASCIICaseInsensitivePrefix(""))
        #expect("".asciiCaseInsensitiveEquals(""))
    }
}
