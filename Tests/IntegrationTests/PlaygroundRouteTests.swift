import Foundation
import Gateway
import GatewayCore
import Testing

/// The playground's files through the gateway, over a real socket: content types, the strict
/// headers, revalidation, HEAD, 404s, and that the page stays reachable behind gateway keys.
@Suite struct PlaygroundRouteTests {
    static let csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    func request(_ client: TestClient, _ method: String, _ path: String, headers: [String: String] = [:]) throws {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        try client.send(text + "\r\n")
    }

    @Test func thePageAndItsFilesAreServedWithStrictHeaders() throws {
        let env = try TestEnvironment()
        for (path, type) in [("/", "text/html; charset=utf-8"), ("/playground", "text/html; charset=utf-8"),
                             ("/playground/app.js", "text/javascript; charset=utf-8"), ("/playground/app.css", "text/css; charset=utf-8"),
                             ("/playground/icon.svg", "image/svg+xml")] {
            let response = try env.get(path)
            #expect(response.status == 200, "\(path)")
            #expect(response.header("content-type") == type, "\(path)")
            #expect(response.header("content-security-policy") == Self.csp, "\(path)")
            #expect(response.header("x-content-type-options") == "nosniff")
            #expect(response.header("referrer-policy") == "no-referrer")
            #expect(response.header("cache-control") == "no-cache")
            #expect(response.header("etag")?.hasPrefix("\"") == true)
            #expect(!response.body.isEmpty)
        }
        #expect(try env.get("/").text.contains(#"<script type="module" src="/playground/app.js"></script>"#))
    }

    /// A 304 and a HEAD response carry no body: the next request on the same connection is
    /// answered normally (a stray body would be read as its response).
    @Test func revalidationAndHeadSendNoBody() throws {
        let env = try TestEnvironment()
        let page = try env.get("/playground/app.js")
        let etag = try #require(page.header("etag"))
        let client = try env.client()

        try request(client, "GET", "/playground/app.js", headers: ["If-None-Match": etag])
        let notModified = try client.readHead()
        #expect(notModified.status == 304)
        #expect(notModified.header("etag") == etag)
        #expect(notModified.header("content-length") == String(page.body.count))

        try request(client, "HEAD", "/playground/app.js")
        let head = try client.readHead()
        #expect(head.status == 200)
        #expect(head.header("content-type") == "text/javascript; charset=utf-8")
        #expect(head.header("content-length") == String(page.body.count))
        #expect(head.header("content-security-policy") == Self.csp)

        try request(client, "GET", "/playground/app.js", headers: ["If-None-Match": "\"stale\""])
        let fresh = try client.readResponse()
        #expect(fresh.status == 200)
        #expect(fresh.body == page.body)
    }

    @Test func unknownPlaygroundPathsAre404AndOtherMethods405() throws {
        let env = try TestEnvironment()
        for path in ["/playground/nope.js", "/playground/../README.md", "/playground/app.js/x"] {
            let response = try env.get(path)
            #expect(response.status == 404, "\(path)")
            #expect(response.json?["error"]?["code"]?.stringValue == "not_found")
        }
        let client = try env.client()
        try client.send(TestEnvironment.post("/playground", body: "{}"))
        let post = try client.readResponse()
        #expect(post.status == 405)
        #expect(post.header("allow") == "GET, HEAD")
    }

    /// The page is public (it asks for the key itself); the API behind it is not.
    @Test func behindGatewayKeysThePageLoadsAndTheAPIAsks() throws {
        let env = try TestEnvironment { $0.server.apiKeys = ["gw-playground-key"] }
        #expect(try env.get("/").status == 200)
        #expect(try env.get("/playground/app.js").status == 200)
        #expect(try env.get("/v1/models").status == 401)
        let client = try env.client()
        try request(client, "GET", "/v1/models", headers: ["Authorization": "Bearer gw-playground-key"])
        #expect(try client.readResponse().status == 200)
    }
}
