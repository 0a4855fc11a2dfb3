import GatewayCore

/// The config's prices (`prices:`), looked up by where a model name is routed, not by how a
/// client spelled it: with a `default_provider`, `normal` and `sim/normal` are one model and one
/// price (review 48 limits #1: a name without its provider matched no price, so its hold was
/// nothing and, from an upstream that reports no cost, so was its spend).
public struct PriceBook: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// By model (`provider/model`, `provider/*`, `*`), in US dollars per million tokens.
    public var entries: [String: ModelPrice]
    /// How model names route (`ModelNaming`); none: every name is taken as written.
    public var naming: ModelNaming?

    public init(_ entries: [String: ModelPrice] = [:], naming: ModelNaming? = nil) {
        self.entries = entries
        self.naming = naming
    }

    public init(dictionaryLiteral elements: (String, ModelPrice)...) {
        self.init(Dictionary(elements, uniquingKeysWith: { $1 }))
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    public var keys: Dictionary<String, ModelPrice>.Keys { entries.keys }

    /// The entry written under `key` (no routing, no fallback: see `price(of:)`).
    public subscript(key: String) -> ModelPrice? {
        get { entries[key] }
        set { entries[key] = newValue }
    }

    /// The price of `model` as it routes: its own entry, its bare slug's (without `:options`),
    /// its provider's `provider/*`, else `*`. Budgets, holds and the estimate all price with it.
    /// Each level is tried for the name as it routes, then as written (a table keyed the way
    /// clients call the models, `llama-3-70b` or OpenRouter's `anthropic/*` under a default
    /// provider, keeps matching: review 49 #2), before `*`.
    public func price(of model: String) -> ModelPrice? {
        let routed = naming?.routed(model) ?? model
        let names = routed == model ? [model] : [routed, model]
        for name in names { if let price = entries[name] { return price } }
        // A slug with `:options` (`sim/expert-1:pace_ms=5`) costs what its bare slug does.
        for name in names {
            if let colon = name.firstIndex(of: ":"), let price = entries[String(name[..<colon])] { return price }
        }
        for name in names {
            if let slash = name.firstIndex(of: "/"), let price = entries[name[..<slash] + "/*"] { return price }
        }
        return entries["*"]
    }
}

/// How a model name names its provider: `provider/model` when the first segment is a configured
/// provider (or no default is set), else the default provider's `model`. The router and the
/// price book share it, so what is priced is what is called.
public struct ModelNaming: Sendable, Equatable {
    public var providers: Set<String>
    public var defaultProvider: String?

    public init(providers: Set<String>, defaultProvider: String?) {
        self.providers = providers
        self.defaultProvider = defaultProvider
    }

    /// The provider's name and the model's name there; nil when a name without a configured
    /// provider has no default to go to.
    public func split(_ model: String) -> (provider: String, model: String)? {
        if let slash = model.firstIndex(of: "/"), providers.contains(String(model[..<slash])) || defaultProvider == nil {
            return (String(model[..<slash]), String(model[model.index(after: slash)...]))
        }
        guard let defaultProvider else { return nil }
        return (defaultProvider, model)
    }

    /// `provider/model` as the name routes (the name itself when it routes nowhere).
    public func routed(_ model: String) -> String {
        guard let (provider, name) = split(model) else { return model }
        return provider + "/" + name
    }
}
