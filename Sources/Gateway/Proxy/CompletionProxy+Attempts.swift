import EventLoop
import GatewayCore
import Providers
import Surfaces
import UpstreamClient

/// A proxy's upstream attempts: one call per attempt, and what a failed attempt leads to (a retry
/// after a backoff, the next of `models`, or the failure reported), decided by `RetryPolicy`
/// while nothing of the answer has reached the client.
extension CompletionProxy {
    /// One upstream call for the current candidate.
    func startAttempt() {
        guard let request else {
            // Unreachable: attempts start only before anything reached the client.
            fail(.upstreamUnavailable("the request can no longer be sent", code: "internal_error", status: 500))
            return
        }
        attempt += 1
        accounting.attemptStarted(route)
        receivedBytes = 0
        // The first attempt uses the relay made with the proxy (building one costs allocations).
        if candidate > 0 || attempt > 1 { relay = makeRelay(request) }
        let http = request.httpRequest(for: route, extraHeaders: extraHeaders)
        let transfer = client.start(UpstreamRequest(
            url: http.url, headers: http.headers, body: http.body,
            connectTimeoutMilliseconds: settings.connectTimeoutMilliseconds,
            receiveBufferBytes: streamed ? 2048 : nil))
        accounting.requestHandedOver()
        self.transfer = transfer
        lastUpstreamActivity = client.loop.nowMilliseconds
        progressMarksSeen = 0
        // Each attempt is timed from its start: the check that cut the last one is not re-armed
        // by itself (review 81A #1: a retry or fallback after a timeout was never timed). The
        // first attempt's is armed by `start`, once it exists.
        idleCheck?.start(afterMilliseconds: settings.idleTimeoutMilliseconds)
        transfer.onHead = { [unowned self] status, headers in upstreamDidSendHead(status: status, headers: headers) }
        transfer.onData = { [unowned self] bytes in upstreamDidSend(bytes) }
        transfer.onComplete = { [unowned self] failure in upstreamDidComplete(failure) }
    }

    /// A relay for the current route. When the client's stream is already open (a keep-alive
    /// committed it, or an earlier attempt failed before its first token), its start is marked
    /// as sent: the client has it, and must not see a second `message_start` or
    /// `response.created`.
    func makeRelay(_ request: Request) -> Request.Relay {
        var relay = request.makeRelay(route: route, context: context)
        if stream != nil {
            var sent: [UInt8] = []
            relay.start(into: &sent)
        }
        return relay
    }

    /// The attempt failed before the client got anything from it: retry, fall back, or report
    /// `error`. Returns false when the caller should report `error` itself.
    func retryOrFallBack(status: Int?, connectFailed: Bool, headers: [(String, String)]) -> Bool {
        guard let decision = retryDecision(status: status, connectFailed: connectFailed, headers: headers) else { return false }
        retry(decision)
        return true
    }

    /// What to do about a failed attempt, or nil when its failure is the client's answer: an
    /// answer event already reached the client, or the policy gives up.
    func retryDecision(status: Int?, connectFailed: Bool, headers: [(String, String)]) -> RetryPolicy.Decision? {
        guard !relay.answerShown, request != nil else { return nil }
        let decision = settings.retry.decide(status: status, connectFailed: connectFailed, headers: headers, attempt: attempt,
                                             hasNextModel: candidate + 1 < candidates.count, jitter: Double.random(in: 0...1))
        return decision == .fail ? nil : decision
    }

    func retry(_ decision: RetryPolicy.Decision) {
        switch decision {
        case .fail:
            break
        case .nextModel:
            let from = route
            candidate += 1
            attempt = 0
            restart(afterMilliseconds: 0) { [unowned self] in accounting.fallingBack(from: from, metrics: metrics) }
        case .retry(let delay):
            let route = route
            restart(afterMilliseconds: delay) { [unowned self] in accounting.retrying(route, metrics: metrics) }
        }
    }

    func releaseHeld() {
        collected?.release(heldBytes)
        heldBytes = 0
    }

    /// The next attempt, after `delay`. `counting` counts it (a retry or a fallback) once it
    /// starts: one the client left before is never made, so never counted (review 77B #2: the
    /// record said 1 attempt and 1 retry).
    func restart(afterMilliseconds delay: UInt64, counting: @escaping () -> Void) {
        releaseHeld()  // the failed attempt's body is dropped
        phase = stream == nil ? .awaitingUpstreamHead : .streaming
        guard delay > 0 else {
            counting()
            startAttempt()
            return
        }
        let timer = LoopTimer(loop: client.loop) { [unowned self] in
            retryTimer?.close()
            retryTimer = nil
            counting()
            startAttempt()
        }
        timer.start(afterMilliseconds: delay)
        retryTimer = timer
    }

    /// Whether the official SDKs' own retries (of 408/409/429/5xx) could help: not once the
    /// gateway has retried and fallen back itself (they would stack: 3 × 3 attempts), nor for
    /// errors about the request. A 429 or 5xx the gateway did not wait for (its `Retry-After` was
    /// too long: review 80A #4 for the 5xx) is the client's to retry when it likes, as is the
    /// gateway's own "full, retry shortly" (`collected_bytes_limit`, which no retry of the
    /// gateway's could have helped).
    func clientRetryCanHelp(_ error: APIError) -> Bool {
        guard [408, 409, 429, 500, 502, 503, 504].contains(error.status) else { return false }
        if accounting.attempts == 1 && error.headers.contains(where: { $0.0.lowercased().hasPrefix("retry-after") }) {
            return true
        }
        if error.code == "collected_bytes_limit" { return true }
        // Cut by this replica's shutdown: another replica can answer (review 77B #3: the
        // message said to send it again, the header told the SDKs not to).
        if error.code == "shutting_down" { return true }
        // Tried once because the gateway's policy retries none of these (an upstream's 408 or
        // 409, the gateway's own idle timeout): the client's retry is the only one there is
        // (review 71C #3: one attempt anywhere).
        if accounting.attempts == 1 && (error.status == 408 || error.status == 409 || error.code == "upstream_timeout") { return true }
        // Broken off before any of it reached the client (a connection lost, a stream or a body
        // cut short), tried once: the gateway does not retry what the upstream may have taken,
        // but the client may (review 81B #1: nobody retried it).
        if accounting.attempts == 1 && (error.code == "upstream_connection_lost" || error.code == "upstream_truncated") { return true }
        return accounting.attempts <= 1 && settings.retry.maxRetries == 0
    }
}
