import EventLoop
import GatewayCore
import HTTPServer

/// A simulated web on the mock upstream's port, for the web tools' tests and the offline demo:
/// three search APIs in their real wire formats, answering with links to pages this same server
/// serves, and pages that misbehave on request.
///
/// Search: `GET /search?q=…&format=json` (SearXNG), `GET /res/v1/web/search?q=…&count=…` (Brave,
/// needs `X-Subscription-Token`), `POST /search` (Tavily, needs `Authorization: Bearer …`). A
/// query containing `fail` gets HTTP 500.
///
/// Pages under `/web/`: `page/N` (an article titled "Simulated source N"), `redirect?to=URL` (302),
/// `redirect-chain/N` (N hops, then page/1), `big?bytes=N` (an HTML page of about N bytes),
/// `status/N` (`?body_ms=M`: the body M ms after the head), `binary` (image/png), `plain` (text/plain), `latin1` (ISO-8859-1 HTML), `slow?ms=N`
/// (see `MockWebPage`; a number outside its range gets a 400 naming it).
enum MockWeb {
    static func handles(_ request: HTTPRequest) -> Bool {
        request.path.hasPrefix("/web/") || request.path == "/search" || request.path == "/res/v1/web/search"
    }

    static func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter, stats: MockUpstreamStats) {
        let host = request.header("host") ?? "127.0.0.1"
        let base = "http://\(host)"
        switch (request.method, request.path) {
        case ("GET", "/search"):
            guard request.queryItem("format") == "json" else {
                // As SearXNG does when the json format is not enabled.
                writer.respond(status: 403, headers: [("Content-Type", "text/html")], body: Array("<h1>403 Forbidden</h1>".utf8))
                return
            }
            search(query: request.queryItem("q") ?? "", count: 10, base: base, writer) { results in
                .object(["query": .string(request.queryItem("q") ?? ""), "number_of_results": .int(Int64(results.count)),
                         "results": .array(results.map { .object(["url": .string($0.url), "title": .string($0.title),
                                                                  "content": .string($0.snippet), "engine": .string("mock")]) })])
            }
        case ("GET", "/res/v1/web/search"):
            guard request.header("x-subscription-token")?.isEmpty == false else {
                writer.respond(error: APIError(status: 401, type: "authentication_error", code: "unauthorized", message: "missing X-Subscription-Token"))
                return
            }
            let count = Int(request.queryItem("count") ?? "") ?? 20
            if (request.queryItem("q") ?? "").contains("echo-key") {
                // A backend that quotes the credential it refuses (some do, in their error pages).
                let token = request.header("x-subscription-token") ?? ""
                writer.respond(status: 401, headers: [("Content-Type", "text/plain")],
                               body: Array((String(repeating: "\n", count: 160) + "invalid subscription token \(token)").utf8))
                return
            }
            search(query: request.queryItem("q") ?? "", count: count, base: base, writer) { results in
                .object(["type": .string("search"), "web": .object(["results": .array(results.map {
                    .object(["url": .string($0.url), "title": .string($0.title), "description": .string("<strong>\($0.snippet)</strong>")])
                })])])
            }
        case ("POST", "/search"):
            guard request.header("authorization")?.hasPrefix("Bearer ") == true else {
                writer.respond(error: APIError(status: 401, type: "authentication_error", code: "unauthorized", message: "missing API key"))
                return
            }
            let body = try? JSONValue.parse(request.body)
            search(query: body?["query"]?.stringValue ?? "", count: Int(body?["max_results"]?.intValue ?? 5), base: base, writer) { results in
                .object(["query": .string(body?["query"]?.stringValue ?? ""), "results": .array(results.map {
                    .object(["url": .string($0.url), "title": .string($0.title), "content": .string($0.snippet), "score": .double(0.9)])
                })])
            }
        case ("GET", _):
            page(request, base: base, writer, stats: stats)
        default:
            writer.respond(error: .methodNotAllowed(request.method, path: request.path, allowed: "GET"))
        }
    }

    private static func search(query: String, count: Int, base: String, _ writer: HTTPResponseWriter,
                               encode: ([(title: String, url: String, snippet: String)]) -> JSONValue) {
        if query.contains("fail") {
            writer.respond(status: 500, headers: [("Content-Type", "text/plain")], body: Array("search engine exploded".utf8))
            return
        }
        let results = (1...max(1, min(count, 10))).map { n in
            (title: "Simulated source \(n)", url: "\(base)/web/page/\(n)",
             snippet: "Source \(n) on \(query.prefix(60)): evidence point \(n).")
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: encode(results).serialized())
    }

    private static func page(_ request: HTTPRequest, base: String, _ writer: HTTPResponseWriter, stats: MockUpstreamStats) {
        let page: MockWebPage
        do {
            guard let found = try MockWebPage.parse(path: request.path, query: request.queryItem) else {
                writer.respond(error: .notFound(path: request.path))
                return
            }
            page = found
        } catch {
            writer.respond(error: error)
            return
        }
        let html = [("Content-Type", "text/html; charset=utf-8")]
        switch page {
        case .article(let n):
            writer.respond(status: 200, headers: html, body: Array(article(n).utf8))
        case .redirect(let target):
            writer.respond(status: 302, headers: [("Location", target), ("Content-Type", "text/html")],
                           body: Array("<a href=\"\(target)\">moved</a>".utf8))
        case .redirectChain(let left):
            let target = left <= 1 ? "/web/page/1" : "/web/redirect-chain/\(left - 1)"
            writer.respond(status: 301, headers: [("Location", target)], body: [])
        case .big(let bytes):
            var body = Array("<html><head><title>A very long page</title></head><body>".utf8)
            let paragraph = Array("<p>This paragraph repeats to make the page long. It has no end in sight.</p>\n".utf8)
            while body.count < bytes { body += paragraph }
            body += Array("<p>THE END</p></body></html>".utf8)
            writer.respond(status: 200, headers: html, body: body)
        case .status(let status, let milliseconds):
            let body = Array("<h1>Error \(status)</h1>".utf8)
            guard milliseconds > 0 else { return writer.respond(status: status, headers: html, body: body) }
            // The head now, the body later: a client that waits for an error page's body shows it.
            writer.startStream(status: status, headers: html)
            Self.finish(writer, with: body, afterMilliseconds: milliseconds)
        case .binary:
            writer.respond(status: 200, headers: [("Content-Type", "image/png")], body: [0x89, 0x50, 0x4E, 0x47, 0, 0, 0, 0])
        case .plain:
            writer.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array("Plain text page.\nSecond line.".utf8))
        case .latin1:
            writer.respond(status: 200, headers: [("Content-Type", "text/html; charset=ISO-8859-1")],
                           body: Array("<html><head><title>Caf".utf8) + [0xE9] + Array("</title></head><body><p>cr".utf8) + [0xE8]
                               + Array("me br".utf8) + [0xFB] + Array("l".utf8) + [0xE9] + Array("e</p></body></html>".utf8))
        case .dribble(let milliseconds):
            let page = Array(article(9).utf8)
            let half = page.count / 2
            writer.startStream(status: 200, headers: html)
            writer.writeStreamChunk(Array(page[..<half]))
            Self.finish(writer, with: Array(page[half...]), afterMilliseconds: milliseconds)
        case .slow(let milliseconds):
            stats.update { $0.slowPagesStarted += 1 }
            var timer: LoopTimer?
            timer = LoopTimer(loop: writer.loop!) {
                writer.respond(status: 200, headers: html, body: Array(article(9).utf8))
                timer?.close()
                timer = nil
            }
            // The fetcher hung up before the page came: what a cancelled web_fetch looks like.
            writer.onClientGone = {
                stats.update { $0.slowPagesCancelled += 1 }
                timer?.close()
                timer = nil
            }
            timer?.start(afterMilliseconds: UInt64(milliseconds))
        }
    }

    /// Writes `rest` and ends a started stream `milliseconds` from now, unless its client left.
    private static func finish(_ writer: HTTPResponseWriter, with rest: [UInt8], afterMilliseconds milliseconds: Int) {
        var timer: LoopTimer?
        timer = LoopTimer(loop: writer.loop!) {
            writer.writeStreamChunk(rest)
            writer.endStream()
            timer?.close()
            timer = nil
        }
        writer.onClientGone = {
            timer?.close()
            timer = nil
        }
        timer?.start(afterMilliseconds: UInt64(milliseconds))
    }

    static func article(_ n: Int) -> String {
        """
        <!doctype html><html><head><title>Simulated source \(n)</title><script>track()</script></head>
        <body><nav><a href="/">Home</a></nav><article><h1>Simulated source \(n)</h1>
        <p>This page is served by the mock upstream's simulated web. Finding \(n): measured outcomes improved by \(n * 7)% \
        in the studied cases.</p><ul><li>Evidence point \(n)</li><li>Caveat \(n): small samples</li></ul></article>
        <footer>Simulated footer</footer></body></html>
        """
    }
}
