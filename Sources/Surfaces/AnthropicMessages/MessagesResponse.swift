import GatewayCore
import Providers

/// A whole (non-streamed) Anthropic `message` built from an answer's events: content blocks in
/// the order they began (reasoning as `thinking` with its signature, encrypted reasoning as
/// `redacted_thinking`, text, each tool call as `tool_use`; another API's refusal as text with
/// the stop reason `refusal`, as Anthropic's own refusals end), the stop
/// reason, usage. Extra top-level fields (`fusion`) are fine for the SDKs, which read messages
/// loosely.
public struct MessagesResponse: Sendable {
    public let id: String
    /// The model named; a deliberation's whole answer names the fallback that wrote it.
    public var model: String
    /// `raw`: a block of Anthropic's the neutral types do not model (a server tool's), as it came.
    private enum Block { case text(String), thinking(String, signature: String), redactedThinking(String), tool(Int), raw(JSONValue) }
    /// Block position → the citations of that text block.
    private var citations: [Int: [JSONValue]] = [:]
    /// Block position → the streamed input of that raw block (a server tool's `input_json_delta`s).
    private var rawInputs: [Int: String] = [:]
    private var blocks: [Block] = []
    private var calls = ToolCallAccumulator()
    private var stopReason = "end_turn"
    private var refused = false
    private var stopDetail: (reason: String, sequence: String?)?
    private var extras = AnthropicMessageExtras()
    private var usage = Usage()
    /// `usage` is the gateway's estimate: the upstream reported none.
    private var usageEstimated = false
    /// The last text block ended (`.providerBlock(.stop)`): more text is another block.
    private var textEnded = false

    /// The request's `stop_sequences` (`MessagesStreamWriter.matchedStop`).
    private let stopSequences: [String]

    public init(id: String, model: String, stopSequences: [String] = []) {
        self.id = id
        self.model = model
        self.stopSequences = stopSequences
    }

    public mutating func add(_ event: ModelEvent) {
        switch event {
        case .refusal(let text) where !text.isEmpty:
            refused = true
            add(.text(text))
        case .text(let text) where !text.isEmpty:
            if case .text(let earlier)? = blocks.last, !textEnded { blocks[blocks.count - 1] = .text(earlier + text) } else { append(.text(text)) }
        case .reasoning(let text) where !text.isEmpty:
            // A signed block is complete: more reasoning is another block.
            if case .thinking(let earlier, "")? = blocks.last {
                blocks[blocks.count - 1] = .thinking(earlier + text, signature: "")
            } else {
                append(.thinking(text, signature: ""))
            }
        case .reasoningSignature(let signature):
            if case .thinking(let text, "")? = blocks.last {
                blocks[blocks.count - 1] = .thinking(text, signature: signature)
            } else {
                append(.thinking("", signature: signature))
            }
        case .redactedReasoning(let data):
            append(.redactedThinking(data))
        case .toolCall(let fragment):
            if calls.name(at: fragment.index) == nil { append(.tool(fragment.index)) }
            calls.add(fragment)
        case .usage(let reported):
            usage = reported
        case .finish(let reason):
            stopReason = MessagesStreamWriter.stopReason(reason)
        case .stopDetail(let reason, let sequence):
            stopDetail = (reason, MessagesStreamWriter.matchedStop(sequence, in: stopSequences))
        case .messageExtras(let more):
            extras = extras.merging(more)
        case .providerBlock(.start(let block)):
            append(.raw(block))
        case .providerBlock(.delta(let delta)):
            if delta["type"] == .string("citations_delta"), let citation = delta["citation"] {
                // A cited block's citations may come before its text.
                if case .text? = blocks.last, !textEnded {} else { append(.text("")) }
                citations[blocks.count - 1, default: []].append(citation)
            } else if delta["type"] == .string("input_json_delta"), let json = delta["partial_json"]?.stringValue, case .raw? = blocks.last {
                rawInputs[blocks.count - 1, default: ""] += json
            }
        case .providerBlock(.stop):
            if case .text? = blocks.last { textEnded = true }
        case .text, .reasoning, .refusal, .error:
            break  // an error is the response instead: the caller sends MessagesErrors.body
        }
    }

    /// The gateway's estimate for an answer whose upstream reported no usage, said `estimated`
    /// as a stream's is (zeros would read as measured: review 21 F2).
    public mutating func addEstimatedUsage(_ estimate: Usage) {
        usage = estimate
        usageEstimated = true
    }

    private mutating func append(_ block: Block) {
        blocks.append(block)
        textEnded = false
    }

    /// The `message` JSON. A tool call whose arguments are not a JSON object (an upstream model
    /// wrote broken JSON) cannot be a `tool_use` block, whose `input` is an object: that is a 502
    /// naming the tool, not a silently emptied input.
    public func body(extra: [String: JSONValue] = [:], fusionCalls: JSONValue? = nil) throws(APIError) -> [UInt8] {
        var content: [JSONValue] = []
        for (position, block) in blocks.enumerated() {
            switch block {
            case .text(let text):
                var object: [String: JSONValue] = ["type": .string("text"), "text": .string(text)]
                if let cited = citations[position] { object["citations"] = .array(cited) }
                content.append(.object(object))
            case .raw(let json):
                content.append(ProviderBlockPart.block(json, input: rawInputs[position]))
            case .thinking(let text, let signature):
                content.append(.object(["type": .string("thinking"), "thinking": .string(text), "signature": .string(signature)]))
            case .redactedThinking(let data):
                content.append(.object(["type": .string("redacted_thinking"), "data": .string(data)]))
            case .tool(let index):
                guard let call = calls.calls.first(where: { $0.index == index }) else { continue }
                guard !call.name.isEmpty else { throw .upstreamProtocol("the upstream sent a tool call without a name") }
                // Cut off by the output limit, a call's input is unfinished: Anthropic's own answer
                // then ends `max_tokens` with the block, and its docs tell agents to check for
                // exactly that and retry with a higher limit. Its input is `{}`, never a guess.
                guard let input = call.argumentsObject ?? (stopReason == "max_tokens" ? .object([:]) : nil) else {
                    throw MessagesErrors.invalidToolArguments(name: call.name)
                }
                content.append(.object(["type": .string("tool_use"), "id": .string(call.id.isEmpty ? "toolu_\(id)_\(index)" : call.id),
                                        "name": .string(call.name), "input": input]))
            }
        }
        var usageJSON: [UInt8] = []
        MessagesStreamWriter.appendUsage(usage, estimated: usageEstimated, fusionCalls: fusionCalls, extra: extras.usage, to: &usageJSON)
        var message = extras.message.merging(extra) { $1 }
        message["id"] = .string(id)
        message["type"] = .string("message")
        message["role"] = .string("assistant")
        message["model"] = .string(model)
        message["content"] = .array(content)
        message["stop_reason"] = .string(MessagesStreamWriter.clientStopReason(stopReason, detail: stopDetail?.reason, refused: refused,
                                                                               calledTools: !calls.calls.isEmpty))
        message["stop_sequence"] = stopDetail?.sequence.map(JSONValue.string) ?? .null
        message["usage"] = (try? JSONValue.parse(usageJSON)) ?? .object([:])
        return JSONValue.object(message).serialized()
    }
}
