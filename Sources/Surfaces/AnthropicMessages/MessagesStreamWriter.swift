import GatewayCore
import Providers

/// Writes `ModelEvent`s as Anthropic's Messages stream, the shape its SDKs require: every event
/// named (SDK 2.x drops data-only events), `message_start` first, content blocks with dense
/// indexes in start order (`content_block_start`, deltas, `content_block_stop`), then
/// `message_delta` with the stop reason and usage (always: the SDK's stream helper crashes
/// without it), then `message_stop`.
///
/// Tool call fragments stream as a `tool_use` block's `input_json_delta`s. Anthropic never
/// interleaves blocks, but an OpenAI-compatible upstream may interleave parallel calls: a late
/// fragment for a call whose block has closed is sent with that block's index (the SDKs place
/// deltas by index).
///
/// Hand-written JSON, straight into the output (no intermediate buffer, no encoder): this is the
/// per-token path. A delta costs the escaped text and the block index's digits; only a tool call's
/// first fragment touches a dictionary.
public struct MessagesStreamWriter: Sendable {
    public let id: String
    /// What `message_start` names; `name(model:)` may change it until then.
    public private(set) var model: String
    /// `provider(n)`: the n-th block an Anthropic upstream sent that the neutral types do not model.
    private enum Block: Equatable { case text, thinking, redactedThinking, tool(Int), provider(Int) }
    private var providerBlocks = 0
    private var open: Block?
    private var blockIndex = -1
    /// Tool call index → its block's index.
    private var toolBlocks: [Int: Int] = [:]
    /// Calls that began while another call's block was open (an OpenAI-compatible upstream may
    /// interleave its calls' fragments): held whole, and shown each in a block of its own once
    /// the open one is done, so no delta ever lands in a block already stopped (the SDKs hand
    /// a call's input out at its `content_block_stop`).
    private var heldCalls: [Int: ToolCallFragment] = [:]
    /// Calls whose arguments began with more than white space: until then white space is not
    /// sent (the SDKs parse `partial_json` as it comes, and `" "` alone raised: review 72A).
    private var argumentsBegan: Set<Int> = []
    public private(set) var started = false
    private var stopReason = "end_turn"
    /// The upstream's own stop reason and sequence, when an Anthropic upstream said more.
    private var stopDetail: (reason: String, sequence: String?)?
    /// What an Anthropic upstream's message said beyond the neutral events, for `message_delta`.
    private var extras = AnthropicMessageExtras()
    /// Another API's refusal came (as text): a plain end is Anthropic's `refusal`.
    private var refused = false
    private var usage: Usage?
    /// `message_start` waits for the first block, the end or a failure (a proxied stream's: by
    /// then the upstream's own `message_start` has given its prompt usage, and an attempt that
    /// failed before its first block has shown nothing the next attempt would repeat).
    private let deferredStart: Bool
    /// The upstream's prompt usage, for `message_start`.
    private var promptUsage: Usage?
    /// Tool call index → its name and the check of its arguments so far: Anthropic's SDKs parse a
    /// `tool_use` block's input on every delta and raise on a fragment that cannot continue a
    /// JSON object, so such a fragment is refused before it is sent (`refusal(ofToolCall:)`).
    private var argumentChecks: [Int: (name: String, check: JSONPrefixCheck)] = [:]

    /// The request's `stop_sequences`: the only values `stop_sequence` may say.
    private let stopSequences: [String]

    /// `deferredStart`: `appendStart` writes nothing; `message_start` goes out before the first
    /// block, the end or a failure, with the upstream's prompt usage (`notePromptUsage`).
    /// `stopSequences`: the request's (see `matchedStop`).
    public init(id: String, model: String, deferredStart: Bool = false, stopSequences: [String] = []) {
        self.id = id
        self.model = model
        self.deferredStart = deferredStart
        self.stopSequences = stopSequences
    }

    /// The stop sequence an upstream says matched, when it is one of the request's: any other
    /// value (an upstream's invention, its key) is no sequence the client asked for, and is said
    /// as none (review 119 #10).
    static func matchedStop(_ sequence: String?, in stopSequences: [String]) -> String? {
        sequence.flatMap { stopSequences.contains($0) ? $0 : nil }
    }

    /// `message_start`, once (also written before the first content if not yet), unless the
    /// start is deferred.
    public mutating func appendStart(to out: inout [UInt8]) {
        guard !deferredStart else { return }
        writeStart(to: &out)
    }

    /// The model `message_start` names, when it is still to be written (a Fusion answer's outer
    /// turn answered by a fallback: review 102 #1).
    public mutating func name(model: String) {
        if !started { self.model = model }
    }

    /// The upstream's own `message_start` counts: shown in ours, if it is still to be written.
    public mutating func notePromptUsage(_ usage: Usage) {
        if !started { promptUsage = usage }
    }

    private mutating func writeStart(to out: inout [UInt8]) {
        guard !started else { return }
        started = true
        event("message_start", &out)
        out.append(contentsOf: #"{"type":"message_start","message":{"id":"#.utf8)
        JSONWriting.appendString(id, to: &out)
        out.append(contentsOf: #","type":"message","role":"assistant","model":"#.utf8)
        JSONWriting.appendString(model, to: &out)
        out.append(contentsOf: #","content":[],"stop_reason":null,"stop_sequence":null,"usage":"#.utf8)
        if let promptUsage {
            Self.appendUsage(promptUsage, to: &out)
        } else {
            out.append(contentsOf: #"{"input_tokens":0,"output_tokens":0}"#.utf8)
        }
        out.append(contentsOf: "}}".utf8)
        end(&out)
    }

    /// Appends what `event` shows; usage and the finish are kept for `appendEnd`.
    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        switch event {
        case .text(let text), .refusal(let text):
            guard !text.isEmpty else { return }
            if case .refusal = event { refused = true }
            openBlock(.text, &out)
            delta(blockIndex, #"{"type":"text_delta","text":"#, text, &out)
        case .reasoning(let text):
            guard !text.isEmpty else { return }
            openBlock(.thinking, &out)
            delta(blockIndex, #"{"type":"thinking_delta","thinking":"#, text, &out)
        case .reasoningSignature(let signature):
            // The block's last delta: what follows, even more reasoning, is another block.
            openBlock(.thinking, &out)
            delta(blockIndex, #"{"type":"signature_delta","signature":"#, signature, &out)
            closeBlock(&out)
        case .redactedReasoning(let data):
            openBlock(.redactedThinking, &out, data: data)  // closes the open block first
            closeBlock(&out)
        case .providerBlock(.start(let block)):
            providerBlocks += 1
            openBlock(.provider(providerBlocks), &out, raw: block)
        case .providerBlock(.delta(let delta)):
            // A server tool block's delta, or a citation of the open text block (or of the text
            // block it begins: Anthropic sends a cited block's citations before its text); never
            // into a block of another kind (a tool_use block's arguments are checked JSON, a
            // thinking block is signed): an upstream that interleaved its blocks loses that delta.
            switch open {
            case .provider?: break
            case .text? where delta["type"]?.stringValue == "citations_delta": break
            case nil where delta["type"]?.stringValue == "citations_delta": openBlock(.text, &out)
            default: return
            }
            self.event("content_block_delta", &out)
            out.append(contentsOf: #"{"type":"content_block_delta","index":"#.utf8)
            out.append(contentsOf: String(blockIndex).utf8)
            out.append(contentsOf: #","delta":"#.utf8)
            JSONWriting.appendValue(delta, to: &out)
            out.append(UInt8(ascii: "}"))
            end(&out)
        case .providerBlock(.stop):
            // The end of a server tool's block, of a text block (the next text, with its own
            // citations, is another block) or of the upstream's last open tool call (Anthropic's
            // wire: the next call opens its own block at once). Calls held meanwhile (an upstream
            // that interleaved them) are whole then: shown now, in order (review 57 #4).
            switch open {
            case .provider?, .text?: closeBlock(&out)
            case .tool?:
                closeBlock(&out)
                showHeldCalls(&out)
                closeBlock(&out)
            default: break
            }
        case .toolCall(let fragment):
            if var held = heldCalls.removeValue(forKey: fragment.index) {
                // Appended in place (taken out of the table, the string has one owner): a copy
                // per fragment made a hostile stream of one-byte fragments quadratic (review 71C #10).
                if held.id == nil { held.id = fragment.id }
                if held.name?.isEmpty ?? true { held.name = fragment.name }
                if let piece = fragment.arguments {
                    if held.arguments == nil { held.arguments = piece } else { held.arguments!.append(piece) }
                }
                heldCalls[fragment.index] = held
                // Held only for its name, which came: shown now unless another call's block is open.
                if !(held.name?.isEmpty ?? true), open.map({ if case .tool = $0 { false } else { true } }) ?? true { showHeldCalls(&out) }
                return
            }
            if toolBlocks[fragment.index] == nil {
                // Held while another call's block is open, or until its name comes (a server may
                // send it in a later fragment; a call never named is refused at the end).
                if case .tool? = open {
                    heldCalls[fragment.index] = fragment
                    return
                }
                if fragment.name?.isEmpty ?? true {
                    heldCalls[fragment.index] = fragment
                    return
                }
                openBlock(.tool(fragment.index), &out, id: fragment.id, name: fragment.name)
            }
            // Only into its own open block (a fragment for a stopped one is refused before it
            // comes here, or carries nothing).
            guard let arguments = fragment.arguments, !arguments.isEmpty, let index = toolBlocks[fragment.index],
                  open == .tool(fragment.index) else { return }
            appendArguments(arguments, call: fragment.index, block: index, &out)
        case .usage(let reported):
            usage = reported
        case .finish(let reason):
            stopReason = Self.stopReason(reason)
        case .stopDetail(let reason, let sequence):
            stopDetail = (reason, Self.matchedStop(sequence, in: stopSequences))
        case .messageExtras(let more):
            extras = extras.merging(more)
        case .error(let error):
            MessagesErrors.appendEvent(error, to: &out)
        }
    }

    /// The end of a complete answer: the open block closed, `message_delta` (stop reason and
    /// usage: `usage`, else the last reported, else zeros), `message_stop`. `fusion`: a
    /// deliberation's result and per-call usage, on `message_delta` (`fusion`, `usage.fusion`).
    public mutating func appendEnd(usage final: Usage? = nil, estimated: Bool = false, fusion: (result: JSONValue?, calls: JSONValue?) = (nil, nil),
                                   to out: inout [UInt8]) {
        writeStart(to: &out)
        showHeldCalls(&out)
        closeBlock(&out)
        let usage = final ?? usage ?? Usage()
        event("message_delta", &out)
        out.append(contentsOf: #"{"type":"message_delta","delta":{"stop_reason":"#.utf8)
        JSONWriting.appendString(Self.clientStopReason(stopReason, detail: stopDetail?.reason, refused: refused, calledTools: !toolBlocks.isEmpty),
                                 to: &out)
        out.append(contentsOf: #","stop_sequence":"#.utf8)
        if let sequence = stopDetail?.sequence { JSONWriting.appendString(sequence, to: &out) } else { out.append(contentsOf: "null".utf8) }
        Self.appendMembers(extras.message, to: &out)
        out.append(contentsOf: #"},"usage":"#.utf8)
        Self.appendUsage(usage, estimated: estimated, fusionCalls: fusion.calls, extra: extras.usage, to: &out)
        if let result = fusion.result {
            out.append(contentsOf: #","fusion":"#.utf8)
            JSONWriting.appendValue(result, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        end(&out)
        event("message_stop", &out)
        out.append(contentsOf: #"{"type":"message_stop"}"#.utf8)
        end(&out)
    }

    /// A fragment that would make its call's arguments something other than the beginning of
    /// a JSON object (an upstream model wrote broken JSON): the stream ends with the error a
    /// whole message gets for it, before the fragment is sent.
    public mutating func refusal(ofToolCall fragment: ToolCallFragment) -> APIError? {
        // A call whose block was stopped (another kind of block came since) cannot grow.
        if toolBlocks[fragment.index] != nil, open != .tool(fragment.index), !(fragment.arguments ?? "").allSatisfy(\.isWhitespace) {
            return .upstreamProtocol("the upstream went back to tool call \(fragment.index) after it had ended")
        }
        // The name comes with a call's first fragment, often before any argument; a call without
        // one cannot be a `tool_use` block a client could run or answer: it is held until its name
        // comes, and refused at the end if it never does (review 71C #9, 72A).
        if argumentChecks[fragment.index] == nil { argumentChecks[fragment.index] = (fragment.name ?? "", JSONPrefixCheck()) }
        if argumentChecks[fragment.index]?.name.isEmpty == true, let name = fragment.name { argumentChecks[fragment.index]?.name = name }
        guard let arguments = fragment.arguments, !arguments.isEmpty else { return nil }
        argumentChecks[fragment.index]?.check.feed(arguments.utf8)
        guard let entry = argumentChecks[fragment.index], entry.check.failed else { return nil }
        return MessagesErrors.invalidToolArguments(name: entry.name)
    }

    /// A call whose arguments began but never closed their object.
    public func refusalAtEnd() -> APIError? {
        if heldCalls.values.contains(where: { $0.name?.isEmpty ?? true }) { return .upstreamProtocol("the upstream sent a tool call without a name") }
        return argumentChecks.values.first { !$0.check.isComplete && !$0.check.isBlank }.map { MessagesErrors.invalidToolArguments(name: $0.name) }
    }

    /// Anthropic's keep-alive, skipped by its SDKs.
    public static func appendPing(to out: inout [UInt8]) {
        out.append(contentsOf: "event: ping\ndata: {\"type\":\"ping\"}\n\n".utf8)
    }

    /// A finish reason in Anthropic's words. An Anthropic upstream's own reason, when it says
    /// more (`stop_sequence`, `pause_turn`), comes as `.stopDetail` and is used instead.
    public static func stopReason(_ reason: FinishReason) -> String {
        switch reason {
        case .length: "max_tokens"
        case .toolCalls: "tool_use"
        case .contentFilter: "refusal"
        default: "end_turn"
        }
    }

    /// The stop reason a client reads: an Anthropic upstream's own when it said more; `refusal`
    /// for a refusal another API said as text; `tool_use` for a turn that ends in tool calls,
    /// whatever the upstream called its end (OpenAI says `stop` for a call `tool_choice` forced,
    /// some OpenAI-compatible servers for every call), since clients' agent loops run the tools
    /// only on `tool_use`.
    /// The reverse too: `tool_use` without a call (a server whose tool parser failed sends the
    /// call as text and still finishes with `tool_calls`) is `end_turn`, as Anthropic's API never
    /// says `tool_use` with no `tool_use` block to answer (review 71C #5).
    static func clientStopReason(_ mapped: String, detail: String?, refused: Bool, calledTools: Bool) -> String {
        if let detail { return detail == "tool_use" && !calledTools ? "end_turn" : detail }
        if mapped == "tool_use" && !calledTools { return "end_turn" }
        guard mapped == "end_turn" else { return mapped }
        return refused ? "refusal" : calledTools ? "tool_use" : mapped
    }

    /// Anthropic's usage: `input_tokens` excludes cache reads and writes (OpenAI's prompt includes them).
    /// `estimated`: the gateway's estimate (the upstream reported none, or was cut short), said
    /// as chat and Responses say it, in a member of its own the SDKs keep and ignore.
    static func appendUsage(_ usage: Usage, estimated: Bool = false, fusionCalls: JSONValue? = nil, extra: [String: JSONValue] = [:],
                            to out: inout [UInt8]) {
        let input = max(usage.promptTokens - usage.cachedTokens - usage.cacheWriteTokens, 0)  // each at most 2^40: no overflow
        out.append(contentsOf: #"{"input_tokens":\#(input),"cache_creation_input_tokens":\#(usage.cacheWriteTokens),"#.utf8)
        out.append(contentsOf: #""cache_read_input_tokens":\#(usage.cachedTokens),"output_tokens":\#(usage.completionTokens)"#.utf8)
        appendMembers(extra, to: &out)
        if estimated { out.append(contentsOf: #","estimated":true"#.utf8) }
        if let fusionCalls {
            out.append(contentsOf: #","fusion":"#.utf8)
            JSONWriting.appendValue(fusionCalls, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `,"name":value` for each member, in name order (an upstream's own members: `extras`).
    static func appendMembers(_ members: [String: JSONValue], to out: inout [UInt8]) {
        for name in members.keys.sorted() {
            out.append(UInt8(ascii: ","))
            JSONWriting.appendString(name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriting.appendValue(members[name]!, to: &out)
        }
    }

    private mutating func openBlock(_ block: Block, _ out: inout [UInt8], id: String? = nil, name: String? = nil, data: String = "",
                                    raw: JSONValue? = nil) {
        writeStart(to: &out)
        if case .tool = block {} else if !heldCalls.isEmpty { showHeldCalls(&out) }
        guard open != block else { return }
        closeBlock(&out)
        open = block
        blockIndex += 1
        event("content_block_start", &out)
        out.append(contentsOf: #"{"type":"content_block_start","index":"#.utf8)
        out.append(contentsOf: String(blockIndex).utf8)
        out.append(contentsOf: #","content_block":"#.utf8)
        switch block {
        case .text:
            out.append(contentsOf: #"{"type":"text","text":""}"#.utf8)
        case .thinking:
            out.append(contentsOf: #"{"type":"thinking","thinking":"","signature":""}"#.utf8)
        case .redactedThinking:
            out.append(contentsOf: #"{"type":"redacted_thinking","data":"#.utf8)
            JSONWriting.appendString(data, to: &out)
            out.append(UInt8(ascii: "}"))
        case .tool(let index):
            toolBlocks[index] = blockIndex
            out.append(contentsOf: #"{"type":"tool_use","id":"#.utf8)
            JSONWriting.appendString(id.flatMap { $0.isEmpty ? nil : $0 } ?? "toolu_\(self.id)_\(index)", to: &out)
            out.append(contentsOf: #","name":"#.utf8)
            JSONWriting.appendString(name ?? "", to: &out)
            out.append(contentsOf: #","input":{}}"#.utf8)
        case .provider:
            JSONWriting.appendValue(raw ?? .object([:]), to: &out)
        }
        out.append(UInt8(ascii: "}"))
        end(&out)
    }

    /// The held calls, each in a block of its own, in order (another kind of block comes next,
    /// or the end).
    private mutating func showHeldCalls(_ out: inout [UInt8]) {
        // A call whose name has not come stays held (`refusalAtEnd` refuses one never named).
        for index in heldCalls.keys.sorted() where !(heldCalls[index]?.name?.isEmpty ?? true) {
            guard let call = heldCalls.removeValue(forKey: index) else { continue }
            if open != nil { closeBlock(&out) }  // one block at a time
            openBlock(.tool(index), &out, id: call.id, name: call.name)
            if let arguments = call.arguments, !arguments.isEmpty, let block = toolBlocks[index] {
                appendArguments(arguments, call: index, block: block, &out)
            }
        }
    }

    /// A call's arguments as an `input_json_delta`; white space before they begin is not sent.
    private mutating func appendArguments(_ arguments: String, call: Int, block: Int, _ out: inout [UInt8]) {
        if !argumentsBegan.contains(call) {
            guard !arguments.allSatisfy(\.isWhitespace) else { return }
            argumentsBegan.insert(call)
        }
        delta(block, #"{"type":"input_json_delta","partial_json":"#, arguments, &out)
    }

    private mutating func closeBlock(_ out: inout [UInt8]) {
        guard open != nil else { return }
        open = nil
        event("content_block_stop", &out)
        out.append(contentsOf: #"{"type":"content_block_stop","index":"#.utf8)
        out.append(contentsOf: String(blockIndex).utf8)
        out.append(UInt8(ascii: "}"))
        end(&out)
    }

    /// One whole `content_block_delta` event: `head` is its delta object up to the value
    /// (`{"type":"text_delta","text":`), `value` the text, escaped.
    private func delta(_ index: Int, _ head: StaticString, _ value: String, _ out: inout [UInt8]) {
        event("content_block_delta", &out)
        out.append(contentsOf: #"{"type":"content_block_delta","index":"#.utf8)
        out.append(contentsOf: String(index).utf8)  // a small string: no allocation
        out.append(contentsOf: #","delta":"#.utf8)
        out.append(contentsOf: UnsafeRawBufferPointer(start: head.utf8Start, count: head.utf8CodeUnitCount))
        JSONWriting.appendString(value, to: &out)
        out.append(contentsOf: "}}".utf8)
        end(&out)
    }

    /// Event names are constants and the data is JSON with every line break escaped: each event
    /// is one `event:` and one `data:` line.
    private func event(_ name: StaticString, _ out: inout [UInt8]) {
        out.append(contentsOf: "event: ".utf8)
        out.append(contentsOf: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        out.append(contentsOf: "\ndata: ".utf8)
    }

    private func end(_ out: inout [UInt8]) { out.append(contentsOf: "\n\n".utf8) }
}

extension MessagesStreamWriter: NeutralStreamWriter {
    public mutating func appendEnd(usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        appendEnd(usage: usage, estimated: estimated, fusion: (nil, nil), to: &out)
    }

    /// An `error` event (after `message_start`, so the SDKs' stream helpers see a stream).
    /// Anthropic's error event has no usage: the record keeps it.
    public mutating func appendFailure(_ error: APIError, usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        writeStart(to: &out)
        MessagesErrors.appendEvent(error, to: &out)
    }
}
