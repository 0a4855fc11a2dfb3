import EventLoop
import Foundation
import GatewayCore
import HTTPServer

/// A real OpenAI-compatible server with deterministic scenarios (see `MockScenario`), on the
/// same libuv/HTTP code as the gateway. Tests start it on port 0; `fusion-gateway mock-upstream`
/// runs it by hand; the gateway's built-in `sim/` models are served by it.
///
/// Every chunk carries `sent_at_us` (wall clock, microseconds) so a client on the same machine
/// can compute latency.
public final class MockUpstream {
    public let stats: MockUpstreamStats
    private var server: HTTPServer!
    private var streams: [ObjectIdentifier: MockStream] = [:]
    private var nextID = 0
    /// Bytes of `huge` deltas being sent, and the most at once (the scenario holds each whole).
    private var hugeInFlight = 0
    static let maxHugeBytesInFlight = 64 << 20
    /// Requests seen per `flaky` model name.
    private var flakyCounts: [String: Int] = [:]

    /// When set, every request must carry `Authorization: Bearer <accessKey>` (401 otherwise):
    /// the gateway's built-in simulator answers only the gateway.
    private let accessKey: String?

    public init(loop: EventLoop, host: String = "127.0.0.1", port: Int = 0, stats: MockUpstreamStats = MockUpstreamStats(),
                accessKey: String? = nil) throws {
        self.stats = stats
        self.accessKey = accessKey
        server = try HTTPServer(loop: loop, host: host, port: port) { [unowned self] request, writer in
            handle(request, writer)
        }
        server.onAccept = { [stats] in stats.update { $0.connections += 1 } }
        server.rendersRejectionsAsAPIErrors()
    }

    public var port: Int { server.port }

    public func shutdown(graceMilliseconds: UInt64 = 0, completion: @escaping () -> Void = {}) {
        for stream in Array(streams.values) { stream.writer.abort(); stream.stop() }
        streams.removeAll()
        server.shutdown(graceMilliseconds: graceMilliseconds, completion: completion)
    }

    private func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        if let accessKey {
            let presented = request.header("authorization").map { String($0.dropFirst("Bearer ".count)) } ?? ""
            guard request.header("authorization")?.hasPrefix("Bearer ") == true, ConstantTime.matchesAny(presented, [accessKey]) else {
                writer.respond(error: APIError(status: 401, type: "authentication_error", code: "invalid_api_key",
                                               message: "The simulator answers only the gateway that runs it."))
                return
            }
        }
        if MockWeb.handles(request) {
            MockWeb.handle(request, writer, stats: stats)
            return
        }
        switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"):
            chatCompletion(request, writer)
        case ("GET", "/v1/models"), ("GET", "/models"):
            var body = Array(#"{"object":"list","data":["#.utf8)
            for (index, name) in MockScenario.modelNames.enumerated() {
                if index > 0 { body.append(UInt8(ascii: ",")) }
                body.append(contentsOf: #"{"id":"\#(name)","object":"model","created":0,"owned_by":"mock-upstream"}"#.utf8)
            }
            body.append(contentsOf: "]}".utf8)
            writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: body)
        case ("GET", "/mock/stats"):
            let counts = stats.counts
            let body = #"{"requests":\#(counts.requests),"streams_started":\#(counts.streamsStarted),"streams_finished":\#(counts.streamsFinished),"streams_cancelled":\#(counts.streamsCancelled)}"#
            writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
        default:
            writer.respond(error: .notFound(path: request.path))
        }
    }

    private func chatCompletion(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        stats.record(body: request.body, headers: request.headers.map { ($0.name, $0.value) })
        let json: JSONValue
        do {
            json = try JSONValue.parse(request.body)
        } catch {
            writer.respond(error: error)
            return
        }
        let model = json["model"]?.stringValue ?? ""
        var scenario: MockScenario
        do {
            scenario = try MockScenario.parse(model: model)
        } catch .unknownScenario {
            let names = MockScenario.modelNames.joined(separator: ", ")
            writer.respond(error: .modelNotFound(model, detail: "the mock upstream serves: \(names)"))
            return
        } catch {
            writer.respond(error: .invalidModelOption(model, error))
            return
        }
        // `outer:fail_final=1`: the outer model's final call (after a tool result) breaks off.
        if scenario.kind == .outer, scenario.option("fail_final", default: 0) == 1,
           json["messages"]?.arrayValue?.last?["role"]?.stringValue == "tool" {
            scenario.kind = .errorMidStream
        }
        // `echo_auth=1`: errors repeat the credentials they were sent, as careless servers do.
        let echoed = scenario.option("echo_auth", default: 0) == 1
            ? " (request had Authorization: \(request.header("authorization") ?? "none"))" : ""
        switch scenario.kind {
        case .error:
            let status = scenario.option("status", default: 500)
            writer.respond(error: APIError(status: status, type: "server_error", code: "mock_error",
                                           message: "Mock upstream failure (scenario 'error', status \(status))\(echoed)"))
            return
        case .rateLimited:
            let header = scenario.options["retry_after_ms"].map { ("retry-after-ms", String($0)) }
                ?? ("Retry-After", String(scenario.option("retry_after", default: 1)))
            writer.respond(error: APIError(status: 429, type: "rate_limit_error", code: "rate_limited",
                                           message: "Mock upstream rate limit: retry after \(header.1)\(header.0 == "Retry-After" ? "s" : " ms")",
                                           headers: [header]))
            return
        case .flaky:
            let seen = flakyCounts[model, default: 0]
            flakyCounts[model] = seen + 1
            if seen < scenario.option("fail", default: 2) {
                let status = scenario.option("status", default: 503)
                writer.respond(error: APIError(status: status, type: "server_error", code: "mock_flaky",
                                               message: "Mock upstream transient failure \(seen + 1)"))
                return
            }
        default:
            break
        }
        // `huge` materialises its one oversized delta: bound what all of them hold at once.
        let hugeBytes = scenario.kind == .huge ? scenario.option("bytes", default: 2 << 20) : 0
        guard hugeInFlight + hugeBytes <= Self.maxHugeBytesInFlight else {
            writer.respond(error: APIError(status: 503, type: "server_error", code: "mock_busy",
                                           message: "The simulator is already sending \(hugeInFlight >> 20) MiB of oversized deltas; try again later."))
            return
        }
        hugeInFlight += hugeBytes
        nextID += 1
        let script = MockScript(scenario: scenario, model: model, request: json, rawBody: request.body,
                                id: "chatcmpl-mock-\(nextID)")
        let stream = MockStream(script: script, writer: writer, stats: stats,
                                streaming: json["stream"]?.boolValue ?? false && scenario.option("whole", default: 0) == 0,
                                includeUsage: json["stream_options"]?["include_usage"]?.boolValue ?? false,
                                echoedCredentials: echoed)
        let key = ObjectIdentifier(stream)
        streams[key] = stream
        stream.onEnd = { [unowned self] in
            streams[key] = nil
            hugeInFlight -= hugeBytes
        }
        stream.start()
    }
}

/// One response in progress: paces the script's steps with a timer.
final class MockStream {
    let script: MockScript
    let writer: HTTPResponseWriter
    let stats: MockUpstreamStats
    let streaming: Bool
    let includeUsage: Bool
    /// Appended to error messages (`echo_auth=1`).
    let echoedCredentials: String
    var onEnd: (() -> Void)?
    private var timer: LoopTimer?
    private var nextStep = 0
    private var ended = false
    private let created = Int(Date().timeIntervalSince1970)
    private var buffer: [UInt8] = []

    init(script: MockScript, writer: HTTPResponseWriter, stats: MockUpstreamStats, streaming: Bool, includeUsage: Bool,
         echoedCredentials: String = "") {
        self.echoedCredentials = echoedCredentials
        self.script = script
        self.writer = writer
        self.stats = stats
        self.streaming = streaming
        self.includeUsage = includeUsage
    }

    func start() {
        stats.update { $0.streamsStarted += 1 }
        writer.onClientGone = { [unowned self] in
            guard !ended else { return }
            stats.update { $0.streamsCancelled += 1 }
            end(counted: false)
        }
        let timer = LoopTimer(loop: writer.loop!) { [unowned self] in tick() }
        self.timer = timer
        let first = script.scenario.firstTokenMilliseconds
        if streaming {
            writer.startStream(headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
            // OpenRouter sends comments while a model warms up; clients and gateways must skip them.
            buffer.removeAll(keepingCapacity: true)
            SSEEncoder.appendComment("MOCK PROCESSING", to: &buffer)
            writer.writeStreamChunk(buffer)
        }
        if first > 0 {
            timer.start(afterMilliseconds: UInt64(first))
        } else {
            tick()
        }
    }

    func stop() {
        ended = true
        timer?.close()
        timer = nil
    }

    /// Bytes the client may leave unread before the stream waits for it (like the gateway, the
    /// simulator honours backpressure: a client that never reads cannot grow its memory).
    static let maxUnreadBytes = 64 * 1024

    private func tick() {
        guard !ended else { return }
        if streaming && writer.bufferedBytes > Self.maxUnreadBytes {
            // Resume when the client has taken what is queued.
            stats.update { $0.waitsForClient += 1 }
            writer.onWritable = { [unowned self] in
                writer.onWritable = nil
                tick()
            }
            return
        }
        if !streaming {
            respondWhole()
            return
        }
        let kind = script.scenario.kind
        let failsMidStream = [.errorMidStream, .malformed, .stall, .disconnect].contains(kind)
        if failsMidStream && nextStep >= script.scenario.failAfter {
            failMidStream(kind)
            return
        }
        let together = script.scenario.option("together", default: 0) == 1 && !failsMidStream
        if together && nextStep == script.steps.count - 1 {
            finishStream(lastStep: script.steps[nextStep])
            return
        }
        if nextStep < script.steps.count {
            buffer.removeAll(keepingCapacity: true)
            appendChunk(step: script.steps[nextStep], first: nextStep == 0)
            writer.writeStreamChunk(buffer)
            nextStep += 1
            if nextStep < script.steps.count || !failsMidStream {
                timer?.start(afterMilliseconds: UInt64(script.scenario.paceMilliseconds))
                return
            }
        }
        if failsMidStream {
            failMidStream(kind)
            return
        }
        finishStream()
    }

    /// The finish chunk, usage, `[DONE]` — or, with `truncate=1`, nothing: the body just ends.
    /// With `together=1`, `lastStep`'s content, the finish reason and the usage share one chunk.
    private func finishStream(lastStep: MockScript.Step? = nil) {
        buffer.removeAll(keepingCapacity: true)
        guard script.scenario.option("truncate", default: 0) == 0 else {
            writer.endStream()
            end(counted: true)
            return
        }
        let reason = script.callsTool ? "tool_calls" : "stop"
        let usage = script.scenario.option("no_usage", default: 0) == 1 ? nil : usageJSON
        let usageKey = script.scenario.option("spaced", default: 0) == 1 ? #""usage" : "# : #""usage":"#
        if let lastStep, case .content(let text) = lastStep {
            appendChunkPrefix()
            buffer.append(contentsOf: #""choices":[{"index":0,"delta":{"content":"#.utf8)
            JSONWriting.appendString(text, to: &buffer)
            buffer.append(contentsOf: #"},"finish_reason":"\#(reason)"}]"#.utf8)
            if let usage { buffer.append(contentsOf: ",\(usageKey)\(usage)".utf8) }
            buffer.append(contentsOf: "}\n\n".utf8)
        } else {
            appendChunkPrefix()
            buffer.append(contentsOf: #""choices":[{"index":0,"delta":{},"finish_reason":"\#(reason)"}]}"#.utf8)
            buffer.append(contentsOf: "\n\n".utf8)
            if includeUsage, let usage {
                buffer.append(contentsOf: "data: ".utf8)
                buffer.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion.chunk","created":\#(created),"model":"#.utf8)
                JSONWriting.appendString(script.model, to: &buffer)
                buffer.append(contentsOf: #","choices":[],\#(usageKey)\#(usage)}"#.utf8)
                buffer.append(contentsOf: "\n\n".utf8)
            }
        }
        buffer.append(contentsOf: SSEEncoder.done)
        writer.writeStreamChunk(buffer)
        writer.endStream()
        end(counted: true)
    }

    private func failMidStream(_ kind: MockScenario.Kind) {
        switch kind {
        case .errorMidStream:
            let error = APIError(status: 502, type: "server_error", code: "server_error",
                                 message: "Provider disconnected unexpectedly\(echoedCredentials)")
            buffer.removeAll(keepingCapacity: true)
            SSEEncoder.appendData(error.streamChunk(id: script.id, model: script.model), to: &buffer)
            buffer.append(contentsOf: SSEEncoder.done)
            writer.writeStreamChunk(buffer)
            writer.endStream()
            end(counted: true)
        case .malformed:
            buffer.removeAll(keepingCapacity: true)
            buffer.append(contentsOf: "data: {\"choices\":[{\"delta\":{\"content\":\"unterminated\n\n".utf8)
            buffer.append(contentsOf: SSEEncoder.done)
            writer.writeStreamChunk(buffer)
            writer.endStream()
            end(counted: true)
        case .stall:
            timer?.stop()  // silence until the client gives up
        case .disconnect:
            writer.abort()
            end(counted: true)
        default:
            finishStream()
        }
    }

    private func respondWhole() {
        let kind = script.scenario.kind
        if kind == .stall { return }  // never answers
        if kind == .disconnect {
            writer.abort()
            end(counted: true)
            return
        }
        var body: [UInt8] = []
        body.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion","created":\#(created),"model":"#.utf8)
        JSONWriting.appendString(script.model, to: &body)  // the client's text: escaped
        body.append(contentsOf: #","choices":[{"index":0,"message":{"role":"assistant","content":"#.utf8)
        if let call = script.toolCall {
            body.append(contentsOf: #"null,"tool_calls":[{"id":"#.utf8)
            JSONWriting.appendString(call.id, to: &body)
            body.append(contentsOf: #","type":"function","function":{"name":"#.utf8)
            JSONWriting.appendString(call.name, to: &body)
            body.append(contentsOf: #","arguments":"#.utf8)
            JSONWriting.appendString(call.arguments, to: &body)
            body.append(contentsOf: #"}}]},"finish_reason":"tool_calls"}]"#.utf8)
        } else {
            JSONWriting.appendString(script.fullContent, to: &body)
            body.append(contentsOf: #"},"finish_reason":"stop"}]"#.utf8)
        }
        if script.scenario.option("no_usage", default: 0) == 0 {
            body.append(contentsOf: #","usage":"#.utf8)
            body.append(contentsOf: usageJSON.utf8)
        }
        body.append(UInt8(ascii: "}"))
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: body)
        end(counted: true)
    }

    private var usageJSON: String {
        // A made-up price (2 µ$ per token) so cost accounting has something to add up.
        let total = script.promptTokens + script.completionTokens
        return #"{"prompt_tokens":\#(script.promptTokens),"completion_tokens":\#(script.completionTokens),"total_tokens":\#(total),"cost":\#(Double(total) * 0.000002)}"#
    }

    private func appendChunkPrefix() {
        buffer.append(contentsOf: "data: ".utf8)
        buffer.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion.chunk","created":\#(created),"model":"#.utf8)
        JSONWriting.appendString(script.model, to: &buffer)
        buffer.append(contentsOf: #","sent_at_us":\#(Self.wallClockMicroseconds()),"#.utf8)
    }

    private func appendChunk(step: MockScript.Step, first: Bool) {
        appendChunkPrefix()
        buffer.append(contentsOf: #""choices":[{"index":0,"delta":{"#.utf8)
        if first { buffer.append(contentsOf: #""role":"assistant","#.utf8) }
        switch step {
        case .content(let text):
            buffer.append(contentsOf: #""content":"#.utf8)
            JSONWriting.appendString(text, to: &buffer)
        case .reasoning(let text):
            buffer.append(contentsOf: #""content":null,"reasoning":"#.utf8)
            JSONWriting.appendString(text, to: &buffer)
        case .toolCall(let index, let id, let name, let arguments):
            buffer.append(contentsOf: #""tool_calls":[{"index":\#(index),"#.utf8)
            if let id { buffer.append(contentsOf: #""id":"\#(id)","type":"function","#.utf8) }
            buffer.append(contentsOf: #""function":{"#.utf8)
            if let name { buffer.append(contentsOf: #""name":"\#(name)","#.utf8) }
            buffer.append(contentsOf: #""arguments":"#.utf8)
            JSONWriting.appendString(arguments, to: &buffer)
            buffer.append(contentsOf: "}}]".utf8)
        }
        buffer.append(contentsOf: #"},"finish_reason":null}]}"#.utf8)
        buffer.append(contentsOf: "\n\n".utf8)
    }

    private func end(counted: Bool) {
        guard !ended else { return }
        if counted { stats.update { $0.streamsFinished += 1 } }
        stop()
        let callback = onEnd
        onEnd = nil
        callback?()
    }

    static func wallClockMicroseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now.tv_sec * 1_000_000 + now.tv_nsec / 1000
    }
}
