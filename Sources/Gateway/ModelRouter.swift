import GatewayCore
import MockUpstream

/// Where a model slug goes: `provider/model` → the provider named `provider`, with `model`
/// forwarded upstream (it may itself contain '/', as OpenRouter's ids do).
public struct ModelRoute: Sendable, Equatable {
    public var provider: GatewayConfig.Provider
    public var upstreamModel: String
    /// The key read from the provider's environment variable; never logged or returned.
    public var apiKey: String?
}

public struct ModelRouter: Sendable {
    public let providers: [String: GatewayConfig.Provider]
    public let defaultProvider: String?
    private let keys: [String: String]

    public init(config: GatewayConfig, simulatedBaseURL: String?, environment: [String: String]) {
        var providers = config.providers
        if let simulatedBaseURL {
            providers[GatewayConfig.simulatedProviderName] = GatewayConfig.Provider(
                name: GatewayConfig.simulatedProviderName, baseURL: simulatedBaseURL,
                models: MockScenario.modelNames, simulated: true)
        }
        self.providers = providers
        defaultProvider = config.defaultProvider
        var keys: [String: String] = [:]
        for provider in providers.values {
            if let variable = provider.apiKeyEnvironmentVariable, let key = environment[variable], !key.isEmpty {
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
        if let models = provider.models {
            var known = models.contains(upstreamModel)
            if provider.simulated {
                // Options are checked here, before any work, as the simulator would check them.
                do {
                    _ = try MockScenario.parse(model: upstreamModel)
                    known = true
                } catch .unknownScenario {
                    known = false
                } catch {
                    throw .invalidModelOption(model, error)
                }
            }
            guard known else {
                let list = models.map { "\(providerName)/\($0)" }.joined(separator: ", ")
                throw .modelNotFound(model, detail: "provider '\(providerName)' serves only: \(list)")
            }
        }
        if let variable = provider.apiKeyEnvironmentVariable, keys[providerName] == nil {
            throw APIError(status: 502, type: "upstream_error", code: "provider_key_missing",
                           message: "Provider '\(providerName)' has no API key: the gateway's environment variable \(variable) is not set")
        }
        return ModelRoute(provider: provider, upstreamModel: upstreamModel, apiKey: keys[providerName])
    }

    private var providerList: String {
        providers.keys.sorted().joined(separator: ", ")
    }
}
