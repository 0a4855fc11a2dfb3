@testable import Web
import Foundation
import GatewayCore
import PropertyBased
import Testing

/// Pages shaped to cost the parser or the models more than their size says (review 45 web #1, #2).
@Suite struct HostilePageTests {
    /// libxml2 2.9 compares each attribute of a tag with every earlier one: one 2 MiB tag took
    /// minutes on the loop. A start tag keeps its first 64 attributes; the page's text is intact.
    @Test(.timeLimit(.minutes(1))) func aTagWithAMillionAttributesParsesInLinearTime() {
        var html = "<html><body><div"
        for index in 0..<300_000 { html += " a\(index)" }
        html += ">kept text</div><p>after</p></body></html>"
        #expect(html.utf8.count > 2 << 20)
        let page = HTMLText.extract(Array(html.utf8))
        #expect(page.text == "kept text\n\nafter")
        // Quoted values, '>' inside them, and a quoted '=' everywhere: still one tag, bounded.
        var quoted = "<p"
        for index in 0..<100_000 { quoted += " b\(index)='x>y' c=\"=\" d=e" }
        quoted += ">body</p>"
        #expect(HTMLText.extract(Array(quoted.utf8)).text == "body")
    }

    @Test func boundingKeepsOrdinaryPagesAsTheyAreAndCutsOnlyExcessAttributes() {
        let ordinary = #"<!doctype html><meta charset="utf-8"><a href="x?a>b" class='c d' data-x=1 hidden>t</a><!-- <b x y z> --><script>if (a<b && c>d) {}</script>"#
        #expect(HTMLText.boundingTags(Array(ordinary.utf8)) == Array(ordinary.utf8))
        let many = "<i" + (0..<70).map { " a\($0)=\"\($0)\"" }.joined() + ">x</i>"
        let bounded = String(decoding: HTMLText.boundingTags(Array(many.utf8)), as: UTF8.self)
        #expect(bounded == "<i" + (0..<64).map { " a\($0)=\"\($0)\"" }.joined() + " >x</i>")
    }

    /// Whatever the bytes, the pass never writes more than it read and never traps (it runs in C).
    @Test func boundingAnyBytesStaysWithinTheInput() async {
        await propertyCheck(count: 500, input: Gen.int(in: 0...255).array(of: 0...2_000)) { bytes in
            let alphabet: [UInt8] = Array("<>\"'= /!-abscriptstyle\n".utf8)
            let html = bytes.map { alphabet[$0 % alphabet.count] }
            let bounded = HTMLText.boundingTags(html)
            #expect(bounded.count <= html.count)
            _ = HTMLText.extract(html)
        }
    }

    /// The character cap counts Unicode scalars: a letter with a million combining accents is
    /// one Character, and passed whole; titles are capped too.
    @Test func capsHoldForCombiningMarksAndTitles() throws {
        let accents = "a" + String(repeating: "\u{0301}", count: 1_000_000)
        let page = try WebPage.render(body: Array(accents.utf8), contentType: "text/plain", maxCharacters: 20_000, downloadTruncated: false).get()
        #expect(page.truncated && page.text.utf8.count < 20_000 * 4 + 100, "\(page.text.utf8.count) bytes")
        let words = String(repeating: "word ", count: 400_000)
        let titled = HTMLText.extract(Array("<html><head><title>\(words)</title></head><body><p>x</p></body></html>".utf8))
        #expect((titled.title?.utf8.count ?? 0) <= HTMLText.maxTitleBytes + 3)
        let headed = HTMLText.extract(Array("<html><body><h1>\(words)</h1></body></html>".utf8))
        #expect((headed.title?.utf8.count ?? 0) <= HTMLText.maxTitleBytes + 3)
        let marks = HTMLText.extract(Array("<title>a\(String(repeating: "\u{0301}", count: 100_000))</title>".utf8))
        #expect((marks.title?.utf8.count ?? 0) <= HTMLText.maxTitleBytes + 3)
    }
}
