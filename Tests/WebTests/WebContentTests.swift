import Foundation
import GatewayCore
import Testing
import Web

/// HTML → text, content types, search backends' wire formats, URLs, citations.
@Suite struct WebContentTests {
    @Test func htmlBecomesReadableTextWithoutMarkup() {
        let html = """
            <!doctype html><html><head><title> The  Page </title><style>body{color:red}</style>
            <script>alert("x")</script></head><body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
            <h1>Main heading</h1><p>First   paragraph with <b>bold</b> and <a href="https://x.example">a link</a>.</p>
            <ul><li>one</li><li>two &amp; three</li></ul><p>Caf&eacute; na&iuml;ve<br>next line</p>
            <pre>  keep
              this</pre><footer>© footer</footer><noscript>enable js</noscript></body></html>
            """
        let page = HTMLText.extract(Array(html.utf8))
        #expect(page.title == "The Page")
        #expect(page.text == """
            # Main heading

            First paragraph with bold and a link.

            - one
            - two & three

            Café naïve
            next line

              keep
              this
            """)
        for markup in ["<", "alert", "color:red", "Home", "footer", "enable js"] { #expect(!page.text.contains(markup), "\(markup)") }
    }

    @Test func brokenAndHostileHTMLStillParses() {
        #expect(HTMLText.extract(Array("<p>unclosed <b>tags <i>everywhere".utf8)).text == "unclosed tags everywhere")
        #expect(HTMLText.extract([]).text == "")
        let deep = String(repeating: "<div>", count: 100_000) + "deep" + String(repeating: "</div>", count: 100_000)
        _ = HTMLText.extract(Array(deep.utf8))  // no stack overflow
        // A page declared in Latin-1: decoded, not mojibake.
        let latin1: [UInt8] = Array("<html><body><p>caf".utf8) + [0xE9] + Array("</p></body></html>".utf8)
        #expect(HTMLText.extract(latin1, encoding: "ISO-8859-1").text == "café")
        #expect(HTMLText.extract(Array("<p>still read</p>".utf8), encoding: "x-no-such-charset").text == "still read")
        #expect(HTMLText.plain("Swift <strong>concurrency</strong> &amp; actors") == "Swift concurrency & actors")
    }

    @Test func contentTypesAndTruncation() throws {
        #expect(WebPage.contentType("text/html; charset=ISO-8859-1").kind == .html)
        #expect(WebPage.contentType("text/html; charset=ISO-8859-1").charset == "ISO-8859-1")
        #expect(WebPage.contentType("application/json").kind == .text)
        #expect(WebPage.contentType("image/png").kind == .unsupported("image/png"))
        let pdf = WebPage.render(body: [1, 2], contentType: "application/pdf", maxCharacters: 100, downloadTruncated: false)
        #expect(throws: WebToolError.self) { try pdf.get() }
        let long = String(repeating: "word ", count: 1000)
        let page = try WebPage.render(body: Array(long.utf8), contentType: "text/plain", maxCharacters: 100, downloadTruncated: false).get()
        #expect(page.truncated && page.text.hasSuffix("[truncated]") && page.text.count < 120)
        let sniffed = try WebPage.render(body: Array("<html><body><p>hi</p></body></html>".utf8), contentType: nil,
                                         maxCharacters: 100, downloadTruncated: false).get()
        #expect(sniffed.text == "hi")
    }

    /// A text page is read in its charset, as an HTML page is (review 55B #2); a page-chosen
    /// content type is quoted only in part (review 55B #3).
    @Test func textPagesAreReadInTheirCharset() throws {
        func text(_ body: [UInt8], _ type: String) throws -> String {
            try WebPage.render(body: body, contentType: type, maxCharacters: 1_000, downloadTruncated: false).get().text
        }
        #expect(try text(Array("Caf".utf8) + [0xE9, 0x20, 0xA9], "text/plain; charset=iso-8859-1") == "Café ©")
        #expect(try text(Array(#"{"name":"Caf"#.utf8) + [0xE9] + Array(#""}"#.utf8), "application/json; charset=ISO-8859-1") == #"{"name":"Café"}"#)
        let utf16: [UInt8] = [0xFF, 0xFE] + Array("Hi é".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(try text(utf16, "text/plain; charset=utf-16") == "Hi é")
        #expect(throws: WebToolError.self) { try text([0x41, 0, 0x42], "text/plain") }
        // A label no browser reads is no label: the page is sniffed (review 62B #6: an empty
        // `charset=` read every letter beyond ASCII as U+FFFD, UTF-32 the whole page).
        for type in ["text/html; charset=", "text/html; charset=\"\"", "text/plain; charset=", "text/html; charset=utf-32", "text/plain; charset=UCS-4"] {
            let html = type.hasPrefix("text/html")
            let page = Array((html ? "<p>Café naïve € 日本</p>" : "Café naïve € 日本").utf8)
            #expect(try text(page, type) == "Café naïve € 日本", "\(type)")
        }
        // A page cut at `max_bytes` inside a character is still UTF-8, HTML too (review 56 #1).
        let cut = Array(#"{"text":"привет мир"#.utf8).dropLast(1)
        let json = try WebPage.render(body: Array(cut), contentType: "application/json", maxCharacters: 1_000, downloadTruncated: true).get()
        #expect(json.text.hasPrefix(#"{"text":"привет ми"#) && !json.text.contains("Ð"), "\(json.text)")
        let html = try WebPage.render(body: Array(Array("<p>привет мир</p>".utf8).prefix(16)), contentType: "text/html",
                                      maxCharacters: 1_000, downloadTruncated: true).get()
        #expect(html.text.hasPrefix("привет") && !html.text.contains("Ð"), "\(html.text)")
        // A last byte that reads as a cut character is UTF-8 only where the rest shows some
        // (review 57 #2, 58 #1): Latin-1 "Café", cut there or not, keeps its é; UTF-8 cut by its
        // server reads as UTF-8.
        #expect(try text(Array("Le menu du Caf".utf8) + [0xE9], "text/plain") == "Le menu du Café")
        let latin1Cut = WebPage.render(body: Array("Caf".utf8) + [0xE9], contentType: "text/plain", maxCharacters: 100, downloadTruncated: true)
        #expect(try latin1Cut.get().text.hasPrefix("Café"))
        #expect(try text(Array(Array("привет мир".utf8).dropLast(1)), "text/plain").hasPrefix("привет ми"))
        #expect(try WebPage.render(body: Array("<p>Ol".utf8) + [0xE9], contentType: "text/html", maxCharacters: 100,
                                   downloadTruncated: false).get().text == "Olé")
        // A text page's `<meta charset>` is text, not a declaration (review 56 #7).
        #expect(try text(Array(#"How to: <meta charset="windows-1251"> then Grüße"#.utf8), "text/plain").hasSuffix("Grüße"))
        let longType = "application/" + String(repeating: "x", count: 90_000)
        let refusal = WebPage.render(body: [1], contentType: longType, maxCharacters: 100, downloadTruncated: false)
        guard case .failure(let error) = refusal else { Issue.record("an unsupported type was read"); return }
        #expect(error.message.utf8.count < 300, "\(error.message.utf8.count)")
    }

    @Test func urlRulesAndRedirects() throws {
        #expect(throws: WebToolError.self) { try WebPage.validate("file:///etc/passwd").get() }
        #expect(throws: WebToolError.self) { try WebPage.validate("gopher://x/").get() }
        #expect(throws: WebToolError.self) { try WebPage.validate("http://user:pw@example.com/").get() }
        #expect(throws: WebToolError.self) { try WebPage.validate("not a url").get() }
        let base = try WebPage.validate("https://example.com/a/b?c=1").get()
        #expect(try WebPage.redirectTarget("/x", from: base).get().absoluteString == "https://example.com/x")
        #expect(try WebPage.redirectTarget("y", from: base).get().absoluteString == "https://example.com/a/y")
        #expect(throws: WebToolError.self) { try WebPage.redirectTarget("ftp://example.com/", from: base).get() }
        // A URL is bounded, chosen by a model or by a redirect (review 62B #7).
        let long = "/plain?" + String(repeating: "a", count: 60_000)
        #expect(throws: WebToolError("redirect refused: URLs longer than 2048 bytes are not fetched")) { try WebPage.redirectTarget(long, from: base).get() }
        #expect(throws: WebToolError.self) { try WebPage.validate("https://example.com" + long).get() }
        #expect(try WebPage.validate("https://example.com/" + String(repeating: "a", count: 2_000)).get().absoluteString.count == 2_020)
        // One letter and 40,000 combining marks: 200 Characters of it were 80 KB quoted back
        // (review 106 #2). Refused by its size, unquoted; a shorter unparsable one quoted to 200 bytes.
        let marks = "http://[a" + String(repeating: "\u{301}", count: 40_000) + "]/"
        #expect(throws: WebToolError("redirect refused: URLs longer than 2048 bytes are not fetched")) { try WebPage.redirectTarget(marks, from: base).get() }
        let unparsable = "http://[a" + String(repeating: "\u{301}", count: 900) + "]/"
        guard case .failure(let error) = WebPage.redirectTarget(unparsable, from: base) else {
            Issue.record("an unparsable redirect was followed")
            return
        }
        #expect(error.message.utf8.count < 300, "\(error.message.utf8.count) bytes")
    }

    /// A search result's URL is read as a fetch would read it, and its title and snippet lose
    /// terminal escapes and bidi overrides (review 106 #3, #4).
    @Test func searchResultsAreCleanedAsTheyWillBeShown() throws {
        let searx = SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:8888/")
        let body = JSONValue.object(["results": .array([
            .object(["url": .string("https://user:pw@evil.example/"), "title": .string("spoof")]),
            .object(["url": .string("https://a.example/ok?q=café x"), "title": .string("nl\u{1B}[31m\r\n\r\ndata: x \u{202E}end"),
                     "content": .string("snip\u{1B}[2J\n\ndata: y\u{07}")]),
        ])]).serialized()
        let results = try searx.parse(body, count: 5)
        #expect(results.count == 1, "the URL with credentials is left out: \(results)")
        #expect(results.first?.url == "https://a.example/ok?q=caf%C3%A9%20x")
        #expect(results.first?.title == "nl[31m  data: x end")
        #expect(results.first?.snippet == "snip[2J\n\ndata: y")
        // Escapes kept as they are, only what a URL cannot hold encoded (review 108 #1: encoded
        // twice, another page was read); a scheme in capitals is a scheme (108 #2).
        let mixed = JSONValue.object(["results": .array([
            .object(["url": .string("https://a.example/ok?q=%C3%A9&r=é#frag"), "title": .string("t")]),
            .object(["url": .string("https://a.example/a%2Fb/é"), "title": .string("t")]),
            .object(["url": .string("HTTPS://b.example:8443/x+y?z=1+2"), "title": .string("t")]),
            .object(["url": .string("javascript:alert(1)"), "title": .string("t")]),
        ])]).serialized()
        let urls = try searx.parse(mixed, count: 5).map(\.url)
        #expect(urls == ["https://a.example/ok?q=%C3%A9&r=%C3%A9#frag", "https://a.example/a%2Fb/%C3%A9", "https://b.example:8443/x+y?z=1+2"],
                "\(urls)")
        #expect(DisplayText.cleaned("a\u{9B}b\u{2066}c\td") == "abc\td")
        #expect(DisplayText.cleaned("line1\rline2\r\nline3\u{0C}4") == "line1\nline2\nline3\n4")
        #expect(DisplayText.cleaned("one\ntwo\u{2028}three", oneLine: true) == "one two three")
    }

    @Test func searchBackendsSpeakTheirWireFormats() throws {
        let searx = SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:8888/")
        #expect(searx.request(query: "a b&c", count: 3).url == "http://127.0.0.1:8888/search?q=a%20b%26c&format=json&safesearch=1")
        let searxBody = #"{"query":"q","number_of_results":2,"results":[{"url":"https://a.example/","title":"A","content":"alpha","engine":"x"},{"url":"javascript:x","title":"bad"},{"url":"https://b.example/","title":"B","content":"beta"},{"url":"https://c.example/","title":"C"}]}"#
        #expect(try searx.parse(Array(searxBody.utf8), count: 2) == [
            SearchResult(title: "A", url: "https://a.example/", snippet: "alpha"),
            SearchResult(title: "B", url: "https://b.example/", snippet: "beta"),
        ])
        let brave = SearchBackend(kind: .brave, apiKey: "key")
        let request = brave.request(query: "swift", count: 50)
        #expect(request.url == "https://api.search.brave.com/res/v1/web/search?q=swift&count=20")
        #expect(request.headers.contains { $0 == ("X-Subscription-Token", "key") })
        let braveBody = #"{"type":"search","web":{"results":[{"title":"Swift <strong>lang</strong>","url":"https://swift.org/","description":"The <strong>Swift</strong> language"}]}}"#
        #expect(try brave.parse(Array(braveBody.utf8), count: 5) == [SearchResult(title: "Swift lang", url: "https://swift.org/", snippet: "The Swift language")])
        #expect(try brave.parse(Array(#"{"type":"search"}"#.utf8), count: 5).isEmpty)
        let tavily = SearchBackend(kind: .tavily, apiKey: "tv")
        let tavilyRequest = tavily.request(query: "q", count: 3)
        #expect(tavilyRequest.method == "POST" && tavilyRequest.url == "https://api.tavily.com/search")
        #expect(try JSONValue.parse(tavilyRequest.body)["max_results"]?.intValue == 3)
        #expect(try tavily.parse(Array(#"{"results":[{"title":"T","url":"https://t.example","content":"c","score":0.9}]}"#.utf8), count: 3).count == 1)
        #expect(throws: SearchBackend.ParseError.self) { try searx.parse(Array("<html>".utf8), count: 3) }
        #expect(throws: SearchBackend.ParseError.self) { try searx.parse(Array(#"{"error":"x"}"#.utf8), count: 3) }
    }
}
