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
    /// `ChatCompletionProxy` or run by a `FusionSession`. Every request gets a generation id and,
    /// however it ends (refused here included), a record under it (`finished`).
    func chatCompletion(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let startedAt = EventLoop.monotonicNanoseconds()
        var record = GenerationRecord(id: GenerationStore.newID(), route: .chatCompletions, kind: .rejected, requestedModel: "",
                                      streamed: false, created: Int(Date().timeIntervalSince1970),
                                      owner: shared.recordOwner(presentedKey: RequestPolicy.presentedKey(request)))
        var log = logger
        log[metadataKey: "generation_id"] = "\(record.id)"
        var prompt: String?
        do throws(APIError) {
            let (depth, hops) = try RecursionHeaders.parse(request, maxHops: config.server.maxHops)
            let chat = try ChatRequest(body: request.body)
            record.requestedModel = chat.model
            record.model = chat.model
            record.streamed = chat.stream
            let neutral = chat.modelRequest()
            prompt = GatewayShared.loggedPrompt(neutral.messages, enabled: config.server.logPrompts)
            let proxied: ProxiedRequest
            switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth, structuredEvents: try chat.includeFusionEvents()) {
            case .passthrough:
                proxied = ProxiedRequest(chat: chat, neutral: neutral, relayRawBody: true)
            case .withoutFusion(_, let rewritten):
                proxied = ProxiedRequest(chat: chat, neutral: rewritten, relayRawBody: false)
            case .fusion(let fusionRequest):
                record.kind = .fusion
                try startFusion(fusionRequest, hops: hops, fallbacks: chat.fallbackModels, writer: writer, record: record,
                                startedAt: startedAt, prompt: prompt, log: log)
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
            record.kind = .proxy
            let proxy = ChatCompletionProxy(
                request: proxied, candidates: candidates, writer: writer, client: client, settings: config.upstream,
                redactor: shared.redactor, record: record, startedAt: startedAt, extraHeaders: depthHeader,
                slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, stats: stats,
                metrics: shared.metrics
            ) { [unowned self] record in
                finished(record, writer: writer, prompt: prompt, log: log)
            }
            active[ObjectIdentifier(writer)] = proxy
            shared.metrics.activeStreams.increment()
            proxy.start()
        } catch {
            var error = error
            error.headers.append(("X-Generation-Id", record.id))
            writer.respond(error: error)
            record.kind = .rejected
            record.close(ResponseEnding(sentStatus: error.status, error: RecordError(error, redactor: shared.redactor)),
                         durationMilliseconds: OverheadMeter.milliseconds(EventLoop.monotonicNanoseconds() - startedAt))
            shared.file(record, prompt: prompt, log: log)
        }
    }

    private func startFusion(_ fusionRequest: FusionRequest, hops: Int, fallbacks: [String], writer: HTTPResponseWriter,
                             record: GenerationRecord, startedAt: UInt64, prompt: String?, log: Logger) throws(APIError) {
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
            upstream: config.upstream, redactor: shared.redactor, record: record, startedAt: startedAt, hops: hops,
            metrics: shared.metrics, slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, web: webTools
        ) { [unowned self] record in
            finished(record, writer: writer, prompt: prompt, log: log)
        }
        active[ObjectIdentifier(writer)] = session
        shared.metrics.activeStreams.increment()
        session.start()
    }

    /// A completion is over: files its record (store, metrics, log lines: `GatewayShared.file`).
    /// Every route that starts a proxy or a session ends it here.
    func finished(_ record: GenerationRecord, writer: HTTPResponseWriter, prompt: String?, log: Logger) {
        active[ObjectIdentifier(writer)] = nil
        shared.metrics.activeStreams.decrement()
        shared.file(record, prompt: prompt, log: log)
    }
}
