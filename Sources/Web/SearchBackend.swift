import Foundation
import GatewayCore

/// One search hit, the same whatever the backend.
public struct SearchResult: Sendable, Equatable {
    public var title: String
    public var url: String
    public var snippet: String

    public init(title: String, url: String, snippet: String) {
        self.title = title
        self.url = url
        self.snippet = snippet
    }

    public var json: JSONValue {
        .object(["title": .string(title), "url": .string(url), "snippet": .string(snippet)])
    }
}

/// A web search API: how to ask it (`request`) and how to read its answer (`parse`). No I/O.
public struct SearchBackend: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A SearXNG instance's JSON API (`/search?format=json`; the instance must enable the
        /// json format in its settings). Self-hosted, no key: the open default.
        case searxng
        /// Brave Search API (`X-Subscription-Token`).
        case brave
        /// Tavily (`Authorization: Bearer`).
        case tavily
    }

    public var kind: Kind
    /// The instance (SearXNG) or the API's base URL (overridable for hosted APIs).
    public var baseURL: String
    public var apiKey: String?

    public init(kind: Kind, baseURL: String? = nil, apiKey: String? = nil) {
        self.kind = kind
        self.apiKey = apiKey
        var url = baseURL ?? Self.defaultBaseURL(kind) ?? ""
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
    }

    public static func defaultBaseURL(_ kind: Kind) -> String? {
        switch kind {
        case .searxng: nil  // self-hosted: no default
        case .brave: "https://api.search.brave.com/res/v1"
        case .tavily: "https://api.tavily.com"
        }
    }

    public struct Request: Sendable, Equatable {
        public var url: String
        public var method: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public static func == (lhs: Request, rhs: Request) -> Bool {
            lhs.url == rhs.url && lhs.method == rhs.method && lhs.body == rhs.body
                && lhs.headers.map { "\($0.0): \($0.1)" } == rhs.headers.map { "\($0.0): \($0.1)" }
        }
    }

    public func request(query: String, count: Int) -> Request {
        let q = Self.percentEncoded(query)
        switch kind {
        case .searxng:
            return Request(url: "\(baseURL)/search?q=\(q)&format=json&safesearch=1", method: "GET",
                           headers: [("Accept", "application/json")], body: [])
        case .brave:
            return Request(url: "\(baseURL)/web/search?q=\(q)&count=\(min(count, 20))", method: "GET",
                           headers: [("Accept", "application/json"), ("X-Subscription-Token", apiKey ?? "")], body: [])
        case .tavily:
            let body = JSONValue.object(["query": .string(query), "max_results": .int(Int64(min(count, 20))),
                                         "search_depth": .string("basic")])
            return Request(url: "\(baseURL)/search", method: "POST",
                           headers: [("Content-Type", "application/json"), ("Accept", "application/json"),
                                     ("Authorization", "Bearer \(apiKey ?? "")")],
                           body: body.serialized())
        }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The first `count` results of a 2xx response body, normalised; results without an http(s)
    /// URL are dropped, snippets are trimmed to 500 characters.
    public func parse(_ body: [UInt8], count: Int) throws(ParseError) -> [SearchResult] {
        guard let json = try? JSONValue.parse(body) else {
            throw ParseError(description: "the \(kind.rawValue) backend did not return JSON")
        }
        let items: [JSONValue]?
        switch kind {
        case .searxng, .tavily: items = json["results"]?.arrayValue
        case .brave: items = json["web"]?["results"]?.arrayValue ?? (json["type"]?.stringValue == "search" ? [] : nil)
        }
        guard let items else {
            throw ParseError(description: "the \(kind.rawValue) backend's reply has no results list")
        }
        var results: [SearchResult] = []
        for item in items where results.count < count {
            // Every piece bounded in bytes (a Character may carry any number of combining marks):
            // a backend's reply reaches the models (review 45 web #2). A URL cut would be another.
            // A URL as `web_fetch` would read it (review 106 #3: credentials, spaces and line
            // breaks reached citations as they came, and a page found and then read was cited
            // twice, once as the backend wrote it and once percent-encoded).
            // `validate` takes http(s) only, its scheme in any case (review 108 #2).
            guard let raw = item["url"]?.stringValue, case .success(let parsed) = WebPage.validate(raw) else { continue }
            let url = parsed.absoluteString
            guard url.utf8.count <= Self.maxURLBytes else { continue }
            let snippet = (kind == .brave ? item["description"] : item["content"])?.stringValue ?? ""
            let title = (item["title"]?.stringValue ?? url).shortened(toBytes: 4 * HTMLText.maxTitleBytes)
            results.append(SearchResult(title: DisplayText.cleaned(HTMLText.plain(title), oneLine: true).shortened(toBytes: HTMLText.maxTitleBytes), url: url,
                                        snippet: DisplayText.cleaned(String(HTMLText.plain(snippet.shortened(toBytes: 8_192)).prefix(500))).shortened(toBytes: 2_000)))
        }
        return results
    }

    /// The longest result URL kept (longer ones are left out).
    static let maxURLBytes = 2_048

    /// RFC 3986's unreserved characters: everything else in a query value is percent-encoded.
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }
}
