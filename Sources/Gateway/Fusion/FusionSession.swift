import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Providers
import Surfaces
import UpstreamClient
import Web

/// The I/O shell of one Fusion request: performs what `FusionSessionMachine` decides (inner
/// calls on the gateway's loops, web tool calls, output for the client) and feeds it what
/// happens. Every inner call reports through the session's fan-in channel, which also carries
/// the client's bytes, so the session's state lives on one loop while its panel runs on all.
/// `Renderer` writes the client's API (chat completions, Responses, Anthropic Messages).
final class FusionSession<Renderer: FusionRenderer> {
    var machine: FusionSessionMachine
    private var renderer: Renderer
    private let api: ClientAPI
    let routes: Routes
    private let writer: HTTPResponseWriter
    private let workers: [UpstreamWorker]
    /// Open calls this loop may carry beyond the least busy one before members go elsewhere.
    private let panelSpillMargin: Int
    private let loop: EventLoop
    private let upstream: GatewayConfig.Upstream
    private let redactor: Redactor
    private var generationID: String { record.id }
    /// Gateways the request passed through before this one (`x-fusion-hops`).
    private let hops: Int
    private let slowClientTimeout: UInt64
    private let metrics: GatewayMetrics?
    private let web: WebToolRunner?
    /// When the request arrived (monotonic ns): the zero of the session's clock.
    let startedAt: UInt64
    private var onFinish: ((@escaping RecordCloser) -> Void)?
    var record: GenerationRecord
    /// How the response is ending (see `ResponseEnding`).
    var sentStatus: Int?
    var failure: RecordError?
    var cancelled = false
    /// Every upstream call's record, and the gateway's own time per phase.
    var callLog: InnerCallLog
    var meter = OverheadMeter()
    var callStarts: [FusionSessionMachine.CallID: UInt64] = [:]
    private var countedDeliberation = false
    private var stream: ClientStream!
    private var watchdog: StreamWatchdog?
    private var calls: [FusionSessionMachine.CallID: CallHandle] = [:]
    /// Large signatures and encrypted data, joined from their pieces.
    private var opaque = InnerCallRecord.OpaqueAssembly()
    private var tools: [FusionSessionMachine.ToolRunID: WebToolTask] = [:]
    /// The machine's timers (quorum grace, deadline, readable text), armed on this loop.
    private var timers: [FusionTimer: LoopTimer] = [:]
    private var out: [UInt8] = []
    private var finished = false
    /// What all of this deliberation's upstream responses may bring in.
    private let budget: ByteBudget

    /// `record`: the completion's record as the route opened it (id, route, owner, `created`);
    /// `startedAt`: when the request arrived (monotonic ns). `onFinish` gets, once, what closes
    /// the record (see `RecordCloser`).
    init(request: FusionRequest, renderer: Renderer, api: ClientAPI, routes: Routes, writer: HTTPResponseWriter, workers: [UpstreamWorker],
         settings: FusionSettings, upstream: GatewayConfig.Upstream, budget: ByteBudget? = nil, redactor: Redactor, record: GenerationRecord,
         startedAt: UInt64 = EventLoop.monotonicNanoseconds(), hops: Int = 0, metrics: GatewayMetrics? = nil,
         slowClientTimeoutMilliseconds: UInt64 = 30_000, web: WebToolRunner? = nil, onFinish: @escaping (@escaping RecordCloser) -> Void) {
        self.routes = routes
        self.writer = writer
        self.workers = workers
        loop = workers[0].loop
        self.upstream = upstream.forClient(api)
        self.redactor = redactor
        self.startedAt = startedAt
        self.hops = hops
        self.metrics = metrics
        self.web = web
        slowClientTimeout = slowClientTimeoutMilliseconds
        self.onFinish = onFinish
        func tools(_ on: Bool?, _ configured: KeyPath<WebSettings, Bool>) -> [ToolDefinition] {
            guard let web, on ?? web.settings[keyPath: configured] else { return [] }
            return ToolLoop.webToolDefinitions(search: web.settings.search != nil, fetch: web.settings.fetch)
        }
        let limits = FusionSessionMachine.Limits(
            memberTimeoutMilliseconds: settings.memberTimeoutMilliseconds, judgeTimeoutMilliseconds: settings.judgeTimeoutMilliseconds,
            outerTimeoutMilliseconds: nil, maxInnerCalls: settings.maxInnerCalls,
            maxWebToolCalls: settings.maxWebToolCalls, maxWebCallsPerTurn: web?.settings.maxCallsPerTurn ?? 4,
            defaultMaxTokens: settings.defaultMaxTokens)
        var request = request
        // Unique per request: its generation id's hex digits (`gen-<hex>`).
        request.fusionCallID = "call_fusion_" + (record.id.hasPrefix("gen-") ? record.id.dropFirst(4) : Substring(record.id)).filter(\.isHexDigit)
        machine = FusionSessionMachine(request: request, settings: settings, limits: limits,
                                       panelTools: tools(request.parameters.webSearch, \.panel),
                                       judgeTools: tools(request.parameters.judgeWebSearch, \.judge),
                                       readableProgress: request.stream && !request.structuredEvents)
        // Anthropic's Messages have no block a client would send back for the gateway's answered
        // fusion call: a deliberation run in a parallel turn would be paid for and then lost.
        machine.deliberatesInParallelTurns = api != .messages
        machine.redactor = redactor
        self.renderer = renderer
        self.api = api
        self.budget = budget ?? ByteBudget(limit: settings.maxUpstreamBytes)
        panelSpillMargin = settings.panelSpillMargin
        var record = record
        record.kind = .fusion
        record.model = request.outerModel
        record.provider = routes.byModel[request.outerModel]?.endpoint.name
        self.record = record
        callLog = InnerCallLog(requestStart: startedAt, redactor: redactor)
    }

    private var now: Double { Double(EventLoop.monotonicNanoseconds() - startedAt) / 1e6 }

    func start() {
        stream = ClientStream(writer: writer, loop: loop, capacity: 128, redactor: redactor)
        stream.onEvent = { [weak self] producer, kind, bytes in self?.didReceive(producer, kind, bytes) }
        writer.onClientGone = { [unowned self] in
            cancelled = true
            perform(machine.cancel())
            finish()
        }
        if machine.request.stream {
            watchdog = StreamWatchdog(
                loop: loop, keepAliveIntervalMilliseconds: upstream.keepAliveIntervalMilliseconds,
                slowClientTimeoutMilliseconds: slowClientTimeout, blockedMilliseconds: { [unowned self] in stream.blockedMilliseconds() },
                sendKeepAlive: { [unowned self] in write(Array(": keep-alive\n\n".utf8)) },
                dropClient: { [unowned self] in
                    // The client takes nothing: drop it rather than pin the whole panel.
                    failure = .clientTooSlow(afterMilliseconds: slowClientTimeout)
                    cancelled = true
                    perform(machine.cancel())
                    writer.abort()
                    finish()
                })
        }
        // Forced fusion has no first outer turn: the panel starts with the request.
        meter.begin(machine.request.forced ? .panel : .outerFirst, at: startedAt)
        perform(machine.start(at: now))
    }

    // MARK: events in

    /// The status an upstream refused a call with (its last attempt's, not 2xx), for the member's
    /// `status_code`; nil when the call failed otherwise (a stream broken after its 200 included).
    static func refusalStatus(_ reason: MemberFailureReason, _ summary: InnerCallRecord.Summary) -> Int? {
        guard reason == .upstreamError || reason == .rateLimited else { return nil }
        let status = summary.httpStatus
        return (300...599).contains(status) ? status : nil
    }

    /// A record from an inner call (any loop), on this session's loop.
    private func didReceive(_ producer: UInt16, _ kind: UInt8, _ bytes: UnsafeRawBufferPointer) {
        guard !finished else { return }
        let event: FusionSessionMachine.Event
        let time = EventLoop.monotonicNanoseconds()
        switch kind {
        case InnerCallRecord.ended:
            calls[producer] = nil
            callStarts[producer] = nil
            opaque.end(producer)
            let (end, summary) = InnerCallRecord.decodeEnd(bytes)
            if let wait = callLog.ended(producer, end, summary, at: time) { meter.waited(from: wait.0, to: wait.1) }
            event = .callEnded(producer, end, answeredBy: callLog.answeredBy(producer))
        case InnerCallRecord.failed:
            calls[producer] = nil
            callStarts[producer] = nil
            opaque.end(producer)
            let (error, reason, summary) = InnerCallRecord.decodeFailure(bytes)
            if let wait = callLog.failed(producer, error, summary, at: time) { meter.waited(from: wait.0, to: wait.1) }
            event = .callFailed(producer, error, reason, statusCode: Self.refusalStatus(reason, summary), answeredBy: callLog.answeredBy(producer))
        case InnerCallRecord.promptUsage:
            callLog.promptUsage(producer, InnerCallRecord.decodeUsage(bytes))
            return
        case InnerCallRecord.accepted:
            callLog.accepted(producer, InnerCallRecord.decodeAccepted(bytes))
            return
        case InnerCallRecord.requestSent:
            callLog.requestSent(producer, InnerCallRecord.decodeAccepted(bytes))
            return
        case InnerCallRecord.refused:
            callLog.refused(producer, InnerCallRecord.decodeAccepted(bytes))
            return
        default:
            guard let modelEvent = opaque.event(from: producer, kind: kind, bytes) else { return }
            callLog.event(producer, modelEvent, at: time)
            event = .callEvent(producer, modelEvent)
        }
        perform(machine.handle(event, at: now))
    }

    // MARK: actions out

    /// Performs `actions`, calls first (`Action.callsFirst`): a call's upstream starts before
    /// the progress decided with it is rendered.
    private func perform(_ actions: [FusionSessionMachine.Action]) {
        let startsCall = actions.contains { if case .startCall = $0 { true } else { false } }
        for action in startsCall ? FusionSessionMachine.Action.callsFirst(actions) : actions { perform(action) }
    }

    private func perform(_ action: FusionSessionMachine.Action) {
        guard !finished else { return }  // a refused answer ended the session mid-batch
        switch action {
        case .startCall(let call):
            startCall(call)
        case .cancelCall(let id):
            // A member cut for latency was counted as cut (`memberCut`); any other is cancelled.
            if callLog.isOpenPanelCall(id) && !machine.cutCalls.contains(id) { metrics?.countMemberFailure(reason: "cancelled") }
            calls.removeValue(forKey: id)?.cancel()
            callStopped(id)
        case .runTool(let run, let call):
            runTool(run, call)
        case .cancelTool(let run):
            tools.removeValue(forKey: run)?.cancel()
        case .startTimer(let timer, let milliseconds):
            let handle = timers[timer] ?? LoopTimer(loop: loop) { [unowned self] in
                guard !finished else { return }
                perform(machine.handle(.timerFired(timer), at: now))
            }
            timers[timer] = handle
            handle.start(afterMilliseconds: milliseconds)
        case .cancelTimer(let timer):
            timers[timer]?.stop()
        case .checkCallerCalls:
            if let refusal = renderer.refusalAtEnd(finish: nil) { end(.failed(refusal)) }
        case .output(let output):
            if case .progress(.memberFailed(_, _, let reason, _, _)) = output { metrics?.countMemberFailure(reason: reason.rawValue) }
            if case .progress(.memberCut) = output { metrics?.countMemberFailure(reason: MemberFailureReason.cutForLatency.rawValue) }
            if let refusal = renderer.refusal(of: output) {
                end(.failed(refusal))
                return
            }
            if case .answer = output, renderer.namesModelLater, let model = callLog.currentOuterModel {
                renderer.name(answeringModel: model)
            }
            out.removeAll(keepingCapacity: true)
            renderer.render(output, sources: machine.sources, at: now, into: &out)
            write(out)
        case .finish(let outcome):
            end(outcome)
        }
    }

    /// A call the session stopped: its wait ends now (its own report will never come).
    private func callStopped(_ id: FusionSessionMachine.CallID) {
        let time = EventLoop.monotonicNanoseconds()
        callLog.cancelled(id, at: time)
        if let start = callStarts.removeValue(forKey: id) { meter.waited(from: start, to: time) }
    }

    /// Starts a call on a loop: this one, or for a panel member the least busy one if this one is
    /// clearly busier (`CallPlacement`).
    private func startCall(_ call: FusionSessionMachine.Call) {
        guard let route = routes.byModel[call.model] else { return }
        let candidates = call.role == .outer(final: false) || call.role == .outer(final: true) ? [route] + routes.outerFallbacks : [route]
        let time = EventLoop.monotonicNanoseconds()
        switch call.role {
        case .member:
            meter.begin(.panel, at: time)
            if !countedDeliberation {
                countedDeliberation = true
                metrics?.deliberationStarted()
            }
        case .judge: meter.begin(.judge, at: time)
        case .outer(final: true): meter.begin(.outerFinal, at: time)
        case .outer(final: false): break
        }
        let ledger = CallLedger()
        callLog.started(call.id, role: call.role, routes: candidates.map { ($0.slug, $0.endpoint.name) },
                        request: call.request, ledger: ledger, at: time)
        callStarts[call.id] = time
        let request = call.request
        var worker = workers[0]
        if case .member = call.role {
            worker = workers[CallPlacement.loop(own: 0, loads: workers.map(\.load.calls), margin: panelSpillMargin)]
        }
        let channel = stream.channel
        // Recursion protection: whoever serves this call must not offer fusion again (ours and
        // OpenRouter's header), and every gateway hop counts.
        let depth = String(machine.request.depth + 1)
        let headers = [("x-fusion-depth", depth), ("x-openrouter-fusion-depth", depth), ("x-fusion-hops", String(hops + 1))]
        let upstream = upstream
        let redactor = redactor
        let timeout = call.timeoutMilliseconds
        let producer = call.id
        let metrics = metrics
        let budget = budget
        calls[call.id] = CallHandle(on: worker, from: loop) { client in
            InnerCall(client: client, routes: candidates, request: request, extraHeaders: headers, timeoutMilliseconds: timeout,
                      upstream: upstream, redactor: redactor, channel: channel, producer: producer, metrics: metrics, budget: budget,
                      ledger: ledger)
        }
    }

    private func runTool(_ run: FusionSessionMachine.ToolRunID, _ call: ToolCall) {
        guard let web else {
            perform(machine.handle(.toolFinished(run, .failure("web tools are not available on this gateway")), at: now))
            return
        }
        let toolStart = EventLoop.monotonicNanoseconds()
        let task = web.run(call) { [unowned self, redactor] outcome in
            tools[run] = nil
            // What a tool brings back reaches models, the client and the record: no secret in it.
            var outcome = outcome
            outcome.content = redactor(outcome.content)
            outcome.error = outcome.error.map(redactor.callAsFunction)
            outcome.sources = outcome.sources.map { Source(url: redactor($0.url), title: redactor($0.title), content: redactor($0.content)) }
            guard !finished else { return }
            meter.waited(from: toolStart, to: EventLoop.monotonicNanoseconds())
            metrics?.countWebTool(name: call.name, failed: outcome.error != nil)
            perform(machine.handle(.toolFinished(run, outcome), at: now))
        }
        if let task { tools[run] = task }
    }

    // MARK: the client

    private func openStream() {
        guard machine.request.stream, writer.state == .pending else { return }
        sentStatus = 200
        writer.startStream(status: 200, headers: [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ] + GenerationHeaders.naming(generationID))
        var start: [UInt8] = []
        renderer.renderStart(into: &start)
        if !start.isEmpty { stream.emit(start) }
    }

    private func write(_ bytes: [UInt8]) {
        guard machine.request.stream, !bytes.isEmpty else { return }
        openStream()
        guard writer.state == .streaming else { return }
        stream.emit(bytes)
        watchdog?.noteWrite()
    }

    private func end(_ outcome: FusionSessionMachine.Outcome) {
        guard !finished else { return }
        budget.releaseShared()  // what it held of every deliberation's bytes (`fusion.max_bytes_in_flight`)
        switch outcome {
        case .completed:
            if let refusal = renderer.refusalAtEnd(finish: machine.finishReason) {
                end(.failed(refusal))
                return
            }
            if machine.request.stream {
                out.removeAll(keepingCapacity: true)
                renderer.renderEnd(settledTotals(), into: &out)
                write(out)
                stream.emitEnd()
            } else {
                do {
                    let body = try renderer.body(settledTotals())
                    let cleaned = body.withUnsafeBytes { redactor.redacting($0) } ?? body  // as a stream's bytes are (`ClientStream`)
                    writer.respond(status: 200, headers: [("Content-Type", "application/json")] + GenerationHeaders.naming(generationID), body: cleaned)
                    sentStatus = 200
                } catch {
                    failure = RecordError(error, redactor: redactor)
                    var error = error
                    error.headers += GenerationHeaders.naming(generationID)
                    writer.respond(error: error, api: api, redactor: redactor)
                    sentStatus = api.status(of: error)
                }
            }
        case .failed(let error):
            failure = RecordError(error, redactor: redactor)
            // Calls still running end with the response: their estimates belong in the usage
            // the client is told, as in the record.
            callLog.cancelAll(at: EventLoop.monotonicNanoseconds())
            if writer.state == .streaming {
                out.removeAll(keepingCapacity: true)
                renderer.renderError(error, totals: settledTotals(), into: &out)
                write(out)
                stream.emitEnd()
            } else {
                var error = error
                error.headers += GenerationHeaders.naming(generationID)
                if !Self.clientRetryCanHelp(error, callsRan: machine.calls.filter(\.ran).count) { error.headers.append(("x-should-retry", "false")) }
                var response = api.response(error, redactor: redactor)
                if let result = machine.fusionResult {
                    // The deliberation ran and was paid for: its result comes with the error (the
                    // SDKs expose the body as `error.body`), not thrown away with the final answer
                    // that failed after it (review 49 SDK F4).
                    let fusion = result.json.serialized()
                    response.body = Self.addingFusion(fusion.withUnsafeBytes { redactor.redacting($0) } ?? fusion, to: response.body)
                }
                writer.respond(response)
                sentStatus = api.status(of: error)
            }
        }
        finish()
    }

    /// Cancels whatever is still running and files the record. Idempotent.
    /// The gateway is stopping and its grace period is over: the calls are cancelled, the
    /// client gets the error (in-band if the stream began), the record says why it ended.
    func cutOnShutdown() {
        guard !finished else { return }
        end(.failed(.cutOnShutdown))  // its calls are cancelled as it finishes
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        // Members still running as the request ends (cut members were counted as they were cut).
        for _ in 0..<callLog.openPanelCalls { metrics?.countMemberFailure(reason: "cancelled") }
        for call in calls.values { call.cancel() }
        calls.removeAll()
        for task in tools.values { task.cancel() }
        tools.removeAll()
        for timer in timers.values { timer.close() }
        timers.removeAll()
        watchdog?.close()
        watchdog = nil
        writer.onClientGone = nil
        stream.onEvent = nil
        if writer.state == .streaming {
            // The end (queued above) may wait behind what the client has not taken yet.
            // Its record is written by then; a client dropped for taking nothing is still counted.
            stream.closeAfterEnd(slowClientTimeoutMilliseconds: slowClientTimeout) { [metrics] in metrics?.countError(code: "client_too_slow") }
        } else {
            stream.close()
        }
        if countedDeliberation { metrics?.deliberationEnded() }
        let callback = onFinish
        onFinish = nil
        callback? { [self] in
            fileRecord()
            return record
        }
    }
}
