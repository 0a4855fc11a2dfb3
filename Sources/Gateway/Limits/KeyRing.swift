import GatewayCore
import HTTPServer

/// Who a request is, by the gateway key it presented: a named key (`keys.<name>`, with its
/// limits) or an unnamed one (`server.api_keys`), known by a fingerprint. Records, usage counters
/// and limits are filed under `id`, never under the key itself.
struct KeyIdentity: Sendable, Equatable {
    /// `<name>` for a named key, `sha256:<16 hex>` otherwise (safe in Redis key names and logs).
    let id: String
    /// The key's name, for named keys.
    let name: String?
    let limits: KeyLimits
}

/// Every gateway key with its identity, matched in constant time.
struct KeyRing: Sendable {
    private let keys: [String]
    private let identities: [KeyIdentity]

    init(unnamed: [String], named: [(NamedKey, String)]) {
        var keys: [String] = []
        var identities: [KeyIdentity] = []
        for (key, value) in named {
            keys.append(value)
            identities.append(KeyIdentity(id: key.name, name: key.name, limits: key.limits))
        }
        for value in unnamed where !keys.contains(value) {
            keys.append(value)
            identities.append(KeyIdentity(id: "sha256:" + String(SHA256.hex(value.utf8).prefix(16)), name: nil, limits: KeyLimits()))
        }
        self.keys = keys
        self.identities = identities
    }

    var isEmpty: Bool { keys.isEmpty }
    /// Whether any key has limits (otherwise admission is skipped altogether).
    var hasLimits: Bool { identities.contains { !$0.limits.isEmpty } }

    /// The identity behind `Authorization: Bearer <key>`, nil without a known key.
    func identify(_ request: HTTPRequest) -> KeyIdentity? {
        guard !keys.isEmpty, let header = request.header("authorization") else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return ConstantTime.matchIndex(String(parts[1]), keys).map { identities[$0] }
    }
}
