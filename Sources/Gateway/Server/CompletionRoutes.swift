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
    /// `CompletionProxy` or run by a `FusionSession`.
    func chatCompletion(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        serve(request, writer, api: .chatCompletions) { generationID, depth throws(APIError) in
            let chat = try ChatRequest(body: request.body)
            let neutral = chat.modelRequest()
            let plan = try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth,
                                           structuredEvents: try chat.includeFusionEvents())
            return switch plan {
            case .passthrough:
                .proxy(ChatProxyRequest(chat: chat, neutral: neutral, relayRawBody: true), fallbacks: chat.fallbackModels)
            case .withoutFusion(_, let rewritten):
                .proxy(ChatProxyRequest(chat: chat, neutral: rewritten, relayRawBody: false), fallbacks: chat.fallbackModels)
            case .fusion(let fusion):
                .fusion(fusion, FusionChatRenderer(id: generationID, model: fusion.outerModel, created: Self.unixTime(),
                                                   stream: fusion.stream, includeUsage: fusion.includeUsage,
                                                   namedEvents: fusion.structuredEvents),
                        fallbacks: chat.fallbackModels)
            }
        }
    }

    /// `POST /v1/messages` (Anthropic's Messages API): the same, answered in Anthropic's shapes.
    func messages(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        serve(request, writer, api: .messages) { generationID, depth throws(APIError) in
            let messages = try MessagesRequest(body: request.body)
            let neutral = messages.modelRequest()
            return switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth) {
            case .passthrough:
                .proxy(MessagesProxyRequest(messages: messages, neutral: neutral, relayRawBody: true), fallbacks: [])
            case .withoutFusion(_, let rewritten):
                .proxy(MessagesProxyRequest(messages: messages, neutral: rewritten, relayRawBody: false), fallbacks: [])
            case .fusion(let fusion):
                // The client's model name (`fusion` included) names the message, as Anthropic echoes it.
                .fusion(fusion, FusionMessagesRenderer(id: generationID, model: messages.model, stream: fusion.stream), fallbacks: [])
            }
        }
    }

    /// `POST /v1/responses` (OpenAI's Responses API): always translated; Fusion as an
    /// `openrouter:fusion` output item with `response.fusion_call.*` events.
    func responses(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        serve(request, writer, api: .responses) { generationID, depth throws(APIError) in
            let responses = try ResponsesRequest(body: request.body)
            let neutral = responses.modelRequest()
            switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth) {
            case .passthrough:
                return .proxy(ResponsesProxyRequest(responses: responses, neutral: neutral), fallbacks: responses.fallbackModels)
            case .withoutFusion(_, let rewritten):
                return .proxy(ResponsesProxyRequest(responses: responses, neutral: rewritten), fallbacks: responses.fallbackModels)
            case .fusion(let fusion):
                let envelope = ResponseEnvelope(generationID: generationID, createdAt: Self.unixTime(), model: responses.model,
                                                echoed: responses.echoedFields)
                return .fusion(fusion, ResponsesFusionRenderer(envelope: envelope, stream: fusion.stream,
                                                               openRouterEvents: responses.openRouterFusionEvents),
                               fallbacks: responses.fallbackModels)
            }
        }
    }

    /// What a route decided to run.
    enum Plan {
        case proxy(any ProxyRequest, fallbacks: [String])
        case fusion(FusionRequest, any FusionRenderer, fallbacks: [String])
    }

    /// The pipeline every completion route shares: recursion headers checked, the body
    /// validated and planned by `decide`, models routed (a bad one is a 400 naming its field),
    /// then a proxy or a Fusion session started; any refusal answered in the route's API shape.
    private func serve(_ request: HTTPRequest, _ writer: HTTPResponseWriter, api: ClientAPI,
                       decide: (_ generationID: String, _ depth: Int) throws(APIError) -> Plan) {
        let generationID = GenerationStore.newID()
        var log = logger
        log[metadataKey: "generation_id"] = "\(generationID)"
        do throws(APIError) {
            let (depth, hops) = try RecursionHeaders.parse(request, maxHops: config.server.maxHops)
            switch try decide(generationID, depth) {
            case .proxy(let proxied, let fallbacks):
                try startProxy(proxied, fallbacks: fallbacks, depth: depth, hops: hops, writer: writer, generationID: generationID, log: log)
            case .fusion(let fusion, let renderer, let fallbacks):
                try startFusion(fusion, renderer: renderer, api: api, hops: hops, fallbacks: fallbacks, writer: writer,
                                generationID: generationID, log: log)
            }
        } catch {
            var error = error
            error.headers.append(("X-Generation-Id", generationID))
            writer.respond(error: error, api: api)
            shared.metrics.countRequest(kind: "rejected", status: error.status)
            shared.metrics.countError(code: error.code)
            log.info("request rejected", metadata: ["status": "\(error.status)", "code": "\(error.code)"])
        }
    }

    private func startProxy<Request: ProxyRequest>(_ proxied: Request, fallbacks: [String], depth: Int, hops: Int, writer: HTTPResponseWriter,
                                                   generationID: String, log: Logger) throws(APIError) {
        var candidates = [try router.route(proxied.neutral.model)]
        for (index, model) in fallbacks.enumerated() {
            do {
                candidates.append(try router.route(model))
            } catch {
                throw APIError(status: error.status, type: error.type, code: error.code,
                               message: "Invalid fallback in 'models[\(index)]': \(error.message)", param: "models[\(index)]")
            }
        }
        // What the upstream's API cannot express is a 400 now, not a failure after a retry.
        for candidate in candidates { try candidate.provider.validate(proxied.neutral) }
        // Each hop through a gateway counts: a provider that points back here is stopped (508).
        var depthHeader: [(String, String)] = [("x-fusion-hops", String(hops + 1))]
        if depth > 0 { depthHeader.append(("x-fusion-depth", String(depth))) }
        let proxy = CompletionProxy(
            request: proxied, candidates: candidates, writer: writer, client: client, settings: config.upstream,
            redactor: shared.redactor, generationID: generationID, extraHeaders: depthHeader,
            slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, stats: stats,
            metrics: shared.metrics, scratch: scratch
        ) { [unowned self] record in
            finished(record, writer: writer, log: log)
        }
        active[ObjectIdentifier(writer)] = proxy
        shared.metrics.activeStreams.increment()
        proxy.start()
    }

    private func startFusion<Renderer: FusionRenderer>(_ fusionRequest: FusionRequest, renderer: Renderer, api: ClientAPI, hops: Int,
                                                       fallbacks: [String], writer: HTTPResponseWriter, generationID: String,
                                                       log: Logger) throws(APIError) {
        guard let settings = config.fusion else { return }
        let routes = try FusionSession<Renderer>.resolveRoutes(fusionRequest, settings: settings, router: router, outerFallbacks: fallbacks)
        if webTools == nil {
            for (key, value) in [("web_search", fusionRequest.parameters.webSearch), ("judge_web_search", fusionRequest.parameters.judgeWebSearch)]
            where value == true {
                throw .invalidRequest("'\(fusionRequest.parameterPath).\(key)' is true but this gateway has no web tools configured (see the `web:` section of its config).",
                                      param: "\(fusionRequest.parameterPath).\(key)")
            }
        }
        let session = FusionSession(
            request: fusionRequest, renderer: renderer, api: api, routes: routes, writer: writer, workers: workers, settings: settings,
            upstream: config.upstream, redactor: shared.redactor, generationID: generationID, hops: hops, metrics: shared.metrics,
            slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, web: webTools
        ) { [unowned self] record in
            finished(record, writer: writer, log: log)
        }
        active[ObjectIdentifier(writer)] = session
        shared.metrics.activeStreams.increment()
        session.start()
    }

    static func unixTime() -> Int { Int(Date().timeIntervalSince1970) }

    /// Files the record and logs the request's one summary line.
    func finished(_ record: GenerationRecord, writer: HTTPResponseWriter, log: Logger) {
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
        // The summary line is built only when it will be written (it costs microseconds).
        guard log.logLevel <= .info else { return }
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
