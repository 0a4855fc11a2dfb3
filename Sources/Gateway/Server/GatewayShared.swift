import EventLoop
import Fusion
import GatewayCore
import Providers
import Synchronization
import Web

/// What every loop of one gateway shares: the routing table, generation records and counters.
public final class GatewayShared: Sendable {
    public let router: ModelRouter
    /// Records made in this process (with Redis, this replica's own, kept for it to answer for
    /// during an outage).
    let generations = GenerationStore()
    /// Refused requests' records written to Redis a minute per key, for the whole replica (its
    /// loops share it: one per loop let a 4-loop replica write 240, review 62A #3).
    let refusedRecordQuota = Lock(RefusedRecordQuota())
    /// Unpriced models' reported cost per token: what their cut calls are charged at (`Spend`).
    let reportedRates = ReportedRates()
    /// Limits and usage when there is no shared store.
    let inProcessLimiter = InProcessKeyLimiter()
    public let stats = GatewayStats()
    public let metrics: GatewayMetrics
    /// Keys clients must present; empty: no authentication.
    let gatewayKeys: [String]
    /// Who each key is for limits and usage (named keys with their limits; others by fingerprint).
    let keyRing: KeyRing
    /// Redis' password, from the environment variable `store.redis.password_env` names.
    let redisPassword: String?
    /// Set on SIGTERM: `/health` answers 503 so load balancers stop sending (see `drain_delay_ms`).
    let draining = Atomic<Bool>(false)
    /// The web tools' settings with keys and the simulated web's address filled in.
    let web: WebSettings?
    /// Every secret the gateway holds (provider and gateway keys): redacted from whatever an
    /// upstream sends back before it reaches a client, a record or a log.
    let redactor: Redactor
    /// Whole upstream answers held at once, across requests (`upstream.max_collected_bytes`).
    let collected: HeldBytes
    /// Request bodies still being received, across connections and loops
    /// (`server.max_receiving_body_bytes`).
    let receivingBodies: HeldBytes
    /// Bytes of deliberations in flight, across loops (`fusion.max_bytes_in_flight`): their
    /// conversations times their calls, and their upstream responses.
    let deliberations: HeldBytes
    /// Each gateway key's share of `deliberations` (`fusion.max_bytes_in_flight_per_key`).
    let deliberationsByKey: HeldBytesByKey
    /// Each gateway key's fingerprint, made once (a request reaching a route presented one of them).
    private let keyFingerprints: [String: String]

    init(router: ModelRouter, gatewayKeys: [String], web: WebSettings?, keyRing: KeyRing? = nil, redisPassword: String? = nil,
         maxCollectedBytes: Int = GatewayConfig.Upstream().maxCollectedBytes,
         maxReceivingBodyBytes: Int = GatewayConfig.Server().maxReceivingBodyBytes,
         maxDeliberationBytes: Int = FusionSettings.simulated.maxBytesInFlight, maxDeliberationBytesPerKey: Int? = nil) {
        collected = HeldBytes(limit: maxCollectedBytes)
        deliberations = HeldBytes(limit: maxDeliberationBytes)
        deliberationsByKey = HeldBytesByKey(limit: maxDeliberationBytesPerKey ?? maxDeliberationBytes / 4)
        receivingBodies = HeldBytes(limit: maxReceivingBodyBytes)
        self.router = router
        self.gatewayKeys = gatewayKeys
        self.web = web
        self.keyRing = keyRing ?? KeyRing(unnamed: gatewayKeys, named: [])
        self.redisPassword = redisPassword
        redactor = Redactor(secrets: router.secrets + gatewayKeys + (redisPassword.map { [$0] } ?? []) + (web?.search?.apiKey.map { [$0] } ?? []))
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

    /// Whether the gateway is draining (SIGTERM received).
    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Starts draining: `/health` answers 503 from now on. Any thread.
    public func beginDraining() {
        // Relaxed: a flag read per health check; no other memory depends on it.
        draining.store(true, ordering: .relaxed)
    }
}
