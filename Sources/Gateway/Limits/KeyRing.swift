import GatewayCore
import HTTPServer

/// Who a request is, by the gateway key it presented: a named key (`keys.<name>`, with its
/// limits) or an unnamed one (`server.api_keys`), known by a fingerprint. Records, usage counters
/// and limits are filed under `id`, never under the key itself.
struct KeyIdentity: Sendable, Equatable {
    /// `<name>` for a named key, `sha256:<16 hex>` otherwise (safe in Redis key names and logs):
    /// what limits and usage counters are filed under.
    let id: String
    /// The key's name, for named keys.
    let name: String?
    let limits: KeyLimits
    /// `sha256:` and the key's whole SHA-256 in hex: who owns the records it makes (the same on
    /// every replica, and no way back to the key).
    let fingerprint: String

    init(id: String, name: String?, limits: KeyLimits, fingerprint: String = "") {
        self.id = id
        self.name = name
        self.limits = limits
        self.fingerprint = fingerprint
    }
}

/// Every gateway key with its identity, matched in constant time.
struct KeyRing: Sendable {
    private let keys: [String]
    private let identities: [KeyIdentity]
    /// Names of named keys whose key is also another named key's or in `server.api_keys`: the
    /// first name's limits apply, which the startup log says (review 121 #8).
    let givenTwice: [String]

    init(unnamed: [String], named: [(NamedKey, String)]) {
        var keys: [String] = []
        var identities: [KeyIdentity] = []
        var givenTwice: [String] = []
        for (key, value) in named {
            if keys.contains(value) || unnamed.contains(value) { givenTwice.append(key.name) }
            keys.append(value)
            identities.append(KeyIdentity(id: key.name, name: key.name, limits: key.limits, fingerprint: Self.fingerprint(value)))
        }
        self.givenTwice = givenTwice
        for value in unnamed where !keys.contains(value) {
            keys.append(value)
            let fingerprint = Self.fingerprint(value)
            identities.append(KeyIdentity(id: String(fingerprint.prefix(7 + 16)), name: nil, limits: KeyLimits(), fingerprint: fingerprint))
        }
        self.keys = keys
        self.identities = identities
    }

    static func fingerprint(_ key: String) -> String { "sha256:" + SHA256.hex(Array(key.utf8)) }

    var isEmpty: Bool { keys.isEmpty }

    /// Whether a request presenting a key with `fingerprint` may read a record owned by `owner`:
    /// any record without gateway keys; with them, only its owner's (compared in constant time),
    /// and a record with no owner by no one.
    func mayRead(owner: String?, fingerprint: String?) -> Bool {
        guard !keys.isEmpty else { return true }
        guard let owner, let fingerprint else { return false }
        return ConstantTime.matchesAny(fingerprint, [owner])
    }
    /// Whether any key has limits (otherwise admission is skipped altogether).
    var hasLimits: Bool { identities.contains { !$0.limits.isEmpty } }

    /// The identity behind the key a request presents the way `RequestPolicy` accepts it
    /// (`x-api-key`, as Anthropic's SDKs send it, or `Authorization: Bearer`); nil without a
    /// known key.
    func identify(_ request: HTTPRequest) -> KeyIdentity? {
        guard !keys.isEmpty else { return nil }
        if let key = RequestPolicy.apiKeyHeader(request), let index = ConstantTime.matchIndex(key, keys) { return identities[index] }
        guard let key = RequestPolicy.bearerKey(request) else { return nil }
        return ConstantTime.matchIndex(key, keys).map { identities[$0] }
    }
}
