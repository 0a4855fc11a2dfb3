import Foundation

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
    /// How the simulated web is reached once set up: its pages and search API live at
    /// `http://simulated-web.invalid` (a name that never resolves: the simulator's port never
    /// appears in a URL or a citation), connected to the simulator, with its access key.
    public var simulatedWebAccess: SimulatedWebAccess?

    public struct SimulatedWebAccess: Sendable, Equatable {
        public static let host = "simulated-web.invalid"
        /// `127.0.0.1:PORT`.
        public var address: String
        public var key: String
        public init(address: String, key: String) {
            self.address = address
            self.key = key
        }
        /// curl's connect-to entry for the simulated host.
        public var connectTo: String { "\(Self.host):80:\(address)" }
    }

    public init() {}

    /// The embedded default: the simulated web.
    public static var simulatedWeb: WebSettings {
        var settings = WebSettings()
        settings.simulated = true
        return settings
    }

    /// These settings with the simulated web served at `port` on loopback behind `key`: its
    /// search API and pages under the simulated host, that one port allowed (every other
    /// loopback port stays refused).
    public func resolvingSimulatedWeb(port: Int, key: String) -> WebSettings {
        guard simulated else { return self }
        var settings = self
        settings.search = SearchBackend(kind: .searxng, baseURL: "http://\(SimulatedWebAccess.host)")
        settings.simulatedWebAccess = SimulatedWebAccess(address: "127.0.0.1:\(port)", key: key)
        if let rule = AddressRule("127.0.0.1:\(port)") { settings.addressPolicy.allow.append(rule) }
        return settings
    }

    /// The connect-to entries and headers a request to `url` needs (those of the simulated web).
    public func access(for url: String) -> (connectTo: [String], headers: [(String, String)]) {
        guard let access = simulatedWebAccess, URLComponents(string: url)?.host?.lowercased() == SimulatedWebAccess.host else {
            return ([], [])
        }
        return ([access.connectTo], [("Authorization", "Bearer \(access.key)")])
    }

    public var offersAnyTool: Bool { search != nil || fetch }
}
