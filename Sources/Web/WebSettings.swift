/// The `web:` section of the gateway config: the web tools panel members and the judge may use.
public struct WebSettings: Sendable, Equatable {
    /// nil: no `web_search` (only `web_fetch`, if enabled).
    public var search: SearchBackend?
    /// Environment variable holding the hosted search API's key (read at startup).
    public var searchAPIKeyEnvironmentVariable: String?
    public var searchTimeoutMilliseconds: UInt64 = 10_000
    /// Results per search (the model may ask for fewer, never more).
    public var maxResults = 5
    public var fetch = true
    public var fetchTimeoutMilliseconds: UInt64 = 15_000
    /// Bytes read from a page (decompressed) before the rest is cut off.
    public var maxFetchBytes = 2 << 20
    /// Characters of a page's text given to the model.
    public var maxPageCharacters = 20_000
    public var maxRedirects = 5
    /// Addresses `web_fetch` may reach although they are private, loopback, …
    public var addressPolicy = AddressPolicy()
    /// Defaults for requests that do not say (`web_search`, `judge_web_search` fusion parameters).
    public var panel = true
    public var judge = true
    /// Tool calls run from one model turn; extra ones get an error result.
    public var maxCallsPerTurn = 4

    /// Search and read the built-in simulated web (served by the `sim/` models' server, for the
    /// offline demo): set up by the gateway once that server's port is known.
    public var simulated = false

    public init() {}

    /// The embedded default: the simulated web.
    public static var simulatedWeb: WebSettings {
        var settings = WebSettings()
        settings.simulated = true
        return settings
    }

    /// These settings with the simulated web at `port` on loopback: its search API, and its
    /// pages allowed (every other loopback port stays refused).
    public func resolvingSimulatedWeb(port: Int) -> WebSettings {
        guard simulated else { return self }
        var settings = self
        settings.search = SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:\(port)")
        if let rule = AddressRule("127.0.0.1:\(port)") { settings.addressPolicy.allow.append(rule) }
        return settings
    }

    public var offersAnyTool: Bool { search != nil || fetch }
}
