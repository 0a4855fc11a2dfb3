import EventLoop
import Foundation
import GatewayCore
import HTTPServer
import Logging
import MockUpstream
import UpstreamClient

/// The gateway on one event loop: HTTP server, upstream client, routes, and (when simulated
/// models are on) the in-process mock upstream behind `sim/`.
public final class GatewayServer {
    public let loop: EventLoop
    public let config: GatewayConfig
    private var server: HTTPServer!
    private let client: UpstreamClient
    private let simulator: MockUpstream?
    public let router: ModelRouter
    private var logger: Logger
    private var proxies: [ObjectIdentifier: ChatCompletionProxy] = [:]
    private var nextRequestID: UInt64 = 0
    private var shuttingDown = false

    /// Starts listening on `config.server.host:port` (port 0 picks a free port).
    public init(loop: EventLoop, config: GatewayConfig, environment: [String: String],
                logger: Logger = Logger(label: "fusion-gateway")) throws {
        self.loop = loop
        self.config = config
        self.logger = logger
        client = UpstreamClient(loop: loop)
        if config.simulatedModels {
            let simulator = try MockUpstream(loop: loop, host: "127.0.0.1", port: 0)
            self.simulator = simulator
            router = ModelRouter(config: config, simulatedBaseURL: "http://127.0.0.1:\(simulator.port)/v1", environment: environment)
        } else {
            simulator = nil
            router = ModelRouter(config: config, simulatedBaseURL: nil, environment: environment)
        }
        server = try HTTPServer(loop: loop, host: config.server.host, port: config.server.port,
                                limits: config.server.limits) { [unowned self] request, writer in
            handle(request, writer)
        }
        server.onRejection = { [unowned self] error in
            self.logger.info("rejected request", metadata: ["status": "\(error.status)", "code": "\(error.code)"])
        }
        for (provider, variable) in router.providersMissingKeys {
            logger.warning("provider has no API key; its requests will fail until it is set",
                           metadata: ["provider": "\(provider)", "env": "\(variable)"])
        }
    }

    public var port: Int { server.port }
    public var activeStreams: Int { proxies.count }
    public var simulatorStats: MockUpstreamStats? { simulator?.stats }

    /// Graceful stop: no new connections, in-flight responses get `shutdownGraceMilliseconds`,
    /// then everything is cancelled and `completion` runs.
    public func shutdown(completion: @escaping () -> Void = {}) {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.info("shutting down", metadata: ["active_streams": "\(proxies.count)"])
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
        nextRequestID += 1
        let requestID = "req-\(nextRequestID)"
        var log = logger
        log[metadataKey: "request_id"] = "\(requestID)"
        let started = EventLoop.monotonicNanoseconds()
        let chat: ChatRequest
        let route: ModelRoute
        do {
            chat = try ChatRequest(body: request.body)
            route = try router.route(chat.model)
        } catch {
            writer.respond(error: error)
            log.info("request rejected", metadata: ["status": "\(error.status)", "code": "\(error.code)"])
            return
        }
        let proxy = ChatCompletionProxy(
            request: chat, route: route, writer: writer, client: client, settings: config.upstream,
            secrets: router.secrets
        ) { [unowned self] summary in
            let milliseconds = { (nanos: UInt64) in String(format: "%.2f", Double(nanos) / 1e6) }
            var metadata: Logger.Metadata = [
                "model": "\(chat.model)", "stream": "\(chat.stream)", "status": "\(summary.status)",
                "duration_ms": "\(milliseconds(EventLoop.monotonicNanoseconds() - started))",
                "events": "\(summary.events)", "cancelled": "\(summary.cancelled)",
            ]
            if let ttft = summary.firstTokenNanoseconds { metadata["ttft_ms"] = "\(milliseconds(ttft))" }
            if let error = summary.error { metadata["error"] = "\(error)" }
            log.info("request finished", metadata: metadata)
            proxies[ObjectIdentifier(writer)] = nil
        }
        proxies[ObjectIdentifier(writer)] = proxy
        proxy.start()
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
