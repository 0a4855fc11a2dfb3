import GatewayCore

/// What the mock upstream does for one request, chosen by the model name:
/// `scenario[:key=value…]`, e.g. `paced:pace_ms=20:deltas=64`. A `provider/` prefix is ignored.
/// Every option is checked against its range (`optionRanges`) before anything runs.
public struct MockScenario: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        /// A short deterministic answer about the prompt.
        case normal
        /// The first token after `first_ms` (default 1500), with upstream keep-alive comments.
        case slowFirstToken = "slow-first-token"
        /// `deltas` tokens (default 64) every `pace_ms` (default 20), each stamped.
        case paced
        /// HTTP `status` (default 500) with an OpenAI error body, before any byte of stream (with
        /// `retry_after` or `retry_after_ms`, that header).
        case error
        /// 429 with `Retry-After: retry_after` (default 1), or `retry-after-ms: retry_after_ms`.
        case rateLimited = "rate-limited"
        /// HTTP `status` (default 503) for the first `fail` requests (default 2) with this exact
        /// model name, then a normal answer: a transient outage.
        case flaky
        /// `after` deltas (default 3), then an error chunk and `[DONE]` (Anthropic: an `error`
        /// event, `overloaded_error`); with `fail=N`, only the first N requests with this exact
        /// model name, then normal answers.
        case errorMidStream = "error-mid-stream"
        /// `after` deltas, then an event whose data is not JSON.
        case malformed
        /// `after` deltas, then silence with the connection open; `trickle=1`: an event begun and
        /// never ended, a byte of it every `pace_ms` (activity that is no event).
        case stall
        /// `after` deltas, then the TCP connection is dropped with no end of stream.
        case disconnect
        /// A tool call whose arguments arrive in fragments; finish_reason `tool_calls`. `think=1`:
        /// reasoning first (a signed thinking block on Anthropic's wire).
        case toolCall = "tool-call"
        /// The content is the request body exactly as received.
        case echo
        /// A panel member: `expert-N` (N = 1…8) gives a distinct, deterministic answer built from
        /// points shared with some other experts, points of its own, and a verdict that differs.
        case expert
        /// An outer model: calls the `fusion` tool when offered (or a caller's tool named in the
        /// prompt), writes the final answer from a fusion result, and acts as judge when given the
        /// judge's prompt. `think=1`: reasoning before its tool calls, as `tool-call`.
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

    /// For `expert-N`: N, in `personas`.
    public var persona = 1

    public var kind: Kind
    /// Validated: every name is in `optionRanges`, every value in its range.
    public private(set) var options: [String: Int]

    /// The options a model name may carry and the values each accepts (README: "Simulated
    /// models"). Bounded so no option can trap a conversion or make the mock do unbounded work.
    public static let optionRanges: [String: ClosedRange<Int>] = [
        "deltas": 0...100_000,
        "pace_ms": 0...60_000,
        "first_ms": 0...600_000,
        // Anthropic's wire: a `ping` every ping_ms while the first token is awaited (first_ms).
        "ping_ms": 0...60_000,
        "bytes": 0...(16 << 20),
        "after": 0...100_000,
        "status": 400...599,
        "fail": 0...1_000,
        "retry_after": 0...86_400,
        "retry_after_ms": 0...86_400_000,
        "loop": 0...1,
        "parallel": 1...8,
        "search": 0...1,
        "trickle": 0...1,
        // Every write ends inside the next event: its last 5 bytes go with the next write.
        "straddle": 0...1,
        "fail_final": 0...1,
        // outer: a caller's tool named in the prompt is called together with fusion (one turn).
        "with_fusion": 0...2,  // 2: the fusion call first
        // outer: the caller's tool call's arguments broken: 1 cut inside them, 2 not JSON.
        "bad_args": 0...2,
        // Anthropic's wire: a text answer ends at the stop sequence `STOP` (1), or pauses its turn (2).
        "stop": 0...2,
        // tool-call, outer: reasoning before the tool calls (a signed thinking block on Anthropic's wire).
        "think": 0...1,
        // outer, Anthropic's wire: the fusion-calling turn first runs Anthropic's web search (server tool blocks).
        "server_search": 0...1,
        // judge-schema-mismatch: the first item breaks the schema, then `deltas` more items follow.
        "item": 0...1,
        // Wire quirks real servers have, on any scenario: end the stream with neither a finish
        // chunk nor [DONE] (cut short); answer a streamed request with one whole JSON body; send
        // no usage; space the usage key (`"usage": {`); put the last content, the finish reason
        // and the usage in one chunk; echo the request's Authorization header in error messages (2: in hex).
        "truncate": 0...1,
        // Streamed: the answer whole (its finish and usage; no `[DONE]` on OpenAI's wire), then
        // the connection drops (1), or stays open in silence (2): an answer whose transfer broke
        // or stalled after it was complete. Not streamed: the head and half the body, then the same.
        "drop": 0...2,
        // OpenAI's wire: no finish chunk, `[DONE]` all the same.
        "no_finish": 0...1,
        "whole": 0...1,
        "no_usage": 0...1,
        // Ignore the request's output limit, as a hostile or broken server may.
        "no_limit": 0...1,
        "spaced": 0...1,
        "together": 0...1,
        "echo_auth": 0...4,
        // error, OpenAI's wire: HTTP 200 with the error in the body (OpenRouter's way mid-generation).
        "in_body": 0...1,
        // error, any wire: HTTP 200 with a body that holds no answer (no choices, `{}`, no content);
        // 2, OpenAI's wire: a stream of a role chunk and `[DONE]`; 3: an HTML page called JSON.
        "no_answer": 0...3,
        // OpenAI's wire: a chunk with the role alone first, as OpenAI's API sends.
        "role_first": 0...1,
        // error-mid-stream: before the error, what a translating client API does not show: on
        // Anthropic's wire a server tool's block, on OpenAI's a tool call's nameless fragment.
        "unshown": 0...1,
        // The prompt's token count the usage reports (default: the request's bytes / 4).
        "prompt_tokens": 1...1_000_000_000,
        // The usage's `cost` in dollars (OpenAI's wire), however absurd: a hostile upstream's number.
        "cost_usd": 0...1_000_000_000_000,
        // The usage's `total_tokens` (OpenAI's wire; default: the sum), however absurd.
        "total_tokens": 0...1_099_511_627_776,
        // Ignored: makes a model name distinct (`flaky` counts requests per exact name).
        "n": 0...999_999_999,
    ]
    /// N of `expert-N`.
    public static let personas = 1...8

    /// Why a model name does not name a scenario the mock can run.
    public enum ParseError: Error, Equatable, Sendable {
        case unknownScenario(String)
        case unknownOption(String)
        case repeatedOption(String)
        case invalidValue(option: String, value: String, range: ClosedRange<Int>)

        /// The option at fault, if any.
        public var option: String? {
            switch self {
            case .unknownScenario: nil
            case .unknownOption(let name), .repeatedOption(let name), .invalidValue(let name, _, _): name
            }
        }

        public var message: String {
            switch self {
            case .unknownScenario(let name):
                "there is no simulated scenario '\(name)'"
            case .unknownOption(let text):
                "unknown option '\(text)' (options, each name=integer: \(MockScenario.optionRanges.keys.sorted().joined(separator: ", ")))"
            case .repeatedOption(let name):
                "the option '\(name)' is given twice"
            case .invalidValue(let name, let value, let range):
                "the option '\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(value)'"
            }
        }
    }

    /// The scenario `model` names (`scenario[:option=value…]`, a `provider/` prefix ignored), or
    /// why it names none: an unknown scenario, an unknown or repeated option, a value that is
    /// not an integer in the option's range.
    public static func parse(model: String) throws(ParseError) -> MockScenario {
        let name = model.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? model
        let parts = name.split(separator: ":", omittingEmptySubsequences: false)
        var first = String(parts[0])
        var persona = 1
        if first.hasPrefix("expert-") {
            let text = String(first.dropFirst(7))
            guard let number = Int(text), personas.contains(number) else {
                throw .invalidValue(option: "persona", value: text, range: personas)
            }
            persona = number
            first = "expert"
        }
        guard let kind = Kind(rawValue: first) else { throw .unknownScenario(first) }
        var options: [String: Int] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let option = String(pair[0])
            guard pair.count == 2, let range = optionRanges[option] else { throw .unknownOption(pair.count == 2 ? option : String(part)) }
            guard options[option] == nil else { throw .repeatedOption(option) }
            guard let value = Int(pair[1]), range.contains(value) else {
                throw .invalidValue(option: option, value: String(pair[1]), range: range)
            }
            options[option] = value
        }
        return MockScenario(kind: kind, options: options, persona: persona)
    }

    private init(kind: Kind, options: [String: Int], persona: Int) {
        self.kind = kind
        self.options = options
        self.persona = persona
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

extension APIError {
    /// A simulated model name whose options are wrong: a 400 on `model` saying which option.
    public static func invalidModelOption(_ model: String, _ error: MockScenario.ParseError) -> APIError {
        .invalidRequest("Invalid simulated model '\(model)': \(error.message).", param: "model", code: "invalid_model_option")
    }
}
