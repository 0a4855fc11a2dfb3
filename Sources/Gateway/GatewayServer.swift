import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Logging
import Prometheus
import MockUpstream
import UpstreamClient
import Web

/// What every loop of one gateway shares: the routing table, generation records and counters.
public final class GatewayShared: Sendable {
    public let router: ModelRouter
    let generations = GenerationStore()
    public let stats = GatewayStats()
    public let metrics = GatewayMetrics()
    /// Keys clients must present; empty: no authentication.
    let gatewayKeys: [String]
    /// The web tools' settings with keys and the simulated web's address filled in.
    let web: WebSettings?

    init(router: ModelRouter, gatewayKeys: [String], web: WebSettings?) {
        self.router = router
        self.gatewayKeys = gatewayKeys
        self.web = web
    }
}

/// The gateway on one event loop: HTTP server, upstream client, routes, and (on the first loop,
/// when simulated models are on) the in-process mock upstream behind `sim/`. A `GatewayCluster`
/// runs one per loop on a shared port.
public final class GatewayServer {
    public let loop: EventLoop
    public let config: GatewayConfig
    private var server: HTTPServer!
    private let client: UpstreamClient
    private let simulator: MockUpstream?
    public let shared: GatewayShared
    public var router: ModelRouter { shared.router }
    public var stats: GatewayStats { shared.stats }
    private var generations: GenerationStore { shared.generations }
    private var logger: Logger
    /// Requests in flight (proxies and fusion sessions), keyed by their response writer.
    private var active: [ObjectIdentifier: AnyObject] = [:]
    /// Where Fusion places inner calls: this loop first, then the others (set by the cluster).
    private var workers: [UpstreamWorker]
    private var shuttingDown = false
    /// Runs Fusion's web tool calls on this loop; nil without a `web:` config.
    private let webTools: WebToolRunner?
    /// Connections this loop accepted, and upstream transfers it started (for tests and metrics).
    public private(set) var acceptedConnections = 0
    public var startedTransfers: Int { client.startedTransferCount }

    /// Starts listening on `config.server.host:port` (port 0 picks a free port). With `shared`
    /// nil this server is the first (or only) one: it creates the shared state and the simulator.
    public init(loop: EventLoop, config: GatewayConfig, environment: [String: String],
                logger: Logger = Logger(label: "fusion-gateway"), shared: GatewayShared? = nil, reusePort: Bool = false) throws {
        self.loop = loop
        self.config = config
        self.logger = logger
        client = UpstreamClient(loop: loop)
        workers = [UpstreamWorker(loop: loop, client: client)]
        if let shared {
            self.shared = shared
            simulator = nil
        } else if config.simulatedModels {
            let simulator = try MockUpstream(loop: loop, host: "127.0.0.1", port: 0)
            self.simulator = simulator
            self.shared = GatewayShared(router: ModelRouter(
                config: config, simulatedBaseURL: "http://127.0.0.1:\(simulator.port)/v1", environment: environment),
                gatewayKeys: config.gatewayKeys(environment: environment),
                web: Self.resolveWeb(config.web, environment: environment, simulatorPort: simulator.port, logger: logger))
        } else {
            simulator = nil
            self.shared = GatewayShared(router: ModelRouter(config: config, simulatedBaseURL: nil, environment: environment),
                                        gatewayKeys: config.gatewayKeys(environment: environment),
                                        web: Self.resolveWeb(config.web, environment: environment, simulatorPort: nil, logger: logger))
        }
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
        // Keys are checked on the head: an unauthenticated client's body is never read.
        if !self.shared.gatewayKeys.isEmpty {
            server.headGuard = { [unowned self] head in authenticate(head) }
        }
        if shared == nil {
            for (provider, variable) in router.providersMissingKeys {
                logger.warning("provider has no API key; its requests will fail until it is set",
                               metadata: ["provider": "\(provider)", "env": "\(variable)"])
            }
        }
    }

    /// The web settings in force: the search API's key from the environment, the simulated web's
    /// address (its server is this process's simulator).
    private static func resolveWeb(_ web: WebSettings?, environment: [String: String], simulatorPort: Int?,
                                   logger: Logger) -> WebSettings? {
        guard var web else { return nil }
        if web.simulated {
            guard let simulatorPort else { return nil }
            web = web.resolvingSimulatedWeb(port: simulatorPort)
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

    /// Graceful stop: no new connections, in-flight responses get `shutdownGraceMilliseconds`,
    /// then everything is cancelled and `completion` runs.
    public func shutdown(completion: @escaping () -> Void = {}) {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.info("shutting down", metadata: ["active_streams": "\(active.count)"])
        server.shutdown(graceMilliseconds: config.server.shutdownGraceMilliseconds) { [self] in
            client.close()
            if let simulator {
                simulator.shutdown(completion: completion)
            } else {
                completion()
            }
        }
    }

    private func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"):
            chatCompletion(request, writer)
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
        case (_, "/v1/chat/completions"), (_, "/chat/completions"):
            writer.respond(error: .methodNotAllowed(request.method, path: request.path, allowed: "POST"))
        case (_, "/v1/models"), (_, "/models"), (_, "/health"):
            writer.respond(error: .methodNotAllowed(request.method, path: request.path, allowed: "GET"))
        default:
            writer.respond(error: .notFound(path: request.path))
        }
    }

    private func chatCompletion(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let generationID = GenerationStore.newID()
        var log = logger
        log[metadataKey: "generation_id"] = "\(generationID)"
        // An incoming fusion depth (ours or OpenRouter's) means we are an inner call ourselves.
        let depth = [request.header("x-fusion-depth"), request.header("x-openrouter-fusion-depth")]
            .compactMap { $0.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }.max() ?? 0
        do throws(APIError) {
            var chat = try ChatRequest(body: request.body)
            switch try FusionPlan.make(request: chat, settings: config.fusion, depth: depth) {
            case .passthrough:
                break
            case .withoutFusion(_, let body):
                chat = try ChatRequest(body: body.serialized())
            case .fusion(let fusionRequest):
                let settings = config.fusion!
                let routes = try FusionSession.resolveRoutes(fusionRequest, settings: settings, router: router)
                if webTools == nil {
                    for (key, value) in [("web_search", fusionRequest.parameters.webSearch), ("judge_web_search", fusionRequest.parameters.judgeWebSearch)]
                    where value == true {
                        throw .invalidRequest("'\(fusionRequest.parameterPath).\(key)' is true but this gateway has no web tools configured (see the `web:` section of its config).",
                                              param: "\(fusionRequest.parameterPath).\(key)")
                    }
                }
                let session = FusionSession(
                    request: fusionRequest, routes: routes, writer: writer, workers: workers, settings: settings,
                    upstream: config.upstream, secrets: router.secrets, generationID: generationID, metrics: shared.metrics,
                    slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, web: webTools
                ) { [unowned self] record in
                    finished(record, writer: writer, log: log)
                }
                active[ObjectIdentifier(writer)] = session
                shared.metrics.activeStreams.increment()
                session.start()
                return
            }
            var candidates = [(slug: chat.model, route: try router.route(chat.model))]
            for (index, model) in chat.fallbackModels.enumerated() {
                do {
                    candidates.append((model, try router.route(model)))
                } catch {
                    throw APIError(status: error.status, type: error.type, code: error.code,
                                   message: "Invalid fallback in 'models[\(index)]': \(error.message)", param: "models[\(index)]")
                }
            }
            let depthHeader: [(String, String)] = depth > 0 ? [("x-fusion-depth", String(depth))] : []
            let proxy = ChatCompletionProxy(
                request: chat, candidates: candidates, writer: writer, client: client, settings: config.upstream,
                secrets: router.secrets, generationID: generationID, extraHeaders: depthHeader,
                slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, stats: stats,
                metrics: shared.metrics
            ) { [unowned self] record in
                finished(record, writer: writer, log: log)
            }
            active[ObjectIdentifier(writer)] = proxy
            shared.metrics.activeStreams.increment()
            proxy.start()
        } catch {
            var error = error
            error.headers.append(("X-Generation-Id", generationID))
            writer.respond(error: error)
            shared.metrics.countRequest(kind: "rejected", status: error.status)
            shared.metrics.countError(code: error.code)
            log.info("request rejected", metadata: ["status": "\(error.status)", "code": "\(error.code)"])
        }
    }

    /// The head guard when gateway keys are configured: nil lets the request in, else the 401.
    /// `/health` stays open for load balancers. The presented key is never logged.
    private func authenticate(_ head: HTTPRequest) -> HTTPResponse? {
        if head.path == "/health" || isAuthorized(head) { return nil }
        let error = APIError(
            status: 401, type: "authentication_error", code: "invalid_api_key",
            message: "Missing or invalid API key: send 'Authorization: Bearer <key>' with one of this gateway's keys.",
            headers: [("WWW-Authenticate", "Bearer")])
        logger.info("request refused: missing or invalid API key", metadata: [
            "method": "\(head.method)", "path": "\(head.path)", "authorization": "\(head.header("authorization") == nil ? "absent" : "not accepted")",
        ])
        return error.httpResponse
    }

    private func isAuthorized(_ request: HTTPRequest) -> Bool {
        guard let header = request.header("authorization") else { return false }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return ConstantTime.matchesAny(String(parts[1]), shared.gatewayKeys)
    }

    /// Files the record and logs the request's one summary line.
    private func finished(_ record: GenerationRecord, writer: HTTPResponseWriter, log: Logger) {
        generations.add(record)
        active[ObjectIdentifier(writer)] = nil
        let metrics = shared.metrics
        metrics.activeStreams.decrement()
        metrics.countRequest(kind: record.router ?? "proxy", status: record.status)
        if let ttft = record.firstTokenMilliseconds { metrics.timeToFirstToken.recordNanoseconds(Int64(ttft * 1e6)) }
        if let code = record.error {
            metrics.countError(code: code)
            if code.hasPrefix("upstream") || code.hasPrefix("provider") || code.hasPrefix("mock") {
                let provider = record.model.split(separator: "/").first.map(String.init) ?? record.model
                metrics.countUpstreamError(provider: provider, code: code)
            }
        }
        var metadata: Logger.Metadata = [
            "model": "\(record.model)", "stream": "\(record.streamed)", "status": "\(record.status)",
            "duration_ms": "\(Self.milliseconds(record.durationMilliseconds))", "cancelled": "\(record.cancelled)",
            "tokens": "\(record.usage.totalTokens)",
        ]
        if let router = record.router { metadata["router"] = "\(router)" }
        if let ttft = record.firstTokenMilliseconds { metadata["ttft_ms"] = "\(Self.milliseconds(ttft))" }
        if let error = record.error { metadata["error"] = "\(error)" }
        if record.webToolCalls > 0 {
            metadata["web_tool_calls"] = "\(record.webToolCalls)"
            metadata["search_results"] = "\(record.numSearchResults)"
        }
        log.info("request finished", metadata: metadata)
    }

    private static func milliseconds(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    private func generation(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        guard let id = request.queryItem("id"), !id.isEmpty else {
            writer.respond(error: .invalidRequest("Missing query parameter 'id'.", param: "id", code: "missing_required_parameter"))
            return
        }
        guard let record = generations.record(id) else {
            writer.respond(error: APIError(status: 404, type: "invalid_request_error", code: "generation_not_found",
                                           message: "No generation with id '\(id)' (records are kept in memory, most recent \(generations.capacity))."))
            return
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: record.json.serialized())
    }

    private func modelsList() -> [UInt8] {
        var out = Array(#"{"object":"list","data":["#.utf8)
        var first = true
        for name in router.providers.keys.sorted() {
            let provider = router.providers[name]!
            for model in provider.models ?? [] {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(contentsOf: #"{"id":"#.utf8)
                JSONWriting.appendString("\(name)/\(model)", to: &out)
                out.append(contentsOf: #","object":"model","created":0,"owned_by":"#.utf8)
                JSONWriting.appendString(provider.simulated ? "fusion-gateway (simulated)" : name, to: &out)
                if provider.simulated {
                    out.append(contentsOf: #","simulated":true,"description":"#.utf8)
                    JSONWriting.appendString("Simulated model served by the built-in mock upstream (scenario '\(model)'); no API key needed.", to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}
