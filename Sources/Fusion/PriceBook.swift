import GatewayCore

/// The config's prices (`prices:`), looked up by where a model name is routed, not by how a
/// client spelled it: with a `default_provider`, `normal` and `sim/normal` are one model and one
/// price (review 48 limits #1: a name without its provider matched no price, so its hold was
/// nothing and, from an upstream that reports no cost, so was its spend).
///
/// The table's keys are routed too, once (review 50 #1): a key written the way clients call a
/// model (`llama-3-70b`, OpenRouter's `anthropic/*` under `default_provider: openrouter`) prices
/// that model however a client spells it, and the most specific wildcard wins
/// (`openrouter/anthropic/*` before `openrouter/*`).
public struct PriceBook: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// By model (`provider/model`, `provider/*`, `*`), in US dollars per million tokens, as written.
    public var entries: [String: ModelPrice] { didSet { route() } }
    /// How model names route (`ModelNaming`); none: every name is taken as written.
    public var naming: ModelNaming? { didSet { route() } }
    /// `entries` with their keys routed: what lookups read.
    private var routed: [String: ModelPrice] = [:]

    public init(_ entries: [String: ModelPrice] = [:], naming: ModelNaming? = nil) {
        self.entries = entries
        self.naming = naming
        route()
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

    private mutating func route() {
        var routed: [String: ModelPrice] = [:]
        for (key, price) in orderedForRouting() {
            let name = Self.routedKey(key, naming)
            if routed[name] == nil { routed[name] = price }
        }
        self.routed = routed
    }

    /// Keys already in routed form first, so one written both ways keeps its routed spelling's price.
    private func orderedForRouting() -> [(key: String, value: ModelPrice)] {
        entries.sorted { ($0.key == Self.routedKey($0.key, naming) ? 0 : 1, $0.key) < ($1.key == Self.routedKey($1.key, naming) ? 0 : 1, $1.key) }
            .map { (key: $0.key, value: $0.value) }
    }

    /// Keys that name one model (or wildcard) as it routes, with a price that differs from the
    /// kept key's: the table's author meant one of them, and only `kept` applies (the server
    /// warns at startup; review 51 #6). Equal prices written twice are no conflict.
    public var conflicts: [(ignored: String, kept: String)] {
        var first: [String: (key: String, price: ModelPrice)] = [:]
        var found: [(ignored: String, kept: String)] = []
        for (key, price) in orderedForRouting() {
            let name = Self.routedKey(key, naming)
            if let kept = first[name] {
                if kept.price != price { found.append((ignored: key, kept: kept.key)) }
            } else {
                first[name] = (key, price)
            }
        }
        return found
    }

    /// A key as its models route: `*` stays; `prefix/*` has its prefix routed as a name's first
    /// segments are; any other key is a model name.
    static func routedKey(_ key: String, _ naming: ModelNaming?) -> String {
        guard let naming, key != "*" else { return key }
        if key.hasSuffix("/*") {
            let prefix = String(key.dropLast(2))
            let first = prefix.split(separator: "/", maxSplits: 1).first.map(String.init) ?? prefix
            return naming.providers.contains(first) || naming.defaultProvider == nil ? key : "\(naming.defaultProvider!)/\(prefix)/*"
        }
        return naming.routed(key)
    }

    /// The price of `model` as it routes: its own entry, its bare slug's (without `:options`),
    /// the longest `prefix/*` over it, else `*`. Budgets, holds and the estimate all price with it.
    public func price(of model: String) -> ModelPrice? {
        let name = naming?.routed(model) ?? model
        if let price = routed[name] { return price }
        // A slug with `:options` (`sim/expert-1:pace_ms=5`) costs what its bare slug does.
        var bare = Substring(name)
        if let colon = name.utf8.firstIndex(of: UInt8(ascii: ":")) {
            bare = name[..<colon]
            if let price = routed[String(bare)] { return price }
        }
        while let slash = bare.utf8.lastIndex(of: UInt8(ascii: "/")) {
            bare = bare[..<slash]
            if let price = routed[bare + "/*"] { return price }
        }
        return routed["*"]
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
        // By bytes (a name's `/` is a byte of it): a `Character` search cost thousands of
        // instructions per name, several names a request.
        if let slash = model.utf8.firstIndex(of: UInt8(ascii: "/")), providers.contains(String(model[..<slash])) || defaultProvider == nil {
            return (String(model[..<slash]), String(model[model.utf8.index(after: slash)...]))
        }
        guard let defaultProvider else { return nil }
        return (defaultProvider, model)
    }

    /// `provider/model` as the name routes (the name itself when it routes nowhere).
    public func routed(_ model: String) -> String {
        // As `split`, without taking the name apart and joining it again when it names its provider.
        if let slash = model.utf8.firstIndex(of: UInt8(ascii: "/")), defaultProvider == nil || providers.contains(String(model[..<slash])) { return model }
        guard let defaultProvider else { return model }
        return defaultProvider + "/" + model
    }
}
