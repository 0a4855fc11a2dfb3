import GatewayCore
import Providers

/// One call of the outer model (the caller's model): what it said and called, and which of its
/// events belong to the client. Its calls to the fusion tool are the gateway's business: they are
/// never forwarded, and a turn that made one ends in the deliberation, not at the client.
struct OuterTurn: Sendable {
    let final: Bool
    let startedAt: Double
    private(set) var firstTokenAt: Double?
    private(set) var text = ""
    private(set) var toolCalls = ToolCallAccumulator()
    private(set) var finishReason: FinishReason?
    private(set) var usage: Usage?
    /// The turn's signed reasoning blocks: the final turn's request carries them back.
    private(set) var reasoning: [ReasoningBlock] = []
    private var reasoningBuilder = ReasoningBlockBuilder()
    /// Tool-call indexes that are the fusion tool's.
    private var fusionIndexes: Set<Int> = []
    /// The client's index of each call it is shown, dense from 0: the fusion calls between are
    /// not its (review 57 #1: a call after the fusion call came as index 1 with no 0, and
    /// openai-python's stream helper raised IndexError).
    private var clientIndexes: [Int: Int] = [:]
    /// Anthropic's own blocks of the turn (a server tool's use and result), whole, each with
    /// where in `text` it came (UTF-8 offset): the final turn's request carries them back in
    /// place (`content`), as Anthropic's server tools need.
    private var providerBlocks: [(offset: Int, block: JSONValue)] = []
    private var openBlock: JSONValue?
    /// The open block's input as its `input_json_delta`s gave it.
    private var openInput = ""

    /// Fragments of calls whose name has not come yet: held, as any of them may be the fusion
    /// call (review 73 #1: one named late reached the client as a call named "").
    private var unnamed: [Int: ToolCallFragment] = [:]
    /// What an Anthropic message said of itself (`container`, `stop_details`), kept until the
    /// turn ends: a turn that calls fusion keeps them (they came at `message_start`, before its
    /// call: review 73 #3); the answering turn's reach the client (`FusionSessionMachine`).
    private(set) var extras: AnthropicMessageExtras?

    /// The stem of an id for a fusion call that came without one (`FusionRequest.fusionCallID`).
    let fusionCallID: String

    init(final: Bool, at time: Double, fusionCallID: String = "call_fusion") {
        self.final = final
        startedAt = time
        self.fusionCallID = fusionCallID
    }

    /// Takes in one event; returns what of it goes to the client (nil: nothing).
    mutating func received(_ event: ModelEvent, at time: Double) -> ModelEvent? {
        switch event {
        case .text(let piece):
            if firstTokenAt == nil { firstTokenAt = time }
            text += piece
            return event
        case .refusal:
            if firstTokenAt == nil { firstTokenAt = time }
            return event
        case .reasoning, .reasoningSignature, .redactedReasoning:
            if let block = reasoningBuilder.add(event) { reasoning.append(block) }
            return event
        case .stopDetail:
            // An Anthropic upstream's own stop (`stop_sequence` and its sequence, `pause_turn`):
            // the client's when this turn is its answer, as a proxied one gets it (review 71A #2:
            // a made-up `end_turn`); a turn that called fusion goes on to the deliberation.
            return fusionCall != nil ? nil : event
        case .messageExtras(let more):
            // The message's own fields only: a usage breakdown (`cache_creation`) would be one
            // call's beside totals summed over the deliberation.
            guard !more.message.isEmpty else { return nil }
            extras = (extras ?? AnthropicMessageExtras()).merging(AnthropicMessageExtras(message: more.message))
            return nil
        case .providerBlock(let part):
            keep(part)
            return event  // an Anthropic client's to keep (a server tool's blocks, citations)
        case .toolCall(let fragment):
            if firstTokenAt == nil { firstTokenAt = time }
            toolCalls.add(fragment)
            let name = toolCalls.name(at: fragment.index) ?? ""
            if !final, name == FusionPlan.toolName { fusionIndexes.insert(fragment.index) }
            guard !fusionIndexes.contains(fragment.index) else {
                unnamed[fragment.index] = nil
                return nil
            }
            // Not named yet: held until it is (it may be the fusion call), then shown whole so far.
            guard !name.isEmpty else {
                var held = unnamed.removeValue(forKey: fragment.index) ?? ToolCallFragment(index: fragment.index)
                if held.id == nil { held.id = fragment.id }
                if let piece = fragment.arguments {  // in place: one owner once taken out
                    if held.arguments == nil { held.arguments = piece } else { held.arguments!.append(piece) }
                }
                unnamed[fragment.index] = held
                return nil
            }
            var shown = fragment
            if let held = unnamed.removeValue(forKey: fragment.index) {
                shown.id = shown.id ?? held.id
                shown.name = name
                shown.arguments = (held.arguments ?? "") + (fragment.arguments ?? "")
            }
            let index = clientIndexes[fragment.index] ?? clientIndexes.count
            clientIndexes[fragment.index] = index
            shown.index = index
            return .toolCall(shown)
        case .usage(let reported):
            usage = reported  // per call: the last report is the total
            return nil
        case .finish(let reason):
            finishReason = reason
            // A turn that called fusion goes on to the deliberation: its finish is ours to report,
            // whatever it says (review 48 Fusion #3: sglang, vLLM and others end a tool call's
            // turn with "stop", which reached a chat client before any of the answer).
            return fusionCall != nil ? nil : event
        case .error:
            return nil
        }
    }

    /// Assembles a provider block from its start, its input's deltas and its stop. A delta with
    /// no block open is a citation on text, which the replay leaves out (the text stays).
    private mutating func keep(_ part: ProviderBlockPart) {
        switch part {
        case .start(let block):
            openBlock = block
            openInput = ""
        case .delta(let delta):
            if openBlock != nil, delta["type"] == .string("input_json_delta"), let json = delta["partial_json"]?.stringValue { openInput += json }
        case .stop:
            guard let block = openBlock else { return }
            providerBlocks.append((text.utf8.count, ProviderBlockPart.block(block, input: openInput)))
            openBlock = nil
        }
    }

    /// What the turn said, for the request that continues it: its text, with Anthropic's own
    /// blocks where they came.
    var content: [ContentPart] {
        var parts: [ContentPart] = []
        var start = text.utf8.startIndex
        // Anthropic refuses a text block of white space alone; between blocks one can come.
        func appendText(_ piece: Substring) {
            guard !piece.isEmpty, providerBlocks.isEmpty || !piece.allSatisfy(\.isWhitespace) else { return }
            parts.append(.text(String(piece)))
        }
        for (offset, block) in providerBlocks {
            let end = text.utf8.index(text.utf8.startIndex, offsetBy: offset)
            appendText(text[start..<end])
            parts.append(.providerBlock(block))
            start = end
        }
        appendText(text[start...])
        return parts
    }

    /// The turn's call to the fusion tool, if it made one (the first, if several). One that came
    /// without an id (LM Studio's, some vLLM streams') gets one: the final turn, the chat record
    /// and the Responses item all name the call by it, and an empty one is refused when the
    /// client sends the turn back (review 60C #2).
    var fusionCall: ToolCall? {
        final ? nil : toolCalls.calls.first { $0.name == FusionPlan.toolName }.map(withID)
    }

    private func withID(_ call: ToolCall) -> ToolCall {
        guard call.id.isEmpty else { return call }
        var named = call
        named.id = "\(fusionCallID)_\(call.index)"
        return named
    }

    /// The caller's own tool calls of this turn.
    var callerCalls: [ToolCall] {
        toolCalls.calls.filter { $0.name != FusionPlan.toolName || final }
    }

    /// Further fusion calls of this turn (fusion runs once per request: each gets a capped result).
    var extraFusionCalls: [ToolCall] {
        guard let first = fusionCall else { return [] }
        return toolCalls.calls.filter { $0.name == FusionPlan.toolName && $0.index != first.index }.map(withID)
    }

    func stats(model: String, status: String, at time: Double) -> MemberStats {
        MemberStats(model: model, role: final ? "outer_final" : "outer", status: status, usage: usage,
                    firstTokenMilliseconds: firstTokenAt.map { $0 - startedAt }, durationMilliseconds: time - startedAt,
                    characters: text.count)
    }
}
