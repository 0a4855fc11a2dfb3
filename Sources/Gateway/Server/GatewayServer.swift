import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Logging
import Playground
import Prometheus
import Providers
import Surfaces
import UpstreamClient
import Web

/// The gateway on one event loop: HTTP server, upstream client, routes. A `GatewayCluster` runs
/// one per loop on a shared port.
public final class GatewayServer {
    public let loop: EventLoop
    static let shortKeyCharacters = 16
    public let config: GatewayConfig
    private var server: HTTPServer!
    let client: UpstreamClient
    public let shared: GatewayShared
    public var router: ModelRouter { shared.router }
    public var stats: GatewayStats { shared.stats }
    /// Records, limits and usage: in process, or shared through Redis (this loop's connection).
    var store: LoopStore!
    /// Requests let in by their key's limits, to settle when they finish (by response writer).
    var tickets: [ObjectIdentifier: AdmissionTicket] = [:]
    /// Warnings whose causes come in floods, logged at most every 10 s per loop with how many
    /// (`WarningThrottle`): store failures, unwritten records and settlements dropped,
    /// connections refused at the limit, connections the listener could not accept.
    var storeFailureWarning: ThrottledWarning!
    var storeDropWarning: ThrottledWarning!
    /// A record key holding something the gateway did not write: said apart from the store's
    /// failures (Redis is fine), so a client asking for such an id again and again cannot keep
    /// a real failure out of that warning (review 118 #5).
    var unreadableRecordWarning: ThrottledWarning!
    var lastUnreadableRecord: String?
    private var storeBackNotice: ThrottledWarning!
    private var connectionLimitWarning: ThrottledWarning!
    private var acceptFailureWarning: ThrottledWarning!
    /// The last store failure and drop (the warnings say what the latest was).
    var lastStoreFailure: (operation: String, error: String)?
    /// Why the last connection attempt failed (`NOAUTH`, `WRONGPASS`, `LOADING`, …): kept apart,
    /// as the commands failing between attempts ("reconnecting") would otherwise always be the
    /// one logged (review 71D #3).
    var lastStoreConnectFailure: String?
    var lastStoreDrop: (operation: String, error: String)?
    private var lastAcceptError: LoopError?
    var logger: Logger
    /// Requests in flight (proxies and fusion sessions), keyed by their response writer.
    var active: [ObjectIdentifier: AnyObject] = [:]
    /// The output buffer this loop's proxies share (each uses it only inside one callback).
    let scratch = ByteScratch()
    /// Generation ids' random bits, drawn from the kernel 4 KiB at a time.
    let randomPool = RandomPool()
    /// Where Fusion places inner calls: this loop first, then the others (set by the cluster).
    var workers: [UpstreamWorker]
    private var shuttingDown = false
    /// Host, key, content type and CORS decisions, on each request's head.
    let policy: RequestPolicy
    /// Runs Fusion's web tool calls on this loop; nil without a `web:` config.
    let webTools: WebToolRunner?
    /// Connections this loop accepted, and upstream transfers it started (for tests and metrics).
    public private(set) var acceptedConnections = 0
    /// Client connections open now (for tests).
    public var openConnections: Int { server?.openConnections ?? 0 }
    public var startedTransfers: Int { client.startedTransferCount }
    /// Fusion's model calls open on this loop now (what panel placement reads).
    public var openInnerCalls: Int { workers[0].load.calls }

    /// Starts listening on `config.server.host:port` (port 0 picks a free port). With `shared`
    /// nil this server is the first (or only) one: it creates the shared state.
    public init(loop: EventLoop, config: GatewayConfig, environment: [String: String],
                logger: Logger = Logger(label: "fusion-gateway"), shared: GatewayShared? = nil, reusePort: Bool = false) throws {
        self.loop = loop
        self.config = config.pricedByRoute()
        self.logger = logger
        client = UpstreamClient(loop: loop)
        workers = [UpstreamWorker(loop: loop, client: client)]
        self.shared = try shared ?? Self.makeShared(config: config, environment: environment, logger: logger)
        policy = RequestPolicy(keys: self.shared.gatewayKeys, allowedOrigins: config.server.corsAllowOrigins,
                               allowedHosts: config.server.allowedHosts, bindHost: config.server.host)
        let client = client
        webTools = self.shared.web.map { WebToolRunner(client: client, settings: $0, logger: logger) }
        var limits = config.server.limits
        // A client not taking the tail of a finished response is as slow as one not taking a stream.
        limits.stalledWriteTimeoutMilliseconds = config.server.slowClientTimeoutMilliseconds
        server = try HTTPServer(loop: loop, host: config.server.host, port: config.server.port,
                                limits: limits, reusePort: reusePort) { [unowned self] request, writer in
            handle(request, writer)
        }
        server.heldBodies = self.shared.receivingBodies
        makeWarnings()
        store = LoopStore(loop: loop, shared: self.shared, settings: config.store, logger: logger,
                          onReconnect: { [unowned self] in lastStoreConnectFailure = nil; storeBackNotice.occurred() }) { [unowned self] operation, error in
            storeDidFail(operation, error)
        }
        server.onAccept = { [unowned self] in acceptedConnections += 1 }
        server.onConnectionRefused = { [unowned self] in
            self.shared.metrics.countError(code: "connection_limit")
            connectionLimitWarning.occurred()
        }
        server.onConnectionEvicted = { [unowned self] in self.shared.metrics.countError(code: "connection_evicted") }
        server.onAcceptError = { [unowned self] error in
            self.shared.metrics.countError(code: "accept_failed")
            lastAcceptError = error
            acceptFailureWarning.occurred()
        }
        server.stalledWriteLabelHeader = "X-Generation-Id"
        server.onStalledWrite = { [unowned self] unsent, generationID in
            var metadata: Logger.Metadata = ["code": "client_too_slow", "unsent_bytes": .stringConvertible(unsent)]
            if let generationID { metadata["generation_id"] = "\(generationID)" }
            self.logger.warning("closed a connection whose client stopped reading the end of a response", metadata: metadata)
            self.shared.metrics.countError(code: "client_too_slow")
        }
        let policy = policy
        server.rendersRejectionsAsAPIErrors(redactor: self.shared.redactor, cors: { head in policy.corsHeaders(for: head) })
        server.onRejection = { [unowned self] rejection, path in
            self.logger.info("rejected request", metadata: ["status": .stringConvertible(rejection.status), "code": "\(rejection.code)"])
            countRefusal(status: rejection.status, code: rejection.code, path: path)
        }
        // Checked on the head: a refused client's body is never read.
        server.headGuard = { [unowned self] head in guardHead(head) }
        if shared == nil {
            for warning in Self.keyWarnings(server: config.server, keys: self.shared.gatewayKeys, ring: self.shared.keyRing) {
                logger.warning("\(warning.message)", metadata: warning.metadata)
            }
            for (provider, variable) in router.providersMissingHeaders {
                logger.warning("a provider's secret header is unset; it is not sent until it is", metadata: ["provider": "\(provider)", "env": "\(variable)"])
            }
            for (provider, variable) in router.providersMissingKeys {
                logger.warning("provider has no API key; its requests will fail until it is set",
                               metadata: ["provider": "\(provider)", "env": "\(variable)"])
            }
            for (ignored, kept) in self.config.prices.conflicts {
                logger.warning("two prices name one model as it routes; one is used, the other ignored",
                               metadata: ["used": "\(kept)", "ignored": "\(ignored)"])
            }
        }
    }

    /// The throttled warnings (their closures reach this server weakly: a timer of theirs may
    /// outlive it on a loop still running).
    private func makeWarnings() {
        connectionLimitWarning = ThrottledWarning(loop: loop) { [weak self] count in
            self?.logger.warning("closed new connections at once: server.max_connections are open on this loop",
                                 metadata: ["code": "connection_limit", "refused": .stringConvertible(count)])
        }
        acceptFailureWarning = ThrottledWarning(loop: loop) { [weak self] count in
            guard let self else { return }
            logger.warning("could not accept connections: \(lastAcceptError.map { "\($0)" } ?? "unknown error")",
                           metadata: ["code": "accept_failed", "refused": .stringConvertible(count)])
        }
        storeFailureWarning = ThrottledWarning(loop: loop) { [weak self] count in
            guard let self, let failure = lastStoreFailure else { return }
            var metadata: Logger.Metadata = [
                "operation": "\(failure.operation)", "error": "\(failure.error)", "failures": .stringConvertible(count),
                "on_store_error": "\(store?.onStoreError.rawValue ?? "allow")",
            ]
            if let connect = lastStoreConnectFailure, failure.operation != "connection" { metadata["last_connect_error"] = "\(connect)" }
            logger.warning("shared store failing; limits follow on_store_error, records wait for it", metadata: metadata)
        }
        storeBackNotice = ThrottledWarning(loop: loop) { [weak self] count in
            guard let self, let redis = config.store.redis else { return }
            logger.notice("redis is back", metadata: ["redis": "\(redis.endpoint)", "reconnects": .stringConvertible(count)])
        }
        storeDropWarning = ThrottledWarning(loop: loop) { [weak self] count in
            guard let self, let drop = lastStoreDrop else { return }
            logger.warning("shared store unreachable too long; dropped the oldest unwritten records or settlements", metadata: [
                "operation": "\(drop.operation)", "dropped": .stringConvertible(count), "error": "\(drop.error)",
            ])
        }
        unreadableRecordWarning = ThrottledWarning(loop: loop) { [weak self] count in
            guard let self, let what = lastUnreadableRecord else { return }
            logger.warning("a generation record in the shared store is not one this gateway wrote (answered 500 record_unreadable)",
                           metadata: ["record": "\(what)", "lookups": .stringConvertible(count)])
        }
    }

    /// Logs the counts the throttled warnings still hold (the gateway is stopping).
    private func flushWarnings() {
        for warning in [connectionLimitWarning, acceptFailureWarning, storeFailureWarning, storeDropWarning, unreadableRecordWarning, storeBackNotice] {
            warning?.flush()
        }
    }

    private static func makeShared(config: GatewayConfig, environment: [String: String], logger: Logger) throws -> GatewayShared {
        var redisPassword: String?
        if let variable = config.store.redis?.passwordEnvironmentVariable {
            guard let value = ModelRouter.trimmedKey(environment[variable]) else {
                throw ConfigError("store.redis.password_env names \(variable), which is unset or empty: refusing to start without the password it should hold")
            }
            redisPassword = value
        }
        // Every key; the named ones are matched by name first (the ring skips an unnamed key that
        // is also a named one, and says so: `keyWarnings`).
        let named = try config.namedKeyValues(environment: environment)
        let unnamed = try config.unnamedKeys(environment: environment)
        let keys = unnamed + named.map(\.1)
        let router = ModelRouter(config: config, environment: environment)
        if let fusion = config.fusion { try checkFusionModels(fusion, router: router) }
        return GatewayShared(router: router, gatewayKeys: keys,
                             web: resolveWeb(config.web, environment: environment, logger: logger),
                             keyRing: KeyRing(unnamed: unnamed, named: named), redisPassword: redisPassword,
                             maxCollectedBytes: config.upstream.maxCollectedBytes, maxReceivingBodyBytes: config.server.maxReceivingBodyBytes,
                             maxDeliberationBytes: (config.fusion ?? .simulated).maxBytesInFlight,
                             maxDeliberationBytesPerKey: (config.fusion ?? .simulated).maxBytesInFlightPerKey)
    }

    /// Every model the Fusion config names must route: a slug no provider serves would otherwise
    /// fail every Fusion request (even one that never needs a fallback judge) with a 400 that
    /// blames the client. A provider whose key is unset is only warned about (see `start`).
    private static func checkFusionModels(_ fusion: FusionSettings, router: ModelRouter) throws {
        var named: [(path: String, model: String)] = [("fusion.outer_model", fusion.outerModel)]
        for (name, preset) in fusion.presets.sorted(by: { $0.key < $1.key }) {
            for (index, model) in preset.analysisModels.enumerated() { named.append(("fusion.presets.\(name).analysis_models[\(index)]", model)) }
            if let judge = preset.judge { named.append(("fusion.presets.\(name).model", judge)) }
        }
        if let fallback = fusion.judgeFallbackModel { named.append(("fusion.judge_fallback_model", fallback)) }
        for (path, model) in named {
            do {
                _ = try router.route(model)
            } catch where error.code != "provider_key_missing" {
                throw ConfigError("\(path): \(error.message)")
            } catch {}
        }
    }

    /// The web settings in force, with the search API's key from the environment. The simulated
    /// web is there only once its server is known (`WebSettings.resolvingSimulatedWeb`).
    private static func resolveWeb(_ web: WebSettings?, environment: [String: String], logger: Logger) -> WebSettings? {
        guard var web else { return nil }
        if web.simulated && web.search == nil {
            logger.warning("the simulated web is configured but no simulator runs: web tools are off")
            return nil
        }
        if let variable = web.searchAPIKeyEnvironmentVariable {
            web.search?.apiKey = ModelRouter.trimmedKey(environment[variable])
            if web.search?.apiKey == nil {
                logger.warning("the web search backend has no API key; web_search calls will fail until it is set",
                               metadata: ["env": "\(variable)"])
            }
        }
        return web
    }

    /// This loop's worker, for the cluster to share with the other loops.
    var worker: UpstreamWorker { workers[0] }

    /// Loop thread only: the other loops' workers (Fusion spreads panels over them).
    func setPeers(_ peers: [UpstreamWorker]) {
        workers = [workers[0]] + peers
    }

    public var port: Int { server.port }
    public var activeStreams: Int { active.count }
    /// A completion is running, or a request waits for its response to begin (a limits decision,
    /// a record lookup): what a forced stop would cut.
    var hasResponseInFlight: Bool { !active.isEmpty || !server.unansweredRequests.isEmpty }

    /// Graceful stop of a gateway on one loop: `stopServing`, then `releaseResources`.
    public func shutdown(completion: @escaping () -> Void = {}) {
        stopServing { [self] in releaseResources(completion: completion) }
    }

    /// First phase of a stop: no new connections; in-flight responses get
    /// `shutdownGraceMilliseconds`, then they are cancelled, then `completion` runs. The upstream
    /// client stays open: sessions on other loops of a cluster may still place calls here.
    public func stopServing(completion: @escaping () -> Void = {}) {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.info("shutting down", metadata: ["active_streams": .stringConvertible(active.count)])
        server.shutdown(graceMilliseconds: config.server.shutdownGraceMilliseconds, completion: completion) { [unowned self] in
            cutInFlight()
        }
    }

    /// The grace period ended (or a second signal came): responses still running end with an
    /// error their clients can read (and a record that says why, what they generated charged),
    /// not a transfer that breaks off (review 121 #5: a second signal cut them with no record).
    public func cutInFlight() {
        let responses = Array(active.values)
        for case let response as any CutOnShutdown in responses { response.cutOnShutdown() }
        // Requests still waiting before any response (a limits decision or a spend hold from
        // a slow store, a record lookup, a token count) get the same error in their API's
        // shape. Their callbacks, when they come, find the response sent: what was reserved
        // or held is given back as for a client that left.
        let unanswered = server.unansweredRequests
        for writer in unanswered { refuse(.cutOnShutdown, writer.request, writer) }
        if !responses.isEmpty || !unanswered.isEmpty {
            logger.warning("responses cut by the stop", metadata: [
                "responses": .stringConvertible(responses.count), "requests_before_a_response": .stringConvertible(unanswered.count)])
        }
    }

    /// Second phase, once no loop serves any more: cancels what is left of the upstream transfers
    /// and releases curl, then `completion` runs.
    /// After this iteration's writes: the records of responses that ended in it are filed then
    /// (`ended`), into a store still open.
    public func releaseResources(completion: @escaping () -> Void = {}) {
        loop.afterWrites { [self] in
            client.close()
            // What the last responses sent the shared store (settlements, then their holds'
            // release, records) lands before the connection closes, within a bound.
            store.drain(withinMilliseconds: Self.storeDrainMilliseconds) { [self] in
                closeStore()
                completion()
            }
        }
    }

    /// On the loop. Ends the store's drain now (a second signal once every response has
    /// ended): what it had not sent is said in the log, as at the drain's end.
    public func endStoreDrain() {
        closeStore()
    }

    private var storeClosed = false

    private func closeStore() {
        guard !storeClosed else { return }
        storeClosed = true
        store.close()
        flushWarnings()
    }

    /// The methods a fixed route answers (its 405's and `OPTIONS`' `Allow`); nil for any other path.
    static func methods(of path: String) -> String? {
        switch path {
        case "/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/responses":
            "POST"
        case "/v1/models", "/models", "/health", "/metrics", "/api/v1/generation", "/v1/generation":
            "GET, HEAD"
        case _ where (path.hasPrefix("/v1/models/") && path.count > "/v1/models/".count) || path == "/playground" || path.hasPrefix("/playground/"):
            "GET, HEAD"  // their own answers to other methods (review 75A #9)
        default:
            nil
        }
    }

    /// At most this long a stopping loop waits for the shared store's replies.
    static let storeDrainMilliseconds: UInt64 = 1_000

    private func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        writer.defaultHeaders = policy.corsHeaders(for: request)
        if request.method == "OPTIONS" && request.header("access-control-request-method") == nil {
            // Not a preflight: what the server allows (HAProxy's default health check is
            // `OPTIONS / HTTP/1.0`; a 403 marked the replica down: review 68B #6).
            // A route answers with its own methods (RFC 9110 §10.2.1: `Allow` is the target's;
            // review 74C #6), anything else (`/`, `*`) with the server's.
            writer.respond(status: 204, headers: [("Allow", (Self.methods(of: request.path) ?? "GET, HEAD, POST") + ", OPTIONS")], body: [])
            return
        }
        if request.method == "OPTIONS" {
            let answer = policy.preflight(request)
            writer.defaultHeaders = []
            writer.respond(status: answer.status, headers: answer.headers, body: [])
            return
        }
        // The playground's static files are public (the page asks for a key itself).
        if let page = Playground.response(method: request.method, path: request.path, ifNoneMatch: request.header("if-none-match")) {
            writer.respond(status: page.status, headers: page.headers, body: page.body)
            return
        }
        // HEAD gets what GET would, without the body (the writer sends the head only).
        switch (request.method == "HEAD" ? "GET" : request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"):
            admit(request, writer, api: .chatCompletions) { [unowned self] in chatCompletion(request, writer) }
        case ("POST", "/v1/messages"):
            admit(request, writer, api: .messages) { [unowned self] in messages(request, writer) }
        case ("POST", "/v1/messages/count_tokens"):
            countTokens(request, writer)
        case ("POST", "/v1/responses"), ("POST", "/responses"):
            admit(request, writer, api: .responses) { [unowned self] in responses(request, writer) }
        case ("GET", "/v1/models"), ("GET", "/models"):
            modelsList(request, writer)
        case ("GET", _) where request.path.hasPrefix("/v1/models/") && request.path.count > "/v1/models/".count:
            model(encoded: request.path.dropFirst("/v1/models/".count), writer, shape: ModelsShape(request))
        case ("GET", "/metrics") where shared.keyRing.identify(request).map({ !$0.limits.isEmpty }) ?? false:
            // Gateway-wide traffic and spend: not for a key with limits, a customer's in a shared
            // deployment (deploy.md; review 22 F5).
            refuse(APIError(status: 403, type: "permission_error", code: "permission_denied",
                            message: "/metrics needs a gateway key without limits."), request, writer)
        case ("GET", "/metrics"):
            writer.respond(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                           body: shared.metrics.render(held: [
                               ("deliberations", shared.deliberations.current, shared.deliberations.limit),
                               ("collected_answers", shared.collected.current, shared.collected.limit),
                               ("receiving_bodies", shared.receivingBodies.current, shared.receivingBodies.limit),
                           ]))
        case ("GET", "/api/v1/generation"), ("GET", "/v1/generation"):
            generation(request, writer)
        case ("GET", "/health"):
            // Draining (SIGTERM): 503, so a load balancer's health checks take this replica out.
            let draining = shared.isDraining
            writer.respond(status: draining ? 503 : 200, headers: [("Content-Type", "application/json")],
                           body: JSONValue.object(["status": .string(draining ? "draining" : "ok"), "version": .string(GatewayVersion.current),
                                                   "degraded": .array(degraded.map(JSONValue.string))]).serialized())
        case (_, let path) where Self.methods(of: path) != nil:
            refuse(.methodNotAllowed(request.method, path: path, allowed: Self.methods(of: path) ?? ""), request, writer)
        case (_, "/v1/responses/input_tokens"), (_, "/v1/responses/compact"):
            // The SDKs' responses.input_tokens.count and responses.compact (review 49 SDK F3:
            // they were told no response had the id 'input_tokens').
            let name = request.path.dropFirst("/v1/responses/".count)
            refuse(APIError(status: 404, type: "invalid_request_error", code: "not_found",
                            message: "/v1/responses/\(name) is not offered by this gateway."), request, writer)
        case (_, _) where request.path.hasPrefix("/v1/responses/"):
            // The SDKs' responses.retrieve / delete / cancel / input_items.list: said plainly.
            let id = request.path.dropFirst("/v1/responses/".count).prefix { $0 != "/" }.prefix(128)
            refuse(APIError(status: 404, type: "invalid_request_error", code: "response_not_found",
                            message: "No response with id '\(id)': the gateway stores no responses (every request is answered as with "
                                + "store: false), so none can be retrieved, deleted, cancelled or listed; a response's generation "
                                + "record is at /api/v1/generation?id=gen-<the id after resp_>."),
                   request, writer)
        default:
            refuse(.notFound(path: request.path), request, writer)
        }
    }

    /// What this replica cannot do while `/health` answers 200 (a probe keeps it, as its other
    /// requests still work; an operator sees why some fail: review 121 #8):
    /// `store_unreachable` (this loop's Redis connection is not ready: limits follow
    /// `on_store_error`, records wait), `providers_without_keys` (a provider's key variable is
    /// unset at start: its models answer 502 `provider_key_missing`).
    var degraded: [String] {
        var reasons: [String] = []
        if !store.isReachable { reasons.append("store_unreachable") }
        if !router.providersMissingKeys.isEmpty { reasons.append("providers_without_keys") }
        return reasons
    }

    private func refuse(_ error: APIError, _ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        countRefusal(status: error.status, code: error.code, path: request.path)
        writer.respond(error: error, api: .errorShape(for: request), redactor: shared.redactor)
    }

    /// The head guard: nil lets the request in, else the refusal (401 without a valid key, 421
    /// for a host name it does not answer to, 415 for a POST that is not JSON). The presented
    /// key is never logged.
    private func guardHead(_ head: HTTPRequest) -> HTTPResponse? {
        guard var error = policy.refusal(for: head) else { return nil }
        logger.info("request refused", metadata: [
            // A path's first 256 bytes and its length: a keyless client logged 30 KiB lines as fast as
            // it could connect (review 121 #3).
            "status": .stringConvertible(error.status), "code": "\(error.code)", "method": "\(head.method)",
            "path": "\(head.path.shortened(toBytes: 256))", "path_bytes": .stringConvertible(head.path.utf8.count),
            "authorization": "\(head.header("authorization") == nil ? "absent" : "present")",
        ])
        error.headers += policy.corsHeaders(for: head)
        countRefusal(status: error.status, code: error.code, path: head.path)
        return ClientAPI.errorShape(for: head).response(error, redactor: shared.redactor)
    }

    /// A request refused before any route took it (the HTTP server's own 400/408/413/431/501, the
    /// head guard's 401/415/421, an unknown path or method): counted as an error by its code and,
    /// on a completion route, as a rejected request. Those a route refuses are counted from
    /// their record (`GatewayShared.file`).
    private func countRefusal(status: Int, code: String, path: String?) {
        shared.metrics.countError(code: code)
        if let api = path.flatMap(ClientAPI.init(completionPath:)) {
            shared.metrics.countRequest(route: RecordRoute(api), kind: .rejected, status: status)
        }
    }

}
