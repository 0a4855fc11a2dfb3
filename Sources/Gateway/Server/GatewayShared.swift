import Fusion
import GatewayCore
import Providers
import Web

/// What every loop of one gateway shares: the routing table, generation records and counters.
public final class GatewayShared: Sendable {
    public let router: ModelRouter
    let generations = GenerationStore()
    public let stats = GatewayStats()
    public let metrics: GatewayMetrics
    /// Keys clients must present; empty: no authentication.
    let gatewayKeys: [String]
    /// The web tools' settings with keys and the simulated web's address filled in.
    let web: WebSettings?
    /// Every secret the gateway holds (provider and gateway keys): redacted from whatever an
    /// upstream sends back before it reaches a client, a record or a log.
    let redactor: Redactor
    /// Each gateway key's fingerprint, made once (a request reaching a route presented one of them).
    private let keyFingerprints: [String: String]

    init(router: ModelRouter, gatewayKeys: [String], web: WebSettings?) {
        self.router = router
        self.gatewayKeys = gatewayKeys
        self.web = web
        redactor = Redactor(secrets: router.secrets + gatewayKeys)
        keyFingerprints = Dictionary(gatewayKeys.map { ($0, KeyFingerprint.of($0)) }, uniquingKeysWith: { first, _ in first })
        metrics = GatewayMetrics(providerNames: Array(router.providers.keys))
        LogRedaction.shared.add(redactor.secrets)
    }

    /// The owner a record made for a request presenting `key` gets (nil without gateway keys).
    func recordOwner(presentedKey key: String?) -> String? {
        guard !gatewayKeys.isEmpty, let key, let known = keyFingerprints[key] else {
            return KeyFingerprint.owner(presentedKey: key, gatewayHasKeys: !gatewayKeys.isEmpty)
        }
        return known
    }
}
