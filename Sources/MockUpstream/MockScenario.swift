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
        /// 429 with `Retry-After: retry_after` (default 1).
        case rateLimited = "rate-limited"
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
    }

    public var kind: Kind
    public var options: [String: Int]

    public init?(model: String) {
        let name = model.split(separator: "/").last.map(String.init) ?? model
        let parts = name.split(separator: ":")
        guard let first = parts.first, let kind = Kind(rawValue: String(first)) else { return nil }
        self.kind = kind
        var options: [String: Int] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]) else { return nil }
            options[String(pair[0])] = value
        }
        self.options = options
    }

    func option(_ name: String, default value: Int) -> Int { options[name] ?? value }

    public var paceMilliseconds: Int {
        option("pace_ms", default: kind == .paced ? 20 : 25)
    }
    public var firstTokenMilliseconds: Int {
        option("first_ms", default: kind == .slowFirstToken ? 1500 : 0)
    }
    /// Deltas sent before a mid-stream failure.
    public var failAfter: Int { option("after", default: 3) }
}
