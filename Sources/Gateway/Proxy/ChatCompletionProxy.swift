import EventLoop
import Fusion
import GatewayCore
import HTTPServer
import Prometheus
import Providers
import Surfaces
import UpstreamClient

/// Relays one chat completion to its upstream and the answer back, streamed or whole.
///
/// Streaming: the client's response head is sent when the upstream's 200 arrives (or, if the
/// upstream is slow to answer, when the first keep-alive is due), so an upstream error before that
/// still reaches the client with its real status. Each upstream event is relayed the moment it is
/// parsed (`SSERelay`) into the stream's fan-in channel (`ClientStream`) and written in the same
/// loop iteration; the response ends right after `[DONE]`. When the channel has no room (a slow
/// client), the upstream transfer pauses until it drains. A client that disconnects cancels the
/// upstream transfer at once.
final class ChatCompletionProxy {
    private enum Phase {
        case awaitingUpstreamHead
        /// Client stream open (head sent).
        case streaming
        /// Collecting a whole body: the non-streamed answer, or an upstream error to translate.
        case collecting(status: Int, headers: [(String, String)], body: [UInt8], limit: Int)
        case finished
    }

    private let request: ProxiedRequest
    /// `model` then the `models` fallbacks.
    private let candidates: [ModelRoute]
    private var candidate = 0
    /// Attempts on the current candidate.
    private var attempt = 0
    private var retryTimer: LoopTimer?
    private var route: ModelRoute { candidates[candidate] }
    private let writer: HTTPResponseWriter
    private let client: UpstreamClient
    private let settings: GatewayConfig.Upstream
    private let redactor: Redactor
    private let onFinish: (GenerationRecord) -> Void
    private let generationID: String
    private let extraHeaders: [(String, String)]
    private let slowClientTimeout: UInt64
    private let stats: GatewayStats?
    private let metrics: GatewayMetrics?
    /// When the previous upstream read carrying events was forwarded (for the gap histogram).
    private var lastEventAt: UInt64 = 0
    private var phase = Phase.awaitingUpstreamHead
    private var transfer: UpstreamTransfer?
    private var relay: SSERelay
    private var stream: ClientStream?
    /// Reused output buffer: the per-event path allocates nothing once it has grown.
    private var out: [UInt8] = []
    private var watchdog: StreamWatchdog?
    private var idleCheck: LoopTimer?
    private var lastUpstreamActivity: UInt64 = 0
    private let startedAt = EventLoop.monotonicNanoseconds()
    private var elapsedMilliseconds: Double { Double(EventLoop.monotonicNanoseconds() - startedAt) / 1e6 }
    private var record: GenerationRecord
    private var didFinish = false

    init(request: ProxiedRequest, candidates: [ModelRoute], writer: HTTPResponseWriter, client: UpstreamClient,
         settings: GatewayConfig.Upstream, redactor: Redactor, generationID: String, extraHeaders: [(String, String)] = [],
         slowClientTimeoutMilliseconds: UInt64 = 30_000, stats: GatewayStats? = nil, metrics: GatewayMetrics? = nil, onFinish: @escaping (GenerationRecord) -> Void) {
        self.stats = stats
        self.metrics = metrics
        slowClientTimeout = slowClientTimeoutMilliseconds
        self.request = request
        self.candidates = candidates
        self.writer = writer
        self.client = client
        self.settings = settings
        self.redactor = redactor
        self.onFinish = onFinish
        self.generationID = generationID
        self.extraHeaders = extraHeaders
        record = GenerationRecord(id: generationID, model: request.chat.model, streamed: request.stream)
        relay = SSERelay(maxEventBytes: settings.maxEventBytes)
        out.reserveCapacity(4096)
    }

    func start() {
        startAttempt()
        writer.onClientGone = { [unowned self] in clientDidDisconnect() }
        let loop = client.loop
        lastUpstreamActivity = loop.nowMilliseconds
        if request.stream {
            watchdog = StreamWatchdog(
                loop: loop, keepAliveIntervalMilliseconds: settings.keepAliveIntervalMilliseconds,
                slowClientTimeoutMilliseconds: slowClientTimeout,
                blockedMilliseconds: { [unowned self] in stream?.blockedMilliseconds() ?? 0 },
                onTick: { [unowned self] in checkUpstreamIdle() },
                sendKeepAlive: { [unowned self] in sendKeepAlive() },
                dropClient: { [unowned self] in dropSlowClient() })
        } else {
            let tick = max(settings.idleTimeoutMilliseconds / 4, 10)
            let timer = LoopTimer(loop: loop) { [unowned self] in checkUpstreamIdle() }
            timer.start(afterMilliseconds: tick, repeatMilliseconds: tick)
            idleCheck = timer
        }
    }

    /// One upstream call for the current candidate.
    private func startAttempt() {
        attempt += 1
        record.model = route.slug
        let http = request.httpRequest(for: route, extraHeaders: extraHeaders)
        let transfer = client.start(UpstreamRequest(
            url: http.url, headers: http.headers, body: http.body,
            connectTimeoutMilliseconds: settings.connectTimeoutMilliseconds,
            receiveBufferBytes: request.stream ? 2048 : nil))
        self.transfer = transfer
        lastUpstreamActivity = client.loop.nowMilliseconds
        transfer.onHead = { [unowned self] status, headers in upstreamDidSendHead(status: status, headers: headers) }
        transfer.onData = { [unowned self] bytes in upstreamDidSend(bytes) }
        transfer.onComplete = { [unowned self] failure in upstreamDidComplete(failure) }
    }

    /// The attempt failed before the client got anything from it: retry, fall back, or report
    /// `error`. Returns false when the caller should report `error` itself.
    private func retryOrFallBack(status: Int?, connectFailed: Bool, headers: [(String, String)]) -> Bool {
        guard relay.forwardedEvents == 0 else { return false }
        let decision = settings.retry.decide(status: status, connectFailed: connectFailed, headers: headers, attempt: attempt,
                                             hasNextModel: candidate + 1 < candidates.count, jitter: Double.random(in: 0...1))
        switch decision {
        case .fail:
            return false
        case .nextModel:
            candidate += 1
            attempt = 0
            restart(afterMilliseconds: 0)
        case .retry(let delay):
            restart(afterMilliseconds: delay)
        }
        return true
    }

    private func restart(afterMilliseconds delay: UInt64) {
        phase = stream == nil ? .awaitingUpstreamHead : .streaming
        record.status = 0
        guard delay > 0 else {
            startAttempt()
            return
        }
        let timer = LoopTimer(loop: client.loop) { [unowned self] in
            retryTimer?.close()
            retryTimer = nil
            startAttempt()
        }
        timer.start(afterMilliseconds: delay)
        retryTimer = timer
    }

    // MARK: upstream events

    private func upstreamDidSendHead(status: Int, headers: [(String, String)]) {
        lastUpstreamActivity = client.loop.nowMilliseconds
        record.status = status
        guard (200..<300).contains(status) else {
            // Collect the error body; `fail` reports it with its status, or in-band if a
            // keep-alive already committed the client's response.
            phase = .collecting(status: status, headers: headers, body: [], limit: 64 * 1024)
            return
        }
        if request.stream {
            openClientStream()
        } else {
            phase = .collecting(status: status, headers: headers, body: [], limit: 64 << 20)
        }
    }

    /// Returns false to pause the transfer (no room in the fan-in channel).
    private func upstreamDidSend(_ bytes: UnsafeRawBufferPointer) -> Bool {
        lastUpstreamActivity = client.loop.nowMilliseconds
        switch phase {
        case .streaming:
            guard let stream, stream.hasRoom(forInput: bytes.count) else {
                // Backpressure: curl keeps these bytes; the channel resumes us once it drains.
                stats?.countPause()
                metrics?.backpressurePauses.increment()
                self.stream?.channel.resumeWhenSpace(on: client.loop) { [weak self] in self?.transfer?.resume() }
                return false
            }
            out.removeAll(keepingCapacity: true)
            let before = relay.forwardedEvents
            let outcome = relay.relay(bytes, into: &out)
            if relay.forwardedEvents > before {
                let now = EventLoop.monotonicNanoseconds()
                if lastEventAt != 0 { metrics?.interToken.recordNanoseconds(Int64(now - lastEventAt)) }
                lastEventAt = now
                if record.firstTokenMilliseconds == nil { record.firstTokenMilliseconds = elapsedMilliseconds }
            }
            stream.emit(out)
            watchdog?.noteWrite()
            switch outcome {
            case .streaming:
                break
            case .done:
                // The client has everything. The transfer finishes reading on its own, keeping
                // its connection reusable, but it no longer reports to us.
                transfer?.detach(cancelAfterMilliseconds: 2_000)
                transfer = nil
                finishClientStream()
            case .failed(let error):
                record.error = error.code
                transfer?.cancel()
                transfer = nil
                finishClientStream()
            }
        case .collecting(let status, let headers, var body, let limit):
            guard body.count + bytes.count <= limit else {
                fail(.upstreamProtocol("the upstream response exceeded \(limit) bytes"))
                return true
            }
            phase = .finished  // release the array's reference while appending (no copy)
            body.append(contentsOf: bytes)
            phase = .collecting(status: status, headers: headers, body: body, limit: limit)
        case .awaitingUpstreamHead, .finished:
            break
        }
        return true
    }

    private func upstreamDidComplete(_ failure: UpstreamFailure?) {
        transfer = nil
        switch phase {
        case .awaitingUpstreamHead:
            var connectFailed = false
            if case .couldNotConnect? = failure { connectFailed = true }
            if retryOrFallBack(status: nil, connectFailed: connectFailed, headers: []) { return }
            fail(Self.apiError(for: failure ?? .transfer("the upstream closed without a response"), provider: route.endpoint.name))
        case .streaming:
            out.removeAll(keepingCapacity: true)
            relay.upstreamDidEnd(failure: failure.map { Self.apiError(for: $0, provider: route.endpoint.name, midStream: true) }, into: &out)
            if case .failed(let error) = relay.outcome { record.error = error.code }
            stream?.emit(out)
            finishClientStream()
        case .collecting(let status, let headers, let body, _):
            if let failure {
                fail(Self.apiError(for: failure, provider: route.endpoint.name, midStream: true))
            } else if !(200..<300).contains(status) {
                if retryOrFallBack(status: status, connectFailed: false, headers: headers) { return }
                fail(route.provider.error(status: status, body: body, headers: headers, provider: route.endpoint.name,
                                          redactor: redactor))
            } else if !JSONScanner.isValid(body) {
                fail(.upstreamProtocol("the upstream's response is not valid JSON"))
            } else {
                record.firstTokenMilliseconds = elapsedMilliseconds
                if let json = try? JSONValue.parse(body) {
                    record.usage = Usage(openAI: json["usage"]) ?? Usage()
                    record.finishReason = json["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue
                }
                writer.respond(status: 200, headers: [("Content-Type", "application/json"), ("X-Generation-Id", generationID)],
                               body: body)
                phase = .finished
                finish()
            }
        case .finished:
            break
        }
    }

    // MARK: client side

    private func openClientStream() {
        guard case .awaitingUpstreamHead = phase else { return }
        phase = .streaming
        writer.startStream(status: 200, headers: [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),  // tell any proxy in front of us not to buffer
            ("X-Generation-Id", generationID),
        ])
        // 8 slots (2 KiB): a proxied stream has one producer and drains every iteration.
        let stream = ClientStream(writer: writer, loop: client.loop, capacity: 8)
        stream.onEnded = { [unowned self] in finish() }
        self.stream = stream
    }

    private func sendKeepAlive() {
        openClientStream()
        guard case .streaming = phase else { return }
        stream?.emit(Array(": keep-alive\n\n".utf8))
    }

    private func checkUpstreamIdle() {
        guard let transfer, !transfer.isPaused else { return }  // a paused transfer waits for the client
        let idle = client.loop.nowMilliseconds &- lastUpstreamActivity
        guard idle >= settings.idleTimeoutMilliseconds else { return }
        transfer.cancel()
        self.transfer = nil
        // Reported as if curl had timed out.
        upstreamDidComplete(.timedOut("no data from the upstream for \(idle) ms"))
    }

    /// A client that has taken nothing for too long would pin an upstream transfer forever:
    /// drop it (the reason is in the request's log line and record).
    private func dropSlowClient() {
        guard !didFinish else { return }
        record.error = "client_too_slow"
        record.cancelled = true
        transfer?.cancel()
        transfer = nil
        phase = .finished
        writer.abort()
        finish()
    }

    private func clientDidDisconnect() {
        record.cancelled = true
        retryTimer?.close()
        retryTimer = nil
        transfer?.cancel()
        transfer = nil
        phase = .finished
        finish()
    }

    /// Queues the end of the response; `finish` runs once it is written.
    private func finishClientStream() {
        guard case .streaming = phase else { return }
        phase = .finished
        stream?.emitEnd()
    }

    /// Answers with `error`: as the response if nothing was sent yet, else in-band (an error
    /// chunk and `[DONE]`).
    private func fail(_ error: APIError) {
        record.error = error.code
        transfer?.cancel()
        transfer = nil
        if let stream {
            out.removeAll(keepingCapacity: true)
            relay.fail(error, into: &out)
            stream.emit(out)
            phase = .finished
            stream.emitEnd()
        } else {
            record.status = error.status
            var error = error
            error.headers.append(("X-Generation-Id", generationID))
            writer.respond(error: error)
            phase = .finished
            finish()
        }
    }

    private func finish() {
        guard !didFinish else { return }
        didFinish = true
        watchdog?.close()
        idleCheck?.close()
        retryTimer?.close()
        writer.onClientGone = nil
        stream?.close()
        if request.stream {
            record.usage = Usage(openAI: relay.usage) ?? Usage()
            record.finishReason = relay.finishReason
        }
        record.durationMilliseconds = elapsedMilliseconds
        onFinish(record)
    }

    static func apiError(for failure: UpstreamFailure, provider: String, midStream: Bool = false) -> APIError {
        switch failure {
        case .couldNotResolve(let detail):
            .upstreamUnavailable("Could not resolve the host of provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .couldNotConnect(let detail), .refused(let detail):
            .upstreamUnavailable("Could not connect to provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .timedOut(let detail):
            .upstreamUnavailable("Provider '\(provider)' timed out: \(detail)", code: "upstream_timeout", status: 504)
        case .transfer(let detail):
            .upstreamUnavailable(
                midStream ? "The stream from provider '\(provider)' broke off: \(detail)"
                          : "The connection to provider '\(provider)' failed: \(detail)",
                code: "upstream_connection_lost")
        }
    }
}

/// A chat request on its way to a provider.
struct ProxiedRequest {
    /// As the client sent it.
    let chat: ChatRequest
    /// In neutral form, `model` the slug to route.
    let neutral: ModelRequest
    /// Nothing was rewritten: to a provider speaking the client's format, the client's own bytes
    /// are relayed (only `model` replaced), unknown fields and all.
    let relayRawBody: Bool

    var stream: Bool { chat.stream }

    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        if relayRawBody && route.provider.wireFormat == .openAIChat {
            return ProviderHTTPRequest(
                url: route.endpoint.baseURL + "/chat/completions",
                headers: OpenAICompatibleProvider.headers(endpoint: route.endpoint, stream: stream, extra: extraHeaders),
                body: chat.upstreamBody(model: route.upstreamModel))
        }
        var request = neutral
        request.model = route.upstreamModel
        return route.provider.httpRequest(for: request, endpoint: route.endpoint, extraHeaders: extraHeaders)
    }
}
