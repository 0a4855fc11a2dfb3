import GatewayCore
import HTTPServer
import Logging
import RedisClient

extension GatewayServer {
    /// Runs `next` once the tokens a routed request may read and write (`HoldEstimate.Plan`:
    /// its prompts and output limits, capped at the key's whole minute so one request can always
    /// run on a full bucket) are taken from its key's tokens per minute, beyond what admission
    /// took for its body. Admission, before the body is parsed, knows only the body's size:
    /// without this, requests running at once each took a few dozen tokens and together wrote
    /// many minutes' worth (review 64E #1: 44 streams through a 2,000-token minute). Settling
    /// gives back what the request did not use. A refusal is the 429 of a spent token bucket,
    /// saying what the request may use. At once for a key without tokens per minute, or when
    /// the store could not decide the admission.
    func reserveTokens(_ planned: Int64, outputLimit: String, record: GenerationRecord, api: ClientAPI, writer: HTTPResponseWriter,
                       startedAt: UInt64, prompt: String?, log: Logger, then next: @escaping () -> Void) {
        let key = ObjectIdentifier(writer)
        guard let ticket = tickets[key], !ticket.storeFailed, let limit = ticket.identity.limits.tokensPerMinute,
              case let wanted = min(max(0, planned), limit), wanted > ticket.reservation.tokens else {
            next()
            return
        }
        let extra = wanted - ticket.reservation.tokens
        let identity = ticket.identity
        // The writer is held strongly until the store answers: its identifier keys `tickets`.
        store.limiter.admit(identity, reservation: LimitReservation(requests: 0, tokens: extra)) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let decision) where decision.allowed:
                tickets[key]?.reservation.tokens += extra
                guard writer.state == .pending, tickets[key] != nil else {
                    // The client left while the store answered: nothing ran, all is given back.
                    if let ticket = tickets.removeValue(forKey: key) { settle(ticket, record: nil) }
                    return
                }
                let headers = RateLimitResponse.headers(decision)
                dropHeaders(named: headers, of: writer)
                writer.defaultHeaders += headers
                next()
            case .success(let decision):
                guard writer.state == .pending else {
                    if let ticket = tickets.removeValue(forKey: key) { settle(ticket, record: nil) }
                    return
                }
                shared.metrics.countLimitDecision(outcome: "tokens_refused")
                if let reported = RateLimitResponse.reportedDimension(decision) { shared.metrics.countRateLimited(kind: reported.kind.rawValue) }
                var error = RateLimitResponse.error(decision, keyName: identity.name ?? identity.id)
                if error.type == "tokens" {
                    error.message += " This request may use up to \(wanted) tokens: its prompt and its output limit (\(outputLimit), or 4,096 tokens without one); a lower limit needs fewer."
                }
                dropHeaders(named: error.headers, of: writer)  // its figures replace the admission's
                keyed(log, writer).info("request refused: what it may read and write passes the key's tokens per minute",
                                        metadata: ["tokens": "\(wanted)", "code": "\(error.code)"])
                refuse(error, record: record, api: api, writer: writer, startedAt: startedAt, prompt: prompt, log: log)
            case .failure(let error):
                // Counted and logged by `storeDidFail`. One that timed out may have been applied:
                // settled as if it had been.
                if error.mayHaveBeenApplied { tickets[key]?.reservation.tokens += extra }
                // The spend hold does not ask the failing store again (review 65 #8).
                tickets[key]?.storeFailed = true
                decideOutage(writer: writer, record: record, api: api, startedAt: startedAt, prompt: prompt, log: log, allow: next)
            }
        }
    }

    /// Takes the response's headers of `headers`' names away: newer figures of them (a later
    /// decision's `x-ratelimit-*`) replace the admission's.
    func dropHeaders(named headers: [(String, String)], of writer: HTTPResponseWriter) {
        let names = Set(headers.map { $0.0.lowercased() })
        writer.defaultHeaders.removeAll { names.contains($0.0.lowercased()) }
    }
}
