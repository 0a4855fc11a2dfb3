import GatewayCore
import Providers

/// Where a model slug goes: `provider/model` → the provider named `provider`, with `model`
/// forwarded upstream (it may itself contain '/', as OpenRouter's ids do).
public struct ModelRoute: Sendable {
    /// The slug as the client named it.
    public var slug: String
    public var config: GatewayConfig.Provider
    public var upstreamModel: String
    /// Where to send it, with the key read from the environment (never logged or returned).
    public var endpoint: ProviderEndpoint
    public var provider: any Provider
}

public struct ModelRouter: Sendable {
    public let providers: [String: GatewayConfig.Provider]
    public let defaultProvider: String?
    private let keys: [String: String]

    public init(config: GatewayConfig, environment: [String: String]) {
        providers = config.providers
        defaultProvider = config.defaultProvider
        var keys: [String: String] = [:]
        for provider in providers.values {
            if let key = provider.apiKey, !key.isEmpty {
                keys[provider.name] = key
            } else if let variable = provider.apiKeyEnvironmentVariable, let key = environment[variable], !key.isEmpty {
                keys[provider.name] = key
            }
        }
        self.keys = keys
    }

    /// Every configured secret, for scrubbing text that reaches a client or a log.
    public var secrets: [String] { Array(keys.values) }

    /// Providers whose key variable is named but unset (reported at startup).
    public var providersMissingKeys: [(provider: String, variable: String)] {
        providers.values.compactMap { provider in
            guard let variable = provider.apiKeyEnvironmentVariable, keys[provider.name] == nil else { return nil }
            return (provider.name, variable)
        }.sorted { $0.provider < $1.provider }
    }

    public func route(_ model: String) throws(APIError) -> ModelRoute {
        let providerName: String
        let upstreamModel: String
        if let slash = model.firstIndex(of: "/"), providers[String(model[..<slash])] != nil || defaultProvider == nil {
            providerName = String(model[..<slash])
            upstreamModel = String(model[model.index(after: slash)...])
        } else if let defaultProvider {
            providerName = defaultProvider
            upstreamModel = model
        } else {
            throw .modelNotFound(model, detail: "model names have the form 'provider/model' (providers: \(providerList))")
        }
        guard let provider = providers[providerName] else {
            throw .modelNotFound(model, detail: "no provider named '\(providerName)' is configured (providers: \(providerList))")
        }
        guard !upstreamModel.isEmpty else {
            throw .modelNotFound(model, detail: "the model name after '\(providerName)/' is empty")
        }
        if let catalog = provider.catalog {
            try catalog.validate(upstreamModel)
        } else if let models = provider.models, !models.contains(upstreamModel) {
            let list = models.map { "\(providerName)/\($0)" }.joined(separator: ", ")
            throw .modelNotFound(model, detail: "provider '\(providerName)' serves only: \(list)")
        }
        if let variable = provider.apiKeyEnvironmentVariable, keys[providerName] == nil {
            throw APIError(status: 502, type: "upstream_error", code: "provider_key_missing",
                           message: "Provider '\(providerName)' has no API key: the gateway's environment variable \(variable) is not set")
        }
        let endpoint = ProviderEndpoint(name: providerName, baseURL: provider.baseURL, apiKey: keys[providerName],
                                        headers: provider.headers, maxTokensField: provider.maxTokensField)
        return ModelRoute(slug: model, config: provider, upstreamModel: upstreamModel, endpoint: endpoint,
                          provider: provider.implementation)
    }

    private var providerList: String {
        providers.keys.sorted().joined(separator: ", ")
    }
}
