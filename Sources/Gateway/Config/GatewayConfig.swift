import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Providers
import Web
import Yams

/// The gateway's configuration: a YAML file (see `Fixtures/config/example.yaml`, the commented
/// reference) or, with none, `GatewayConfig.embeddedDefault`.
///
/// Unknown keys are errors, not silently ignored typos. Provider keys never live here: a
/// provider names the environment variable holding its key (`api_key_env`).
public struct GatewayConfig: Sendable {
    public struct Server: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        public var limits = HTTPServerLimits()
        /// How long in-flight streams may run after SIGINT/SIGTERM before they are cancelled.
        public var shutdownGraceMilliseconds: UInt64 = 10_000
        /// After SIGTERM, how long `/health` answers 503 (draining) while requests are still
        /// served, before the listener closes: the time a load balancer's health checks need to
        /// stop sending. 0 closes the listener at once.
        public var drainDelayMilliseconds: UInt64 = 0
        /// A stream whose client takes no bytes for this long is dropped (its upstream cancelled).
        public var slowClientTimeoutMilliseconds: UInt64 = 30_000
        /// Request bodies still being received, held at once across all connections and loops:
        /// one that would pass it is a 503 (`HTTPServer.heldBodies`).
        public var maxReceivingBodyBytes = 256 << 20
        /// Keys clients must present (`Authorization: Bearer …`); none means no authentication.
        public var apiKeys: [String] = []
        /// An environment variable holding more keys, comma-separated.
        public var apiKeysEnvironmentVariable: String?
        /// Origins whose pages may call the gateway from a browser (CORS); `*` allows any.
        /// None by default.
        public var corsAllowOrigins: [String] = []
        /// `Host` names the gateway answers to (DNS rebinding): bound to loopback, loopback names
        /// and these; bound elsewhere, any, or only these when given.
        public var allowedHosts: [String] = []
        /// Gateways a request may already have passed through (`x-fusion-hops`); beyond it: 508.
        public var maxHops = 4
        /// Log lines for people (`text`) or one JSON object per line (`json`); `--log-format` overrides it.
        public var logFormat = GatewayLogHandler.Format.text
        /// Whether a request's log line carries the client's last message (off: prompts are the
        /// clients' data, not the operator's).
        public var logPrompts = false
    }

    public struct Upstream: Sendable {
        public var connectTimeoutMilliseconds = 10_000
        /// An upstream that sends no byte for this long (before or during its stream) is failed.
        public var idleTimeoutMilliseconds: UInt64 = 120_000
        /// While a stream waits for its first token, the client gets a `: keep-alive` comment
        /// this often (which also commits the response to HTTP 200).
        public var keepAliveIntervalMilliseconds: UInt64 = 5_000
        /// Bound on one upstream SSE event.
        public var maxEventBytes = 1 << 20
        /// Bound on one upstream response, streamed or whole (a stream that never ends is cut).
        public var maxResponseBytes = 256 << 20
        /// Bound on one upstream response answering a Responses client (`upstream.max_assembled_bytes`):
        /// its stream keeps the whole text to repeat in its closing events (`output_text.done`,
        /// `content_part.done`, `output_item.done`, `response.completed`), built in one loop turn,
        /// so its memory and that turn grow with the answer, unlike a relayed stream's.
        public var maxAssembledBytes = 16 << 20
        /// The setting `maxResponseBytes` came from, for the error that cites it.
        public var responseLimitSetting = "upstream.max_response_bytes"
        /// Bound on the whole (non-streamed) upstream answers held at once, across requests:
        /// each is collected before it is converted (`HeldBytes`).
        public var maxCollectedBytes = 512 << 20
        /// Retries of 429/5xx and refused connections before the first token (see RetryPolicy).
        public var retry = RetryPolicy()

        /// These settings for upstream calls answering `api`: a Responses client's answer is
        /// bounded by `maxAssembledBytes` too.
        func forClient(_ api: ClientAPI) -> Upstream {
            guard api == .responses, maxAssembledBytes < maxResponseBytes else { return self }
            var bounded = self
            bounded.maxResponseBytes = maxAssembledBytes
            bounded.responseLimitSetting = "upstream.max_assembled_bytes"
            return bounded
        }
    }

    public struct Provider: Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable {
            case openai, anthropic, gemini

            /// Where the vendor's API is when `base_url` is omitted (an OpenAI-compatible server
            /// has no such place: its `base_url` is required).
            public var defaultBaseURL: String? {
                switch self {
                case .openai: nil
                case .anthropic: "https://api.anthropic.com/v1"
                case .gemini: "https://generativelanguage.googleapis.com/v1beta"
                }
            }
        }
        public var name: String
        public var kind: Kind = .openai
        /// Base URL including the version path, e.g. `https://openrouter.ai/api/v1`.
        public var baseURL: String
        /// Name of the environment variable holding the API key.
        public var apiKeyEnvironmentVariable: String?
        /// A key given in code, never from a config file (the simulator's per-process secret).
        public var apiKey: String?
        /// Extra headers sent upstream (e.g. OpenRouter's `HTTP-Referer`, `X-Title`).
        public var headers: [String: String] = [:]
        /// Extra headers whose values are secrets, by the environment variable holding each
        /// (`headers_env`: Azure OpenAI's `api-key`, a gateway's own credential header); read at
        /// startup and redacted like API keys.
        public var headerEnvironmentVariables: [String: String] = [:]
        /// If set, the only models routed (and listed by `/v1/models`).
        public var models: [String]?
        /// Which request field carries the output limit (servers honour one or the other); by
        /// default `max_completion_tokens` for OpenAI's own API, `max_tokens` elsewhere.
        public var maxTokensField = ProviderEndpoint.MaxTokensField.maxTokens
        /// How reasoning is asked for (kind openai); nil: by the base URL (OpenRouter's object
        /// for OpenRouter, `reasoning_effort` elsewhere).
        public var reasoningField: ProviderEndpoint.ReasoningField?
        /// `stream_usage` (kind openai): ask for usage on every stream (`ProviderEndpoint.asksForStreamUsage`).
        public var streamUsage = true
        /// Decides which model names (with their options) this provider serves, where a fixed
        /// list cannot: the simulated models.
        public var catalog: (any ModelCatalog)?

        public var simulated: Bool { catalog?.isSimulated ?? false }

        public init(name: String, kind: Kind = .openai, baseURL: String, apiKeyEnvironmentVariable: String? = nil,
                    headers: [String: String] = [:], models: [String]? = nil, catalog: (any ModelCatalog)? = nil) {
            self.name = name
            self.kind = kind
            self.baseURL = baseURL
            self.apiKeyEnvironmentVariable = apiKeyEnvironmentVariable
            self.headers = headers
            self.models = models
            self.catalog = catalog
        }

        public static func == (lhs: Provider, rhs: Provider) -> Bool {
            lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.baseURL == rhs.baseURL
                && lhs.apiKeyEnvironmentVariable == rhs.apiKeyEnvironmentVariable && lhs.apiKey == rhs.apiKey
                && lhs.headers == rhs.headers && lhs.models == rhs.models && lhs.maxTokensField == rhs.maxTokensField
                && lhs.reasoningField == rhs.reasoningField && lhs.streamUsage == rhs.streamUsage
                && lhs.catalog?.models == rhs.catalog?.models
        }

        /// The implementation of this provider's API.
        public var implementation: any Providers.Provider {
            switch kind {
            case .openai: OpenAICompatibleProvider()
            case .anthropic: AnthropicProvider()
            case .gemini: GeminiProvider()
            }
        }
    }

    public var server = Server()
    public var upstream = Upstream()
    /// Serve the built-in `sim/` models (backed by an in-process mock upstream).
    public var simulatedModels = true
    /// Provider for model names without a `provider/` prefix.
    public var defaultProvider: String?
    public var providers: [String: Provider] = [:]
    /// Fusion (panel, judge, presets); nil when neither configured nor simulated.
    public var fusion: FusionSettings? = .simulated
    /// Web tools for Fusion's panel and judge; nil (no `web:` section): none offered.
    public var web: WebSettings?
    /// Where replicas share records, usage and limits (`store:`); in process by default.
    public var store = StoreSettings()
    /// Named gateway keys with their limits (`keys:`).
    public var keys: [String: NamedKey] = [:]
    /// Model prices (`prices:`, the format of `fusion.prices`): what spend budgets charge. One
    /// table serves both: either one, given alone, is also the other (see `parse`).
    public var prices: PriceBook = [:]

    /// How model names route to providers (`default_provider` included).
    public var modelNaming: ModelNaming {
        ModelNaming(providers: Set(providers.keys), defaultProvider: defaultProvider)
    }

    /// The config with its price tables looking names up as they route: set once the config is
    /// final (the server does, as it starts), since a name's provider depends on the whole of it.
    public func pricedByRoute() -> GatewayConfig {
        var config = self
        config.prices.naming = modelNaming
        config.fusion?.prices.naming = modelNaming
        return config
    }

    /// The reserved provider name of the built-in simulated models.
    public static let simulatedProviderName = "sim"
    /// The simulated models behind Anthropic's and Gemini's APIs.
    public static let simulatedAnthropicProviderName = "sim-anthropic"
    public static let simulatedGeminiProviderName = "sim-gemini"
    static let simulatedProviderNames: Set<String> = [simulatedProviderName, simulatedAnthropicProviderName, simulatedGeminiProviderName]

    public init() {}

    /// No file: simulated models and the simulated web only, no keys needed.
    public static var embeddedDefault: GatewayConfig {
        var config = GatewayConfig()
        config.web = .simulatedWeb
        // One price table for budgets and the estimate, as a file's is (`parse`).
        if config.prices.isEmpty, let fusion = config.fusion { config.prices = fusion.prices }
        return config
    }

    /// Every price names a model that can route: a typo left its model unpriced without a word,
    /// and a key's budget then charged nothing for it (review 62D #4). `provider/*` needs its
    /// provider; `provider/model` a model of its allow-list (`models:`) when it has one.
    static func checkPriceKeys(_ keys: some Collection<String>, in config: GatewayConfig, path: String) throws {
        let naming = config.modelNaming
        let simulated = config.simulatedModels ? simulatedProviderNames : []
        for key in keys.sorted() where key != "*" {
            guard let (provider, model) = naming.split(key) else {
                throw ConfigError("\(path).\(key) names no provider: write provider/model (or set default_provider)")
            }
            guard config.providers[provider] != nil || simulated.contains(provider) else {
                throw ConfigError("\(path).\(key): no provider '\(provider)' is configured, so this price would apply to nothing")
            }
            // As prices are looked up: the whole name (an Ollama tag `llama3:8b`, OpenRouter's
            // `:free`), else the name before its options (review 63 #1).
            let bare = model.split(separator: ":", maxSplits: 1).first.map(String.init) ?? model
            if let served = config.providers[provider]?.models, !model.hasSuffix("*"), !served.contains(model), !served.contains(bare) {
                throw ConfigError("\(path).\(key): provider '\(provider)' serves only \(served.joined(separator: ", ")), so this price would apply to nothing")
            }
        }
    }

    /// `server.api_keys` as written, trimmed (header values lose their surrounding white space,
    /// so a padded key could never match). An empty entry or a `${…}` left unexpanded is what a
    /// templated config gives when its variable is unset: refused, not taken as a key anyone can
    /// present (review 52B #1: an empty key let in every request with an empty `x-api-key`).
    static func parseAPIKeys(_ keys: [String], path: String) throws -> [String] {
        try keys.enumerated().map { index, key in
            let trimmed = key.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else {
                throw ConfigError("\(path)[\(index)] is empty: refusing to start with a key anyone could present (an unset template variable?)")
            }
            guard !trimmed.contains("${") else {
                throw ConfigError("\(path)[\(index)] holds an unexpanded '${…}': give the key itself, or name its variable in server.api_keys_env")
            }
            return trimmed
        }
    }

    /// The gateway keys in force: the config's, the environment variable's and the named keys'
    /// (`keys:`). Fails closed: a named variable that is unset or holds no key is an error, never
    /// an open gateway.
    public func gatewayKeys(environment: [String: String]) throws -> [String] {
        try unnamedKeys(environment: environment) + (try namedKeyValues(environment: environment).map(\.1))
    }

    /// `server.api_keys` and the keys `server.api_keys_env` names: the keys without a name.
    public func unnamedKeys(environment: [String: String]) throws -> [String] {
        var keys = server.apiKeys
        if let variable = server.apiKeysEnvironmentVariable {
            let named = (environment[variable] ?? "").split(separator: ",")
                .map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            guard !named.isEmpty else {
                throw ConfigError("server.api_keys_env names \(variable), which is unset or empty: refusing to start without the keys it should hold")
            }
            keys += named
        }
        return keys
    }

    public static func load(path: String) throws -> GatewayConfig {
        let text = try ConfigFile.read(path)
        return try parse(yaml: text, source: path)
    }

    public static func parse(yaml: String, source: String = "config") throws -> GatewayConfig {
        if let line = YAMLAliases.firstAliasLine(in: yaml) {
            throw ConfigError("\(source): line \(line): an alias (`*name`): the config does not take anchors and aliases; write the value out")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError.invalidYAML(error, source: source)
        }
        var config = GatewayConfig()
        config.simulatedModels = false  // a config file opts in to simulated models explicitly
        // An empty file (or one of comments only) is an empty mapping: every default, as a file
        // that sets only what it must.
        guard let root = node else { return try parse(yaml: "{}", source: source) }
        let top = try ConfigNode(root, path: source, isRoot: true)
        try top.allowOnly(["server", "upstream", "simulated_models", "default_provider", "providers", "fusion", "web", "store", "keys", "prices"])
        if let server = try top.child("server") {
            try server.allowOnly(["host", "port", "max_header_bytes", "max_body_bytes", "max_receiving_body_bytes", "header_timeout_ms",
                                  "idle_timeout_ms", "shutdown_grace_ms", "api_keys", "api_keys_env", "slow_client_timeout_ms",
                                  "cors", "allowed_hosts", "max_connections", "max_header_count", "max_hops", "log_format",
                                  "log_prompts", "drain_delay_ms", "body_timeout_ms", "min_body_bytes_per_second",
                                  "min_drain_bytes_per_second"])
            if let cors = try server.child("cors") {
                try cors.allowOnly(["allow_origins"])
                config.server.corsAllowOrigins = try cors.stringList("allow_origins") ?? []
                for (index, origin) in config.server.corsAllowOrigins.enumerated() {
                    if let problem = RequestPolicy.originProblem(origin) { throw ConfigError("\(cors.path).allow_origins[\(index)]: \(problem)") }
                }
            }
            config.server.allowedHosts = try server.stringList("allowed_hosts") ?? []
            for (index, host) in config.server.allowedHosts.enumerated() {
                if let problem = RequestPolicy.hostProblem(host) { throw ConfigError("\(server.path).allowed_hosts[\(index)]: \(problem)") }
            }
            config.server.limits.maxConnections = try server.int("max_connections", in: 1...1_000_000) ?? config.server.limits.maxConnections
            config.server.limits.maxHeaderCount = try server.int("max_header_count", in: 8...10_000) ?? config.server.limits.maxHeaderCount
            config.server.maxHops = try server.int("max_hops", in: 1...64) ?? config.server.maxHops
            if let format = try server.string("log_format") {
                guard let parsed = GatewayLogHandler.Format(rawValue: format) else {
                    throw ConfigError("\(server.path).log_format must be one of: \(GatewayLogHandler.Format.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                config.server.logFormat = parsed
            }
            config.server.logPrompts = try server.bool("log_prompts") ?? false
            config.server.slowClientTimeoutMilliseconds = try server.milliseconds("slow_client_timeout_ms") ?? config.server.slowClientTimeoutMilliseconds
            config.server.apiKeys = try Self.parseAPIKeys(server.stringList("api_keys", textOnly: true) ?? [], path: "\(server.path).api_keys")
            config.server.apiKeysEnvironmentVariable = try server.environmentVariable("api_keys_env")
            if let host = try server.string("host") {
                // An address to bind: said here, as a config error naming the key, not at bind time
                // (review 121 #7: `localhost` exited 1 with a message naming no key).
                // No NUL: the C parser would read only what comes before it.
                guard !host.utf8.contains(0), AddressPolicy.parseAddress(host) != nil else {
                    throw ConfigError("\(server.path).host must be an IP address to listen on (127.0.0.1, ::1, 0.0.0.0 or ::), not a host name")
                }
                config.server.host = host
            }
            config.server.port = try server.int("port", in: 0...65535) ?? config.server.port
            config.server.limits.maxHeaderBytes = try server.int("max_header_bytes", in: 1024...HTTPServerLimits.maxHeaderBytesCeiling) ?? config.server.limits.maxHeaderBytes
            config.server.limits.maxBodyBytes = try server.int("max_body_bytes", in: 1...(1 << 30)) ?? config.server.limits.maxBodyBytes
            // At least one whole body: a body the bound could never hold would be a 503 "retry
            // shortly" for ever (review 67 #3). Raised with `max_body_bytes` unless given.
            if let receiving = try server.int("max_receiving_body_bytes", in: (1 << 20)...(64 << 30)) {
                guard receiving >= config.server.limits.maxBodyBytes else {
                    throw ConfigError("\(server.path).max_receiving_body_bytes (\(receiving)) is below max_body_bytes (\(config.server.limits.maxBodyBytes)): a body between the two could never be received")
                }
                config.server.maxReceivingBodyBytes = receiving
            } else {
                config.server.maxReceivingBodyBytes = max(config.server.maxReceivingBodyBytes, config.server.limits.maxBodyBytes)
            }
            config.server.limits.headerTimeoutMilliseconds = try server.milliseconds("header_timeout_ms") ?? config.server.limits.headerTimeoutMilliseconds
            config.server.limits.idleTimeoutMilliseconds = try server.milliseconds("idle_timeout_ms") ?? config.server.limits.idleTimeoutMilliseconds
            config.server.limits.bodyTimeoutMilliseconds = try server.milliseconds("body_timeout_ms") ?? config.server.limits.bodyTimeoutMilliseconds
            config.server.limits.minBodyBytesPerSecond = try server.int("min_body_bytes_per_second", in: 1...(1 << 30)) ?? config.server.limits.minBodyBytesPerSecond
            config.server.limits.minDrainBytesPerSecond = try server.int("min_drain_bytes_per_second", in: 1...(1 << 30)) ?? config.server.limits.minDrainBytesPerSecond
            config.server.shutdownGraceMilliseconds = try server.milliseconds("shutdown_grace_ms") ?? config.server.shutdownGraceMilliseconds
            config.server.drainDelayMilliseconds = try server.int("drain_delay_ms", in: 0...600_000).map(UInt64.init) ?? config.server.drainDelayMilliseconds
        }
        if let upstream = try top.child("upstream") {
            try upstream.allowOnly(["connect_timeout_ms", "idle_timeout_ms", "keepalive_interval_ms", "max_event_bytes",
                                    "max_response_bytes", "max_assembled_bytes", "max_collected_bytes", "max_retries", "retry_base_delay_ms", "max_retry_delay_ms"])
            config.upstream.maxResponseBytes = try upstream.int("max_response_bytes", in: (64 << 10)...(16 << 30)) ?? config.upstream.maxResponseBytes
            config.upstream.maxAssembledBytes = try upstream.int("max_assembled_bytes", in: (64 << 10)...(16 << 30)) ?? config.upstream.maxAssembledBytes
            config.upstream.maxCollectedBytes = try upstream.int("max_collected_bytes", in: (64 << 10)...(64 << 30)) ?? config.upstream.maxCollectedBytes
            config.upstream.retry.maxRetries = try upstream.int("max_retries", in: 0...10) ?? config.upstream.retry.maxRetries
            config.upstream.retry.baseDelayMilliseconds = try upstream.milliseconds("retry_base_delay_ms") ?? config.upstream.retry.baseDelayMilliseconds
            config.upstream.retry.maxDelayMilliseconds = try upstream.milliseconds("max_retry_delay_ms") ?? config.upstream.retry.maxDelayMilliseconds
            config.upstream.connectTimeoutMilliseconds = try upstream.int("connect_timeout_ms", in: 1...600_000) ?? config.upstream.connectTimeoutMilliseconds
            config.upstream.idleTimeoutMilliseconds = try upstream.milliseconds("idle_timeout_ms") ?? config.upstream.idleTimeoutMilliseconds
            config.upstream.keepAliveIntervalMilliseconds = try upstream.milliseconds("keepalive_interval_ms") ?? config.upstream.keepAliveIntervalMilliseconds
            config.upstream.maxEventBytes = try upstream.int("max_event_bytes", in: 1024...(64 << 20)) ?? config.upstream.maxEventBytes
        }
        config.simulatedModels = try top.bool("simulated_models") ?? false
        config.defaultProvider = try top.string("default_provider")
        if let providers = try top.child("providers") {
            for (index, (name, provider)) in try providers.members().enumerated() {
                config.providers[name] = try parseProvider(name, provider, index: index)
            }
        }
        var fusionPricesGiven = false
        if let fusion = try top.child("fusion") {
            fusionPricesGiven = try fusion.child("prices") != nil
            config.fusion = try parseFusion(fusion, base: config.simulatedModels ? .simulated : nil)
        } else {
            config.fusion = config.simulatedModels ? .simulated : nil
        }
        if let web = try top.child("web") {
            config.web = try parseWeb(web)
            if config.web?.simulated == true && !config.simulatedModels {
                throw ConfigError("\(web.path).simulated needs simulated_models: true (the simulated web is served with the sim/ models)")
            }
        }
        if let store = try top.child("store") { config.store = try parseStore(store) }
        if let keys = try top.child("keys") { config.keys = try parseKeys(keys) }
        if let prices = try top.child("prices") { config.prices = PriceBook(try parsePrices(prices)) }
        // One price table for budgets and the deliberation's cost estimate: given in one place
        // only, it serves both; the simulated models' own prices (not given, but there) join a
        // table given at the top (review 22 F10: they shadowed it in the estimate).
        if config.prices.isEmpty, let fusion = config.fusion {
            config.prices = fusion.prices
        } else if let fusion = config.fusion, !fusionPricesGiven {
            config.prices.entries = fusion.prices.entries.merging(config.prices.entries) { $1 }
            config.fusion?.prices = config.prices
        }
        if let prices = try top.child("prices") { try checkPriceKeys(config.prices.keys, in: config, path: prices.path) }
        if let fusion = try top.child("fusion"), let prices = try fusion.child("prices"), let given = config.fusion?.prices.keys {
            try checkPriceKeys(given, in: config, path: prices.path)
        }
        if let name = config.defaultProvider, config.providers[name] == nil, name != simulatedProviderName || !config.simulatedModels {
            throw ConfigError("\(source): default_provider '\(name)' is not a configured provider"
                              + (name == simulatedProviderName ? " (the simulated models are off: set simulated_models: true)" : ""))
        }
        return config
    }
}

extension GatewayConfig {
    static func parseWeb(_ node: ConfigNode) throws -> WebSettings {
        try node.allowOnly(["panel", "judge", "max_calls_per_turn", "search", "fetch", "simulated"])
        var web = WebSettings()
        web.simulated = try node.bool("simulated") ?? false
        if try web.simulated && node.child("search") != nil {
            throw ConfigError("\(node.path): 'simulated' searches the simulated web: it excludes 'search'")
        }
        web.panel = try node.bool("panel") ?? web.panel
        web.judge = try node.bool("judge") ?? web.judge
        web.maxCallsPerTurn = try node.int("max_calls_per_turn", in: 1...16) ?? web.maxCallsPerTurn
        if let search = try node.child("search") {
            try search.allowOnly(["backend", "url", "api_key_env", "max_results", "timeout_ms"],
                                 hint: "API keys never go in the config: set api_key_env to the name of an environment variable")
            let name = try search.string("backend") ?? SearchBackend.Kind.searxng.rawValue
            guard let kind = SearchBackend.Kind(rawValue: name) else {
                throw ConfigError("\(search.path).backend: unknown search backend '\(name)' (supported: \(SearchBackend.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let url = try search.string("url")
            if let url { try ConfigError.checkBaseURL(url, path: "\(search.path).url") }
            if kind == .searxng && url == nil {
                throw ConfigError("\(search.path).url is required for searxng (the instance's base URL, e.g. http://127.0.0.1:8888)")
            }
            web.searchAPIKeyEnvironmentVariable = try search.environmentVariable("api_key_env")
            if kind != .searxng && web.searchAPIKeyEnvironmentVariable == nil {
                throw ConfigError("\(search.path).api_key_env is required for \(kind.rawValue) (the environment variable holding its key)")
            }
            web.search = SearchBackend(kind: kind, baseURL: url)
            web.maxResults = try search.int("max_results", in: 1...20) ?? web.maxResults
            web.searchTimeoutMilliseconds = try search.milliseconds("timeout_ms") ?? web.searchTimeoutMilliseconds
        }
        if let fetch = try node.child("fetch") {
            try fetch.allowOnly(["enabled", "timeout_ms", "max_bytes", "max_characters", "max_redirects", "allow"])
            web.fetch = try fetch.bool("enabled") ?? web.fetch
            web.fetchTimeoutMilliseconds = try fetch.milliseconds("timeout_ms") ?? web.fetchTimeoutMilliseconds
            web.maxFetchBytes = try fetch.int("max_bytes", in: 1024...(64 << 20)) ?? web.maxFetchBytes
            web.maxPageCharacters = try fetch.int("max_characters", in: 100...1_000_000) ?? web.maxPageCharacters
            web.maxRedirects = try fetch.int("max_redirects", in: 0...20) ?? web.maxRedirects
            for entry in try fetch.stringList("allow") ?? [] {
                guard let rule = AddressRule(entry) else {
                    throw ConfigError("\(fetch.path).allow: '\(entry)' is not an address or network (e.g. 10.0.0.0/8, 127.0.0.1:8443, [::1]:8080)")
                }
                web.addressPolicy.allow.append(rule)
            }
        }
        guard web.offersAnyTool || web.simulated else {
            throw ConfigError("\(node.path): no tool left (no search backend and fetch disabled): remove the section instead")
        }
        return web
    }
}

