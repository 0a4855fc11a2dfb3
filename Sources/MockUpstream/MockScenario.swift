/// What the mock upstream does for one request, chosen by the model name:
/// `scenario[:key=value…]`, e.g. `paced:pace_ms=20:deltas=64`. A `provider/` prefix is ignored.
public struct MockScenario: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        /// A short deterministic answer about the prompt.
        case normal
        /// The first token after `first_ms` (default 1500), with upstream keep-alive comments.
        case slowFirstToken = "slow-first-token"
        /// `deltas` tokens (default 64) every `pace_ms` (default 20), each stamped.
        case paced
        /// HTTP `status` (default 500) with an OpenAI error body, before any byte of stream.
        case error
        /// 429 with `Retry-After: retry_after` (default 1), or `retry-after-ms: retry_after_ms`.
        case rateLimited = "rate-limited"
        /// HTTP `status` (default 503) for the first `fail` requests (default 2) with this exact
        /// model name, then a normal answer: a transient outage.
        case flaky
        /// `after` deltas (default 3), then an error chunk and `[DONE]`.
        case errorMidStream = "error-mid-stream"
        /// `after` deltas, then an event whose data is not JSON.
        case malformed
        /// `after` deltas, then silence with the connection open.
        case stall
        /// `after` deltas, then the TCP connection is dropped with no end of stream.
        case disconnect
        /// A tool call whose arguments arrive in fragments; finish_reason `tool_calls`.
        case toolCall = "tool-call"
        /// The content is the request body exactly as received.
        case echo
        /// A panel member: `expert-N` (N = 1…8) gives a distinct, deterministic answer built from
        /// points shared with some other experts, points of its own, and a verdict that differs.
        case expert
        /// An outer model: calls the `fusion` tool when offered (or a caller's tool named in the
        /// prompt), writes the final answer from a fusion result, and acts as judge when given the
        /// judge's prompt.
        case outer
        /// A judge: returns the analysis computed from the panel answers in its prompt
        /// (`search=1`: first calls web_search, when offered).
        case judge
        /// A panel member that uses the web tools when offered: fetches the URLs in its question,
        /// or searches and reads the top result, then answers citing its sources; `loop=1`
        /// searches whenever it may (to hit the step cap); `parallel=N` makes N searches a turn.
        case researcher
        /// Judges that fail: prose instead of JSON, JSON of the wrong shape, no text at all, and
        /// prose first then valid JSON when asked again.
        case judgeInvalidJSON = "judge-invalid-json"
        case judgeSchemaMismatch = "judge-schema-mismatch"
        case judgeEmpty = "judge-empty"
        case judgeFlaky = "judge-flaky"
        /// Reasoning deltas only, no visible text (a reasoning model that ran out of budget).
        case empty
        /// One delta whose content is `bytes` long (default 2 MiB): an oversized event.
        case huge
    }

    /// For `expert-N`: N.
    public var persona = 1

    public var kind: Kind
    public var options: [String: Int]

    public init?(model: String) {
        let name = model.split(separator: "/").last.map(String.init) ?? model
        let parts = name.split(separator: ":")
        guard var first = parts.first.map(String.init) else { return nil }
        if first.hasPrefix("expert-"), let persona = Int(first.dropFirst(7)), (1...8).contains(persona) {
            self.persona = persona
            first = "expert"
        }
        guard let kind = Kind(rawValue: first) else { return nil }
        self.kind = kind
        var options: [String: Int] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]) else { return nil }
            options[String(pair[0])] = value
        }
        self.options = options
    }

    /// Every model name the mock serves (options aside), for model lists.
    public static let modelNames: [String] = Kind.allCases.flatMap { kind in
        kind == .expert ? (1...8).map { "expert-\($0)" } : [kind.rawValue]
    }

    func option(_ name: String, default value: Int) -> Int { options[name] ?? value }

    public var paceMilliseconds: Int {
        switch kind {
        case .paced: option("pace_ms", default: 20)
        case .expert: option("pace_ms", default: 15 + 6 * persona)  // distinct speeds interleave visibly
        case .judge, .judgeFlaky, .judgeSchemaMismatch, .judgeInvalidJSON: option("pace_ms", default: 8)
        default: option("pace_ms", default: 25)
        }
    }
    public var firstTokenMilliseconds: Int {
        option("first_ms", default: kind == .slowFirstToken ? 1500 : 0)
    }
    /// Deltas sent before a mid-stream failure.
    public var failAfter: Int { option("after", default: 3) }
}
