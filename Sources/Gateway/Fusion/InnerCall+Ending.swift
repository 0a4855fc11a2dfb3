import EventLoop
import Fusion
import GatewayCore
import Providers
import UpstreamClient

/// How an inner call ends: its transfer's completion read (a whole answer delivered, a stream's
/// end as its decoder says, a failure retried, fallen back from or reported) and the one `ended`
/// or `failed` record that closes it.
extension InnerCall {
    /// Ends the call complete when its answer is whole though its stream has not ended (its
    /// transfer broke, went silent, or the deadline came): a member or judge that answered in
    /// full and then stayed silent failed at its deadline, its answer lost (review 75B #1).
    func endIfWhole() -> Bool {
        guard !finished, (200..<300).contains(status), !wholeBody, !outbox.isBlocked, decoder.answerIsWhole else { return false }
        transfer?.cancel()
        transfer = nil
        endOfStream()
        return true
    }

    /// The body ended cleanly: what only its end completes (Gemini's raw JSON error without its
    /// line end: review 52A #5) is read, then the call ends as the decoder says.
    func endOfStream() {
        var failure: APIError?
        do {
            try decoder.finish { event in _ = pass(event, failure: &failure) }
        } catch {
            fail(.upstreamProtocol("\(route.endpoint.name) sent an invalid stream: \(error.message)"), .invalidResponse)
            return
        }
        if let failure {
            if !emittedEvents, retryOrFallBack(status: failure.status, connectFailed: false) { return }
            fail(failure, .upstreamError)
            return
        }
        end(decoder.end())
    }

    func didComplete(_ failure: UpstreamFailure?) {
        transfer = nil
        guard !finished else { return }
        // An answer its decoder knows is whole (a stop reason; an OpenAI finish with its usage
        // after it) ends complete when its transfer then breaks or goes silent, as a proxied one
        // does (review 72A: a member that had answered in full failed, and its answer was lost).
        if failure != nil, endIfWhole() { return }
        if let failure {
            // Never sent: a refused connection, or a name not resolved (as the proxy's).
            var connectFailed = false
            switch failure {
            case .couldNotConnect, .couldNotResolve, .outOfDescriptors: connectFailed = true  // nothing was sent
            default: break
            }
            // Before any event went to the session (`retryOrFallBack` checks): no head, or a head
            // whose body broke off or went silent, a whole answer's or an error's (review 80A #1:
            // only the first was retried): an error's by its status, as the proxy does.
            let failedStatus = status == 0 || (200..<300).contains(status) ? nil : route.provider.meaningOfStatus(status, body: errorBody)
            if retryOrFallBack(status: failedStatus, connectFailed: connectFailed,
                               retryHeaders: failedStatus == nil ? nil : route.provider.retryHeaders(status: status, body: errorBody, headers: headers)) {
                return
            }
            let error = UpstreamFailure.apiError(for: failure, provider: route.endpoint.name, midStream: status != 0)
            switch failure {
            case .couldNotConnect, .couldNotResolve, .refused: fail(error, .unreachable)
            case .timedOut: fail(error, .timeout)
            case .transfer, .outOfDescriptors: fail(error, .upstreamError)  // the message says whose
            case .malformedResponse: fail(error, .invalidResponse)
            }
        } else if !(200..<300).contains(status) {
            if retryOrFallBack(status: route.provider.meaningOfStatus(status, body: errorBody), connectFailed: false,
                               retryHeaders: route.provider.retryHeaders(status: status, body: errorBody, headers: headers)) { return }
            let error = route.provider.error(status: status, body: errorBody, headers: headers, provider: route.endpoint.name,
                                             redactor: redactor)
            fail(error, error.status == 429 ? .rateLimited : .upstreamError)  // a 429 `insufficient_quota` is a 402 (review 75A #6)
        } else if wholeBody {
            deliverWhole()
        } else {
            endOfStream()
        }
    }

    /// A whole answer: its events, as a stream would have carried them.
    func deliverWhole() {
        summary.upstreamID = UpstreamIdentifier.answerID(inWholeBody: errorBody, redactor: redactor)
        let events: [ModelEvent]
        do {
            events = try route.provider.decodeResponse(errorBody, redactor: redactor).map { $0.costed(at: route.price) }
        } catch {
            fail(.upstreamProtocol("\(route.endpoint.name) sent an invalid response: \(error.message)"), .invalidResponse)
            return
        }
        for event in events {
            if case .error(let error) = event {
                // Before any event (an error in a 200 body, one without an answer: review 52A
                // #3), retried or fallen back from like that status, as the proxy does.
                if retryOrFallBack(status: error.status, connectFailed: false) { return }
                fail(error, .upstreamError)
                return
            }
            emittedEvents = true
            InnerCallRecord.encode(event) { kind, bytes in emit(kind, bytes) }
        }
        end(.complete)
    }

    func end(_ streamEnd: StreamEnd) {
        guard !finished else { return }
        stop()
        summary.upstreamEnd = EventLoop.monotonicNanoseconds()
        summary.upstreamID = summary.upstreamID ?? decoder.upstreamID  // a whole answer's is read from its body
        emit(InnerCallRecord.ended, InnerCallRecord.encodeEnd(streamEnd, summary))
    }

    func fail(_ error: APIError, _ reason: MemberFailureReason) {
        guard !finished else { return }
        stop()
        if summary.upstreamStart != 0 { summary.upstreamEnd = EventLoop.monotonicNanoseconds() }
        summary.upstreamID = summary.upstreamID ?? decoder.upstreamID
        emit(InnerCallRecord.failed, InnerCallRecord.encodeFailure(error, reason, summary))
    }
}
