import Fusion
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
        // Not cited in the text: no indexes.
        #expect(SourceList().annotations(for: "x").isEmpty)
        var unseen = SourceList()
        unseen.add(Source(url: "https://z.example/", title: "Z", content: ""))
        #expect(unseen.annotations(for: "no links")[0]["url_citation"]?["start_index"] == nil)
    }
}
