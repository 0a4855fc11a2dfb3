import EventLoop
import Fusion
import Providers
import Surfaces

/// A proxied completion's bookkeeping: its record as it fills in, its attempts and their times
/// (for the upstream's time to first event, the gaps between its events, and the overhead), and
/// how the response is ending. The proxy tells it what happened; `close` turns it into the
/// record filed for the request. Times are monotonic nanoseconds.
struct ProxyAccounting {
    private(set) var record: GenerationRecord
    /// When the request arrived.
    let startedAt: UInt64
    /// Upstream requests over every candidate (retries and fallbacks included).
    private(set) var attempts = 0
    private var firstAttemptAt: UInt64 = 0
    private var attemptAt: UInt64 = 0
    private var lastEventAt: UInt64 = 0
    private var upstreamDoneAt: UInt64?
    /// The HTTP status the client was sent (nil: nothing yet).
    var sentStatus: Int?
    var upstreamFinishReason: String?
    /// The upstream's ids for the call (`UpstreamIdentifier`): its response's request id, and
    /// a whole answer's `id` (a stream's is the relay's).
    var upstreamRequestID: String?
    var upstreamID: String?
    var failure: RecordError?
    var cancelled = false
    /// The status of the current attempt's answer, once its head came (nil before).
    var headStatus: Int?
    /// The current attempt's upstream answered 2xx: it took the prompt. A client that leaves
    /// before the first token is charged for it (review 77B #1: such a request was free, while
    /// the provider bills the prompt).
    var upstreamAccepted: Bool { headStatus.map { (200..<300).contains($0) } ?? false }
    /// The current attempt's request had gone out whole when the call was cut: the upstream has
    /// the prompt even if it had not answered yet (a whole answer's head comes with the answer:
    /// a client that left a long non-streamed request was charged nothing, so a key's budget
    /// could be dodged by hanging up before the answer).
    var promptDelivered = false
    /// The current attempt's upstream answered with a status that is not 2xx: it refused the
    /// request, and a refused call is not charged however it ends (review 92 #1).
    var upstreamRefused: Bool { headStatus.map { !(200..<300).contains($0) } ?? false }
    /// A whole answer that came without usage: its output's tokens, estimated (see `close`).
    private var wholeAnswerTokens: Int64?

    init(record: GenerationRecord, startedAt: UInt64) {
        self.record = record
        self.startedAt = startedAt
    }

    /// The current attempt's provider's metric series, looked up at its first event: each later
    /// read records into it as it is stored (a lookup returning a copy of the four series cost
    /// four retains and releases a read, and a name compare).
    private var series: GatewayMetrics.ProviderSeries?

    var id: String { record.id }
    var created: Int { record.created }

    /// Milliseconds since the request arrived (to the microsecond).
    var elapsedMilliseconds: Double { OverheadMeter.milliseconds(EventLoop.monotonicNanoseconds() &- startedAt) }

    mutating func attemptStarted(_ route: ModelRoute) {
        attempts += 1
        headStatus = nil
        promptDelivered = false
        record.model = route.slug
        record.provider = route.endpoint.name
    }

    /// The attempt's request is curl's: the upstream's time (its time to first event, the wait
    /// the overhead leaves out) starts here, after the gateway built the request.
    mutating func requestHandedOver() {
        attemptAt = EventLoop.monotonicNanoseconds()
        lastEventAt = 0
        if firstAttemptAt == 0 { firstAttemptAt = attemptAt }
    }

    mutating func retrying(_ route: ModelRoute, metrics: GatewayMetrics?) {
        record.retries += 1
        metrics?.provider(route.endpoint.name).countRetry()
    }

    mutating func fallingBack(from route: ModelRoute, metrics: GatewayMetrics?) {
        record.fallbacks += 1
        metrics?.provider(route.endpoint.name).countFallback()
    }

    /// An upstream read carried events, now relayed to the client.
    mutating func forwardedEvents(metrics: GatewayMetrics?) {
        let now = EventLoop.monotonicNanoseconds()
        if lastEventAt != 0 {
            series?.observeGap(nanoseconds: now &- lastEventAt)
        } else {
            // The attempt's first event (`requestHandedOver` starts each attempt at 0).
            series = record.provider.flatMap { metrics?.provider($0) }
            series?.observeFirstEvent(afterNanoseconds: now &- attemptAt)
            record.upstreamFirstTokenMilliseconds = OverheadMeter.milliseconds(now &- attemptAt)
        }
        lastEventAt = now
        if record.firstTokenMilliseconds == nil { record.firstTokenMilliseconds = OverheadMeter.milliseconds(now &- startedAt) }
    }

    /// A whole answer arrived: the client's first token is all of it, and so is the upstream's.
    mutating func wholeAnswer(_ events: [ModelEvent]) {
        record.firstTokenMilliseconds = elapsedMilliseconds
        record.upstreamFirstTokenMilliseconds = OverheadMeter.milliseconds(EventLoop.monotonicNanoseconds() &- attemptAt)
        let reported = events.contains { if case .usage = $0 { true } else { false } }
        for event in events {
            switch event {
            case .usage(let usage): record.usage = usage
            case .finish(let reason): upstreamFinishReason = reason.rawValue
            default: break
            }
        }
        // No usage came: the answer is still charged (the key's tokens per minute and budget),
        // estimated as a cut stream is, its output at about four bytes a token (review 22 F4:
        // whole answers without usage were free).
        wholeAnswerTokens = reported ? nil : ModelEvent.estimatedOutputTokens(events)
        record.usageUnknown = !reported && wholeAnswerTokens == nil
    }

    /// The whole answer came without usage: its output is estimated (`wholeAnswerOutput` can
    /// measure it better).
    var estimatesWholeAnswer: Bool { wholeAnswerTokens != nil }

    /// A whole answer's output as its relay measured it over every choice it relayed (the
    /// events hold choice 0's: review 78 #5), when no usage came.
    mutating func wholeAnswerOutput(_ tokens: Int64) {
        guard wholeAnswerTokens != nil else { return }
        wholeAnswerTokens = tokens
    }

    /// A whole answer with an error in its 2xx body, not retried: the usage it reported (a
    /// Gemini error finish after thought parts) is the failure's, as the upstream billed it
    /// (review 59A #2: the record said 0 tokens).
    mutating func failedWholeAnswer(_ events: [ModelEvent]) {
        for case .usage(let usage) in events { record.usage = usage }
    }

    /// An attempt's upstream has nothing more to say (done, failed, or cut off). The last
    /// attempt's end closes the upstream's time: from the first attempt to it, the request was
    /// the upstream's (retry waits included, as the README says), not the gateway's overhead.
    mutating func upstreamDone() {
        upstreamDoneAt = EventLoop.monotonicNanoseconds()
    }

    /// The record to file. `relay`: what the stream relay saw (usage, finish reason), when streamed.
    /// `estimatedPromptTokens`: the prompt's size in tokens, roughly. `price`: the model's, for
    /// an estimate the client was told (a whole answer's), costed as it was (`Usage.costed`).
    mutating func close<Relay: ClientRelay>(relay: Relay?, estimatedPromptTokens: Int64, price: ModelPrice? = nil) -> GenerationRecord {
        if let relay {
            if record.usage == Usage() {
                if let usage = relay.usage {
                    record.usage = usage
                    record.usageEstimated = relay.usageEstimated
                } else if let told = relay.estimatedUsage {
                    // The estimate the stream ended with, as the client was given it (review 53 #5).
                    record.usage = told
                    record.usageEstimated = true
                } else if let completion = wholeAnswerTokens {
                    // A streamed request answered with one whole body and no usage: its output at
                    // about four bytes a token, not a token for its one event (review 45 proxy #5).
                    record.usage = Usage.estimate(prompt: relay.promptUsage ?? Usage(promptTokens: estimatedPromptTokens), completionTokens: completion)
                        .costed(at: price)
                    record.usageEstimated = true
                } else if relay.answerShown {
                    // Tokens went out but no usage came back: the stream was cut (the client left,
                    // the upstream failed) before the upstream's usage chunk, or the upstream never
                    // sends one. What was generated is still charged (the key's tokens per minute
                    // and budget), as an estimate: the prompt by its size, a token per event.
                    // The prompt as the upstream counted it, when it said so first.
                    record.usage = Usage.estimate(prompt: relay.promptUsage ?? Usage(promptTokens: estimatedPromptTokens),
                                                  completionTokens: Int64(relay.forwardedEvents))
                    record.usageEstimated = true
                } else if (cancelled || failure?.isGatewaysCut == true) && (upstreamAccepted || promptDelivered) {
                    // The client left, or the gateway cut the call (a timeout, the shutdown),
                    // before the first token, once the upstream had taken the prompt (answered
                    // 2xx, or had the whole request): the prompt, as the upstream counted it
                    // when it said so, or by size.
                    record.usage = Usage.estimate(prompt: relay.promptUsage ?? Usage(promptTokens: estimatedPromptTokens), completionTokens: 0)
                    record.usageEstimated = true
                }
            }
            if upstreamFinishReason == nil { upstreamFinishReason = relay.finishReason }
            if let id = relay.upstreamID { upstreamID = id }
        } else if let completion = wholeAnswerTokens, record.usage == Usage() {
            record.usage = Usage.estimate(prompt: Usage(promptTokens: estimatedPromptTokens), completionTokens: completion).costed(at: price)
            record.usageEstimated = true
        } else if (cancelled || failure?.isGatewaysCut == true) && (upstreamAccepted || promptDelivered) && record.usage == Usage() {
            // A whole answer the client did not wait for: its prompt, as above.
            record.usage = Usage.estimate(prompt: Usage(promptTokens: estimatedPromptTokens), completionTokens: 0)
            record.usageEstimated = true
        }
        record.upstreamAttempts = attempts
        record.upstreamID = upstreamID
        record.upstreamRequestID = upstreamRequestID
        let now = EventLoop.monotonicNanoseconds()
        var meter = OverheadMeter()
        meter.begin(.proxy, at: startedAt)
        if firstAttemptAt != 0 { meter.waited(from: firstAttemptAt, to: upstreamDoneAt ?? now) }
        meter.end(at: now)
        record.overheadMilliseconds = meter.totalOverheadMilliseconds()
        record.close(ResponseEnding(sentStatus: sentStatus, upstreamFinishReason: upstreamFinishReason, error: failure,
                                    cancelled: cancelled),
                     durationMilliseconds: OverheadMeter.milliseconds(now &- startedAt))
        return record
    }
}
