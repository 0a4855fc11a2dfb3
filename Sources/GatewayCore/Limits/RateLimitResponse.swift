/// How a limit decision shows on the wire: `x-ratelimit-{limit,remaining,reset}-{kind}` headers
/// on every answer to a key with limits (OpenAI's names for `requests` and `tokens`; budgets in
/// US dollars as `budget-day` / `budget-month`), and a refused request's 429 in OpenAI's error
/// shape with `Retry-After` (seconds) and `retry-after-ms`, both of which the official SDKs honour.
public enum RateLimitResponse {
    public static func headers(_ decision: LimitDecision) -> [(String, String)] {
        var headers: [(String, String)] = []
        for dimension in decision.dimensions {
            let kind = dimension.kind.rawValue
            let isBudget = dimension.kind == .dailyBudget || dimension.kind == .monthlyBudget
            headers.append(("x-ratelimit-limit-\(kind)", isBudget ? dollars(dimension.limit) : String(dimension.limit)))
            headers.append(("x-ratelimit-remaining-\(kind)", isBudget ? dollars(dimension.remaining) : String(dimension.remaining)))
            headers.append(("x-ratelimit-reset-\(kind)", duration(micros: dimension.resetMicros)))
        }
        return headers
    }

    /// The limit a refused decision is reported under (its 429 and its metric), when several are
    /// exceeded at once: a spent budget (the longest wait) before a per-minute limit, whose wait
    /// would not help. nil when nothing is exceeded.
    public static func reportedDimension(_ decision: LimitDecision) -> LimitDecision.Dimension? {
        let exceeded = decision.dimensions.filter(\.exceeded)
        let budgets = exceeded.filter { $0.kind == .dailyBudget || $0.kind == .monthlyBudget }
        if budgets.isEmpty, let rate = exceeded.first(where: { $0.kind == .requests || $0.kind == .tokens }) { return rate }
        return budgets.max { $0.retryAfterMicros < $1.retryAfterMicros } ?? exceeded.first
    }

    /// `value / unit` rounded up, for any `value` (adding `unit - 1` first overflowed at the top).
    static func roundedUp(_ value: Int64, _ unit: Int64) -> Int64 {
        value / unit + (value % unit > 0 ? 1 : 0)
    }

    /// The 429 for a refused decision (which must have an exceeded dimension).
    public static func error(_ decision: LimitDecision, keyName: String) -> APIError {
        let retryMicros = max(decision.retryAfterMicros, 0)
        let retrySeconds = max(1, roundedUp(retryMicros, 1_000_000))
        var headers = headers(decision)
        headers.append(("Retry-After", String(retrySeconds)))
        headers.append(("retry-after-ms", String(max(1, roundedUp(retryMicros, 1_000)))))
        let wait = duration(micros: retryMicros)
        let reported = reportedDimension(decision)
        // A per-minute limit names itself only when no budget is spent too: a spent budget's wait
        // is the one that applies, and no retry before it can help.
        if let rate = reported, rate.kind == .requests || rate.kind == .tokens {
            let unit = rate.kind == .requests ? "requests" : "tokens"
            return APIError(status: 429, type: unit, code: "rate_limit_exceeded",
                            message: "Rate limit reached for key '\(keyName)' on \(unit) per minute: limit \(rate.limit), remaining \(rate.remaining). Please try again in \(wait).",
                            headers: headers)
        }
        // A spent budget: retrying before the period ends cannot help.
        headers.append(("x-should-retry", "false"))
        let budget = reported ?? LimitDecision.Dimension(kind: .dailyBudget, limit: 0, remaining: 0, resetMicros: retryMicros, exceeded: true, retryAfterMicros: retryMicros)
        let period = budget.kind == .monthlyBudget ? "monthly" : "daily"
        return APIError(status: 429, type: "insufficient_quota", code: "insufficient_quota",
                        message: "Key '\(keyName)' has spent its \(period) budget of $\(dollars(budget.limit)); it resets in \(wait).",
                        headers: headers)
    }

    /// The 429 for a refused spend hold: the request may cost more than its key's budget has left
    /// once the requests in flight are counted. Retrying helps when their holds are the reason
    /// (they end as their requests do, having spent no more than held); otherwise only a lower
    /// output limit or the budget's next period does. `outputLimit` names the limit that lowers
    /// the cost (`OutputLimit`).
    public static func holdRefused(_ refusal: HoldDecision.Refusal, hold: Int64, keyName: String,
                                   outputLimit: String = OutputLimit.request(responses: false)) -> APIError {
        let period = refusal.kind == .monthlyBudget ? "monthly" : "daily"
        let left = max(0, refusal.limit.subtractingSaturating(refusal.spentMicros))
        let fitsOnceInFlightEnd = refusal.spentMicros.addingSaturating(hold) <= refusal.limit
        let retryMicros = fitsOnceInFlightEnd ? 1_000_000 : refusal.resetMicros
        let kind = refusal.kind.rawValue
        var headers: [(String, String)] = [
            ("x-ratelimit-limit-\(kind)", dollars(refusal.limit)),
            ("x-ratelimit-remaining-\(kind)", dollars(max(0, left.subtractingSaturating(refusal.heldMicros)))),
            ("x-ratelimit-reset-\(kind)", duration(micros: refusal.resetMicros)),
            ("Retry-After", String(max(1, roundedUp(retryMicros, 1_000_000)))),
            ("retry-after-ms", String(max(1, roundedUp(retryMicros, 1_000)))),
        ]
        if !fitsOnceInFlightEnd { headers.append(("x-should-retry", "false")) }
        let cost = "This request may cost up to $\(dollars(hold)) (its prompt and output limit at the configured prices)"
        guard hold <= refusal.limit else {
            return APIError(status: 429, type: "insufficient_quota", code: "insufficient_quota",
                            message: "\(cost), more than key '\(keyName)''s whole \(period) budget of $\(dollars(refusal.limit)). Lower \(outputLimit).",
                            headers: headers)
        }
        let inFlight = refusal.heldMicros > 0 ? " ($\(dollars(min(refusal.heldMicros, left))) of it held by requests in flight)" : ""
        let advice = fitsOnceInFlightEnd ? "Retry once they finish, or lower \(outputLimit)."
            : "Lower \(outputLimit), or wait \(duration(micros: refusal.resetMicros)) for the budget to reset."
        return APIError(status: 429, type: "insufficient_quota", code: "insufficient_quota",
                        message: "\(cost), more than key '\(keyName)' has left of its \(period) budget of $\(dollars(refusal.limit)): $\(dollars(left))\(inFlight). \(advice)",
                        headers: headers)
    }

    /// Limits could not be checked (the shared store is down, or its script failed on what a key holds: review 131 #5) and `on_store_error: deny`.
    public static func storeUnavailable() -> APIError {
        APIError(status: 503, type: "server_error", code: "limits_unavailable",
                 message: "This gateway cannot check the key's limits right now (its shared store is unreachable, or could not decide: the log says which). Please retry shortly.",
                 headers: [("Retry-After", "1")])
    }

    /// Millionths of a dollar as a decimal number without trailing zeros (`5`, `0.25`).
    public static func dollars(_ micros: Int64) -> String {
        let sign = micros < 0 ? "-" : ""
        let magnitude = micros.magnitude
        let whole = magnitude / 1_000_000
        var fraction = String(magnitude % 1_000_000)
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return sign + String(whole) + (fraction.isEmpty ? "" : "." + fraction)
    }

    /// A duration as OpenAI writes its reset headers: `250ms`, `1.5s`, `6m0s`, `2h3m4s`.
    public static func duration(micros: Int64) -> String {
        let micros = max(micros, 0)
        let milliseconds = micros / 1_000 + (micros % 1_000 > 0 ? 1 : 0)  // rounded up, never overflowing
        if milliseconds < 1_000 { return "\(milliseconds)ms" }
        if milliseconds < 60_000 {
            var text = String(milliseconds / 1_000)
            var fraction = String(milliseconds % 1_000)
            fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            if !fraction.isEmpty { text += "." + fraction }
            return text + "s"
        }
        let seconds = (milliseconds + 999) / 1_000
        let hours = seconds / 3_600
        let minutes = (seconds % 3_600) / 60
        return (hours > 0 ? "\(hours)h" : "") + "\(minutes)m\(seconds % 60)s"
    }
}

/// The output limit that lowers what a request may cost, as a refused hold names it.
public enum OutputLimit {
    /// A proxied request's own: `max_output_tokens` on Responses, `max_tokens` elsewhere.
    public static func request(responses: Bool) -> String {
        "the request's output limit (\(responses ? "max_output_tokens" : "max_tokens"))"
    }

    /// A deliberation's: the request's own limit bounds the outer model's turns, and its fusion
    /// parameters' `max_completion_tokens` each panel and judge call, most of its cost where the
    /// outer model is not the dearest (review 55C #2: only the request's limit was named; review
    /// 56 #2: only the calls' would be as wrong). `parameterPath` is where its fusion parameters
    /// are (`tools[1].parameters`, `plugins[0]`), `fusion` for the alias, which has none.
    public static func deliberation(parameterPath: String, responses: Bool) -> String {
        let path = parameterPath == "fusion" ? #"a fusion plugin's, plugins: [{"id": "fusion", "max_completion_tokens": …}]"#
            : "'\(parameterPath).max_completion_tokens'"
        return "\(request(responses: responses)) for the outer model's turns, or the deliberation's per panel and judge call (\(path))"
    }
}
