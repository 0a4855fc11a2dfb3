import Foundation
import Testing

@testable import Playground

/// The playground's routes and files, without sockets (the integration tests go through the
/// gateway; Tests/e2e/playground_check.py drives the page in Chromium).
@Suite struct PlaygroundTests {
    func header(_ response: Playground.Response, _ name: String) -> String? {
        response.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func text(_ name: String) throws -> String {
        let asset = try #require(PlaygroundAsset.named[name])
        return String(decoding: asset.body, as: UTF8.self)
    }

    @Test(arguments: ["/", "/playground", "/playground/", "/playground/index.html"])
    func thePageIsServedAtItsAddresses(path: String) throws {
        let response = try #require(Playground.response(method: "GET", path: path, ifNoneMatch: nil))
        #expect(response.status == 200)
        #expect(header(response, "content-type") == "text/html; charset=utf-8")
        #expect(String(decoding: response.body, as: UTF8.self).contains("<title>Fusion playground"))
    }

    @Test(arguments: [
        ("/playground/app.js", "text/javascript; charset=utf-8"), ("/playground/sse.js", "text/javascript; charset=utf-8"),
        ("/playground/app.css", "text/css; charset=utf-8"), ("/playground/icon.svg", "image/svg+xml"),
    ])
    func filesHaveTheirContentType(path: String, type: String) throws {
        let response = try #require(Playground.response(method: "GET", path: path, ifNoneMatch: nil))
        #expect(response.status == 200)
        #expect(header(response, "content-type") == type)
        #expect(!response.body.isEmpty)
    }

    @Test func everyResponseCarriesTheStrictHeaders() throws {
        for path in ["/", "/playground/app.js", "/playground/nope.js"] {
            let response = try #require(Playground.response(method: "GET", path: path, ifNoneMatch: nil))
            #expect(header(response, "content-security-policy") ==
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
            #expect(header(response, "x-content-type-options") == "nosniff")
            #expect(header(response, "referrer-policy") == "no-referrer")
        }
        let page = try #require(Playground.response(method: "GET", path: "/", ifNoneMatch: nil))
        #expect(header(page, "cache-control") == "no-cache")
    }

    @Test func etagsComeFromTheContentAndRevalidateTo304() throws {
        let first = try #require(Playground.response(method: "GET", path: "/playground/app.js", ifNoneMatch: nil))
        let etag = try #require(header(first, "etag"))
        #expect(etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count == 18)
        #expect(etag == ETag.strong(for: first.body))
        let other = try #require(Playground.response(method: "GET", path: "/playground/app.css", ifNoneMatch: nil))
        #expect(header(other, "etag") != etag)

        for condition in [etag, "W/\(etag)", "\"other\", \(etag)", "*"] {
            let revalidated = try #require(Playground.response(method: "GET", path: "/playground/app.js", ifNoneMatch: condition))
            #expect(revalidated.status == 304, "If-None-Match: \(condition)")
            #expect(header(revalidated, "etag") == etag)
        }
        let changed = try #require(Playground.response(method: "GET", path: "/playground/app.js", ifNoneMatch: "\"0000000000000000\""))
        #expect(changed.status == 200)
    }

    @Test func headIsAnsweredLikeGet() throws {
        let get = try #require(Playground.response(method: "GET", path: "/", ifNoneMatch: nil))
        let head = try #require(Playground.response(method: "HEAD", path: "/", ifNoneMatch: nil))
        #expect(head.status == 200)
        #expect(head.body == get.body)  // the server sends its length, not its bytes
        #expect(header(head, "etag") == header(get, "etag"))
    }

    @Test func unknownFilesAre404AndOtherMethods405() throws {
        for path in ["/playground/missing.js", "/playground/../Package.swift", "/playground/app.js/", "/playground//app.js"] {
            let response = try #require(Playground.response(method: "GET", path: path, ifNoneMatch: nil))
            #expect(response.status == 404, "\(path)")
            #expect(header(response, "content-type") == "application/json")
        }
        let post = try #require(Playground.response(method: "POST", path: "/playground", ifNoneMatch: nil))
        #expect(post.status == 405)
        #expect(header(post, "allow") == "GET, HEAD")
    }

    @Test func otherPathsAreNotThePlaygrounds() {
        for path in ["/v1/models", "/health", "/playgroundx", "/index.html", "/favicon.ico"] {
            #expect(Playground.response(method: "GET", path: path, ifNoneMatch: nil) == nil, "\(path)")
        }
    }

    /// Small enough to load at once on any connection; a budget, so growth is a decision.
    @Test func theFilesStaySmall() {
        let total = Playground.files.reduce(0) { $0 + $1.bytes }
        for file in Playground.files { #expect(file.bytes < 40_000, "\(file.path): \(file.bytes) bytes") }
        #expect(total < 140_000, "the playground is \(total) bytes")
    }

    /// What the CSP enforces in the browser, checked in the source too: no inline script or
    /// style, every module the page loads is served.
    @Test func thePageLoadsOnlyServedFilesAndNoInlineCode() throws {
        let html = try text("index.html")
        #expect(!html.contains("style="))
        #expect(!html.contains("<style"))
        #expect(!html.contains(/\son[a-z]+\s*=/), "no inline event handlers")
        for script in html.components(separatedBy: "<script").dropFirst() {
            #expect(script.hasPrefix(" type=\"module\" src=\"/playground/"), "\(script.prefix(60))")
        }
        let names = Set(PlaygroundAsset.all.map(\.name))
        for asset in PlaygroundAsset.all where asset.name.hasSuffix(".js") {
            let source = String(decoding: asset.body, as: UTF8.self)
            for line in source.split(separator: "\n") where line.hasPrefix("import ") || line.hasPrefix("export {") {
                guard let start = line.range(of: "\"./")?.upperBound else { continue }
                let module = String(line[start...].prefix { $0 != "\"" })
                #expect(names.contains(module), "\(asset.name) imports \(module), which is not served")
            }
        }
    }

    /// Model output is untrusted: it must only reach the page as text.
    @Test func noScriptWritesMarkup() throws {
        for asset in PlaygroundAsset.all where asset.name.hasSuffix(".js") {
            let source = String(decoding: asset.body, as: UTF8.self)
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"style\""] {
                #expect(!source.contains(sink), "\(asset.name) uses \(sink)")
            }
        }
    }
}
