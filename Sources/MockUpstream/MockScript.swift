import GatewayCore

/// The content a scenario produces, independent of timing and sockets.
struct MockScript {
    enum Step {
        case content(String)
        case reasoning(String)
        case toolCall(index: Int, id: String?, name: String?, arguments: String)
    }

    let scenario: MockScenario
    let model: String
    let id: String
    private(set) var steps: MockSteps
    let promptTokens: Int
    /// `outer:server_search=1` on Anthropic's wire: the fusion-calling turn first runs a web
    /// search as Anthropic's server tool, for this query (`MockAnthropicStream`); other wires
    /// have no server tools.
    private(set) var serverSearch: String?
    /// The request's output limit (`max_completion_tokens`, `max_tokens`; Anthropic's
    /// `max_tokens`, Gemini's `maxOutputTokens`, in the request's chat shape) cut the answer:
    /// it ends with the vendor's length finish (`length`, `max_tokens`, `MAX_TOKENS`). A step
    /// counts as a token, as the usage says.
    private(set) var truncated = false

    init(scenario: MockScenario, model: String, request: JSONValue, rawBody: [UInt8], id: String) {
        self.scenario = scenario
        self.model = model
        self.id = id
        let prompt = Self.lastUserText(request)
        // `prompt_tokens=N`: the usage counts the prompt as N tokens (a tokenizer's count, not
        // the request's size), so a test can tell the upstream's count from an estimate.
        promptTokens = scenario.options["prompt_tokens"] ?? max(1, rawBody.count / 4)
        // `think=1` (tool-call, outer): reasoning before the tool calls (signed on Anthropic's
        // wire), as a thinking model's tool turn.
        let thinking: [Step] = scenario.option("think", default: 0) == 1 ? [.reasoning("The user wants "), .reasoning("a tool.")] : []
        switch scenario.kind {
        case .echo:
            steps = MockSteps([.content(String(decoding: rawBody, as: UTF8.self))])
        case .toolCall:
            steps = MockSteps(thinking + Self.toolCallSteps([("get_weather", #"{"location":"Paris, France","unit":"celsius"}"#)], answer: id))
        case .paced:
            let count = scenario.option("deltas", default: 64)
            steps = MockSteps(count: count)
        case .expert:
            steps = MockSteps(Self.words(MockRoles.expertAnswer(persona: scenario.persona, question: prompt)))
        case .judge:
            if scenario.option("search", default: 0) == 1, MockRoles.offersTools(request), MockRoles.toolResults(request).isEmpty {
                steps = MockSteps(Self.toolCallSteps([("web_search", #"{"query":"fact check the disputed verdict"}"#)], answer: id))
            } else {
                steps = MockSteps(Self.judgeSteps(request))
            }
        case .researcher:
            switch MockRoles.researcherTurn(request, loop: scenario.option("loop", default: 0) == 1,
                                            parallel: scenario.option("parallel", default: 1)) {
            case .callTools(let calls): steps = MockSteps(Self.toolCallSteps(calls, answer: id))
            case .text(let text): steps = MockSteps(Self.words(text))
            }
        case .outer:
            if MockRoles.isJudgeRequest(request) {
                steps = MockSteps(Self.judgeSteps(request))
            } else {
                switch MockRoles.outerTurn(request, lastUserText: prompt, withFusion: scenario.option("with_fusion", default: 0),
                                           badArguments: scenario.option("bad_args", default: 0)) {
                case .callTools(let calls):
                    steps = MockSteps(thinking + Self.toolCallSteps(calls, answer: id))
                    if scenario.option("server_search", default: 0) == 1 { serverSearch = prompt }
                case .text(let text): steps = MockSteps(Self.words(text))
                }
            }
        case .judgeInvalidJSON:
            steps = MockSteps(Self.words("The models broadly agree, with some differences in emphasis."))
        case .judgeSchemaMismatch:
            if scenario.option("item", default: 0) == 1 {
                // An item that breaks the schema first (an insight without its model), then a long tail.
                let tail = (0..<scenario.option("deltas", default: 100)).map { "\"point \($0)\"" }.joined(separator: ",")
                steps = MockSteps(Self.fragments(#"{"unique_insights":[{"insight":"unattributed"}],"consensus":[\#(tail)],"#
                                                     + #""contradictions":[],"partial_coverage":[],"blind_spots":[]}"#))
            } else {
                steps = MockSteps(Self.fragments(#"{"consensus":"they agree","verdict":"fine"}"#))
            }
        case .judgeFlaky:
            let retried = (request["messages"]?.arrayValue?.count ?? 0) > 2
            steps = MockSteps(retried ? Self.judgeSteps(request) : Self.words("Let me think about this comparison first."))
        case .judgeEmpty:
            steps = MockSteps([])
        case .empty:
            steps = MockSteps([.reasoning("Thinking about "), .reasoning("the question…")])
        case .huge:
            steps = MockSteps([.content("start "), .content(String(repeating: "x", count: scenario.option("bytes", default: 2 << 20)))])
        default:
            if let count = scenario.options["deltas"] {
                steps = MockSteps(count: count)
            } else {
                let name = model.split(separator: ":").first.map(String.init) ?? model  // without its options
                let quoted = prompt.count > 80 ? String(prompt.prefix(80)) + "…" : prompt
                steps = MockSteps(Self.words("This is a simulated answer from the mock model '\(name)'. You asked: \"\(quoted)\". "
                    + "Each word is sent as its own delta at a steady pace, so you can watch the stream arrive."))
            }
        }
        if scenario.option("no_limit", default: 0) == 0, let cap = Self.outputCap(request), cap < steps.count {
            steps = steps.prefix(cap)
            truncated = true
        }
    }

    /// The output limit a request sets (at least 1), in its chat shape.
    static func outputCap(_ request: JSONValue) -> Int? {
        for key in ["max_completion_tokens", "max_tokens"] {
            if let value = request[key], let number = value.doubleValue, number >= 1 {
                return number >= Double(Int32.max) ? Int(Int32.max) : Int(number)
            }
        }
        return nil
    }

    /// One delta per word (each keeps its trailing space or newline).
    static func words(_ text: String) -> [Step] {
        var steps: [Step] = []
        var current = ""
        for character in text {
            current.append(character)
            if character == " " || character == "\n" {
                steps.append(.content(current))
                current = ""
            }
        }
        if !current.isEmpty { steps.append(.content(current)) }
        return steps
    }

    /// Fixed-size pieces, as a model streams JSON.
    static func fragments(_ text: String, size: Int = 24) -> [Step] {
        var steps: [Step] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            steps.append(.content(String(rest.prefix(size))))
            rest = rest.dropFirst(size)
        }
        return steps
    }

    static func judgeSteps(_ request: JSONValue) -> [Step] {
        fragments(String(decoding: MockRoles.analysis(of: MockRoles.panelAnswers(in: request)).serialized(), as: UTF8.self))
    }

    /// Tool calls (parallel when several) whose arguments arrive in fragments split mid-token,
    /// as real models send them.
    /// Each call's id is unique to this answer (`call_mock_<name>_<answer>[_<index>]`): a client
    /// sends its tool turns back, and a repeated id is refused on the next request.
    static func toolCallSteps(_ calls: [(name: String, arguments: String)], answer: String) -> [Step] {
        var steps: [Step] = []
        let serial = answer.split(separator: "-").last.map(String.init) ?? answer
        for (index, call) in calls.enumerated() {
            let id = calls.count == 1 ? "call_mock_\(call.name)_\(serial)" : "call_mock_\(call.name)_\(serial)_\(index)"
            steps.append(.toolCall(index: index, id: id, name: call.name, arguments: ""))
            var rest = Substring(call.arguments)
            while !rest.isEmpty {
                let piece = rest.prefix(7)
                steps.append(.toolCall(index: index, id: nil, name: nil, arguments: String(piece)))
                rest = rest.dropFirst(piece.count)
            }
        }
        return steps
    }

    var fullContent: String {
        steps.map { if case .content(let text) = $0 { text } else { "" } }.joined()
    }

    var completionTokens: Int { steps.count }

    /// Anthropic's `stop_reason` and `stop_sequence`: `stop=1` ends a text answer at the stop
    /// sequence `STOP`, `stop=2` pauses the turn (`pause_turn`), as a server tool's long turn does.
    var anthropicStop: (reason: String, sequence: String?) {
        if truncated { return ("max_tokens", nil) }
        if callsTool { return ("tool_use", nil) }
        switch scenario.option("stop", default: 0) {
        case 1: return ("stop_sequence", "STOP")
        case 2: return ("pause_turn", nil)
        default: return ("end_turn", nil)
        }
    }

    var callsTool: Bool {
        steps.contains { if case .toolCall = $0 { true } else { false } }
    }

    /// The tool calls the script makes, each whole.
    var toolCalls: [(id: String, name: String, arguments: String)] {
        var calls: [(index: Int, id: String, name: String, arguments: String)] = []
        for case .toolCall(let index, let id, let name, let fragment) in steps {
            if let position = calls.firstIndex(where: { $0.index == index }) {
                calls[position].arguments += fragment
            } else {
                calls.append((index, id ?? "", name ?? "", fragment))
            }
        }
        return calls.map { ($0.id, $0.name, $0.arguments) }
    }

    var fullReasoning: String {
        steps.map { if case .reasoning(let text) = $0 { text } else { "" } }.joined()
    }

    static func lastUserText(_ request: JSONValue) -> String {
        guard let messages = request["messages"]?.arrayValue else { return "" }
        for message in messages.reversed() where message["role"]?.stringValue == "user" {
            if let text = message["content"]?.stringValue { return text }
            if let parts = message["content"]?.arrayValue {
                return parts.compactMap { $0["text"]?.stringValue }.joined(separator: " ")
            }
        }
        return ""
    }
}

/// A script's steps: a list, or `t0 t1 …` generated on demand (a `paced` stream of 100,000
/// deltas must not hold 100,000 strings: a client that never reads would pin megabytes each).
struct MockSteps: RandomAccessCollection {
    private enum Storage {
        case list([MockScript.Step])
        case counted(Int)
    }

    private let storage: Storage

    init(_ list: [MockScript.Step]) { storage = .list(list) }
    init(count: Int) { storage = .counted(Swift.max(0, count)) }

    /// The first `count` steps.
    func prefix(_ count: Int) -> MockSteps {
        switch storage {
        case .list(let list): MockSteps(Array(list.prefix(count)))
        case .counted(let total): MockSteps(count: Swift.min(total, count))
        }
    }

    var startIndex: Int { 0 }
    var endIndex: Int {
        switch storage {
        case .list(let list): list.count
        case .counted(let count): count
        }
    }

    subscript(position: Int) -> MockScript.Step {
        switch storage {
        case .list(let list): list[position]
        case .counted: .content("t\(position) ")
        }
    }
}
