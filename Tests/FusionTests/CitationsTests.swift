import Fusion
import PropertyBased
import GatewayCore
import Testing

@Suite struct CitationsTests {
    @Test func citationsAreDeduplicatedAndLocated() throws {
        var sources = SourceList()
        sources.add(Source(url: "https://Example.com/page#intro", title: "", content: ""))
        sources.add(Source(url: "https://example.com:443/page", title: "Example page", content: "excerpt"))
        sources.add(Source(url: "http://other.example", title: "Other", content: "o"))
        sources.add(Source(url: "http://other.example/", title: "Other again", content: "o2"))
        #expect(sources.sources.count == 2)
        #expect(sources.sources[0].title == "Example page" && sources.sources[0].content == "excerpt")
        let text = "Ünïcode first. See [the page](https://Example.com/page#intro) and http://other.example too."
        let annotations = sources.annotations(for: text)
        #expect(annotations.count == 2)
        let first = try #require(annotations[0]["url_citation"])
        #expect(annotations[0]["type"]?.stringValue == "url_citation")
        let start = Int(try #require(first["start_index"]?.intValue)), end = Int(try #require(first["end_index"]?.intValue))
        let scalars = Array(text.unicodeScalars)
        #expect(String(String.UnicodeScalarView(scalars[start..<end])) == "[the page](https://Example.com/page#intro)")
        let second = try #require(annotations[1]["url_citation"])
        let s2 = Int(try #require(second["start_index"]?.intValue)), e2 = Int(try #require(second["end_index"]?.intValue))
        #expect(String(String.UnicodeScalarView(scalars[s2..<e2])) == "http://other.example")
        // Not cited in the text: the empty span at its end (the OpenAI SDK requires both).
        #expect(SourceList().annotations(for: "x").isEmpty)
        var unseen = SourceList()
        unseen.add(Source(url: "https://z.example/", title: "Z", content: ""))
        let uncited = try #require(unseen.annotations(for: "nö links")[0]["url_citation"])
        #expect(uncited["start_index"] == .int(8) && uncited["end_index"] == .int(8))
    }

    /// A URL that begins another cited URL is cited where it stands alone, not inside the longer
    /// one's link (review 106 #5: `…/ok` was marked inside `[OK page](…/ok?x)`).
    @Test func aURLThatBeginsAnotherIsCitedWhereItEnds() throws {
        var sources = SourceList()
        sources.add(Source(url: "http://h.example/ok?x", title: "x", content: ""))
        sources.add(Source(url: "http://h.example/ok", title: "ok", content: ""))
        sources.add(Source(url: "https://a.example/page", title: "page", content: ""))
        let text = "See [OK x](http://h.example/ok?x), https://a.example/page2 and https://a.example/page.\n[OK page](http://h.example/ok)"
        let scalars = Array(text.unicodeScalars)
        let spans = try sources.annotations(for: text).map { annotation -> String in
            let citation = try #require(annotation["url_citation"])
            let start = Int(try #require(citation["start_index"]?.intValue)), end = Int(try #require(citation["end_index"]?.intValue))
            return String(String.UnicodeScalarView(scalars[start..<end]))
        }
        #expect(spans == ["[OK x](http://h.example/ok?x)", "[OK page](http://h.example/ok)", "https://a.example/page"])
    }

    /// Where a URL stands inside another (an archive's, a redirect's parameter) it is not cited
    /// there; punctuation, quotes, emphasis and CJK text after it end it; a label holding
    /// brackets is the whole label (review 108 #6, review 106 #5's nit).
    @Test(arguments: [
        ("https://web.archive.org/web/2020/http://x.example/ok then http://x.example/ok.」", "http://x.example/ok", 1),
        ("go?next=http://x.example/ok or \"http://x.example/ok.\"", "http://x.example/ok", 1),
        ("_http://x.example/ok_ and more", "http://x.example/ok", 0),
        ("see http://x.example/ok... later", "http://x.example/ok", 0),
        ("http://x.example/ok's page, then 'http://x.example/ok'", "http://x.example/ok", 1),
        ("**http://x.example/ok**", "http://x.example/ok", 0),
        ("|a|http://x.example/ok|b|", "http://x.example/ok", 0),
        ("see http://x.example/ok_b, or [🎉 [x](y) t](http://x.example/ok)", "[🎉 [x](y) t](http://x.example/ok)", 0),
    ])
    func aURLIsCitedWhereItStandsAlone(text: String, cited: String, occurrence: Int) throws {
        var sources = SourceList()
        sources.add(Source(url: "http://x.example/ok", title: "ok", content: ""))
        let citation = try #require(sources.annotations(for: text).first?["url_citation"])
        let scalars = Array(text.unicodeScalars), needle = Array(cited.unicodeScalars)
        let starts = scalars.indices.filter { $0 + needle.count <= scalars.count && Array(scalars[$0..<($0 + needle.count)]) == needle }
        let expected = try #require(starts.dropFirst(occurrence).first)
        #expect(citation["start_index"] == .int(Int64(expected)) && citation["end_index"] == .int(Int64(expected + needle.count)), "\(text): \(citation)")
    }

    /// The byte search finds the span the scalar-by-scalar search it replaced found, wherever
    /// the URL, a markdown link around it and multi-byte characters fall.
    @Test func sameSpansAsTheScalarSearch() async {
        let pieces = ["https://a.example/x", "https://a.example/", "[", "]", "(", ")", "[label]", "é", "😀", " ", "\n", "h", "ht", "https://",
                      ".", "_", "=", "\"", "…"]
        let text = Gen.element(of: pieces).array(of: 0...20).map { $0.compactMap { $0 }.joined() }
        await propertyCheck(count: 2000, input: text, Gen.element(of: ["https://a.example/x", "https://a.example/", "é😀"])) { text, url in
            guard let url else { return }
            var list = SourceList()
            list.add(Source(url: url, title: "", content: ""))
            let citation = list.annotations(for: text)[0]["url_citation"]
            let scalars = Array(text.unicodeScalars)
            let expected = Self.referenceSpan(of: url, in: scalars) ?? scalars.count..<scalars.count
            #expect(citation?["start_index"] == .int(Int64(expected.lowerBound)) && citation?["end_index"] == .int(Int64(expected.upperBound)),
                    "\(text.debugDescription) \(url)")
        }
    }

    /// Hostile sizes: an answer of a mebibyte that nearly matches every one of 1,280 two-kilobyte
    /// URLs at every position. The search stops at its budget: late sources get the empty span,
    /// and it returns (it ran for minutes on one event loop before review 42).
    @Test(.timeLimit(.minutes(1))) func aHostileAnswerAndHostileURLsAreBounded() throws {
        let url = "https://" + String(repeating: "a", count: 2_000)
        var list = SourceList()
        for index in 0..<1_280 { list.add(Source(url: url + "\(index)", title: "", content: "")) }
        let text = String(repeating: "https://" + String(repeating: "a", count: 2_000) + " ", count: 512)
        let annotations = list.annotations(for: text)
        #expect(annotations.count == 1_280)
        let end = Int64(text.unicodeScalars.count)
        #expect(annotations.allSatisfy { $0["url_citation"]?["start_index"] == .int(end) })
        // Within the budget, a URL that is there is found.
        var one = SourceList()
        one.add(Source(url: url, title: "", content: ""))
        #expect(one.annotations(for: text)[0]["url_citation"]?["start_index"] == .int(0))
    }

    /// A URL ends where the text does, at a space, other text than ASCII, a closing bracket or
    /// quote, or a run of punctuation and emphasis marks followed by one of those.
    static func referenceEnds(at end: Int, in text: [Unicode.Scalar]) -> Bool {
        let ending: (Unicode.Scalar) -> Bool = { !$0.isASCII || " \n\t\r)>]}\"`|".unicodeScalars.contains($0) }
        guard end < text.count else { return true }
        if ending(text[end]) { return true }
        let marks = ".,;:!?'*_~".unicodeScalars
        guard marks.contains(text[end]) else { return false }
        guard let after = text[end...].firstIndex(where: { !marks.contains($0) }) else { return true }
        return ending(text[after])
    }

    /// A URL starts at the text's start, after a space, other text than ASCII, an opening
    /// bracket or quote, or emphasis.
    static func referenceStarts(at start: Int, in text: [Unicode.Scalar]) -> Bool {
        start == 0 || !text[start - 1].isASCII || " \n\t\r(<[{\"'*_~`|".unicodeScalars.contains(text[start - 1])
    }

    /// The search it replaced: scalar by scalar, the first occurrence (where the URL ends), a
    /// markdown link's whole span.
    static func referenceSpan(of url: String, in text: [Unicode.Scalar]) -> Range<Int>? {
        let needle = Array(url.unicodeScalars)
        guard !needle.isEmpty, needle.count <= text.count else { return nil }
        var start = 0
        while start + needle.count <= text.count {
            if Array(text[start..<(start + needle.count)]) == needle, Self.referenceStarts(at: start, in: text),
               Self.referenceEnds(at: start + needle.count, in: text) {
                let end = start + needle.count
                if start >= 2, text[start - 1] == "(", text[start - 2] == "]", end < text.count, text[end] == ")" {
                    // The `[` its `]` closes, counting brackets back to the line's start.
                    var depth = 0
                    for open in stride(from: start - 2, through: 0, by: -1) {
                        if text[open] == "\n" { break }
                        if text[open] == "]" { depth += 1 }
                        if text[open] == "[" { depth -= 1 }
                        if depth == 0 { return open..<(end + 1) }
                    }
                }
                return start..<end
            }
            start += 1
        }
        return nil
    }
}
