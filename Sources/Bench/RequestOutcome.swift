/// Why a request produced no measurable completion. Each kind is counted on its own, and a failed
/// request contributes to no latency figure (as in `vllm bench serve`).
public enum ErrorKind: String, CaseIterable, Sendable, Codable, Comparable {
    case http4xx = "http_4xx"
    case http5xx = "http_5xx"
    /// A final status outside 2xx, 4xx and 5xx (the bench follows no redirects).
    case httpOther = "http_other"
    /// A chunk (or a whole non-streamed body) carrying an `error` object.
    case streamError = "stream_error"
    /// The response ended without `data: [DONE]`, or the connection broke.
    case truncated
    /// Bytes that are not what the API promises: an event that is not JSON, an event or body over
    /// the size limit, a usage block whose token count is not a sane integer.
    case malformed
    /// A complete response without a single content event: no first token to time.
    case empty
    /// The request's time limit passed.
    case timeout
    /// No connection: resolution failed or the connection was refused or timed out.
    case connect
    /// Still in flight when the run stopped and its drain time (`--drain`) ran out, or on a
    /// second Ctrl-C: abandoned, the endpoint's fault or not.
    case interrupted

    public var meaning: String {
        switch self {
        case .http4xx: "HTTP 4xx status"
        case .http5xx: "HTTP 5xx status"
        case .httpOther: "other non-2xx HTTP status"
        case .streamError: "error chunk in the response"
        case .truncated: "ended without [DONE] or connection lost"
        case .malformed: "malformed SSE/JSON, oversized event or invalid usage"
        case .empty: "completed without any content"
        case .timeout: "request timed out"
        case .connect: "could not connect"
        case .interrupted: "abandoned in flight when the run stopped"
        }
    }

    public static func < (lhs: ErrorKind, rhs: ErrorKind) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// The error kind of a final HTTP status, nil for 2xx.
    public static func forStatus(_ status: Int) -> ErrorKind? {
        switch status {
        case 200..<300: nil
        case 400..<500: .http4xx
        case 500..<600: .http5xx
        default: .httpOther
        }
    }
}

/// Where a request's output token count came from.
public enum TokenSource: String, CaseIterable, Sendable, Codable {
    /// `usage.completion_tokens` (streamed: the `stream_options.include_usage` chunk).
    case usage
    /// No usage block: the number of content events, which undercounts when a server sends
    /// several tokens per event.
    case countedEvents = "counted_events"
    /// Not streamed and no usage block: unknown (counted as 0).
    case none
}

/// How a transfer failed below HTTP, as the runner's client reports it.
public enum TransportFailure: Sendable, Equatable {
    case connect(String)
    case timeout(String)
    /// The connection broke.
    case broken(String)
    /// The response is not well-formed HTTP (curl refused it).
    case malformed(String)
}

/// Everything one request measured. Timestamps are monotonic nanoseconds.
public struct RequestOutcome: Sendable, Equatable {
    /// Index of the target it was sent to.
    public var target: Int
    /// When it was due: an open-loop arrival may wait for a free slot before it is sent.
    public var scheduledAt: UInt64
    public var sentAt: UInt64
    /// The first event carrying content (text or reasoning).
    public var firstContentAt: UInt64?
    /// Where end-to-end latency ends: the last event carrying `choices` when streamed (so the
    /// trailing usage chunk and `[DONE]` do not count, as in vLLM), the whole body otherwise.
    public var endAt: UInt64?
    /// Gaps between consecutive content events, in order.
    public var interTokenGaps: [UInt64]
    public var contentEvents: Int
    public var outputTokens: Int
    public var tokenSource: TokenSource
    public var status: Int?
    public var error: ErrorKind?
    /// What went wrong, in the server's words when it said (bounded, for display).
    public var errorDetail: String?

    public init(target: Int, scheduledAt: UInt64, sentAt: UInt64, firstContentAt: UInt64? = nil, endAt: UInt64? = nil,
                interTokenGaps: [UInt64] = [], contentEvents: Int = 0, outputTokens: Int = 0,
                tokenSource: TokenSource = .none, status: Int? = nil, error: ErrorKind? = nil, errorDetail: String? = nil) {
        self.target = target
        self.scheduledAt = scheduledAt
        self.sentAt = sentAt
        self.firstContentAt = firstContentAt
        self.endAt = endAt
        self.interTokenGaps = interTokenGaps
        self.contentEvents = contentEvents
        self.outputTokens = outputTokens
        self.tokenSource = tokenSource
        self.status = status
        self.error = error
        self.errorDetail = errorDetail
    }

    public var succeeded: Bool { error == nil }

    private static func milliseconds(_ nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1e6 }

    /// Time to first token: sent → first content event.
    public var ttftMilliseconds: Double? {
        guard let first = firstContentAt, first >= sentAt else { return nil }
        return Self.milliseconds(first - sentAt)
    }

    /// End-to-end latency: sent → `endAt`.
    public var e2eMilliseconds: Double? {
        guard let end = endAt, end >= sentAt else { return nil }
        return Self.milliseconds(end - sentAt)
    }

    /// Time per output token after the first: (e2e − TTFT) / (output tokens − 1), defined for
    /// two tokens or more (vLLM's TPOT).
    public var tpotMilliseconds: Double? {
        guard outputTokens > 1, let e2e = e2eMilliseconds, let ttft = ttftMilliseconds, e2e >= ttft else { return nil }
        return (e2e - ttft) / Double(outputTokens - 1)
    }

    /// Output tokens / e2e latency in seconds: this stream's own rate (llmperf's
    /// request_output_throughput_token_per_s).
    public var streamTokensPerSecond: Double? {
        guard outputTokens > 0, let e2e = e2eMilliseconds, e2e > 0 else { return nil }
        return Double(outputTokens) / (e2e / 1000)
    }

    /// How long an open-loop arrival waited for a free slot.
    public var queueWaitMilliseconds: Double {
        sentAt > scheduledAt ? Self.milliseconds(sentAt - scheduledAt) : 0
    }

    public var interTokenMilliseconds: [Double] { interTokenGaps.map(Self.milliseconds) }
}
