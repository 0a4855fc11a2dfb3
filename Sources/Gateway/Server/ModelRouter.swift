import Fusion
import GatewayCore
import Providers

/// Where a model slug goes: `provider/model` → the provider named `provider`, with `model`
/// forwarded upstream (it may itself contain '/', as OpenRouter's ids do).
public struct ModelRoute: Sendable {
    /// The slug as the client named it.
    public var slug: String
    public var upstreamModel: String
    let target: ModelRouter.Target
    /// Its price in the config's table (`prices:`), if any: a usage its upstream reported without
    /// a cost is costed at it (`Usage.costed(at:)`), as its spend is.
    public var price: ModelPrice?
    /// Where to send it, with the key read from the environment (never logged or returned).
    public var endpoint: ProviderEndpoint { target.endpoint }
    public var provider: any Provider { target.implementation }
    /// Whether it goes to the built-in simulated models.
    public var simulated: Bool { target.catalog?.isSimulated ?? false }
}

public struct ModelRouter: Sendable {
    public let providers: [String: GatewayConfig.Provider]
    public let defaultProvider: String?
    /// How names route (shared with the price book, so what is priced is what is called).
    public let naming: ModelNaming
    private let keys: [String: String]
    /// The config's prices, routed as names are (`PriceBook`).
    private let prices: PriceBook
    /// Per provider, what a route needs, resolved once: routing runs for every model of every
    /// request (five for a deliberation) before its first upstream call, and copying a
    /// provider's whole configuration each time cost more than the rest of it.
    private let targets: [String: Target]

    final class Target: Sendable {
        let catalog: (any ModelCatalog)?
        let models: [String]?
        /// The key's environment variable when it is named but unset: every route to it fails.
        let missingKeyVariable: String?
        let endpoint: ProviderEndpoint
        let implementation: any Provider

        init(_ provider: GatewayConfig.Provider, name: String, key: String?, headers: [String: String]) {
            catalog = provider.catalog
            models = provider.models
            missingKeyVariable = key == nil ? provider.apiKeyEnvironmentVariable : nil
            var endpoint = ProviderEndpoint(name: name, baseURL: provider.baseURL, apiKey: key, headers: headers,
                                            maxTokensField: provider.maxTokensField, reasoningField: provider.reasoningField)
            endpoint.asksForStreamUsage = provider.streamUsage
            self.endpoint = endpoint
            implementation = provider.implementation
        }
    }

    public init(config: GatewayConfig, environment: [String: String]) {
        providers = config.providers
        defaultProvider = config.defaultProvider
        naming = config.modelNaming
        var prices = config.prices
        prices.naming = naming  // looked up as names route (`GatewayConfig.pricedByRoute`)
        self.prices = prices
        var keys: [String: String] = [:]
        var headers: [String: [String: String]] = [:]
        var secretHeaderValues: [String] = []
        var missingHeaders: [(provider: String, variable: String)] = []
        for provider in providers.values {
            if let key = Self.trimmedKey(provider.apiKey) ?? Self.trimmedKey(provider.apiKeyEnvironmentVariable.flatMap { environment[$0] }) {
                keys[provider.name] = key
            }
            var sent = provider.headers
            for (header, variable) in provider.headerEnvironmentVariables {
                guard let value = Self.trimmedKey(environment[variable]) else {
                    missingHeaders.append((provider.name, variable))
                    continue
                }
                sent[header] = value
                secretHeaderValues.append(value)
            }
            headers[provider.name] = sent
        }
        self.keys = keys
        self.secretHeaderValues = secretHeaderValues
        providersMissingHeaders = missingHeaders.sorted { ($0.provider, $0.variable) < ($1.provider, $1.variable) }
        targets = Dictionary(uniqueKeysWithValues: providers.map { name, provider in
            (name, Target(provider, name: name, key: keys[name], headers: headers[name] ?? provider.headers))
        })
    }

    /// Secret header values (`headers_env`) sent upstream.
    private let secretHeaderValues: [String]
    /// Providers whose `headers_env` names a variable that is unset (reported at startup; the
    /// header is not sent).
    public let providersMissingHeaders: [(provider: String, variable: String)]

    /// White space around a key is no part of it (a file read with a trailing newline), and a
    /// blank one is no key: unset, not sent as `Bearer    ` (review 21 F6).
    static func trimmedKey(_ key: String?) -> String? {
        guard let key else { return nil }
        let kept = String(key.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
        return kept.isEmpty ? nil : kept
    }

    /// Every configured secret, for scrubbing text that reaches a client or a log.
    public var secrets: [String] { Array(keys.values) + secretHeaderValues }

    /// Providers whose key variable is named but unset (reported at startup).
    public var providersMissingKeys: [(provider: String, variable: String)] {
        providers.values.compactMap { provider in
            guard let variable = provider.apiKeyEnvironmentVariable, keys[provider.name] == nil else { return nil }
            return (provider.name, variable)
        }.sorted { $0.provider < $1.provider }
    }

    /// No provider's model name comes near it; a longer one is refused before it is echoed,
    /// recorded or logged anywhere.
    public static let maxModelNameBytes = 256

    public func route(_ model: String) throws(APIError) -> ModelRoute {
        guard model.utf8.count <= Self.maxModelNameBytes else {
            throw .invalidRequest("A model name is at most \(Self.maxModelNameBytes) bytes; this one is \(model.utf8.count).",
                                  param: "model", code: "invalid_value")
        }
        guard let (providerName, upstreamModel) = naming.split(model) else {
            throw .modelNotFound(model, detail: "model names have the form 'provider/model' (providers: \(providerList))")
        }
        guard let target = targets[providerName] else {
            throw .modelNotFound(model, detail: "no provider named '\(providerName)' is configured (providers: \(providerList))")
        }
        guard !upstreamModel.isEmpty else {
            throw .modelNotFound(model, detail: "the model name after '\(providerName)/' is empty")
        }
        if let catalog = target.catalog {
            try catalog.validate(upstreamModel)
        } else if let models = target.models, !models.contains(upstreamModel) {
            let list = models.map { "\(providerName)/\($0)" }.joined(separator: ", ")
            throw .modelNotFound(model, detail: "provider '\(providerName)' serves only: \(list)")
        }
        if target.missingKeyVariable != nil {
            // The variable's name is the operator's (the startup log names it), not the client's.
            throw APIError(status: 502, type: "upstream_error", code: "provider_key_missing",
                           message: "Provider '\(providerName)' has no API key configured on the gateway")
        }
        return ModelRoute(slug: model, upstreamModel: upstreamModel, target: target, price: prices.isEmpty ? nil : prices.price(of: model))
    }

    private var providerList: String {
        providers.keys.sorted().joined(separator: ", ")
    }
}
