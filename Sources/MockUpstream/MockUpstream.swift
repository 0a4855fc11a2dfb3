import EventLoop
import Foundation
import GatewayCore
import HTTPServer

/// A real server with deterministic scenarios (see `MockScenario`) speaking three vendors' APIs,
/// on the same libuv/HTTP code as the gateway: OpenAI's chat completions
/// (`POST /v1/chat/completions`), Anthropic's Messages (`POST /v1/messages`) and Gemini's
/// (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse` and `:generateContent`). The
/// scenario logic is shared (`MockScript`, `MockStream`); each API's bytes are its `MockWire`.
/// Tests start it on port 0; `fusion-gateway mock-upstream` runs it by hand; the gateway's
/// built-in `sim/` models are served by it.
public final class MockUpstream {
    public let stats: MockUpstreamStats
    private var server: HTTPServer!
    private var streams: [ObjectIdentifier: MockStream] = [:]
    private var nextID = 0
    /// Tells this process's ids from an earlier run's: a conversation sent back to a restarted
    /// gateway must not meet its old tool call ids again (clients refuse a repeated call id).
    private let idTag = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 16)
    /// Requests seen per `flaky` (or `error-mid-stream:fail=N`) model name.
    private var flakyCounts: [String: Int] = [:]
    /// Bytes of `huge` deltas being sent, and the most at once (the scenario holds each whole).
    private var hugeInFlight = 0
    static let maxHugeBytesInFlight = 64 << 20

    /// When set, every request must carry `Authorization: Bearer <accessKey>`, or the key in its
    /// vendor's header on that vendor's route (`x-api-key`, `x-goog-api-key`) (401 otherwise):
    /// the gateway's built-in simulator answers only the gateway.
    private let accessKey: String?

    public init(loop: EventLoop, host: String = "127.0.0.1", port: Int = 0, stats: MockUpstreamStats = MockUpstreamStats(),
                accessKey: String? = nil, limits: HTTPServerLimits = HTTPServerLimits()) throws {
        self.stats = stats
        self.accessKey = accessKey
        server = try HTTPServer(loop: loop, host: host, port: port, limits: limits) { [unowned self] request, writer in
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

    /// The API a request speaks, by its route.
    private enum Vendor {
        case openAI, anthropic
        case gemini(model: String, stream: Bool)

        var isOpenAI: Bool { if case .openAI = self { true } else { false } }

        var wire: any MockWire.Type {
            switch self {
            case .openAI: MockOpenAIStream.self
            case .anthropic: MockAnthropicStream.self
            case .gemini: MockGeminiStream.self
            }
        }

        /// The header the vendor's clients put their key in (besides `Authorization: Bearer`).
        var keyHeader: String? {
            switch self {
            case .openAI: nil
            case .anthropic: "x-api-key"
            case .gemini: "x-goog-api-key"
            }
        }
    }

    private func handle(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let vendor: Vendor? = switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"): .openAI
        case ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"): .anthropic
        case ("POST", let path): MockGeminiStream.route(path).map { .gemini(model: $0.model, stream: $0.stream) }
        default: nil
        }
        guard authorized(request, keyHeader: vendor?.keyHeader) else {
            if case .gemini? = vendor, request.header("x-goog-api-key") != nil { return writer.respond(MockGeminiStream.keyNotValid) }
            return writer.respond((vendor ?? .openAI).wire.errorResponse(APIError(
                status: 401, type: "authentication_error", code: "invalid_api_key",
                message: accessKey == nil ? "An API key is required." : "The simulator answers only the gateway that runs it.")))
        }
        if MockWeb.handles(request) { return MockWeb.handle(request, writer, stats: stats) }
        // Addressed to the simulated web's host (a `.invalid` name only the gateway's web tools
        // reach, with the simulator's key): its pages and search only, never the model API a
        // model could otherwise read through them (review 21).
        if let host = request.header("host")?.lowercased(), host.prefix(while: { $0 != ":" }).hasSuffix(".invalid") {
            return writer.respond(status: 404, headers: [("Content-Type", "text/html")], body: Array("<h1>404 Not Found</h1>".utf8))
        }
        guard let vendor else { return serveOther(request, writer) }
        if case .anthropic = vendor, request.header("anthropic-version") == nil {
            return writer.respond(vendor.wire.errorResponse(.invalidRequest("anthropic-version: header is required")))
        }
        if request.path == "/v1/messages/count_tokens" { return countTokens(request, writer) }
        if case .gemini(_, true) = vendor, request.queryItem("alt") != "sse" {
            return writer.respond(vendor.wire.errorResponse(.invalidRequest("The simulator streams only as server-sent events: add ?alt=sse")))
        }
        generate(request, writer, vendor: vendor)
    }

    /// With an access key, whether the request carries it (as a bearer token, or in the
    /// vendor's `keyHeader`); without one, whether a vendor route got a key at all, as the real
    /// APIs require (Anthropic's SDK 2.x sends a bearer token instead of `x-api-key`).
    private func authorized(_ request: HTTPRequest, keyHeader: String?) -> Bool {
        let bearer = request.header("authorization").flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst("Bearer ".count)) : nil }
        let presented = [bearer, keyHeader.flatMap { request.header($0) }].compactMap { $0 }
        guard let accessKey else { return keyHeader == nil || !presented.isEmpty }
        return presented.contains { ConstantTime.matchesAny($0, [accessKey]) }
    }

    private func serveOther(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        switch (request.method, request.path) {
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

    /// Anthropic's `POST /v1/messages/count_tokens`: the input tokens a completion's usage would
    /// report for the same body (a token per four bytes, `MockScript`). An unknown model is
    /// Anthropic's 404 naming it; an `error` scenario answers its status (`error:status=404` is a
    /// server without the endpoint: its 404 names no model).
    private func countTokens(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        stats.record(body: request.body, headers: request.headers.map { ($0.name, $0.value) })
        let fail = { (error: APIError) in writer.respond(MockAnthropicStream.errorResponse(error)) }
        guard let body = try? JSONValue.parse(request.body), let model = body["model"]?.stringValue,
              body["messages"]?.arrayValue != nil else {
            return fail(.invalidRequest("messages: Field required"))
        }
        stats.noteModel(model)
        do {
            let scenario = try MockScenario.parse(model: model)
            if scenario.kind == .error {
                let status = scenario.option("status", default: 500)
                return fail(APIError(status: status, type: "error", code: "mock_error", message: "Mock upstream failure (scenario 'error', status \(status))"))
            }
        } catch .unknownScenario {
            return fail(.modelNotFound(model, detail: "the mock upstream serves: \(MockScenario.modelNames.joined(separator: ", "))"))
        } catch {
            return fail(.invalidModelOption(model, error))
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")],
                       body: Array(#"{"input_tokens":\#(max(1, request.body.count / 4))}"#.utf8))
    }

    private func generate(_ request: HTTPRequest, _ writer: HTTPResponseWriter, vendor: Vendor) {
        stats.record(body: request.body, headers: request.headers.map { ($0.name, $0.value) })
        let body: JSONValue
        do {
            body = try JSONValue.parse(request.body)
        } catch {
            return writer.respond(vendor.wire.errorResponse(error))
        }
        // What the scenario logic reads: the request in OpenAI's shape.
        let json: JSONValue
        let streaming: Bool
        switch vendor {
        case .openAI: (json, streaming) = (body, body["stream"]?.boolValue ?? false)
        case .anthropic: (json, streaming) = (MockAnthropicStream.chatShape(of: body), body["stream"]?.boolValue ?? false)
        case .gemini(let model, let stream): (json, streaming) = (MockGeminiStream.chatShape(of: body, model: model), stream)
        }
        let model = json["model"]?.stringValue ?? ""
        stats.noteModel(model)
        let fail = { (error: APIError) in writer.respond(vendor.wire.errorResponse(error)) }
        if case .anthropic = vendor,
           let refused = MockAnthropicStream.thinkingError(body) ?? MockAnthropicStream.serverToolError(body) ?? MockAnthropicStream.toolsError(body) {
            return fail(refused)
        }
        var scenario: MockScenario
        do {
            scenario = try MockScenario.parse(model: model)
        } catch .unknownScenario {
            return fail(.modelNotFound(model, detail: "the mock upstream serves: \(MockScenario.modelNames.joined(separator: ", "))"))
        } catch {
            return fail(.invalidModelOption(model, error))
        }
        // `outer:fail_final=1`: the outer model's final call (after a tool result) breaks off.
        if scenario.kind == .outer, scenario.option("fail_final", default: 0) == 1,
           json["messages"]?.arrayValue?.last?["role"]?.stringValue == "tool" {
            scenario.kind = .errorMidStream
        }
        // `echo_auth=1`: errors repeat the credentials they were sent, as careless servers do;
        // `echo_auth=2`: in hex, as a debugging dump would; `echo_auth=3`: after a long preamble,
        // so that a report cut at 200 characters would halve it; `echo_auth=4`: a zero-width space
        // between its characters.
        let authorization = request.header("authorization") ?? "none"
        let echoed = switch scenario.option("echo_auth", default: 0) {
        case 1: " (request had Authorization: \(authorization))"
        case 2: " (request had Authorization: \(authorization.utf8.map { String($0, radix: 16) }.joined()))"
        case 3: " " + String(repeating: ".", count: 120) + " Authorization: \(authorization)"
        case 4: " (request had Authorization: \(authorization.map(String.init).joined(separator: "\u{200B}")))"
        default: ""
        }
        switch scenario.kind {
        case .error where scenario.option("in_body", default: 0) == 1 && vendor.isOpenAI:
            // OpenRouter's way once a model has started: HTTP 200, the error in the body, its
            // `code` the status it stands for; `fail=N`: only the first N requests.
            let seen = flakyCounts[model, default: 0]
            flakyCounts[model] = seen + 1
            if seen < scenario.option("fail", default: 1_000) {
                let status = scenario.option("status", default: 502)
                return writer.respond(status: 200, headers: [("Content-Type", "application/json")],
                                      body: Array(#"{"error":{"code":\#(status),"message":"Provider returned error"}}"#.utf8))
            }
            scenario.kind = .normal
        case .error where scenario.option("no_answer", default: 0) == 2 && vendor.isOpenAI:
            // A stream that answers nothing: a role chunk, then `[DONE]`.
            let body = #"data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"mock","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
                + "\n\ndata: [DONE]\n\n"
            return writer.respond(status: 200, headers: [("Content-Type", "text/event-stream")], body: Array(body.utf8))
        case .error where scenario.option("no_answer", default: 0) == 3:
            // A page where the answer should be (a captive portal, a CDN's challenge), called JSON.
            return writer.respond(status: 200, headers: [("Content-Type", "application/json")],
                                  body: Array("<html><body>Please sign in to continue</body></html>".utf8))
        case .error where scenario.option("no_answer", default: 0) >= 1:
            // HTTP 200 with a body that answers nothing: OpenRouter's `:free` providers' completion
            // without choices, Gemini's `{}`, an Anthropic message without content.
            let body = switch vendor {
            case .openAI: #"{"id":"gen-1","object":"chat.completion","created":1,"model":"mock","provider":"Mock"}"#
            case .anthropic: #"{"id":"msg_1","type":"message","role":"assistant","stop_reason":"end_turn"}"#
            case .gemini: "{}"
            }
            return writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
        case .error:
            let status = scenario.option("status", default: 500)
            // A wait, when asked for (an overloaded upstream's 503 says how long).
            let wait = scenario.options["retry_after_ms"].map { ("retry-after-ms", String($0)) }
                ?? scenario.options["retry_after"].map { ("Retry-After", String($0)) }
            // OpenAI's types: its 4xx are `invalid_request_error`, its 5xx `server_error`.
            return fail(APIError(status: status, type: status < 500 ? "invalid_request_error" : "server_error", code: "mock_error",
                                 message: "Mock upstream failure (scenario 'error', status \(status))\(echoed)", headers: wait.map { [$0] } ?? []))
        case .rateLimited:
            let header = scenario.options["retry_after_ms"].map { ("retry-after-ms", String($0)) }
                ?? ("Retry-After", String(scenario.option("retry_after", default: 1)))
            return fail(APIError(status: 429, type: "rate_limit_error", code: "rate_limited",
                                 message: "Mock upstream rate limit: retry after \(header.1)\(header.0 == "Retry-After" ? "s" : " ms")",
                                 headers: [header]))
        case .flaky:
            let seen = flakyCounts[model, default: 0]
            flakyCounts[model] = seen + 1
            if seen < scenario.option("fail", default: 2) {
                let status = scenario.option("status", default: 503)
                return fail(APIError(status: status, type: "server_error", code: "mock_flaky", message: "Mock upstream transient failure \(seen + 1)"))
            }
        case .errorMidStream where scenario.options["fail"] != nil:
            // `fail=N`: only the first N requests with this exact model name break off; later
            // ones answer normally (an overloaded upstream recovering).
            let seen = flakyCounts[model, default: 0]
            flakyCounts[model] = seen + 1
            if seen >= scenario.option("fail", default: 0) { scenario.kind = .normal }
        default:
            break
        }
        // `huge` materialises its one oversized delta: bound what all of them hold at once.
        let hugeBytes = scenario.kind == .huge ? scenario.option("bytes", default: 2 << 20) : 0
        guard hugeInFlight + hugeBytes <= Self.maxHugeBytesInFlight else {
            return fail(APIError(status: 503, type: "server_error", code: "mock_busy",
                                 message: "The simulator is already sending \(hugeInFlight >> 20) MiB of oversized deltas; try again later."))
        }
        hugeInFlight += hugeBytes
        nextID += 1
        let script = MockScript(scenario: scenario, model: model, request: json, rawBody: request.body, id: "chatcmpl-mock-\(idTag)\(nextID)")
        let wire: any MockWire = switch vendor {
        case .openAI: MockOpenAIStream(script: script, includeUsage: json["stream_options"]?["include_usage"]?.boolValue ?? false,
                                       echoedCredentials: echoed)
        case .anthropic: MockAnthropicStream(script: script)
        case .gemini: MockGeminiStream(script: script)
        }
        // `whole=1`: a whole JSON answer even to a request that asked for a stream.
        let stream = MockStream(script: script, wire: wire, writer: writer, stats: stats,
                                streaming: streaming && scenario.option("whole", default: 0) == 0)
        let key = ObjectIdentifier(stream)
        streams[key] = stream
        stream.onEnd = { [unowned self] in
            streams[key] = nil
            hugeInFlight -= hugeBytes
        }
        stream.start()
    }
}
