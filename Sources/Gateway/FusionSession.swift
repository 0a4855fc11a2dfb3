import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Prometheus
import UpstreamClient
import Web

/// Runs one Fusion request: the outer model's first call (which may call the fusion tool), the
/// panel and the judge (driven by `Deliberation`'s actions), and the outer model's final call,
/// streaming everything to the client as it happens. Panel members and the judge may call web
/// tools (`ToolLoop`, run by `WebToolRunner`); the sources they find become `url_citation`
/// annotations on the final message.
///
/// The client sees one completion: the outer model's chunks with `id` and `model` made
/// consistent across its two calls (spliced in the raw bytes), deliberation progress as SSE
/// comments or, on request, named events, and a final usage chunk summing every call.
final class FusionSession {
    struct Routes {
        var outer: ModelRoute
        var members: [ModelRoute]
        var judges: [String: ModelRoute]
    }

    private enum Phase { case outerFirst, deliberating, outerFinal, finished }

    private let request: FusionRequest
    private let routes: Routes
    private let writer: HTTPResponseWriter
    private let client: UpstreamClient
    private let settings: FusionSettings
    private let upstream: GatewayConfig.Upstream
    private let secrets: [String]
    private let generationID: String
    private let created = Int(Date().timeIntervalSince1970)
    private let startedAt = EventLoop.monotonicNanoseconds()
    private let encoder: FusionEventEncoder
    private var onFinish: ((GenerationRecord) -> Void)?
    private let metrics: GatewayMetrics?
    private let slowClientTimeout: UInt64

    private var phase = Phase.outerFirst
    /// Where inner calls may run: this session's loop first, then the gateway's other loops.
    private let workers: [UpstreamWorker]
    private var stream: ClientStream!
    private var outerCall: CallHandle?
    private var outerProducer: UInt16 = 1000
    private var memberCalls: [Int: CallHandle] = [:]
    private var memberUsage: [Int: Usage] = [:]
    private var judgeCall: CallHandle?
    private var judgeProducer: UInt16 = 100
    private var judgeUsage: Usage?
    private var deliberation: Deliberation?
    /// Web tools: each participant's tool loop, the calls running, the sources found.
    private let web: WebToolRunner?
    private var memberLoops: [Int: ToolLoop] = [:]
    private var judgeLoop: ToolLoop?
    /// When each member's and the judge's loop began: their timeouts cover every turn and tool.
    private var memberStarted: [Int: Double] = [:]
    private var judgeStarted = 0.0
    private var judgeModel = ""
    /// Tool calls started (cancelling a finished one does nothing).
    private var toolTasks: [WebToolTask] = []
    private var sources = SourceList()
    private var annotationsSent = false
    private var toolCalls = ToolCallAccumulator()
    private var outerContent = ""
    private var outerFirstStats: MemberStats?
    private var outerFinalStats: MemberStats?
    private var outerCallStarted = 0.0
    private var outerCallFirstToken: Double?
    private var outerUsage: Usage?
    private var finishReason: String?
    private var fusionResult: FusionResult?
    private var record: GenerationRecord
    /// Content and caller tool calls, for a non-streamed response.
    private var answerContent = ""
    private var answerToolCalls = ToolCallAccumulator()
    private var out: [UInt8] = []
    private var keepAlive: LoopTimer?
    private var lastWrite: UInt64 = 0

    init(request: FusionRequest, routes: Routes, writer: HTTPResponseWriter, workers: [UpstreamWorker],
         settings: FusionSettings, upstream: GatewayConfig.Upstream, secrets: [String], generationID: String,
         metrics: GatewayMetrics? = nil, slowClientTimeoutMilliseconds: UInt64 = 30_000, web: WebToolRunner? = nil,
         onFinish: @escaping (GenerationRecord) -> Void) {
        self.metrics = metrics
        self.web = web
        slowClientTimeout = slowClientTimeoutMilliseconds
        self.request = request
        self.routes = routes
        self.writer = writer
        self.workers = workers
        self.client = workers[0].client
        self.settings = settings
        self.upstream = upstream
        self.secrets = secrets
        self.generationID = generationID
        self.onFinish = onFinish
        encoder = FusionEventEncoder(form: request.structuredEvents ? .namedEvents : .comments)
        record = GenerationRecord(id: generationID, model: request.outerModel, router: nil, streamed: request.stream)
    }

    /// Resolves every model the request may use, so a bad one is a 400 naming its field before
    /// any upstream call.
    static func resolveRoutes(_ request: FusionRequest, settings: FusionSettings, router: ModelRouter) throws(APIError) -> Routes {
        func resolve(_ model: String, _ param: String) throws(APIError) -> ModelRoute {
            do {
                return try router.route(model)
            } catch {
                guard error.code == "model_not_found" else { throw error }
                throw .invalidRequest("Invalid model in '\(param)': \(error.message)", param: param, code: "model_not_found")
            }
        }
        let outer = try resolve(request.outerModel, "model")
        var members: [ModelRoute] = []
        for (index, model) in request.parameters.analysisModels.enumerated() {
            members.append(try resolve(model, "\(request.parameterPath).analysis_models[\(index)]"))
        }
        var judges = [request.judgeModel: request.judgeModel == request.outerModel
            ? outer : try resolve(request.judgeModel, "\(request.parameterPath).model")]
        if let fallback = settings.judgeFallbackModel {
            judges[fallback] = try resolve(fallback, "fusion.judge_fallback_model (gateway config)")
        }
        return Routes(outer: outer, members: members, judges: judges)
    }

    private var elapsedMilliseconds: Double { Double(EventLoop.monotonicNanoseconds() - startedAt) / 1e6 }

    func start() {
        // Every inner call reports through this channel; client output goes through it too.
        stream = ClientStream(writer: writer, loop: client.loop, capacity: 128)
        stream.onEvent = { [unowned self] producer, kind, bytes in didReceive(producer, kind, bytes) }
        writer.onClientGone = { [unowned self] in
            record.cancelled = true
            finish()
        }
        if request.stream {
            let interval = min(upstream.keepAliveIntervalMilliseconds, max(slowClientTimeout / 4, 10))
            let timer = LoopTimer(loop: client.loop) { [unowned self] in
                if stream.blockedMilliseconds() >= slowClientTimeout {
                    // The client takes nothing: drop it rather than pin the whole panel.
                    record.error = "client_too_slow"
                    record.cancelled = true
                    writer.abort()
                    finish()
                    return
                }
                // Silence for a whole interval (a slow first token, a slow panel): say we're alive.
                guard client.loop.nowMilliseconds &- lastWrite >= upstream.keepAliveIntervalMilliseconds else { return }
                openStream()
                write(Array(": keep-alive\n\n".utf8))
            }
            timer.start(afterMilliseconds: interval, repeatMilliseconds: interval)
            keepAlive = timer
            lastWrite = client.loop.nowMilliseconds
        }
        startOuter(body: FusionPrompts.outerFirstBody(request, upstreamModel: routes.outer.upstreamModel))
    }

    // MARK: the outer model

    private func startOuter(body: JSONValue) {
        outerCallStarted = elapsedMilliseconds
        outerCallFirstToken = nil
        outerUsage = nil
        outerProducer += 1
        outerCall = startCall(on: workers[0], route: routes.outer, body: body, timeout: upstream.idleTimeoutMilliseconds,
                              producer: outerProducer)
    }

    /// Starts an inner call on `worker`'s loop, reporting to this session's channel.
    private func startCall(on worker: UpstreamWorker, route: ModelRoute, body: JSONValue, timeout: UInt64,
                           producer: UInt16) -> CallHandle {
        let serialized = body.serialized()
        let channel = stream.channel
        let depth = request.depth
        let connectTimeout = upstream.connectTimeoutMilliseconds
        let secrets = secrets
        return CallHandle(on: worker, from: client.loop) { client in
            InnerCall(client: client, route: route, body: serialized, depth: depth, timeoutMilliseconds: timeout,
                      connectTimeoutMilliseconds: connectTimeout, secrets: secrets, channel: channel, producer: producer)
        }
    }

    /// A record from an inner call (any loop), on this session's loop.
    private func didReceive(_ producer: UInt16, _ kind: UInt8, _ bytes: UnsafeRawBufferPointer) {
        guard phase != .finished else { return }
        let chunk = kind == InnerCallRecord.chunk ? try? JSONValue.parse(Array(bytes)) : nil
        switch producer {
        case outerProducer:
            switch kind {
            case InnerCallRecord.open:
                openStream()
                if phase == .outerFinal { writeProgress { encoder.appendFinalAnswerStarts(model: request.outerModel, at: $1, to: &$0) } }
            case InnerCallRecord.chunk:
                if let chunk { outerDidSend(bytes, chunk) }
            case InnerCallRecord.finished:
                outerDidFinish(.completed)
            case InnerCallRecord.failed:
                let (error, reason) = InnerCallRecord.decodeFailure(bytes)
                outerDidFinish(.failed(error, reason))
            default: break
            }
        case 0..<100:
            let index = Int(producer)
            switch kind {
            case InnerCallRecord.chunk:
                guard let chunk else { return }
                let delta = ChunkDelta(chunk: chunk)
                memberLoops[index]?.received(delta)
                if let usage = delta.usage { memberUsage[index] = (memberUsage[index] ?? Usage()) + usage }  // summed over turns
                if let content = delta.content, !content.isEmpty { handle(.memberDelta(index: index, text: content)) }
            case InnerCallRecord.finished:
                memberCalls[index] = nil
                memberTurnEnded(index)
            case InnerCallRecord.failed:
                memberCalls[index] = nil
                let (error, reason) = InnerCallRecord.decodeFailure(bytes)
                handle(.memberFailed(index: index, reason: reason, message: error.message))
            default: break
            }
        case judgeProducer:
            switch kind {
            case InnerCallRecord.chunk:
                guard let chunk else { return }
                let delta = ChunkDelta(chunk: chunk)
                judgeLoop?.received(delta)
                if let usage = delta.usage { judgeUsage = (judgeUsage ?? Usage()) + usage }
                if let content = delta.content, !content.isEmpty { handle(.judgeDelta(text: content)) }
            case InnerCallRecord.finished:
                judgeCall = nil
                judgeTurnEnded()
            case InnerCallRecord.failed:
                judgeCall = nil
                handle(.judgeFailed(message: InnerCallRecord.decodeFailure(bytes).0.message))
            default: break
            }
        default:
            break  // a cancelled call's late record
        }
    }

    private func outerDidSend(_ raw: UnsafeRawBufferPointer, _ chunk: JSONValue) {
        let delta = ChunkDelta(chunk: chunk)
        if outerCallFirstToken == nil, delta.content != nil || !delta.toolCalls.isEmpty {
            outerCallFirstToken = elapsedMilliseconds - outerCallStarted
            if record.firstTokenMilliseconds == nil, delta.content?.isEmpty == false { record.firstTokenMilliseconds = elapsedMilliseconds }
        }
        if let usage = delta.usage { outerUsage = usage }
        var touchesFusion = false
        for fragment in delta.toolCalls {
            if phase == .outerFirst { toolCalls.add(fragment) }
            if phase == .outerFirst && toolCalls.name(at: fragment.index) == FusionPlan.toolName {
                touchesFusion = true
            } else {
                answerToolCalls.add(fragment)
            }
        }
        if let content = delta.content {
            answerContent += content
            if phase == .outerFirst { outerContent += content }
        }
        if let reason = delta.finishReason { finishReason = reason }
        let callsFusion = phase == .outerFirst && toolCalls.calls.contains { $0.name == FusionPlan.toolName }
        // Forward what is the client's: not our tool's fragments, not usage (ours comes last),
        // not the "tool_calls" finish of a turn that only called fusion.
        let forward = !touchesFusion && delta.usage == nil && !(delta.finishReason == "tool_calls" && callsFusion)
        if forward {
            guard request.stream else { return }
            if delta.finishReason != nil && phase == .outerFinal { writeAnnotations() }
            if let spliced = JSONScanner.replacingTopLevelValues(["id": generationID, "model": request.outerModel], in: raw) {
                out.removeAll(keepingCapacity: true)
                SSEEncoder.appendData(spliced, to: &out)
                write(out)
            }
        } else if touchesFusion, let content = delta.content, !content.isEmpty, request.stream {
            // A chunk mixing text with our tool's fragments: pass the text on its own.
            writeChunk(delta: .object(["content": .string(content)]), finishReason: nil)
        }
    }

    private enum CallOutcome {
        case completed
        case failed(APIError, MemberFailureReason)
    }

    private func outerDidFinish(_ outcome: CallOutcome) {
        outerCall = nil
        let stats = MemberStats(model: request.outerModel, role: phase == .outerFirst ? "outer" : "outer_final",
                                status: "ok", usage: outerUsage, firstTokenMilliseconds: outerCallFirstToken,
                                durationMilliseconds: elapsedMilliseconds - outerCallStarted, characters: answerContent.count)
        if case .failed(let error, let reason) = outcome {
            var failed = stats
            failed.status = reason.rawValue
            if phase == .outerFirst { outerFirstStats = failed } else { outerFinalStats = failed }
            fail(error)
            return
        }
        if phase == .outerFirst {
            outerFirstStats = stats
            if let call = toolCalls.calls.first(where: { $0.name == FusionPlan.toolName }) {
                startDeliberation(call)
            } else {
                complete()  // answered directly (or called the caller's own tools)
            }
        } else {
            outerFinalStats = stats
            complete()
        }
    }

    // MARK: panel and judge

    private func startDeliberation(_ call: ToolCall) {
        phase = .deliberating
        record.router = "fusion"
        finishReason = nil
        let arguments = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:])
        var question = arguments["question"]?.stringValue ?? ""
        if question.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { question = request.lastUserText }
        writeProgress { encoder.append(.toolCalled(arguments: call.arguments), at: $1, to: &$0) }
        var deliberation = Deliberation(question: question, models: request.parameters.analysisModels,
                                        judge: request.judgeModel, judgeFallback: settings.judgeFallbackModel)
        deliberation.judgeHasTools = !judgeTools.isEmpty
        let actions = deliberation.start(at: elapsedMilliseconds)
        self.deliberation = deliberation
        pendingToolCall = call
        perform(actions)
    }

    private var pendingToolCall: ToolCall?

    private func handle(_ event: Deliberation.Event) {
        guard phase == .deliberating, var deliberation else { return }
        let actions = deliberation.handle(event, at: elapsedMilliseconds)
        self.deliberation = deliberation
        perform(actions)
    }

    private func perform(_ actions: [Deliberation.Action]) {
        for action in actions {
            guard phase == .deliberating else { return }
            switch action {
            case .startMember(let index, _):
                startMember(index)
            case .startJudge(let model, _, let messages):
                startJudge(model, messages)
            case .progress(let progress):
                if case .memberFailed(_, _, let reason, _) = progress { metrics?.countMemberFailure(reason: reason.rawValue) }
                writeProgress { encoder.append(progress, at: $1, to: &$0) }
            case .finish(var result):
                result.sources = sources.sources.map { ($0.url, $0.title) }
                fusionResult = result
                writeProgress { encoder.append(.completed(result: result), at: $1, to: &$0) }
                startFinalAnswer(result)
            }
        }
    }

    /// The web tools offered to the panel / the judge of this request (none without a `web:`
    /// config, or when the request switched them off).
    private var panelTools: [JSONValue] {
        guard let web, request.parameters.webSearch ?? web.settings.panel else { return [] }
        return ToolLoop.webToolDefinitions(search: web.settings.search != nil, fetch: web.settings.fetch)
    }

    private var judgeTools: [JSONValue] {
        guard let web, request.parameters.judgeWebSearch ?? web.settings.judge else { return [] }
        return ToolLoop.webToolDefinitions(search: web.settings.search != nil, fetch: web.settings.fetch)
    }

    private func startMember(_ index: Int) {
        let question = deliberation?.question ?? request.lastUserText
        var messages = FusionPrompts.panelMessages(request, question: question, context: settings.panelContext)
        let tools = panelTools
        if !tools.isEmpty { messages.insert(.object(["role": .string("system"), "content": .string(FusionPrompts.panelToolNote)]), at: 0) }
        memberLoops[index] = ToolLoop(messages: messages, tools: tools, maxSteps: request.parameters.maxToolCalls)
        memberStarted[index] = elapsedMilliseconds
        callMember(index)
    }

    /// One turn of member `index`'s tool loop.
    private func callMember(_ index: Int) {
        guard let loop = memberLoops[index] else { return }
        let route = routes.members[index]
        guard let timeout = remaining(settings.memberTimeoutMilliseconds, since: memberStarted[index] ?? 0) else {
            handle(.memberFailed(index: index, reason: .timeout,
                                 message: "no answer within \(settings.memberTimeoutMilliseconds) ms (web tool calls included)"))
            return
        }
        let body = FusionPrompts.innerBody(model: route.upstreamModel, messages: loop.messages, parameters: request.parameters,
                                           extra: loop.requestFields)
        // Spread the panel over the gateway's loops; events come back through the channel.
        let worker = workers[(index + 1) % workers.count]
        memberCalls[index] = startCall(on: worker, route: route, body: body, timeout: timeout, producer: UInt16(index))
    }

    private func memberTurnEnded(_ index: Int) {
        guard var loop = memberLoops[index] else { return }
        let end = loop.endTurn()
        memberLoops[index] = loop
        switch end {
        case .answered:
            handle(.memberFinished(index: index, usage: memberUsage[index], toolCalls: loop.callCount))
        case .callTools(let calls):
            let model = request.parameters.analysisModels[index]
            runTools(calls, for: .member(index: index, model: model)) { [unowned self] results in
                memberLoops[index]?.complete(results: results)
                callMember(index)
            }
        }
    }

    private func startJudge(_ model: String, _ messages: [JSONValue]) {
        judgeCall?.cancel()
        guard routes.judges[model] != nil else { return }
        judgeModel = model
        judgeUsage = nil
        judgeLoop = ToolLoop(messages: messages, tools: judgeTools, maxSteps: request.parameters.maxToolCalls)
        judgeStarted = elapsedMilliseconds
        callJudge()
    }

    private func callJudge() {
        guard let loop = judgeLoop, let route = routes.judges[judgeModel] else { return }
        guard let timeout = remaining(settings.judgeTimeoutMilliseconds, since: judgeStarted) else {
            handle(.judgeFailed(message: "no analysis within \(settings.judgeTimeoutMilliseconds) ms (web tool calls included)"))
            return
        }
        let body = FusionPrompts.innerBody(model: route.upstreamModel, messages: loop.messages, parameters: request.parameters,
                                           jsonOutput: true, extra: loop.requestFields)
        judgeProducer += 1
        judgeCall = startCall(on: workers[0], route: route, body: body, timeout: timeout, producer: judgeProducer)
    }

    /// What is left of a `budget` (ms) started at `start` (session time), or nil if nothing.
    private func remaining(_ budget: UInt64, since start: Double) -> UInt64? {
        let left = Double(budget) - (elapsedMilliseconds - start)
        return left >= 1 ? UInt64(left) : nil
    }

    private func judgeTurnEnded() {
        guard var loop = judgeLoop else { return }
        let end = loop.endTurn()
        judgeLoop = loop
        switch end {
        case .answered:
            handle(.judgeFinished(usage: judgeUsage, toolCalls: loop.callCount))
        case .callTools(let calls):
            handle(.judgeCalledTools)
            let producer = judgeProducer
            runTools(calls, for: .judge(model: judgeModel)) { [unowned self] results in
                guard producer == judgeProducer else { return }  // a restarted judge
                judgeLoop?.complete(results: results)
                callJudge()
            }
        }
    }

    /// Runs one turn's tool calls (at most `max_calls_per_turn`; the rest are answered with an
    /// error), streaming each start and outcome; `completion` gets the results in call order.
    private func runTools(_ calls: [ToolCall], for participant: Participant, completion: @escaping ([String]) -> Void) {
        guard let web else { return }
        var results = Array(repeating: "", count: calls.count)
        var pending = calls.count
        for (position, call) in calls.enumerated() {
            var activity = WebToolActivity(participant: participant, name: call.name, arguments: call.arguments)
            writeProgress { encoder.append(.webToolStarted(activity), at: $1, to: &$0) }
            let started = elapsedMilliseconds
            let done: (WebToolOutcome) -> Void = { [unowned self] outcome in
                guard phase == .deliberating else { return }
                activity.durationMilliseconds = elapsedMilliseconds - started
                activity.resultBytes = outcome.content.utf8.count
                activity.error = outcome.error
                activity.sources = outcome.sources.count
                for source in outcome.sources { sources.add(source) }
                if call.name == WebToolNames.search { record.numSearchResults += outcome.sources.count }
                record.webToolCalls += 1
                metrics?.countWebTool(name: call.name, failed: outcome.error != nil)
                writeProgress { encoder.append(.webToolFinished(activity), at: $1, to: &$0) }
                results[position] = outcome.content
                pending -= 1
                if pending == 0 { completion(results) }
            }
            if position >= web.settings.maxCallsPerTurn {
                done(.failure("too many tool calls in one turn: at most \(web.settings.maxCallsPerTurn) run, this one did not"))
                continue
            }
            if let task = web.run(call, completion: done) { toolTasks.append(task) }
        }
    }

    private func startFinalAnswer(_ result: FusionResult) {
        guard let call = pendingToolCall else { return }
        phase = .outerFinal
        answerContent = ""
        let toolResult = String(decoding: result.json.serialized(), as: UTF8.self)
        startOuter(body: FusionPrompts.outerFinalBody(request, upstreamModel: routes.outer.upstreamModel,
                                                      assistantContent: outerContent, call: call, toolResult: toolResult))
    }

    // MARK: the client

    private func openStream() {
        guard request.stream, writer.state == .pending else { return }
        writer.startStream(status: 200, headers: [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"), ("X-Generation-Id", generationID),
        ])
    }

    private func write(_ bytes: [UInt8]) {
        guard request.stream, writer.state == .streaming else { return }
        stream.emit(bytes)
        lastWrite = client.loop.nowMilliseconds
    }

    private func writeProgress(_ encode: (inout [UInt8], Double) -> Void) {
        guard request.stream else { return }
        openStream()
        out.removeAll(keepingCapacity: true)
        encode(&out, elapsedMilliseconds)
        write(out)
    }

    private func writeChunk(delta: JSONValue, finishReason: String?, usage: JSONValue? = nil) {
        var chunk: [String: JSONValue] = [
            "id": .string(generationID), "object": .string("chat.completion.chunk"), "created": .int(Int64(created)),
            "model": .string(request.outerModel),
            "choices": usage != nil ? .array([]) : .array([.object([
                "index": .int(0), "delta": delta, "finish_reason": finishReason.map(JSONValue.string) ?? .null,
            ])]),
        ]
        if let usage { chunk["usage"] = usage }
        out.removeAll(keepingCapacity: true)
        SSEEncoder.appendData(JSONValue.object(chunk).serialized(), to: &out)
        write(out)
    }

    /// The sources as `url_citation` annotations on the final message (streamed as a delta just
    /// before its finish chunk), once.
    private func writeAnnotations() {
        guard !annotationsSent, !sources.isEmpty, fusionResult != nil else { return }
        annotationsSent = true
        writeChunk(delta: .object(["annotations": .array(sources.annotations(for: answerContent))]), finishReason: nil)
    }

    private var allCalls: [MemberStats] {
        [outerFirstStats].compactMap { $0 } + (deliberation?.stats ?? []) + [outerFinalStats].compactMap { $0 }
    }

    private var totalUsage: Usage {
        allCalls.compactMap(\.usage).reduce(Usage(), +)
    }

    /// Usage summed over every call, with the per-call breakdown when fusion ran.
    private var usageJSON: JSONValue {
        guard case .object(var usage) = totalUsage.json else { return .null }
        if fusionResult != nil { usage["fusion"] = .object(["calls": .array(allCalls.map(\.json))]) }
        return .object(usage)
    }

    private func complete() {
        guard phase != .finished else { return }
        let usage = usageJSON
        if request.stream {
            openStream()
            writeAnnotations()  // if the final call ended without a finish chunk
            if request.includeUsage { writeChunk(delta: .object([:]), finishReason: nil, usage: usage) }
            write(SSEEncoder.done)
            stream.emitEnd()
        } else {
            var message: [String: JSONValue] = ["role": .string("assistant"),
                                                "content": answerContent.isEmpty && !answerToolCalls.calls.isEmpty ? .null : .string(answerContent)]
            if !answerToolCalls.calls.isEmpty { message["tool_calls"] = .array(answerToolCalls.calls.map(\.json)) }
            if !sources.isEmpty { message["annotations"] = .array(sources.annotations(for: answerContent)) }
            var completion: [String: JSONValue] = [
                "id": .string(generationID), "object": .string("chat.completion"), "created": .int(Int64(created)),
                "model": .string(request.outerModel),
                "choices": .array([.object(["index": .int(0), "message": .object(message),
                                            "finish_reason": .string(finishReason ?? "stop")])]),
                "usage": usage,
            ]
            if let fusionResult { completion["fusion"] = fusionResult.json }
            writer.respond(status: 200, headers: [("Content-Type", "application/json"), ("X-Generation-Id", generationID)],
                           body: JSONValue.object(completion).serialized())
        }
        record.status = 200
        finish()
    }

    private func fail(_ error: APIError) {
        guard phase != .finished else { return }
        record.error = error.code
        if writer.state == .streaming {
            var relay = SSERelay()
            out.removeAll(keepingCapacity: true)
            relay.fail(error, into: &out)
            write(out)
            stream.emitEnd()
            record.status = 200
        } else {
            var error = error
            error.headers.append(("X-Generation-Id", generationID))
            writer.respond(error: error)
            record.status = error.status
        }
        finish()
    }

    /// Cancels whatever is still running and files the record. Idempotent.
    private func finish() {
        guard phase != .finished else { return }
        phase = .finished
        outerCall?.cancel()
        for call in memberCalls.values { call.cancel() }
        memberCalls.removeAll()
        judgeCall?.cancel()
        for task in toolTasks { task.cancel() }
        toolTasks.removeAll()
        keepAlive?.close()
        writer.onClientGone = nil
        if writer.state == .streaming {
            // Close the channel once the end (queued above) is written.
            stream.onEnded = { [stream] in stream?.close() }
        } else {
            stream.close()
        }
        record.finishReason = finishReason ?? (record.cancelled ? nil : "stop")
        record.usage = totalUsage
        record.calls = allCalls
        record.durationMilliseconds = elapsedMilliseconds
        let callback = onFinish
        onFinish = nil
        callback?(record)
    }
}
