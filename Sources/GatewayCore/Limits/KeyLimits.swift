/// The limits of one gateway key (`keys.<name>.limits` in the config). Each is optional; a key
/// with none is never refused or counted against.
public struct KeyLimits: Sendable, Equatable {
    /// Requests per minute (a deliberation's inner calls each count, settled after it ends).
    public var requestsPerMinute: Int64?
    /// Prompt + completion tokens per minute, estimated on admission and settled with the
    /// true count after the response.
    public var tokensPerMinute: Int64?
    /// Spend per UTC day and per UTC month, in millionths of a US dollar.
    public var dailyBudgetMicros: Int64?
    public var monthlyBudgetMicros: Int64?

    public init(requestsPerMinute: Int64? = nil, tokensPerMinute: Int64? = nil, dailyBudgetMicros: Int64? = nil,
                monthlyBudgetMicros: Int64? = nil) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.dailyBudgetMicros = dailyBudgetMicros
        self.monthlyBudgetMicros = monthlyBudgetMicros
    }

    public var isEmpty: Bool {
        requestsPerMinute == nil && tokensPerMinute == nil && dailyBudgetMicros == nil && monthlyBudgetMicros == nil
    }

    /// The largest value any limit may be configured with: keeps every product and sum in
    /// `RateLimitMath` far from overflow.
    public static let maxValue: Int64 = 1 << 40

    /// What admission reserves for a request whose body has `bodyBytes` bytes: one request and
    /// a token estimate (about four bytes per token), capped at the per-minute token limit so a
    /// single large request can still pass when the key's bucket is full.
    public func reservation(bodyBytes: Int) -> LimitReservation {
        var tokens = Int64(clamping: bodyBytes / 4 + 1)
        if let tokensPerMinute { tokens = min(tokens, tokensPerMinute) }
        return LimitReservation(requests: 1, tokens: tokens)
    }
}

/// What a request asks to use, on admission.
public struct LimitReservation: Sendable, Equatable {
    public var requests: Int64
    public var tokens: Int64
    public init(requests: Int64, tokens: Int64) {
        self.requests = requests
        self.tokens = tokens
    }
}

/// What a finished request really used, to settle against its reservation.
public struct LimitSettlement: Sendable, Equatable {
    /// Added to the request bucket (a deliberation's extra inner calls; may be 0).
    public var extraRequests: Int64
    /// True tokens minus the reserved estimate (negative gives tokens back).
    public var tokenDelta: Int64
    /// Spend, in millionths of a dollar.
    public var spendMicros: Int64
    public init(extraRequests: Int64, tokenDelta: Int64, spendMicros: Int64) {
        self.extraRequests = extraRequests
        self.tokenDelta = tokenDelta
        self.spendMicros = spendMicros
    }
}
