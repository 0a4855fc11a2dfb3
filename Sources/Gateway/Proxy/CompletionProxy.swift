import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Prometheus
import Providers
import Surfaces
import UpstreamClient

/// Relays one completion to its upstream and the answer back, streamed or whole, in the API the
/// client spoke (`Request`: chat completions, Anthropic Messages, Responses).
///
/// Streaming: the client's response head is sent when the upstream's 200 arrives (or, if the
/// upstream is slow to answer, when the first keep-alive is due), so an upstream error before that
/// still reaches the client with its real status. Each upstream event is relayed the moment it is
/// parsed (`Request.Relay`: passed through when the upstream speaks the client's format,
/// translated otherwise) into the stream's fan-in channel (`ClientStream`) and written in the same
/// loop iteration; the response ends right after `[DONE]`. When the channel has no room (a slow
/// client), the upstream transfer pauses until it drains. A client that disconnects cancels the
/// upstream transfer at once. Every chunk and body carries the generation id and the model the
/// client asked for.
final class CompletionProxy<Request: ProxyRequest> {
    enum Phase {
        case awaitingUpstreamHead
        /// Client stream open (head sent).
        case streaming
        /// Collecting a whole body: the non-streamed answer, an upstream error to translate, or a
        /// whole answer to a streamed request (some servers ignore `stream`), turned into chunks.
        case collecting(status: Int, headers: [(String, String)], body: [UInt8], limit: Int)
        /// A whole answer being read off the loop (`WholeAnswer`): nothing to do until it is.
        case reading
        case finished
    }

    /// The client's request, until it cannot be sent again: once an event has reached the client
    /// there is no retry or fallback, and a long conversation's parsed form (its JSON tree, its
    /// neutral messages, its bytes) is not kept for as long as the stream lasts.
    var request: Request?
    let streamed: Bool
    let api: ClientAPI
    /// Kept past the request: what a stream cut before its usage is charged for its prompt.
    let estimatedPromptTokens: Int64
    /// `model` then the `models` fallbacks.
    let candidates: [ModelRoute]
    var candidate = 0
    /// Attempts on the current candidate.
    var attempt = 0
    var retryTimer: LoopTimer?
    var route: ModelRoute { candidates[candidate] }
    let writer: HTTPResponseWriter
    let client: UpstreamClient
    let settings: GatewayConfig.Upstream
    let redactor: Redactor
    let onFinish: (@escaping RecordCloser) -> Void
    var generationID: String { accounting.id }
    let extraHeaders: [(String, String)]
    let slowClientTimeout: UInt64
    let stats: GatewayStats?
    let metrics: GatewayMetrics?
    /// The record, the attempts' times, how the response is ending.
    var accounting: ProxyAccounting
    var phase = Phase.awaitingUpstreamHead
    var transfer: UpstreamTransfer?
    var relay: Request.Relay
    var stream: ClientStream?
    var created: Int { accounting.created }
    let context: ProxyContext
    /// The loop's output buffer, lent per callback: the per-event path allocates nothing once it
    /// has grown, and an open stream holds no buffer of its own.
    let scratch: ByteScratch
    var watchdog: StreamWatchdog?
    var idleCheck: LoopTimer?
    /// When the upstream last sent something: its head, a read of a whole body, or a read of its
    /// event stream that completed an event or a comment (`SSEDecoder.progressMarks`: a byte a
    /// second into an event that never ends is no activity).
    var lastUpstreamActivity: UInt64 = 0
    /// The relay's `progressMarks` when activity was last counted.
    var progressMarksSeen = 0
    var didFinish = false
    /// A whole answer waiting to be read off the loop: cancelled if the client leaves first.
    var readTicket: OffLoopLane.Ticket?
    /// Bytes of the current attempt's response (bounded by `upstream.max_response_bytes`).
    var receivedBytes = 0
    /// Whole answers held across requests, and what this one holds of it (given back when the
    /// answer has been converted, on a retry, or at the latest when the proxy goes).
    let collected: HeldBytes?
    var heldBytes = 0
    /// What a backpressure pause hands the channel: made once, not per pause (a slow client
    /// pauses the upstream every few records, and each new closure was two allocations).
    /// The upstream's silence counts from the resume, as a Fusion call's does (review 126 #6: the
    /// time the client held it paused counted, and a resumed read ending inside an event was no
    /// activity).
    lazy var resumeTransfer: () -> Void = { [weak self] in
        guard let self else { return }
        lastUpstreamActivity = client.loop.nowMilliseconds
        transfer?.resume()
    }

    /// `record`: the completion's record as the route opened it (id, route, owner, `created`);
    /// it is filled in by the `RecordCloser` handed to `onFinish` once the response is over.
    /// `startedAt`: when the request arrived (monotonic ns).
    init(request: Request, candidates: [ModelRoute], writer: HTTPResponseWriter, client: UpstreamClient,
         settings: GatewayConfig.Upstream, redactor: Redactor, record: GenerationRecord,
         startedAt: UInt64 = EventLoop.monotonicNanoseconds(), extraHeaders: [(String, String)] = [],
         slowClientTimeoutMilliseconds: UInt64 = 30_000, stats: GatewayStats? = nil, metrics: GatewayMetrics? = nil,
         scratch: ByteScratch = ByteScratch(), collected: HeldBytes? = nil, onFinish: @escaping (@escaping RecordCloser) -> Void) {
        self.scratch = scratch
        self.collected = collected
        self.stats = stats
        self.metrics = metrics
        slowClientTimeout = slowClientTimeoutMilliseconds
        self.request = request
        streamed = request.stream
        api = request.api
        estimatedPromptTokens = request.estimatedPromptTokens
        self.candidates = candidates
        self.writer = writer
        self.client = client
        self.settings = settings.forClient(request.api)
        self.redactor = redactor
        self.onFinish = onFinish
        self.extraHeaders = extraHeaders
        accounting = ProxyAccounting(record: record, startedAt: startedAt)
        context = ProxyContext(generationID: record.id, created: record.created, maxEventBytes: settings.maxEventBytes, redactor: redactor)
        relay = request.makeRelay(route: candidates[0], context: context)
    }

    func start() {
        startAttempt()
        writer.onClientGone = { [unowned self] in clientDidDisconnect() }
        let loop = client.loop
        lastUpstreamActivity = loop.nowMilliseconds
        if streamed {
            watchdog = StreamWatchdog(
                loop: loop, keepAliveIntervalMilliseconds: settings.keepAliveIntervalMilliseconds,
                slowClientTimeoutMilliseconds: slowClientTimeout, tickBoundMilliseconds: settings.idleTimeoutMilliseconds,
                blockedMilliseconds: { [unowned self] in stream?.blockedMilliseconds() ?? 0 },
                onTick: { [unowned self] in checkUpstreamIdle() },
                sendKeepAlive: { [unowned self] in sendKeepAlive() },
                dropClient: { [unowned self] in dropSlowClient() })
        } else {
            // One shot, re-armed for when the silence would reach the limit (`checkUpstreamIdle`):
            // a tick of a quarter of the limit fired up to 25% late, 30 s with the defaults
            // (review 80A #3).
            let timer = LoopTimer(loop: loop, readsFirstWhenLate: true) { [unowned self] in checkUpstreamIdle() }
            timer.start(afterMilliseconds: settings.idleTimeoutMilliseconds)
            idleCheck = timer
        }
        // Everything the transfer's callbacks touch exists: the request leaves now, not after
        // this callback and a pass of the loop.
        transfer?.sendNow()
    }

    deinit { collected?.release(heldBytes) }

    // MARK: upstream events

    func upstreamDidSendHead(status: Int, headers: [(String, String)]) {
        lastUpstreamActivity = client.loop.nowMilliseconds
        accounting.upstreamRequestID = UpstreamIdentifier.requestID(in: headers, redactor: redactor)
        accounting.headStatus = status
        guard (200..<300).contains(status) else {
            // Collect the error body; `fail` reports it with its status, or in-band if a
            // keep-alive already committed the client's response.
            phase = .collecting(status: status, headers: headers, body: [], limit: 64 * 1024)
            return
        }
        let eventStream = UpstreamHead.isEventStream(headers)
        if streamed && eventStream {
            openClientStream()
        } else {
            // Not streamed, or a whole answer to a streamed request: collected, then converted.
            phase = .collecting(status: status, headers: headers, body: [], limit: 64 << 20)
        }
    }

    /// Returns false to pause the transfer (no room in the fan-in channel).
    func upstreamDidSend(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let streaming = if case .streaming = phase { true } else { false }
        if !streaming { lastUpstreamActivity = client.loop.nowMilliseconds }
        defer {
            // After the relay read the bytes: activity only if they completed an event or comment.
            if streaming && relay.progressMarks != progressMarksSeen {
                progressMarksSeen = relay.progressMarks
                lastUpstreamActivity = client.loop.nowMilliseconds
            }
        }
        if streaming, stream?.makeRoom(forInput: bytes.count) != true {
            // Backpressure: curl keeps these bytes and delivers them again once the channel
            // drains, so they are counted then. (Counted at every pause, a slow reader's stream
            // reached max_response_bytes with a fraction of it sent.)
            stats?.countPause()
            metrics?.backpressurePauses.increment()
            stream?.channel.resumeWhenSpace(on: client.loop, resumeTransfer)
            return false
        }
        receivedBytes += bytes.count
        guard receivedBytes <= settings.maxResponseBytes else {
            fail(.upstreamTooLarge("the upstream response exceeded \(settings.maxResponseBytes) bytes (\(settings.responseLimitSetting))"))
            return true
        }
        switch phase {
        case .streaming:
            // Events reached the client in an earlier read: no retry from here on. Not dropped
            // in that read, whose first bytes would wait for the frees.
            if request != nil && relay.answerShown { request = nil }
            guard stream != nil else { return true }  // room was checked above
            var forwarded = 0
            var retryInstead: RetryPolicy.Decision?
            var wrote = false
            let outcome = scratch.withBuffer { out in
                let outcome = relay.relay(bytes, into: &out, forwarded: &forwarded)
                // An in-band error before the first answer event (Anthropic's `overloaded_error`
                // right after `message_start`): retried like a 529 before the head. Nothing of
                // this attempt's end reaches the client; what it saw of the stream was only its
                // start, which the next attempt does not repeat.
                if case .failed(let error) = outcome,
                   let decision = retryDecision(status: error.status, connectFailed: false, headers: error.headers) {
                    retryInstead = decision
                    return outcome
                }
                // Failed before anything reached the client, this read's answer included (review
                // 70 #1: an answer and its failure in one read lost the answer): answered with
                // its status (`fail`).
                if case .failed = outcome, streamUncommitted, !relay.answerShown { return outcome }
                send(out)
                wrote = !out.isEmpty
                return outcome
            }
            if forwarded > 0 { accounting.forwardedEvents(metrics: metrics) }
            // Only bytes the client got count as the stream's sign of life: an upstream that only
            // pings (Anthropic's `ping`, consumed here) still leaves the client its keep-alives.
            if wrote { watchdog?.noteWrite() }
            switch outcome {
            case .streaming:
                break
            case .done:
                // The client has everything. The transfer finishes reading on its own, keeping
                // its connection reusable, but it no longer reports to us.
                accounting.upstreamDone()
                transfer?.detach(cancelAfterMilliseconds: 2_000)
                transfer = nil
                finishClientStream()
            case .failed(let error):
                accounting.upstreamDone()
                transfer?.cancel()
                transfer = nil
                if let retryInstead {
                    retry(retryInstead)
                    return true
                }
                if streamUncommitted && !relay.answerShown {
                    fail(error)
                    return true
                }
                accounting.failure = RecordError(error, redactor: redactor)
                finishClientStream()
            }
        case .collecting(let status, let headers, var body, let limit):
            guard body.count + bytes.count <= limit else {
                fail(.upstreamProtocol("the upstream response exceeded \(limit) bytes"))
                return true
            }
            if let collected {
                guard collected.reserve(bytes.count) else {
                    // This answer alone is over the bound: no retry can help, streaming can.
                    if heldBytes + bytes.count > collected.limit {
                        fail(.upstreamTooLarge("The whole answer is larger than the gateway holds for one request "
                                               + "(upstream.max_collected_bytes, \(collected.limit) bytes); stream the response instead."))
                    } else {
                        fail(APIError(status: 503, type: "server_error", code: "collected_bytes_limit",
                                      message: "The gateway is holding as many whole upstream answers as it may (upstream.max_collected_bytes); retry shortly, or stream the response."))
                    }
                    return true
                }
                heldBytes += bytes.count
            }
            phase = .finished  // release the array's reference while appending (no copy)
            body.append(contentsOf: bytes)
            phase = .collecting(status: status, headers: headers, body: body, limit: limit)
        case .awaitingUpstreamHead, .reading, .finished:
            break
        }
        return true
    }

    func upstreamDidComplete(_ failure: UpstreamFailure?) {
        transfer = nil
        accounting.upstreamDone()
        switch phase {
        case .awaitingUpstreamHead:
            // Never sent, so safe to retry: a refused connection, or a name not resolved (a DNS
            // blip; review 45 proxy #6).
            var connectFailed = false
            switch failure {
            case .couldNotConnect?, .couldNotResolve?, .outOfDescriptors?: connectFailed = true
            default: break
            }
            if retryOrFallBack(status: nil, connectFailed: connectFailed, headers: []) { return }
            fail(UpstreamFailure.apiError(for: failure ?? .transfer("the upstream closed without a response"), provider: route.endpoint.name))
        case .streaming:
            var retryInstead: RetryPolicy.Decision?
            scratch.withBuffer { out in
                relay.upstreamDidEnd(failure: failure.map { UpstreamFailure.apiError(for: $0, provider: route.endpoint.name, midStream: true) },
                                     into: &out)
                // Broken off (or cut short) before its first answer event: like a connection
                // broken before the head, the next model may take over. An error the body's end
                // completed (Gemini's raw JSON without its line end: review 52A #5) is retried by
                // its status, as one read mid-body is.
                if case .failed(let error) = relay.outcome,
                   let decision = retryDecision(status: failure == nil && error.code != APIError.upstreamTruncated().code ? error.status : nil,
                                                connectFailed: false, headers: failure == nil ? error.headers : []) {
                    retryInstead = decision
                    return
                }
                if case .failed = relay.outcome, streamUncommitted, !relay.answerShown { return }
                send(out)
            }
            if let retryInstead {
                retry(retryInstead)
                return
            }
            if case .failed(let error) = relay.outcome {
                if streamUncommitted && !relay.answerShown {
                    fail(error)
                    return
                }
                accounting.failure = RecordError(error, redactor: redactor)
            }
            finishClientStream()
        case .collecting(let status, let headers, let body, _):
            defer { if case .reading = phase {} else { releaseHeld() } }  // converted (or failed) by now, unless off the loop
            if let failure {
                // Broken off or silent before its body was whole: nothing reached the client, so
                // retried or fallen back from as a stream broken before its first token is (a
                // 2xx's) or as its status says (an error's whose body never came: review 80A #1).
                let ok = (200..<300).contains(status)
                if retryOrFallBack(status: ok ? nil : route.provider.meaningOfStatus(status, body: body), connectFailed: false,
                                   headers: ok ? [] : route.provider.retryHeaders(status: status, body: body, headers: headers)) { return }
                fail(UpstreamFailure.apiError(for: failure, provider: route.endpoint.name, midStream: true))
            } else if !(200..<300).contains(status) {
                let meant = route.provider.meaningOfStatus(status, body: body)
                if retryOrFallBack(status: meant, connectFailed: false,
                                   headers: route.provider.retryHeaders(status: status, body: body, headers: headers)) { return }
                var error = route.provider.error(status: status, body: body, headers: headers, provider: route.endpoint.name, redactor: redactor)
                // The field an upstream names is the client's only when it speaks the client's API
                // (translated, it names a field the client never sent: review 69).
                if !(api == .chatCompletions && route.provider.wireFormat == .openAIChat) { error.param = nil }
                fail(error)
            } else {
                deliverWhole(body, headers: headers)
            }
        case .reading, .finished:
            break
        }
    }

    /// The price usage without a cost is costed at, as the client is told it: none for a whole
    /// body relayed as its upstream wrote it (the record states what the client read; review 53 #5).
    var pricing: ModelPrice? { relayedAsSent ? nil : route.price }
    /// A whole answer went to the client as its upstream wrote it (`deliverWhole`).
    private var relayedAsSent = false

    /// A whole 2xx answer: relayed (id and model replaced) or translated, as the response the
    /// client asked for; for a streamed request, as chunks. A large one is read off the loop
    /// (`WholeAnswer`), the collected bytes still reserved until it has left.
    func deliverWhole(_ body: [UInt8], headers: [(String, String)]) {
        guard let request else {
            // Unreachable: a whole answer is collected before anything reached the client.
            fail(.upstreamUnavailable("the request can no longer be answered", code: "internal_error", status: 500))
            return
        }
        relayedAsSent = !streamed && request.relaysWholeBodyAsSent(route: route)
        let (route, pricing, context) = (route, pricing, context)
        let read = { @Sendable in WholeAnswer.read(body, request: request, route: route, pricing: pricing, context: context) }
        if body.count >= WholeAnswer<Request>.offLoopBytes {
            phase = .reading
            let ticket = OffLoopLane.Ticket()
            readTicket = ticket
            // The job holds the body's reservation until it is done or dropped unread.
            let reservation = CollectedReservation(collected, bytes: heldBytes)
            heldBytes = 0
            if WholeAnswer<Request>.readers.submit(on: client.loop, ticket: ticket, bytes: body.count, read, then: { [weak self] answer in
                guard let self, case .reading = phase else { return }  // the client left meanwhile: `reservation` lets go
                readTicket = nil
                heldBytes += reservation.take()
                deliver(answer, headers: headers)
                releaseHeld()  // what `deliver` did not hand to the client's writes
            }) { return }
            readTicket = nil
            heldBytes += reservation.take()
        }
        deliver(read(), headers: headers)
    }

    /// A whole answer, read (`WholeAnswer.read`): retried or fallen back from when it is no
    /// answer or an error, else sent.
    private func deliver(_ answer: WholeAnswer<Request>, headers: [(String, String)]) {
        if let id = answer.upstreamID { accounting.upstreamID = id }
        guard let events = answer.events else {
            // Not the API's answer at all (an HTML page from a portal or a misrouted proxy): like
            // a 2xx that answers nothing, retried and fallen back from (review 59B #4).
            if retryOrFallBack(status: 502, connectFailed: false, headers: headers) { return }
            fail(.upstreamProtocol("the upstream's response is not valid: \(answer.notAnAnswer)"))
            return
        }
        if case .error(let error)? = events.first(where: { if case .error = $0 { true } else { false } }) {
            // An error in a 2xx body (OpenRouter's once a model has started: its `code` is the
            // status it stands for): nothing reached the client, so it is retried or falls back
            // like that status (review 45 proxy #2: one attempt, then a flat 502).
            if retryOrFallBack(status: error.status, connectFailed: false, headers: headers) { return }
            accounting.failedWholeAnswer(events)
            fail(error)
            return
        }
        accounting.wholeAnswer(events)
        // Parsed again only when no usage came (and, for chat, `n` > 1).
        if accounting.estimatesWholeAnswer, let tokens = answer.outputTokens { accounting.wholeAnswerOutput(tokens) }
        if streamed, let relay = answer.relay {
            // The head may already be out (a keep-alive committed it while the upstream thought,
            // or while the answer was read), with an earlier relay's start.
            let opened = stream != nil
            phase = opened ? .streaming : .awaitingUpstreamHead
            self.relay = relay
            openClientStream(startingRelay: false)  // its start is in `startBytes`
            // The reservation lasts until the converted stream has left for the client, as a
            // whole body's does (review 53 #2: released here, slow readers held answers outside it).
            let held = heldBytes
            heldBytes = 0
            if let stream { stream.onSent = { [collected] in collected?.release(held) } } else { collected?.release(held) }
            if let tokens = relay.wholeAnswerOutputTokens { accounting.wholeAnswerOutput(tokens) }
            send(opened ? answer.streamBytes : answer.startBytes + answer.streamBytes)
            finishClientStream()
            return
        }
        let cleaned: [UInt8]
        switch answer.clientBody {
        case .success(let body)?:
            cleaned = body
        case .failure(let error)?:
            fail(error)
            return
        case nil:
            fail(.upstreamUnavailable("the answer could not be read", code: "internal_error", status: 500))  // unreachable
            return
        }
        // The collected answer's reservation goes with its bytes: released once they have left
        // for the client, so answers waiting for slow readers count against
        // `max_collected_bytes` too (review 52C #1: 40 readers at 16 KiB/s held 1.8 GB).
        let held = heldBytes
        heldBytes = 0
        writer.respond(status: 200, headers: [("Content-Type", "application/json")] + GenerationHeaders.naming(generationID), body: cleaned,
                       whenSent: { [collected] in collected?.release(held) })
        accounting.sentStatus = 200
        phase = .finished
        finish()
    }
}
