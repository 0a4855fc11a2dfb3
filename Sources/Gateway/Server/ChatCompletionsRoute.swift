import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Logging
import Prometheus
import Providers
import Surfaces

extension GatewayServer {
    /// `POST /v1/chat/completions`: validated, planned (Fusion or not), then relayed by a
    /// `ChatCompletionProxy` or run by a `FusionSession`.
    func chatCompletion(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let generationID = GenerationStore.newID()
        var log = logger
        log[metadataKey: "generation_id"] = "\(generationID)"
        do throws(APIError) {
            let (depth, hops) = try RecursionHeaders.parse(request, maxHops: config.server.maxHops)
            let chat = try ChatRequest(body: request.body)
            let neutral = chat.modelRequest()
            let proxied: ProxiedRequest
            switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth, structuredEvents: try chat.includeFusionEvents()) {
            case .passthrough:
                proxied = ProxiedRequest(chat: chat, neutral: neutral, relayRawBody: true)
            case .withoutFusion(_, let rewritten):
                proxied = ProxiedRequest(chat: chat, neutral: rewritten, relayRawBody: false)
            case .fusion(let fusionRequest):
                try startFusion(fusionRequest, hops: hops, fallbacks: chat.fallbackModels, writer: writer, generationID: generationID, log: log)
                return
            }
            var candidates = [try router.route(proxied.neutral.model)]
            for (index, model) in chat.fallbackModels.enumerated() {
                do {
                    candidates.append(try router.route(model))
                } catch {
                    throw APIError(status: error.status, type: error.type, code: error.code,
                                   message: "Invalid fallback in 'models[\(index)]': \(error.message)", param: "models[\(index)]")
                }
            }
            // Each hop through a gateway counts: a provider that points back here is stopped (508).
            var depthHeader: [(String, String)] = [("x-fusion-hops", String(hops + 1))]
            if depth > 0 { depthHeader.append(("x-fusion-depth", String(depth))) }
            let proxy = ChatCompletionProxy(
                request: proxied, candidates: candidates, writer: writer, client: client, settings: config.upstream,
                redactor: shared.redactor, generationID: generationID, extraHeaders: depthHeader,
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

    private func startFusion(_ fusionRequest: FusionRequest, hops: Int, fallbacks: [String], writer: HTTPResponseWriter, generationID: String,
                             log: Logger) throws(APIError) {
        guard let settings = config.fusion else { return }
        let routes = try FusionSession.resolveRoutes(fusionRequest, settings: settings, router: router, outerFallbacks: fallbacks)
        if webTools == nil {
            for (key, value) in [("web_search", fusionRequest.parameters.webSearch), ("judge_web_search", fusionRequest.parameters.judgeWebSearch)]
            where value == true {
                throw .invalidRequest("'\(fusionRequest.parameterPath).\(key)' is true but this gateway has no web tools configured (see the `web:` section of its config).",
                                      param: "\(fusionRequest.parameterPath).\(key)")
            }
        }
        let session = FusionSession(
            request: fusionRequest, routes: routes, writer: writer, workers: workers, settings: settings,
            upstream: config.upstream, redactor: shared.redactor, generationID: generationID, hops: hops, metrics: shared.metrics,
            slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, web: webTools
        ) { [unowned self] record in
            finished(record, writer: writer, log: log)
        }
        active[ObjectIdentifier(writer)] = session
        shared.metrics.activeStreams.increment()
        session.start()
    }

    /// Files the record (and settles its key's limits) and logs the request's one summary line.
    func finished(_ record: GenerationRecord, writer: HTTPResponseWriter, log: Logger) {
        file(record, writer: writer)
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
        String(format: "%.2f", value)
    }
}
