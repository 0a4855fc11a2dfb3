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
        serve(request, writer, api: .chatCompletions) { generationID, created, depth throws(APIError) in
            let chat = try ChatRequest(body: request.body)
            let neutral = chat.modelRequest()
            let plan = try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth,
                                           structuredEvents: try chat.includeFusionEvents())
            return switch plan {
            case .passthrough:
                // A fusion record is restored in the neutral form only (no upstream knows it).
                .proxy(ChatProxyRequest(chat: chat, neutral: neutral, relayRawBody: !chat.carriesFusionRecords),
                       fallbacks: chat.fallbackModels)
            case .withoutFusion(_, let rewritten):
                .proxy(ChatProxyRequest(chat: chat, neutral: rewritten, relayRawBody: false), fallbacks: chat.fallbackModels)
            case .fusion(let fusion):
                .fusion(fusion, FusionChatRenderer(id: generationID, model: fusion.outerModel, created: created,
                                                   stream: fusion.stream, includeUsage: fusion.includeUsage,
                                                   namedEvents: fusion.structuredEvents),
                        fallbacks: chat.fallbackModels)
            }
        }
    }

    /// `POST /v1/messages` (Anthropic's Messages API): the same, answered in Anthropic's shapes.
    func messages(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        serve(request, writer, api: .messages) { generationID, _, depth throws(APIError) in
            let messages = try MessagesRequest(body: request.body)
            let betas = try AnthropicProvider.betaNames(request.headerList("anthropic-beta"))
            try messages.validateThinkingBudget(betas: betas)
            let neutral = messages.modelRequest()
            let fallbacks = messages.fallbackModels
            return switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth) {
            case .passthrough:
                .proxy(MessagesProxyRequest(messages: messages, neutral: neutral, relayRawBody: true, betas: betas), fallbacks: fallbacks)
            case .withoutFusion(_, let rewritten):
                .proxy(MessagesProxyRequest(messages: messages, neutral: rewritten, relayRawBody: false, betas: betas), fallbacks: fallbacks)
            case .fusion(let fusion):
                // The concrete model that answers, not the alias, as the Fusion docs promise.
                .fusion(fusion, FusionMessagesRenderer(id: generationID, model: fusion.outerModel, stream: fusion.stream,
                                                                namedEvents: messages.includeFusionEvents, stopSequences: neutral.stop),
                        fallbacks: fallbacks)
            }
        }
    }

    /// `POST /v1/responses` (OpenAI's Responses API): always translated; Fusion as an
    /// `openrouter:fusion` output item with `response.fusion_call.*` events.
    func responses(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        serve(request, writer, api: .responses) { generationID, created, depth throws(APIError) in
            let responses = try ResponsesRequest(body: request.body)
            let neutral = responses.modelRequest()
            switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth) {
            case .passthrough:
                return .proxy(ResponsesProxyRequest(responses: responses, neutral: neutral), fallbacks: responses.fallbackModels)
            case .withoutFusion(_, let rewritten):
                return .proxy(ResponsesProxyRequest(responses: responses, neutral: rewritten), fallbacks: responses.fallbackModels)
            case .fusion(let fusion):
                // The concrete model that answers, not the alias, as the Fusion docs promise.
                let envelope = ResponseEnvelope(generationID: generationID, createdAt: created, model: fusion.outerModel,
                                                echoed: responses.echoedFields)
                let events = ResponsesFusionRenderer.sendsEvents(asked: responses.includeFusionEvents) { request.header($0) }
                return .fusion(fusion, ResponsesFusionRenderer(envelope: envelope, stream: fusion.stream,
                                                               openRouterEvents: responses.openRouterFusionEvents, sendsEvents: events),
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
    /// validated and planned by `decide` (given the generation id and the `created` every
    /// response of it carries), models routed (a bad one is a 400 naming its field), then a
    /// proxy or a Fusion session started; any refusal answered in the route's API shape. Every
    /// request gets a record under its id, however it ends (`finished`, or `file` for a refusal).
    private func serve(_ request: HTTPRequest, _ writer: HTTPResponseWriter, api: ClientAPI,
                       decide: (_ generationID: String, _ created: Int, _ depth: Int) throws(APIError) -> Plan) {
        let startedAt = EventLoop.monotonicNanoseconds()
        var record = newRecord(request, api: api)
        var log = logger
        log[metadataKey: "generation_id"] = "\(record.id)"
        var prompt: String?
        do throws(APIError) {
            let (depth, hops) = try RecursionHeaders.parse(request, maxHops: config.server.maxHops)
            let start: () -> Void
            let plan: () -> HoldEstimate.Plan
            let outputLimit: String
            switch try decide(record.id, record.created, depth) {
            case .proxy(let proxied, let fallbacks):
                record.note(requestedModel: proxied.clientModel, streamed: proxied.stream, kind: .proxy)
                prompt = GatewayShared.loggedPrompt(proxied.neutral.messages, enabled: config.server.logPrompts)
                start = try prepareProxy(proxied, fallbacks: fallbacks, depth: depth, hops: hops, writer: writer, record: record,
                                         startedAt: startedAt, prompt: prompt, log: log)
                plan = { HoldEstimate.proxy(proxied.neutral, fallbacks: fallbacks) }
                outputLimit = OutputLimit.request(responses: api == .responses)
            case .fusion(let fusion, let renderer, let fallbacks):
                record.note(requestedModel: fusion.requestedModel.isEmpty ? fusion.base.model : fusion.requestedModel,
                            streamed: fusion.stream, kind: .fusion)
                prompt = GatewayShared.loggedPrompt(fusion.messages, enabled: config.server.logPrompts)
                start = try prepareFusion(fusion, renderer: renderer, api: api, hops: hops, fallbacks: fallbacks, writer: writer,
                                          record: record, startedAt: startedAt, prompt: prompt, log: log)
                plan = { [config] in config.fusion.map { HoldEstimate.fusion(fusion, settings: $0, fallbacks: fallbacks) } ?? HoldEstimate.Plan() }
                outputLimit = OutputLimit.deliberation(parameterPath: fusion.parameterPath, responses: api == .responses)
            }
            // Validated and routed: what it may use is held against its key's tokens per minute
            // and budgets first.
            hold(plan, outputLimit: outputLimit, record: record, api: api, writer: writer, startedAt: startedAt, prompt: prompt, log: log,
                      then: start)
        } catch {
            if record.requestedModel.isEmpty {
                // Refused before it was planned (bad JSON, a bad field): what its top level names.
                let asked = Self.askedFor(request.body)
                record.requestedModel = asked.model
                record.streamed = asked.streamed
            }
            refuse(error, record: record, api: api, writer: writer, startedAt: startedAt, prompt: prompt, log: log)
        }
    }

    /// A new request's record, before anything is known of it but its route and its key's owner.
    func newRecord(_ request: HTTPRequest, api: ClientAPI) -> GenerationRecord {
        GenerationRecord(id: GenerationStore.newID(from: randomPool), route: RecordRoute(api), kind: .rejected, requestedModel: "",
                         streamed: false, created: Self.unixTime(), owner: shared.recordOwner(presentedKey: policy.presentedKey(request)))
    }

    /// Answers a request refused before any upstream call (invalid, unknown model, over its key's
    /// limits) with `error` under the record's id, and files its record as `rejected`.
    func refuse(_ error: APIError, record: GenerationRecord, api: ClientAPI, writer: HTTPResponseWriter, startedAt: UInt64,
                prompt: String?, log: Logger) {
        var error = error
        var record = record
        error.headers += GenerationHeaders.naming(record.id)
        writer.respond(error: error, api: api, redactor: shared.redactor)
        record.kind = .rejected
        record.close(ResponseEnding(sentStatus: api.status(of: error), error: RecordError(error, redactor: shared.redactor)),
                     durationMilliseconds: OverheadMeter.milliseconds(EventLoop.monotonicNanoseconds() - startedAt))
        record.overheadMilliseconds = record.durationMilliseconds  // no upstream was asked: all of it was the gateway's
        record.redactNames(shared.redactor)
        shared.file(record, prompt: prompt, log: keyed(log, writer))
        file(record, writer: writer)
    }

    /// Routes and validates a proxied request (a refusal throws); returns what starts its proxy.
    private func prepareProxy<Request: ProxyRequest>(_ proxied: Request, fallbacks: [String], depth: Int, hops: Int, writer: HTTPResponseWriter,
                                                     record: GenerationRecord, startedAt: UInt64, prompt: String?,
                                                     log: Logger) throws(APIError) -> () -> Void {
        var candidates = [try router.route(proxied.neutral.model)]
        for model in fallbacks {
            do {
                candidates.append(try router.route(model))
            } catch {
                throw Self.invalidFallback(error, model: model)
            }
        }
        // What the upstream's API cannot express is a 400 now, not a failure after a retry; a
        // fallback's refusal names the fallback (review 102 #4: a Claude request was told
        // "Gemini's API takes function tools only", with no word of `models`).
        for (index, candidate) in candidates.enumerated() {
            do {
                try candidate.provider.validate(proxied.neutral)
            } catch {
                var refusal = error
                refusal.param = error.param.map(proxied.clientParam)
                throw index == 0 ? refusal : Self.unservedBy(fallback: candidate.slug, refusal)
            }
        }
        // Each hop through a gateway counts: a provider that points back here is stopped (508).
        var depthHeader: [(String, String)] = [("x-fusion-hops", String(hops + 1))]
        // Both names, as Fusion's inner calls send them: OpenRouter reads its own.
        if depth > 0 { depthHeader += [("x-fusion-depth", String(depth)), ("x-openrouter-fusion-depth", String(depth))] }
        return { [unowned self] in
            let proxy = CompletionProxy(
                request: proxied, candidates: candidates, writer: writer, client: client, settings: config.upstream,
                redactor: shared.redactor, record: record, startedAt: startedAt, extraHeaders: depthHeader,
                slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, stats: stats,
                metrics: shared.metrics, scratch: scratch, collected: shared.collected
            ) { [unowned self] close in
                ended(id: record.id, close: close, writer: writer, prompt: prompt, log: log)
            }
            active[ObjectIdentifier(writer)] = proxy
            shared.metrics.activeStreams.increment()
            proxy.start()
        }
    }

    /// A fallback of `models` that does not route, named by its model: its place among the
    /// fallbacks is not its place in the client's list, which may repeat a model or name the
    /// request's own (review 104 #5: `models.1` was called `models.0`).
    static func invalidFallback(_ error: APIError, model: String) -> APIError {
        APIError(status: error.status, type: error.type, code: error.code,
                 message: "Invalid fallback '\(named(model))' in 'models': \(error.message)", param: "models")
    }

    /// A client's model name as an error quotes it: its first 80 characters (a name of 200 KB is
    /// refused, not echoed back whole), control and format characters as spaces (review 105 #4).
    private static func named(_ model: String) -> String {
        let visible = String(String.UnicodeScalarView(model.unicodeScalars.prefix(80).map { UpstreamErrors.isUnsafeInText($0) ? " " : $0 }))
        return model.unicodeScalars.count <= 80 ? visible : visible + "…"
    }

    /// A fallback whose upstream's API cannot express the request: the refusal says which
    /// (review 102 #4), its `param` still the field it cannot serve (review 105 #7).
    static func unservedBy(fallback model: String, _ refusal: APIError) -> APIError {
        var error = refusal
        error.message = "The fallback '\(named(model))' in 'models' cannot serve this request: \(refusal.message)"
        return error
    }

    /// Routes and bounds a deliberation (a refusal throws); returns what starts its session.
    private func prepareFusion<Renderer: FusionRenderer>(_ fusionRequest: FusionRequest, renderer: Renderer, api: ClientAPI, hops: Int,
                                                         fallbacks: [String], writer: HTTPResponseWriter, record: GenerationRecord,
                                                         startedAt: UInt64, prompt: String?, log: Logger) throws(APIError) -> () -> Void {
        guard let settings = config.fusion else { return {} }
        let routes = try FusionSession<Renderer>.resolveRoutes(fusionRequest, settings: settings, router: router, outerFallbacks: fallbacks,
                                                               invalidFallback: { Self.invalidFallback($0, model: $1) })
        // The outer model's turns carry the client's options (its output format, its tool
        // choice): what that upstream's API cannot express is a 400 now, as for a proxied request,
        // not dropped without a word after the panel ran (review 64B #1).
        let outer = FusionPrompts.outerFirstRequest(fusionRequest)
        for (index, route) in ([routes.byModel[fusionRequest.outerModel]].compactMap({ $0 }) + routes.outerFallbacks).enumerated() {
            do {
                try route.provider.validate(outer)
            } catch {
                var refusal = error
                refusal.param = error.param.map { api.clientParam(fusionRequest.clientPath($0)) }
                throw index == 0 ? refusal : Self.unservedBy(fallback: route.slug, refusal)
            }
        }
        // The conversation goes to every member, the judge and the outer model's turns: bounded
        // before any of them starts (review 21 F7), not refused by an upstream after the panel ran.
        let calls = fusionRequest.parameters.analysisModels.count + 2 + (fusionRequest.forced ? 0 : 1)
        let fanOut = CostEstimate.bytes(request: fusionRequest.base).multipliedReportingOverflow(by: Int64(calls))
        // Over the bound of every deliberation in flight, it would never fit: a 413, not a 503 to
        // retry forever (review 75A #3).
        // With more than one gateway key, a request holds its key's share too (review 75A #2).
        let key = shared.gatewayKeys.count > 1 ? tickets[ObjectIdentifier(writer)]?.identity.id : nil
        var bounds = [(settings.maxFanOutBytes, "fusion.max_fanout_bytes"), (shared.deliberations.limit, "fusion.max_bytes_in_flight")]
        if key != nil { bounds.append((shared.deliberationsByKey.limit, "fusion.max_bytes_in_flight_per_key")) }
        for (limit, setting) in bounds where fanOut.overflow || fanOut.partialValue > Int64(limit) {
            throw APIError(status: 413, type: "invalid_request_error", code: "request_too_large",
                           message: "This conversation is too large to deliberate on: sent to each of the deliberation's \(calls) calls it would be about \(fanOut.overflow ? Int64.max : fanOut.partialValue) bytes, over \(setting) (\(limit)).")
        }
        // Members and the judge read the conversation as text: a block only Anthropic reads (a
        // PDF by URL, a search result) would be silently left out of their question (review 46 #3).
        for (index, message) in fusionRequest.base.messages.enumerated() {
            guard let block = message.anthropicOnlyInputBlock else { continue }
            throw .invalidRequest("Blocks of type '\(block.type)' are read by Anthropic's API only; a deliberation's panel reads the conversation as text.",
                                  param: message.partPath(block.part, at: index))
        }
        if webTools == nil {
            for (key, value) in [("web_search", fusionRequest.parameters.webSearch), ("judge_web_search", fusionRequest.parameters.judgeWebSearch)]
            where value == true {
                throw .invalidRequest("'\(fusionRequest.parameterPath).\(key)' is true but this gateway has no web tools configured (see the `web:` section of its config).",
                                      param: "\(fusionRequest.parameterPath).\(key)")
            }
        }
        // Held with every other deliberation's bytes from now until it ends (released if it never
        // starts: the budget goes with this closure).
        let keyed = key.map { (bound: shared.deliberationsByKey, key: $0) }
        guard let budget = ByteBudget(limit: settings.maxUpstreamBytes, shared: shared.deliberations, keyed: keyed, holding: Int(fanOut.partialValue)) else {
            let full = keyed.map { $0.bound.current($0.key) + Int(fanOut.partialValue) > $0.bound.limit } ?? false
            var busy = APIError(status: 503, type: "server_error", code: "server_busy",
                                message: full ? "This key's deliberations in flight hold all the bytes one key may (fusion.max_bytes_in_flight_per_key); retry shortly."
                                              : "The gateway is running as many deliberations as it may hold at once (fusion.max_bytes_in_flight); retry shortly.")
            busy.headers = [("Retry-After", "1")]
            throw busy
        }
        return { [unowned self] in
            let session = FusionSession(
                request: fusionRequest, renderer: renderer, api: api, routes: routes, writer: writer, workers: workers, settings: settings,
                upstream: config.upstream, budget: budget, redactor: shared.redactor, record: record, startedAt: startedAt, hops: hops,
                metrics: shared.metrics, slowClientTimeoutMilliseconds: config.server.slowClientTimeoutMilliseconds, web: webTools
            ) { [unowned self] close in
                ended(id: record.id, close: close, writer: writer, prompt: prompt, log: log)
            }
            active[ObjectIdentifier(writer)] = session
            shared.metrics.activeStreams.increment()
            session.start()
        }
    }

    static func unixTime() -> Int { Int(Date().timeIntervalSince1970) }

    /// A completion is over, its last bytes queued for the client. Every route that starts a proxy
    /// or a session ends it here. Its record is closed and filed once this loop iteration's writes
    /// are out: closing it (the per-call accounting), the store, the key's limits, the metrics and
    /// the log line took ~70 µs before a deliberation's `[DONE]`, and the client need not wait
    /// for them. Until then a lookup of its id waits for the record rather than missing it.
    func ended(id: String, close: @escaping RecordCloser, writer: HTTPResponseWriter, prompt: String?, log: Logger) {
        store.records.expect(id)
        loop.afterWrites { [self] in finished(close(), writer: writer, prompt: prompt, log: log) }
    }

    /// `log` naming the gateway key the request came with (its name, or `sha256:` and 16 hex
    /// digits for an unnamed key), so usage per key can be read from the log lines too.
    func keyed(_ log: Logger, _ writer: HTTPResponseWriter) -> Logger {
        guard let ticket = tickets[ObjectIdentifier(writer)] else { return log }
        var log = log
        log[metadataKey: "key"] = "\(ticket.identity.id)"
        return log
    }

    /// Files a completion's record (metrics and log lines: `GatewayShared.file`; the record store
    /// and its key's limits: `file`).
    func finished(_ record: GenerationRecord, writer: HTTPResponseWriter, prompt: String?, log: Logger) {
        var record = record
        record.spendMicros = Spend.micros(of: record, prices: config.prices, rates: shared.reportedRates)
        record.redactNames(shared.redactor)
        active[ObjectIdentifier(writer)] = nil
        shared.metrics.activeStreams.decrement()
        // The metrics and log lines first: once a lookup finds the record, they count it too.
        shared.file(record, prompt: prompt, log: keyed(log, writer))
        file(record, writer: writer)
    }
}
