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
    public let config: GatewayConfig
    private var server: HTTPServer!
    let client: UpstreamClient
    public let shared: GatewayShared
    public var router: ModelRouter { shared.router }
    public var stats: GatewayStats { shared.stats }
    var generations: GenerationStore { shared.generations }
    var logger: Logger
    /// Requests in flight (proxies and fusion sessions), keyed by their response writer.
    var active: [ObjectIdentifier: AnyObject] = [:]
    /// The output buffer this loop's proxies share (each uses it only inside one callback).
    let scratch = ByteScratch()
    /// Where Fusion places inner calls: this loop first, then the others (set by the cluster).
    var workers: [UpstreamWorker]
    private var shuttingDown = false
    /// Host, key, content type and CORS decisions, on each request's head.
    let policy: RequestPolicy
    /// Runs Fusion's web tool calls on this loop; nil without a `web:` config.
    let webTools: WebToolRunner?
    /// Connections this loop accepted, and upstream transfers it started (for tests and metrics).
    public private(set) var acceptedConnections = 0
    public var startedTransfers: Int { client.startedTransferCount }

    /// Starts listening on `config.server.host:port` (port 0 picks a free port). With `shared`
    /// nil this server is the first (or only) one: it creates the shared state.
    public init(loop: EventLoop, config: GatewayConfig, environment: [String: String],
                logger: Logger = Logger(label: "fusion-gateway"), shared: GatewayShared? = nil, reusePort: Bool = false) throws {
        self.loop = loop
        self.config = config
        self.logger = logger
        client = UpstreamClient(loop: loop)
        workers = [UpstreamWorker(loop: loop, client: client)]
        self.shared = try shared ?? GatewayShared(router: ModelRouter(config: config, environment: environment),
                                                  gatewayKeys: config.gatewayKeys(environment: environment),
                                                  web: Self.resolveWeb(config.web, environment: environment, logger: logger))
        policy = RequestPolicy(keys: self.shared.gatewayKeys, allowedOrigins: config.server.corsAllowOrigins,
                               allowedHosts: config.server.allowedHosts, bindHost: config.server.host)
        let client = client
        webTools = self.shared.web.map { WebToolRunner(client: client, settings: $0) }
        var limits = config.server.limits
        // A client not taking the tail of a finished response is as slow as one not taking a stream.
        limits.stalledWriteTimeoutMilliseconds = config.server.slowClientTimeoutMilliseconds
        server = try HTTPServer(loop: loop, host: config.server.host, port: config.server.port,
                                limits: limits, reusePort: reusePort) { [unowned self] request, writer in
            handle(request, writer)
        }
        server.onAccept = { [unowned self] in acceptedConnections += 1 }
        server.rendersRejectionsAsAPIErrors()
        server.onRejection = { [unowned self] rejection in
            self.logger.info("rejected request", metadata: ["status": "\(rejection.status)", "code": "\(rejection.code)"])
        }
        // Checked on the head: a refused client's body is never read.
        server.headGuard = { [unowned self] head in guardHead(head) }
        if shared == nil {
            for (provider, variable) in router.providersMissingKeys {
                logger.warning("provider has no API key; its requests will fail until it is set",
                               metadata: ["provider": "\(provider)", "env": "\(variable)"])
            }
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
            web.search?.apiKey = environment[variable]
            if environment[variable]?.isEmpty ?? true {
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
        logger.info("shutting down", metadata: ["active_streams": "\(active.count)"])
        server.shutdown(graceMilliseconds: config.server.shutdownGraceMilliseconds, completion: completion)
    }

    /// Second phase, once no loop serves any more: cancels what is left of the upstream transfers
    /// and releases curl, then `completion` runs.
    public func releaseResources(completion: @escaping () -> Void = {}) {
        client.close()
        completion()
    }

    private func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        writer.defaultHeaders = policy.corsHeaders(for: request)
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
        switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"):
            chatCompletion(request, writer)
        case ("POST", "/v1/messages"):
            messages(request, writer)
        case ("POST", "/v1/responses"), ("POST", "/responses"):
            responses(request, writer)
        case ("GET", "/v1/models"), ("GET", "/models"):
            writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: modelsList())
        case ("GET", "/metrics"):
            writer.respond(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                           body: shared.metrics.render())
        case ("GET", "/api/v1/generation"), ("GET", "/v1/generation"):
            generation(request, writer)
        case ("GET", "/health"), ("HEAD", "/health"):
            writer.respond(status: 200, headers: [("Content-Type", "application/json")],
                           body: Array(#"{"status":"ok"}"#.utf8))
        case (_, "/v1/chat/completions"), (_, "/chat/completions"), (_, "/v1/messages"), (_, "/v1/responses"), (_, "/responses"):
            writer.respond(error: .methodNotAllowed(request.method, path: request.path, allowed: "POST"),
                           api: ClientAPI(path: request.path) ?? .chatCompletions)
        case (_, "/v1/models"), (_, "/models"), (_, "/health"):
            writer.respond(error: .methodNotAllowed(request.method, path: request.path, allowed: "GET"))
        default:
            writer.respond(error: .notFound(path: request.path))
        }
    }

    /// The head guard: nil lets the request in, else the refusal (401 without a valid key, 421
    /// for a host name it does not answer to, 415 for a POST that is not JSON). The presented
    /// key is never logged.
    private func guardHead(_ head: HTTPRequest) -> HTTPResponse? {
        guard var error = policy.refusal(for: head) else { return nil }
        logger.info("request refused", metadata: [
            "status": "\(error.status)", "code": "\(error.code)", "method": "\(head.method)", "path": "\(head.path)",
            "authorization": "\(head.header("authorization") == nil ? "absent" : "present")",
        ])
        error.headers += policy.corsHeaders(for: head)
        return (ClientAPI(path: head.path) ?? .chatCompletions).response(error)
    }

}
