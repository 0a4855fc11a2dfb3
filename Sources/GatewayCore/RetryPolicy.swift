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
        // 529: Anthropic's "overloaded", transient like a 503.
        case 429?, 500?, 502?, 503?, 504?, 529?: retryable = true
        case nil: retryable = connectFailed  // a refused connection is safe to retry; a broken one may not be
        default: retryable = false
        }
        if retryable && attempt <= maxRetries {
            if let requested = Self.retryAfterMilliseconds(headers) {
                if requested <= maxDelayMilliseconds { return .retry(afterMilliseconds: requested) }
            } else {
                let doublings = UInt64(min(max(attempt, 1), 11) - 1)
                let backoff = baseDelayMilliseconds > UInt64.max >> doublings ? UInt64.max : baseDelayMilliseconds << doublings
                let spread = jitter.isFinite ? 0.5 + min(max(jitter, 0), 1) / 2 : 1
                return .retry(afterMilliseconds: Self.saturating(Double(backoff) * spread))
            }
        }
        // The client's own mistakes fail the same way on every model.
        if let status, [400, 413, 422].contains(status) { return .fail }
        return hasNextModel ? .nextModel : .fail
    }

    /// The longest delay `retryAfterMilliseconds` reports (a day): a longer one is clamped to it.
    /// Anything over `maxDelayMilliseconds` is not waited for anyway; this bounds the arithmetic.
    public static let maxRetryAfterMilliseconds: UInt64 = 86_400_000

    /// `retry-after-ms` (OpenAI's: a non-negative number of milliseconds) or `Retry-After` in
    /// whole seconds (RFC 9110 §10.2.3: digits only), clamped to `maxRetryAfterMilliseconds`.
    /// A value that is not one of these (negative, `inf`, `nan`, `1e999`, an HTTP date) is
    /// ignored, as if the header were absent.
    public static func retryAfterMilliseconds(_ headers: [(String, String)]) -> UInt64? {
        for (name, value) in headers where name.lowercased() == "retry-after-ms" {
            if let milliseconds = Double(value.trimmingSpaces), milliseconds.isFinite, milliseconds >= 0 {
                return min(saturating(milliseconds.rounded(.up)), maxRetryAfterMilliseconds)
            }
        }
        for (name, value) in headers where name.lowercased() == "retry-after" {
            let digits = value.trimmingSpaces
            guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { continue }
            // More digits than a day in seconds has: clamped without converting.
            guard let seconds = UInt64(digits), seconds <= maxRetryAfterMilliseconds / 1000 else { return maxRetryAfterMilliseconds }
            return seconds * 1000
        }
        return nil
    }

    /// `value` as whole milliseconds, 0 for NaN and negatives, `UInt64.max` beyond it: a
    /// conversion that cannot trap.
    static func saturating(_ value: Double) -> UInt64 {
        guard value > 0 else { return 0 }  // also NaN
        return value < 18_446_744_073_709_549_568 ? UInt64(value) : .max  // the largest Double below 2^64
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
