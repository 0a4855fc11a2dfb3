import GatewayCore
import Providers

/// Renders one response on the Responses API from `ModelEvent`s (any provider's), streamed as
/// events or built whole: the one state both share, so a streamed and a non-streamed answer
/// cannot differ.
///
/// Streamed, the order is what openai-python's `responses.stream()` helper checks
/// (`lib/streaming/responses/_responses.py`): `response.created` first (written before the first
/// other event, or by `appendStart`), `response.in_progress`, then per item
/// `output_item.added` → its parts and deltas → `output_item.done`, at output indexes 0, 1, 2…
/// in the order items open, and one terminal event last (`response.completed`, `.incomplete` or
/// `.failed`) carrying the whole Response. Every event has a `sequence_number`.
///
/// Items follow the model: text opens a `message` (one `output_text` part), reasoning a
/// `reasoning` item (its text as a summary part; a signed block, which its signature ends, also as
/// `encrypted_content`, `ReasoningBlock.token`, for the client to send back as Responses clients
/// do with OpenAI's; a redacted block is an item of its own with only that), each tool call a `function_call` whose
/// `call_id` is the model's call id. A message or reasoning item closes when an item of another
/// kind opens; function calls stay open until the turn finishes, since some upstreams interleave
/// their fragments. A finish closes every open item (`incomplete` on `length` / `content_filter`,
/// which make the response `incomplete` with `max_output_tokens` / `content_filter`).
public struct ResponsesStreamWriter: Sendable {
    public let envelope: ResponseEnvelope
    public let stream: Bool
    public private(set) var isFinished = false
    /// The last finish the model reported.
    public private(set) var finishReason: FinishReason?
    /// The last usage the model reported (the default for the terminal event).
    public private(set) var usage: Usage?
    private var events = ResponsesEventEncoder()
    private var started = false
    var items: [ResponseItem] = []
    private var openMessage: Int?
    private var openReasoning: Int?
    /// A message whose one part is a refusal (another API's `refusal`).
    private var openRefusal: Int?
    /// Open function calls: tool-call index → position in `items`. At most one: OpenAI's own
    /// streams never interleave items, and clients may rely on it.
    private var openCalls: [Int: Int] = [:]
    /// Tool-call fragments not yet shown: a call whose name has not arrived (`output_item.added`
    /// must carry it), or one that began while another was open (an upstream may interleave
    /// its calls' fragments), held until that one is done.
    private var pendingCalls: [Int: ToolCallFragment] = [:]
    /// Calls done: a fragment for one of them cannot be shown (`ResponsesTranslation` refuses it).
    private var closedCalls: Set<Int> = []
    /// Open items of other kinds (server tools), closed by their renderer.
    var openOthers: Set<Int> = []

    public init(envelope: ResponseEnvelope, stream: Bool) {
        self.envelope = envelope
        self.stream = stream
    }

    /// An item of the output, as the events refer to it.
    public struct ItemReference: Sendable, Equatable {
        public let id: String
        public let outputIndex: Int
    }

    // MARK: the model's events

    /// `response.created` and `response.in_progress`, once. Every other append starts with it,
    /// so a shell need not call it; one that wants the client to see the response at once does.
    public mutating func appendStart(to out: inout [UInt8]) {
        guard !started else { return }
        started = true
        let response = envelope.json(status: "in_progress", output: [])
        emit("response.created", &out) { $0.json("response", response) }
        emit("response.in_progress", &out) { $0.json("response", response) }
    }

    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        guard !isFinished else { return }
        // Nothing for the client in these: until something is, a shell may still answer an early
        // failure with an HTTP status.
        switch event {
        case .usage(let reported):
            usage = reported
            return
        case .text(let text) where text.isEmpty, .reasoning(let text) where text.isEmpty, .refusal(let text) where text.isEmpty:
            return
        case .providerBlock:
            return  // Anthropic's own blocks (server tools', citations): Responses has no item for them
        case .stopDetail, .messageExtras:
            return  // for Anthropic clients
        case .finish(let reason):
            // The open items close when the response does (`finalResponse`): relays that put
            // `stop` on every chunk made one message item per token (review 75B #2). Not shown
            // yet either: an upstream that says its finish and then fails before any answer
            // (Anthropic's `message_delta`, then an error event) is still retried, fallen back
            // from, or answered with its status (review 107 #1).
            finishReason = reason
            return
        case .toolCall:
            break  // started by `toolCall` once the call can be shown: a nameless one is held (review 108 #3)
        default:
            appendStart(to: &out)
        }
        switch event {
        case .text(let text):
            let position = messagePosition(&out)
            items[position].text += text
            let id = items[position].id
            emit("response.output_text.delta", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.string("delta", text)
                $0.raw("logprobs", "[]")
            }
        case .reasoning(let text):
            let position = reasoningPosition(&out)
            items[position].text += text
            let id = items[position].id
            emit("response.reasoning_summary_text.delta", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("summary_index", 0)
                $0.string("delta", text)
            }
        case .refusal(let text):
            let position = refusalPosition(&out)
            items[position].text += text
            let id = items[position].id
            emit("response.refusal.delta", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.string("delta", text)
            }
        case .toolCall(let fragment):
            toolCall(fragment, &out)
        case .reasoningSignature(let signature):
            let position = reasoningPosition(&out)
            items[position].encryptedContent = ReasoningBlock.thinking(text: items[position].text, signature: signature).token
            close(position, status: "completed", &out)
        case .redactedReasoning(let data):
            if let openReasoning { close(openReasoning, status: "completed", &out) }
            let position = reasoningPosition(&out)
            items[position].encryptedContent = ReasoningBlock.redacted(data: data).token
            close(position, status: "completed", &out)
        case .usage, .stopDetail, .messageExtras, .providerBlock, .finish:
            break  // above
        case .error(let error):
            appendFailure(error, to: &out)
        }
    }

    /// Citations of the open message's text (`url_citation` objects, Responses' flat shape):
    /// `output_text.annotation.added` each, and in the part when it closes. False when no
    /// message is open (there is no text to cite).
    @discardableResult
    public mutating func annotateOpenMessage(_ annotations: [JSONValue], to out: inout [UInt8]) -> Bool {
        guard !isFinished, let position = openMessage else { return false }
        let id = items[position].id
        let existing = items[position].annotations
        for (offset, annotation) in annotations.enumerated() {
            emit("response.output_text.annotation.added", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.int("annotation_index", existing.count + offset)
                $0.json("annotation", annotation)
            }
        }
        items[position].annotations += annotations
        return true
    }

    /// The text of the open message item, if one is open.
    public var openMessageText: String? {
        openMessage.map { items[$0].text }
    }

    // MARK: the end

    /// The terminal event: `response.completed`, or `response.incomplete` after a `length` or
    /// `content_filter` finish. `usage` is Responses-shaped (`ResponsesUsage.json`); nil means
    /// the last usage the model reported. `completedAt`: unix seconds.
    public mutating func appendEnd(usage: JSONValue? = nil, completedAt: Int, to out: inout [UInt8]) {
        guard !isFinished else { return }
        let response = finalResponse(usage: usage, completedAt: completedAt, &out)
        emit(response["status"] == .string("completed") ? "response.completed" : "response.incomplete", &out) {
            $0.json("response", response)
        }
        isFinished = true
    }

    /// `response.failed`, with the error in the Response (never a top-level `error`, which the
    /// OpenAI SDKs would raise on before the client saw the response). Open items end `incomplete`.
    public mutating func appendFailure(_ error: APIError, usage: JSONValue? = nil, to out: inout [UInt8]) {
        guard !isFinished else { return }
        appendStart(to: &out)
        closeOpenItems(status: "incomplete", &out)
        for position in openOthers.sorted() { closeOther(position, status: "incomplete", &out) }
        let response = envelope.json(status: "failed", output: items.map(\.json),
                                     usage: usage ?? self.usage.map { ResponsesUsage.json($0) } ?? .null, error: error.responseError)
        emit("response.failed", &out) { $0.json("response", response) }
        isFinished = true
    }

    /// The whole Response, for a non-streamed answer (or what the terminal event carries): open
    /// items are closed first.
    public mutating func response(usage: JSONValue? = nil, completedAt: Int) -> JSONValue {
        var discarded: [UInt8] = []
        return finalResponse(usage: usage, completedAt: completedAt, &discarded)
    }

    private mutating func finalResponse(usage: JSONValue?, completedAt: Int, _ out: inout [UInt8]) -> JSONValue {
        appendStart(to: &out)
        let incomplete: String? = switch finishReason {
        case .length?: "max_output_tokens"
        case .contentFilter?: "content_filter"
        default: nil
        }
        closeOpenItems(status: incomplete == nil ? "completed" : "incomplete", &out)
        for position in openOthers.sorted() { closeOther(position, status: "incomplete", &out) }
        return envelope.json(status: incomplete == nil ? "completed" : "incomplete", output: items.map(\.json),
                             usage: usage ?? self.usage.map { ResponsesUsage.json($0) } ?? .null,
                             incompleteDetails: incomplete.map { .object(["reason": .string($0)]) } ?? .null,
                             completedAt: incomplete == nil ? completedAt : nil)
    }

    // MARK: opening and closing

    private mutating func messagePosition(_ out: inout [UInt8]) -> Int {
        if let openMessage { return openMessage }
        if let openReasoning { close(openReasoning, status: "completed", &out) }
        if let openRefusal { close(openRefusal, status: "completed", &out) }
        finishCalls(status: "completed", &out)
        let position = items.count
        let id = envelope.itemID("msg", outputIndex: position)
        items.append(ResponseItem(id: id, kind: .message))
        openMessage = position
        emitAdded(position, &out)
        emit("response.content_part.added", &out) {
            $0.string("item_id", id)
            $0.int("output_index", position)
            $0.int("content_index", 0)
            $0.json("part", ResponseItem.textPart("", []))
        }
        return position
    }

    private mutating func refusalPosition(_ out: inout [UInt8]) -> Int {
        if let openRefusal { return openRefusal }
        for position in [openMessage, openReasoning].compactMap({ $0 }).sorted() { close(position, status: "completed", &out) }
        finishCalls(status: "completed", &out)
        let position = items.count
        let id = envelope.itemID("msg", outputIndex: position)
        items.append(ResponseItem(id: id, kind: .refusal))
        openRefusal = position
        emitAdded(position, &out)
        emit("response.content_part.added", &out) {
            $0.string("item_id", id)
            $0.int("output_index", position)
            $0.int("content_index", 0)
            $0.json("part", ResponseItem.refusalPart(""))
        }
        return position
    }

    private mutating func reasoningPosition(_ out: inout [UInt8]) -> Int {
        if let openReasoning { return openReasoning }
        if let openMessage { close(openMessage, status: "completed", &out) }
        if let openRefusal { close(openRefusal, status: "completed", &out) }
        finishCalls(status: "completed", &out)
        let position = items.count
        let id = envelope.itemID("rs", outputIndex: position)
        items.append(ResponseItem(id: id, kind: .reasoning))
        openReasoning = position
        emitAdded(position, &out)
        emit("response.reasoning_summary_part.added", &out) {
            $0.string("item_id", id)
            $0.int("output_index", position)
            $0.int("summary_index", 0)
            $0.json("part", ResponseItem.summaryPart(""))
        }
        return position
    }

    private mutating func toolCall(_ fragment: ToolCallFragment, _ out: inout [UInt8]) {
        if let position = openCalls[fragment.index] {
            guard let delta = fragment.arguments, !delta.isEmpty else { return }
            items[position].text += delta
            let id = items[position].id
            emit("response.function_call_arguments.delta", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.string("delta", delta)
            }
            return
        }
        guard !closedCalls.contains(fragment.index) else { return }
        var pending = pendingCalls.removeValue(forKey: fragment.index) ?? ToolCallFragment(index: fragment.index)
        if pending.id?.isEmpty ?? true { pending.id = fragment.id }
        if pending.name?.isEmpty ?? true { pending.name = fragment.name }
        if let piece = fragment.arguments {  // in place: one owner once taken out (review 71C #10)
            if pending.arguments == nil { pending.arguments = piece } else { pending.arguments!.append(piece) }
        }
        if pending.name?.isEmpty ?? true || !openCalls.isEmpty {
            pendingCalls[fragment.index] = pending
        } else {
            appendStart(to: &out)
            openCall(pending, &out)
        }
    }

    /// A call whose name never came is still held (it is shown only once named).
    public var hasCallWithoutName: Bool { pendingCalls.values.contains { $0.name?.isEmpty ?? true } }

    /// Whether the call `index` is done (its later fragments would have no item to go to).
    public func isClosedCall(_ index: Int) -> Bool { closedCalls.contains(index) }

    /// The name of a function call whose arguments are not one whole JSON value (an upstream
    /// that stopped inside them), read once at the stream's end; nil when every call's are
    /// whole or blank (which means `{}`).
    public func callWithIncompleteArguments() -> String? {
        for item in items {
            guard case .functionCall(_, let name) = item.kind, !item.text.allSatisfy(\.isWhitespace) else { continue }
            if (try? JSONValue.parse(Array(item.text.utf8))) == nil { return name }
        }
        for call in pendingCalls.values {
            guard let arguments = call.arguments, !arguments.allSatisfy(\.isWhitespace) else { continue }
            if (try? JSONValue.parse(Array(arguments.utf8))) == nil { return call.name ?? "" }
        }
        return nil
    }

    /// Closes the open call, then shows each held call whole, in order: another item comes
    /// next, or the end. A call whose name never came is never shown (no client could run or
    /// answer it): it stays held, and the answer is refused at its end (`hasCallWithoutName`,
    /// review 71C #9).
    private mutating func finishCalls(status: String, _ out: inout [UInt8]) {
        for position in openCalls.values.sorted() { close(position, status: status, &out) }
        for index in pendingCalls.keys.sorted() where !(pendingCalls[index]?.name?.isEmpty ?? true) {
            guard let fragment = pendingCalls.removeValue(forKey: index) else { continue }
            openCall(fragment, &out)
            if let position = openCalls[index] { close(position, status: status, &out) }
        }
    }

    /// `output_item.added` for a call whose name is known, then what arrived of its arguments.
    private mutating func openCall(_ fragment: ToolCallFragment, _ out: inout [UInt8]) {
        for position in [openMessage, openReasoning, openRefusal].compactMap({ $0 }).sorted() { close(position, status: "completed", &out) }
        let position = items.count
        let id = envelope.itemID("fc", outputIndex: position)
        // A model that gives no call id still needs one the client can answer.
        let callID = fragment.id.flatMap { $0.isEmpty ? nil : $0 } ?? envelope.itemID("call", outputIndex: position)
        items.append(ResponseItem(id: id, kind: .functionCall(callID: callID, name: fragment.name ?? "")))
        openCalls[fragment.index] = position
        emitAdded(position, &out)
        if let arguments = fragment.arguments, !arguments.isEmpty {
            toolCall(ToolCallFragment(index: fragment.index, arguments: arguments), &out)
        }
    }

    mutating func closeOpenItems(status: String, _ out: inout [UInt8]) {
        for position in [openMessage, openReasoning, openRefusal].compactMap({ $0 }).sorted() { close(position, status: status, &out) }
        finishCalls(status: status, &out)
    }

    private mutating func close(_ position: Int, status: String, _ out: inout [UInt8]) {
        // A call with no arguments has `{}`, as OpenAI's API writes it: a tool runner parses
        // them (review 71C #11: `""` raised in `json.loads`).
        if case .functionCall = items[position].kind, items[position].text.allSatisfy(\.isWhitespace) {
            items[position].text = "{}"
        }
        let id = items[position].id
        let text = items[position].text
        switch items[position].kind {
        case .message:
            openMessage = nil
            let annotations = items[position].annotations
            emit("response.output_text.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.string("text", text)
                $0.raw("logprobs", "[]")
            }
            emit("response.content_part.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.json("part", ResponseItem.textPart(text, annotations))
            }
        case .refusal:
            openRefusal = nil
            emit("response.refusal.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.string("refusal", text)
            }
            emit("response.content_part.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("content_index", 0)
                $0.json("part", ResponseItem.refusalPart(text))
            }
        case .reasoning:
            openReasoning = nil
            emit("response.reasoning_summary_text.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("summary_index", 0)
                $0.string("text", text)
            }
            emit("response.reasoning_summary_part.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.int("summary_index", 0)
                $0.json("part", ResponseItem.summaryPart(text))
            }
        case .functionCall(_, let name):
            for (index, open) in openCalls where open == position { closedCalls.insert(index) }
            openCalls = openCalls.filter { $0.value != position }
            emit("response.function_call_arguments.done", &out) {
                $0.string("item_id", id)
                $0.int("output_index", position)
                $0.string("name", name)  // as OpenAI's own stream has it since 2025
                $0.string("arguments", text)
            }
        case .other:
            return closeOther(position, status: status, &out)
        }
        items[position].status = status
        emitDone(position, &out)
    }

    /// A server-tool item its renderer left open (the response failed or ended under it).
    private mutating func closeOther(_ position: Int, status: String, _ out: inout [UInt8]) {
        guard openOthers.remove(position) != nil, case .other(let json) = items[position].kind else { return }
        var object = json.objectValue ?? [:]
        object["status"] = .string(status)
        items[position].kind = .other(.object(object))
        emitDone(position, &out)
    }

    private mutating func emitAdded(_ position: Int, _ out: inout [UInt8]) {
        let item = items[position].initialJSON
        emit("response.output_item.added", &out) {
            $0.int("output_index", position)
            $0.json("item", item)
        }
    }

    mutating func emitDone(_ position: Int, _ out: inout [UInt8]) {
        let item = items[position].json
        emit("response.output_item.done", &out) {
            $0.int("output_index", position)
            $0.json("item", item)
        }
    }

    /// Every event goes through here: a non-streamed response keeps the state and writes nothing,
    /// and nothing follows the terminal event.
    mutating func emit(_ type: String, _ out: inout [UInt8], _ build: (inout EventFields) -> Void) {
        guard stream, !isFinished else { return }
        events.append(type, to: &out, build)
    }
}
