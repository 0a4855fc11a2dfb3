import Fusion
import GatewayCore
import Providers
import Synchronization
import Web

/// What every loop of one gateway shares: the routing table, generation records and counters.
public final class GatewayShared: Sendable {
    public let router: ModelRouter
    /// Records made in this process (with Redis, this replica's cache of its own).
    let memoryRecords = InMemoryGenerations()
    /// Limits and usage when there is no shared store.
    let inProcessLimiter = InProcessKeyLimiter()
    public let stats = GatewayStats()
    public let metrics = GatewayMetrics()
    /// Keys clients must present; empty: no authentication.
    let gatewayKeys: [String]
    /// Who each key is (named keys with their limits; others by fingerprint).
    let keyRing: KeyRing
    /// Redis' password, from the environment variable `store.redis.password_env` names.
    let redisPassword: String?
    /// The web tools' settings with keys and the simulated web's address filled in.
    let web: WebSettings?
    /// Every secret the gateway holds (provider and gateway keys): redacted from whatever an
    /// upstream sends back before it reaches a client, a record or a log.
    let redactor: Redactor
    /// Set on SIGTERM: `/health` answers 503 so load balancers stop sending (see `drain_delay_ms`).
    let draining = Atomic<Bool>(false)

    init(router: ModelRouter, gatewayKeys: [String], web: WebSettings?, keyRing: KeyRing? = nil, redisPassword: String? = nil) {
        self.router = router
        self.gatewayKeys = gatewayKeys
        self.web = web
        self.keyRing = keyRing ?? KeyRing(unnamed: gatewayKeys, named: [])
        self.redisPassword = redisPassword
        redactor = Redactor(secrets: router.secrets + gatewayKeys + (redisPassword.map { [$0] } ?? []))
    }

    /// Whether the gateway is draining (SIGTERM received).
    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Starts draining: `/health` answers 503 from now on. Any thread.
    public func beginDraining() {
        // Relaxed: a flag read per health check; no other memory depends on it.
        draining.store(true, ordering: .relaxed)
    }
}
