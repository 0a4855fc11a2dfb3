import EventLoop
import GatewayCore
import HTTPServer
import Logging
import Providers
import RedisClient

/// A request let in under a key: what was reserved for it, settled when it finishes.
struct AdmissionTicket {
    let identity: KeyIdentity
    /// What admission took from the key's buckets (nothing when the store could not be asked),
    /// and the tokens the request's plan reserved once it was routed (`reserveTokens`).
    var reservation: LimitReservation
    /// Spend held against the key's budgets while the request runs (`holdSpend`; 0: none),
    /// released when it settles, under the request's generation id.
    var held: Int64 = 0
    var holdID = ""
    /// The store could not decide the admission: no hold is asked of it either (one request
    /// in an outage waits out one timeout, not two).
    var storeFailed = false
    /// What the routed request's plan may read and write (its prompts and output limits), when a
    /// key's limits asked for it: the most a reported total beyond the usage's own counts is
    /// believed for (`countedTokens`).
    var plannedTokens: Int64?
}

extension GatewayServer {
    /// Runs `start` once what the routed request's plan may use is held: its tokens against its
    /// key's tokens per minute (`reserveTokens`), then its cost against its budgets
    /// (`holdSpend`). `plan` runs only for a key with either limit.
    func hold(_ plan: @escaping () -> HoldEstimate.Plan, outputLimit: String, record: GenerationRecord, api: ClientAPI,
              writer: HTTPResponseWriter, startedAt: UInt64, prompt: String?, log: Logger, then start: @escaping () -> Void) {
        guard let limits = tickets[ObjectIdentifier(writer)]?.identity.limits,
              limits.tokensPerMinute != nil || limits.dailyBudgetMicros != nil || limits.monthlyBudgetMicros != nil else {
            start()
            return
        }
        let planned = plan()
        tickets[ObjectIdentifier(writer)]?.plannedTokens = planned.tokens
        reserveTokens(planned.tokens, outputLimit: outputLimit, record: record, api: api, writer: writer, startedAt: startedAt,
                      prompt: prompt, log: log) { [weak self] in
            guard let self else { return }
            holdSpend({ [config] in planned.micros(prices: config.prices) }, outputLimit: outputLimit, record: record, api: api, writer: writer,
                      startedAt: startedAt, prompt: prompt, log: log, then: start)
        }
    }

    /// Runs `start` once the request's key may go ahead: at once for a key without limits (or no
    /// key), after one round trip to the limiter otherwise. A refused request gets a 429 with
    /// `Retry-After` and `x-ratelimit-*`; an allowed one carries the `x-ratelimit-*` headers on its
    /// response. When the store cannot decide, `store.on_store_error` says what happens. Refusals
    /// are in `api`'s error shape (Anthropic's on `/v1/messages`).
    func admit(_ request: HTTPRequest, _ writer: HTTPResponseWriter, api: ClientAPI, then start: @escaping () -> Void) {
        guard let identity = shared.keyRing.identify(request) else {
            start()
            return
        }
        guard !identity.limits.isEmpty else {
            // No limits: usage counters only, settled at the end.
            run(start, writer, ticket: AdmissionTicket(identity: identity, reservation: LimitReservation(requests: 0, tokens: 0)))
            return
        }
        let reservation = identity.limits.reservation(bodyBytes: request.body.count)
        let startedAt = EventLoop.monotonicNanoseconds()
        store.limiter.admit(identity, reservation: reservation) { [weak self, weak writer] result in
            guard let self else { return }
            guard let writer, writer.state == .pending else {
                // The client left while the limiter answered: give back what was reserved.
                if case .success(let decision) = result, decision.allowed {
                    store.limiter.settle(identity, settlement: LimitSettlement(extraRequests: -reservation.requests, tokenDelta: -reservation.tokens,
                                                                               spendMicros: 0), usage: KeyUsage())
                }
                return
            }
            let metrics = shared.metrics
            switch result {
            case .success(let decision) where decision.allowed:
                metrics.countLimitDecision(outcome: "allowed")
                writer.defaultHeaders += RateLimitResponse.headers(decision)
                run(start, writer, ticket: AdmissionTicket(identity: identity, reservation: reservation))
            case .success(let decision):
                metrics.countLimitDecision(outcome: "limited")
                // Once, under the limit the refusal names (several may be exceeded at once).
                if let reported = RateLimitResponse.reportedDimension(decision) { metrics.countRateLimited(kind: reported.kind.rawValue) }
                let error = RateLimitResponse.error(decision, keyName: identity.name ?? identity.id)
                refuseBeforeStart(error, request, writer, api: api, startedAt: startedAt, key: identity)
                logger.info("request limited", metadata: ["key": "\(identity.id)", "code": "\(error.code)", "type": "\(error.type)"])
            case .failure(let error):
                // Counted and logged by `storeDidFail`.
                switch store.onStoreError {
                case .allow:
                    metrics.countLimitDecision(outcome: "store_error_allowed")
                    // An admission that timed out (or lost its connection) may have been applied:
                    // taken as applied, its reservation is settled like any other, not charged a
                    // second time in full (review 43 state #6); settlements take timeouts so too.
                    run(start, writer, ticket: AdmissionTicket(identity: identity,
                                                               reservation: error.mayHaveBeenApplied ? reservation : LimitReservation(requests: 0, tokens: 0),
                                                               storeFailed: true))
                case .deny:
                    metrics.countLimitDecision(outcome: "store_error_denied")
                    refuseBeforeStart(RateLimitResponse.storeUnavailable(), request, writer, api: api, startedAt: startedAt, key: identity)
                }
            }
        }
    }

    /// Runs `start` once the request's spend hold is granted: what its plan may cost
    /// (`HoldEstimate`), held against its key's budgets while it runs, so requests running at
    /// once cannot together spend past a budget by more than their plans leave out (admission,
    /// before the body is parsed, checks only the spend so far). At once when there is nothing
    /// to hold: no key with a budget, no price for the request's models, or a store that could
    /// not decide the admission. A refusal is a 429 in `api`'s shape that says how much the
    /// request may cost and how much is left. `estimate` runs only for a key with a budget.
    private func holdSpend(_ estimate: () -> Int64, outputLimit: String, record: GenerationRecord, api: ClientAPI, writer: HTTPResponseWriter,
                   startedAt: UInt64, prompt: String?, log: Logger, then start: @escaping () -> Void) {
        let key = ObjectIdentifier(writer)
        guard let ticket = tickets[key], !ticket.storeFailed,
              ticket.identity.limits.dailyBudgetMicros != nil || ticket.identity.limits.monthlyBudgetMicros != nil,
              case let micros = estimate(), micros > 0 else {
            start()
            return
        }
        let identity = ticket.identity
        let holdID = record.id
        // The writer is held strongly until the store answers: its identifier keys `tickets`,
        // and must not name another request's writer meanwhile.
        store.limiter.hold(identity, micros: micros, holdID: holdID) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let decision) where decision.allowed:
                guard writer.state == .pending, tickets[key] != nil else {
                    // The client left while the store answered: nothing ran.
                    store.limiter.release(identity, held: decision.held, holdID: holdID)
                    if let ticket = tickets.removeValue(forKey: key) { settle(ticket, record: nil) }
                    return
                }
                tickets[key]?.held = decision.held
                tickets[key]?.holdID = holdID
                start()
            case .success(let decision):
                guard writer.state == .pending, let refusal = decision.refusal else {
                    if let ticket = tickets.removeValue(forKey: key) { settle(ticket, record: nil) }
                    return
                }
                shared.metrics.countLimitDecision(outcome: "hold_refused")
                shared.metrics.countRateLimited(kind: refusal.kind.rawValue)
                let error = RateLimitResponse.holdRefused(refusal, hold: max(1, micros), keyName: identity.name ?? identity.id,
                                                              outputLimit: outputLimit)
                dropHeaders(named: error.headers, of: writer)  // its figures replace the admission's
                // Logged before `refuse` files the record and lets the ticket (the key's name) go.
                keyed(log, writer).info("request refused: what it may spend passes a budget",
                                        metadata: ["hold_usd": "\(RateLimitResponse.dollars(max(1, micros)))", "code": "\(error.code)"])
                refuse(error, record: record, api: api, writer: writer, startedAt: startedAt, prompt: prompt, log: log)
            case .failure:
                // Counted and logged by `storeDidFail`. It may have been applied (a timeout): its
                // release is harmless if not (`RedisLimitScripts.release`).
                store.limiter.release(identity, held: SpendHold.amount(micros), holdID: holdID)
                decideOutage(writer: writer, record: record, api: api, startedAt: startedAt, prompt: prompt, log: log, allow: start)
            }
        }
    }

    /// A step after admission the store could not decide: nothing more for a client that left;
    /// else `store.on_store_error` says whether the request goes on (`allow`) or is refused.
    func decideOutage(writer: HTTPResponseWriter, record: GenerationRecord, api: ClientAPI, startedAt: UInt64, prompt: String?,
                      log: Logger, allow next: () -> Void) {
        guard writer.state == .pending else {
            if let ticket = tickets.removeValue(forKey: ObjectIdentifier(writer)) { settle(ticket, record: nil) }
            return
        }
        switch store.onStoreError {
        case .allow:
            shared.metrics.countLimitDecision(outcome: "store_error_allowed")
            next()
        case .deny:
            shared.metrics.countLimitDecision(outcome: "store_error_denied")
            refuse(RateLimitResponse.storeUnavailable(), record: record, api: api, writer: writer, startedAt: startedAt, prompt: prompt, log: log)
        }
    }

    /// A refusal by the limits has an id and a record (kind `rejected`) like any other.
    private func refuseBeforeStart(_ error: APIError, _ request: HTTPRequest, _ writer: HTTPResponseWriter, api: ClientAPI,
                                   startedAt: UInt64, key: KeyIdentity) {
        var record = newRecord(request, api: api)
        // The body was read but not parsed: the model and stream flag as its top level gives them.
        let asked = Self.askedFor(request.body)
        record.requestedModel = asked.model
        record.streamed = asked.streamed
        var log = logger
        log[metadataKey: "generation_id"] = "\(record.id)"
        log[metadataKey: "key"] = "\(key.id)"  // the refused request's line names its key, as an admitted one's does
        refuse(error, record: record, api: api, writer: writer, startedAt: startedAt, prompt: nil, log: log)
    }

    /// The top-level `model` (at most 256 characters) and `stream` of a JSON body, scanned
    /// rather than parsed (a record of a request refused before its body was validated); empty
    /// and false when absent or not of that type.
    static func askedFor(_ body: [UInt8]) -> (model: String, streamed: Bool) {
        func value(_ key: String) -> JSONValue? {
            body.withUnsafeBytes { bytes in
                JSONScanner.rangeOfTopLevelValue(forKey: key, in: bytes).flatMap { try? JSONValue.parse(UnsafeRawBufferPointer(rebasing: bytes[$0])) }
            }
        }
        // Cut in bytes: a Character may carry any number of combining marks (review 46 #1).
        return ((value("model")?.stringValue ?? "").shortened(toBytes: ModelRouter.maxModelNameBytes), value("stream")?.boolValue ?? false)
    }

    private func run(_ start: () -> Void, _ writer: HTTPResponseWriter, ticket: AdmissionTicket) {
        let key = ObjectIdentifier(writer)
        tickets[key] = ticket
        start()
        // Refused before any work started (a 400): it used one request and no tokens.
        if writer.state != .pending && writer.state != .streaming && active[key] == nil, let ticket = tickets.removeValue(forKey: key) {
            settle(ticket, record: nil)
        }
    }

    /// Files a finished request's record (in process or in Redis) and settles its key's limits
    /// and usage.
    func file(_ record: GenerationRecord, writer: HTTPResponseWriter) {
        store.records.put(record)
        if let ticket = tickets.removeValue(forKey: ObjectIdentifier(writer)) { settle(ticket, record: record) }
    }

    /// What a request's usage counts against tokens per minute: what was read and written, never
    /// less than the counts spend is charged from, whatever total an upstream reported (review
    /// 48 limits #3: a reported `total_tokens: 0` made a request free for the limit). A total
    /// above the counts (Google's OpenAI endpoint counts thoughts outside the completion) is
    /// believed up to what the request planned to read and write: a hostile or broken upstream's
    /// `total_tokens: 2^40` on a 6-token answer locked its key out for a day (review 72B #7).
    static func countedTokens(_ usage: Usage, planned: Int64? = nil) -> Int64 {
        let counts = Usage.saturatingAdd(usage.promptTokens, usage.completionTokens)
        guard usage.totalTokens > counts else { return counts }
        return min(usage.totalTokens, max(counts, planned ?? .max))
    }

    func settle(_ ticket: AdmissionTicket, record: GenerationRecord?) {
        // Every inner call of a deliberation is a request; anything that reached a route is one.
        let requests = Int64(max(1, record?.innerCalls.count ?? 0))
        let usage = record?.usage
        let spend = record?.spendMicros ?? 0
        // One settlement charges at most the key's whole minute: the worst a broken or hostile
        // upstream's counts (`prompt_tokens: 10^9` on a 10-token answer) can do is a minute
        // without tokens, not a day (review 75A #1; spend counts each call's tokens up to
        // `Spend`'s bounds, review 83B #2).
        let tokens = min(usage.map { Self.countedTokens($0, planned: ticket.plannedTokens) } ?? 0,
                         ticket.identity.limits.tokensPerMinute ?? .max)
        let settlement = LimitSettlement(extraRequests: requests - ticket.reservation.requests,
                                         tokenDelta: tokens - ticket.reservation.tokens, spendMicros: spend)
        // The hold ends once the spend is added: no moment counts neither.
        store.limiter.settle(ticket.identity, settlement: settlement,
                             usage: KeyUsage(requests: requests, promptTokens: usage?.promptTokens ?? 0,
                                             completionTokens: usage?.completionTokens ?? 0, costMicros: spend),
                             release: ticket.held > 0 ? HeldSpend(micros: ticket.held, holdID: ticket.holdID) : nil)
    }

    /// A failed store operation: always counted; logged at most every 10 s per loop, so an outage
    /// does not flood the log (`WarningThrottle`).
    func storeDidFail(_ operation: String, _ error: RedisError) {
        shared.metrics.countStoreError(operation: operation, error: error.label)
        if operation == "record_unreadable" {
            lastUnreadableRecord = "\(error)"
            unreadableRecordWarning.occurred()
        } else if operation.hasSuffix("_dropped") {
            // The queue for Redis is full (`max_unwritten_records`): the oldest waiting record or
            // settlement is lost for the other replicas and the key's shared usage (review 22 F3).
            lastStoreDrop = (operation, "\(error)")
            storeDropWarning.occurred()
        } else {
            lastStoreFailure = (operation, "\(error)")
            if operation == "connection" { lastStoreConnectFailure = "\(error)" }
            storeFailureWarning.occurred()
        }
    }
}
