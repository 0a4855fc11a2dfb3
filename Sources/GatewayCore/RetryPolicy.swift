/// What to do when an upstream call fails before the client has received anything from it:
/// retry the same model (bounded, with backoff honouring `Retry-After`), move to the next
/// fallback model, or give up. Pure: no clock, no sockets; randomness is passed in.
public struct RetryPolicy: Sendable, Equatable {
    public enum Decision: Equatable {
        case retry(afterMilliseconds: UInt64)
        case nextModel
        case fail
    }

    /// Retries per model after the first attempt.
    public var maxRetries: Int
    public var baseDelayMilliseconds: UInt64
    /// A `Retry-After` longer than this is not waited for: the client gets the 429 and decides.
    public var maxDelayMilliseconds: UInt64

    public init(maxRetries: Int = 2, baseDelayMilliseconds: UInt64 = 250, maxDelayMilliseconds: UInt64 = 10_000) {
        self.maxRetries = maxRetries
        self.baseDelayMilliseconds = baseDelayMilliseconds
        self.maxDelayMilliseconds = maxDelayMilliseconds
    }

    /// `status` is the upstream's HTTP status, or nil for a transport failure (`connectFailed`
    /// tells whether it never connected). `attempt` counts attempts on this model so far (1 after
    /// the first). `jitter` in 0...1 spreads retries of many clients.
    public func decide(status: Int?, connectFailed: Bool, headers: [(String, String)], attempt: Int,
                       hasNextModel: Bool, jitter: Double) -> Decision {
        let retryable: Bool
        switch status {
        case 429?, 500?, 502?, 503?, 504?: retryable = true
        case nil: retryable = connectFailed  // a refused connection is safe to retry; a broken one may not be
        default: retryable = false
        }
        if retryable && attempt <= maxRetries {
            if let requested = Self.retryAfterMilliseconds(headers) {
                if requested <= maxDelayMilliseconds { return .retry(afterMilliseconds: requested) }
            } else {
                let backoff = baseDelayMilliseconds << UInt64(min(attempt - 1, 10))
                return .retry(afterMilliseconds: UInt64(Double(backoff) * (0.5 + jitter / 2)))
            }
        }
        // The client's own mistakes fail the same way on every model.
        if let status, [400, 413, 422].contains(status) { return .fail }
        return hasNextModel ? .nextModel : .fail
    }

    /// `retry-after-ms` (OpenAI) or `Retry-After` in seconds; HTTP dates are not honoured.
    public static func retryAfterMilliseconds(_ headers: [(String, String)]) -> UInt64? {
        for (name, value) in headers where name.lowercased() == "retry-after-ms" {
            if let milliseconds = Double(value.trimmingSpaces), milliseconds >= 0 { return UInt64(milliseconds) }
        }
        for (name, value) in headers where name.lowercased() == "retry-after" {
            if let seconds = Double(value.trimmingSpaces), seconds >= 0 { return UInt64(seconds * 1000) }
        }
        return nil
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
