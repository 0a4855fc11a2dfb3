#if canImport(Glibc)
import Glibc
#endif

/// What to do when an upstream call fails before the client has received anything from it:
/// retry the same model (bounded, with backoff honouring `Retry-After`), move to the next
/// fallback model, or give up. Pure: no sockets, randomness passed in, no clock but the wall
/// clock an HTTP-date `Retry-After` is counted from (`retryAfterMilliseconds(_:now:)`).
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

    /// `retry-after-ms` (OpenAI's: a non-negative number of milliseconds, in digits) or `Retry-After` in
    /// whole seconds (RFC 9110 §10.2.3: digits only), clamped to `maxRetryAfterMilliseconds`.
    /// `Retry-After` may also be an HTTP date (IMF-fixdate, RFC 9110 §5.6.7): the time until it
    /// from `now` (Unix seconds), nil once it has passed (review 68A #8: ignored, the gateway
    /// retried at once and the client got no `Retry-After`). A value that is none of these
    /// (negative, `inf`, `nan`, `1e999`) is ignored, as if the header were absent.
    /// Digits, optionally a point and more digits: `Double("0x10")` is 16 and `Double("1e3")`
    /// 1000, forms no server means (review 83B #5).
    static func isPlainNumber(_ text: String) -> Bool {
        var digits = 0
        var point = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: ".") where !point && digits > 0: point = true
            default: return false
            }
        }
        return digits > 0 && text.utf8.last != UInt8(ascii: ".")
    }

    public static func retryAfterMilliseconds(_ headers: [(String, String)], now: Int64 = Int64(time(nil))) -> UInt64? {
        for (name, value) in headers where name.lowercased() == "retry-after-ms" {
            let text = value.trimmingSpaces
            if Self.isPlainNumber(text), let milliseconds = Double(text), milliseconds.isFinite {
                return min(saturating(milliseconds.rounded(.up)), maxRetryAfterMilliseconds)
            }
        }
        for (name, value) in headers where name.lowercased() == "retry-after" {
            let digits = value.trimmingSpaces
            if let date = httpDate(digits) {
                guard date > now else { continue }
                return min(UInt64(date - now) * 1000, maxRetryAfterMilliseconds)
            }
            guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { continue }
            // More digits than a day in seconds has: clamped without converting.
            guard let seconds = UInt64(digits), seconds <= maxRetryAfterMilliseconds / 1000 else { return maxRetryAfterMilliseconds }
            return seconds * 1000
        }
        return nil
    }

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds; nil for any other text.
    /// Fixed width, every field range-checked: nothing here can trap.
    public static func httpDate(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 29, bytes[3] == UInt8(ascii: ","), bytes[4] == 0x20, bytes[7] == 0x20, bytes[11] == 0x20,
              bytes[16] == 0x20, bytes[19] == UInt8(ascii: ":"), bytes[22] == UInt8(ascii: ":"), bytes[25] == 0x20,
              bytes[26...].elementsEqual("GMT".utf8) else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for byte in bytes[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let monthIndex = months.firstIndex(where: { bytes[8..<11].elementsEqual($0.utf8) }),
              let day = number(5..<7), let year = number(12..<16), let hour = number(17..<19),
              let minute = number(20..<22), let second = number(23..<25),
              (1...31).contains(day), year >= 1970, hour < 24, minute < 60, second < 61 else { return nil }
        // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
        let month = Int64(monthIndex + 1)
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 86_400 + hour * 3_600 + minute * 60 + second
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
