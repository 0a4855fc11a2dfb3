import Fusion
import GatewayCore
import Providers

/// The streaming proxy's per-event logic, without sockets: upstream SSE bytes in, bytes for the
/// client out, when the upstream speaks the client's format (OpenAI chat completions).
///
/// Each upstream event is re-framed as `data: …\n\n` the moment its blank line arrives, its JSON
/// checked for syntax and given the completion's own `id` and `model` in the same pass
/// (`JSONScanner.appendObject`: no decoding). Comments, `id:`/`retry:` fields, event names and
/// empty events are dropped; garbage becomes an error chunk rather than something that crashes a
/// client's JSON parser. `[DONE]` ends the relay. A body that ends without a finish reason
/// (with or without `[DONE]`: llama.cpp reports a failure on an `error:` line and still sends it)
/// was cut short: an error chunk says so, never a clean end; the `error:` line or an event named
/// `error` is the upstream's error (review 68A #1, #4).
///
/// Chunks before the answer's first (a role-only delta, which OpenAI, vLLM and llama.cpp send
/// before any token; a usage or filter chunk without choices) are held and go out with it: until
/// then nothing of the answer reached the client, so a failure is retried or falls back, and a
/// stream that ends having answered nothing is an `upstream_protocol_error`, never an empty
/// success (review 59B #1, #3).
public struct SSERelay {
    public enum Outcome: Equatable {
        /// Keep reading.
        case streaming
        /// The upstream sent `[DONE]`; the client's stream is complete.
        case done
        /// The upstream broke the protocol; an error chunk and `[DONE]` were written.
        case failed(APIError)
    }

    private var decoder: SSEDecoder
    /// Events and comment lines read from the upstream (`SSEDecoder.progressMarks`).
    public var progressMarks: Int { decoder.progressMarks }
    /// Written first into every relayed chunk (and error chunk): `id`, `model`.
    private let leading: JSONScanner.LeadingMembers
    private let id: String
    private let model: String
    private let created: Int?
    /// When the client asked for usage and the upstream sends none, an estimate is added.
    private let usageFallback: UsageFallback?
    /// The client asked for usage (`stream_options.include_usage`). The upstream is asked either
    /// way (`ChatRequest.upstreamBody`: every completion is accounted); a client that did not ask
    /// never sees it.
    private let includeUsage: Bool
    /// The upstream's usage came on a chunk that also carried the answer (some servers send the
    /// last text, the finish and the usage together): that chunk went out without it, and the
    /// usage chunk OpenAI's clients expect (`choices: []`) is written before `[DONE]`.
    private var usageChunkOwed = false
    /// The tool calls of chunks that carry them, numbered as the other routes number them.
    private var toolCalls = ChatToolCallRenumbering()
    /// An upstream's error chunk is never relayed as it is (it may echo our key back): it
    /// becomes our own, its message trimmed and redacted.
    private let redactor: Redactor
    /// Why the relay stops, found while decoding one read (acted on once the read is decoded).
    private var stop: Stop?
    /// Events forwarded to the client so far (held ones not counted: they carry no answer).
    public private(set) var forwardedEvents = 0
    /// A chunk carrying the answer (text, reasoning, a refusal, a call, a finish) was relayed.
    private var answerBegan = false
    /// An event with data came (a body that is not an event stream, HTML or compressed, has none).
    private var eventCame = false
    /// The completion's id as the upstream named it (its first chunk's `id`; `UpstreamIdentifier`).
    public private(set) var upstreamID: String?
    private var readUpstreamID = false
    /// The chunks before it, written out (`appendEvent`) and waiting for it.
    private var held: [UInt8] = []
    /// At most this many bytes are held: an upstream that sends more before an answer has them
    /// relayed as they come, as before (the answer deemed begun).
    static let maxHeldBytes = 64 << 10
    /// The last `usage` object and non-null `finish_reason` seen, for accounting. Found by a
    /// byte search, so only the (usually one or two) chunks that carry them are parsed.
    public private(set) var usage: JSONValue?
    public private(set) var finishReason: String?
    /// A usage report came once a finish had: the answer is whole whatever breaks after it (a
    /// finish alone is not: relays put `stop` on every chunk, and with `n` > 1 another choice may
    /// still be running; OpenAI's usage comes last).
    private var usageAfterFinish = false
    /// The usage chunk the client got was the gateway's estimate.
    public private(set) var usageEstimated = false
    /// With `n` > 1, every chunk is parsed for its choices' indexes: the stream is whole once
    /// each choice seen has its finish, not at the first (review 70 #5: a choice left running
    /// went out as complete). A server that ignores `n` streams one choice, which is enough.
    let choicesAsked: Int
    /// A whole answer's output, estimated by its size (`relayWhole`): what an estimate says
    /// instead of a token per event.
    private var estimatedOutputTokens: Int64?
    public var wholeAnswerOutputTokens: Int64? { estimatedOutputTokens }
    private var choicesSeen = ChoiceSet()
    private var choicesFinished = ChoiceSet()
    public private(set) var outcome = Outcome.streaming
    /// Finish and usage chunks read in place when they can be (`PlainChunk`); off only in the
    /// tests that hold that path to the full one.
    var readsPlainChunks = true

    private enum Stop {
        case done
        case invalid
        case upstreamError(APIError)
    }

    /// What to say about usage when the upstream said nothing.
    public struct UsageFallback: Sendable {
        public var promptTokens: Int64
        public var created: Int
        /// The model's price in the config: the estimate is costed at it, as a translated
        /// stream's is (review 74C #3: a chat stream's estimate had no cost, its record 0).
        public var price: ModelPrice?
        public init(promptTokens: Int64, created: Int, price: ModelPrice? = nil) {
            self.promptTokens = promptTokens
            self.created = created
            self.price = price
        }
    }

    /// `id`/`model`/`created` (when given) replace the upstream's in every chunk, so a whole
    /// stream (its usage chunk and error chunk included) carries one id and one creation time.
    public init(maxEventBytes: Int = 1 << 20, id: String? = nil, model: String? = nil, created: Int? = nil,
                includeUsage: Bool = true, usageFallback: UsageFallback? = nil, redactor: Redactor = .none, choices: Int = 1) {
        self.redactor = redactor
        choicesAsked = choices
        self.includeUsage = includeUsage
        decoder = SSEDecoder(maxEventBytes: maxEventBytes, errorLinesAreEvents: true)
        // Once per request; sized up front (each growth is an allocation).
        var leading: [(key: [UInt8], value: [UInt8])] = []
        leading.reserveCapacity(3)
        if let id {
            var value: [UInt8] = []
            value.reserveCapacity(id.utf8.count + 2)
            JSONWriting.appendString(id, to: &value)
            leading.append((Self.idName, value))
        }
        if let model {
            var value: [UInt8] = []
            value.reserveCapacity(model.utf8.count + 2)
            JSONWriting.appendString(model, to: &value)
            leading.append((Self.modelName, value))
        }
        if let created { leading.append((Self.createdName, Array(String(created).utf8))) }
        self.leading = JSONScanner.LeadingMembers(leading)
        self.created = created
        self.id = id ?? ""
        self.model = model ?? ""
        self.usageFallback = usageFallback
    }

    /// Relays `bytes` (any split) into `out`. After `.done` or `.failed`, further input is ignored.
    ///
    /// Per event: one scan that checks the JSON and copies it, with this completion's `id` and
    /// `model`, straight into `out` after its `data: ` prefix (no intermediate buffer, no
    /// allocation); chunks whose accounting members are not null (usage, a finish reason, an
    /// error) are also parsed.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        guard outcome == .streaming else { return outcome }
        // The decoder is moved out while it calls back into `self` (a swap: no copy, no ARC).
        var decoder = SSEDecoder(maxEventBytes: 0)
        swap(&decoder, &self.decoder)
        defer { swap(&decoder, &self.decoder) }
        do {
            try decoder.feed(bytes) { event in relayEvent(event, into: &out) }
        } catch {
            stop = nil
            fail(.upstreamProtocol("the upstream sent an event larger than \(decoder.maxEventBytes) bytes"), into: &out)
            return outcome
        }
        switch stop {
        case .upstreamError(let error)?: fail(error, into: &out)
        case .done?: finishStream(into: &out)
        case .invalid?: fail(.upstreamProtocol("the upstream sent an event that is not valid JSON"), into: &out)
        case nil: break
        }
        stop = nil
        return outcome
    }

    private mutating func relayEvent(_ event: SSEEventView, into out: inout [UInt8]) {
        guard stop == nil, !event.data.isEmpty else { return }
        eventCame = true
        if event.isDone {
            stop = .done
            return
        }
        // A named event other than `message` is not a chat chunk: relayed without its name it
        // would reach the client as a chunk with no `choices`. One named `error` is the
        // upstream's error, whatever its data's shape.
        if !event.name.isEmpty && event.name.elementsEqual("error".utf8) {
            stop = .upstreamError(OpenAICompatibleProvider.streamError(OpenAICompatibleProvider.namedEventError(event.data), redactor: redactor))
            return
        }
        if !event.name.isEmpty && !event.name.elementsEqual("message".utf8) { return }
        // The few chunks that carry accounting or an error are parsed; the rest only scanned.
        var chunk: JSONValue?
        var checked: JSONValue?  // the chunk's usage, when the gateway had to correct it
        var renumbered = false
        if choicesAsked > 1
            || event.data.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#, orIndexOtherThanZero: true) {
            if choicesAsked <= 1, readsPlainChunks, let plain = PlainChunk(event.data) {
                relayPlain(plain, event.data, into: &out)
                return
            }
            chunk = try? JSONValue.parse(Array(event.data))
            if let error = chunk?["error"], error != .null {
                stop = .upstreamError(OpenAICompatibleProvider.streamError(error, redactor: redactor))
                return
            }
            let choice = chunk?["choices"]?.arrayValue?.first
            if let error = OpenAICompatibleProvider.choiceError(error: choice?["error"], finishReason: choice?["finish_reason"]?.stringValue) {
                stop = .upstreamError(OpenAICompatibleProvider.streamError(error, redactor: redactor))
                return
            }
            // Any choice's (an `n` > 1 stream may finish two choices in one chunk: review 69 #2).
            for choice in chunk?["choices"]?.arrayValue ?? [] {
                let finish = choice["finish_reason"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                // No index is choice 0 (as the decoders read it); one that is not an integer
                // below the `n` asked for (a string, negative, fractional, huge) is the
                // upstream's broken stream: counted as choice 0 it faked a whole answer,
                // relayed it crashed or merged choices in the SDKs (reviews 78 #7, 79 #2). Read
                // where a chunk is parsed: with `n` = 1, those that finish, count or call.
                let index = choice["index"] ?? .int(0)
                guard case .int(let number) = index, (0..<Int64(max(choicesAsked, 1))).contains(number) else {
                    stop = .upstreamError(.upstreamProtocol("the upstream sent a choice whose index is not an integer below the \(max(choicesAsked, 1)) choices asked for"))
                    return
                }
                if choicesAsked > 1 {
                    choicesSeen.insert(Int(number))
                    if finish != nil { choicesFinished.insert(Int(number)) }
                }
                if let finish {
                    finishReason = finish
                    if choicesAsked <= 1 { break }
                }
            }
            if case .object(var fields)? = chunk, let choices = fields["choices"] {
                switch toolCalls.renumber(choices: choices) {
                case .unchanged: break
                case .renumbered(let numbered):
                    fields["choices"] = numbered
                    chunk = .object(fields)
                    renumbered = true
                case .refused(let error):
                    stop = .upstreamError(error)
                    return
                }
            }
            if case .object(var fields)? = chunk, let value = fields["usage"], value != .null {
                checked = Self.checkedUsage(value)
                guard Usage.hasCount(checked ?? value) else {
                    // No count that is a number (`1e400` reads as null, `"12"`): no usage at
                    // all, so the end estimates it, as when none came (review 21 F2).
                    if fields["choices"]?.arrayValue?.isEmpty ?? true { return }
                    fields["usage"] = nil
                    appendChunk(JSONValue.object(fields).serialized(), into: &out)
                    return
                }
                usage = Self.kept(usage, checked ?? value)
                if fields["choices"]?.arrayValue?.isEmpty ?? true {
                    // OpenAI's usage chunk, after every choice's answer (usage riding on answer
                    // chunks, vLLM's continuous stats, says nothing of the other choices).
                    if finishReason != nil { usageAfterFinish = true }
                    // The usage chunk itself: accounted, shown only to a client that asked.
                    usageChunkOwed = false
                    guard includeUsage else { return }
                } else {
                    // Usage riding on an answer chunk (rare: written again, without it).
                    fields["usage"] = nil
                    usageChunkOwed = includeUsage
                    appendChunk(JSONValue.object(fields).serialized(), into: &out)
                    return
                }
            }
        }
        if renumbered, var fields = chunk?.objectValue {
            if let checked { fields["usage"] = checked }
            appendChunk(JSONValue.object(fields).serialized(), into: &out)
            return
        }
        // A usage the gateway had to correct goes out corrected, so the client, the record and
        // the metrics say the same figures (rare: usage chunks only).
        forward(event.data, leading: checked.map { leading.appending(key: Self.usageName, value: $0.serialized()) } ?? leading, into: &out)
    }

    /// A finish or usage chunk the full path would relay unchanged (`PlainChunk`), accounted as
    /// it accounts one.
    private mutating func relayPlain(_ plain: PlainChunk, _ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        if let finish = plain.finishReason { finishReason = finish }
        if let value = plain.usage {
            usage = Self.kept(usage, value)
            // OpenAI's usage chunk, after every choice's answer (see `relayEvent`).
            if finishReason != nil { usageAfterFinish = true }
            usageChunkOwed = false
            guard includeUsage else { return }
        }
        forward(bytes, leading: leading, into: &out)
    }

    /// `chunk` (a JSON object) as one event, with this completion's `id`, `model` and `created`.
    private mutating func appendChunk(_ chunk: [UInt8], into out: inout [UInt8]) {
        let leading = leading
        chunk.withUnsafeBytes { forward($0, leading: leading, into: &out) }
    }

    /// An upstream chunk to the client: at once once the answer began, else held until a chunk
    /// that carries it (see the type's comment).
    private mutating func forward(_ bytes: UnsafeRawBufferPointer, leading: JSONScanner.LeadingMembers, into out: inout [UInt8]) {
        if !readUpstreamID {
            // Once a stream: its first chunk's id, before the gateway's replaces it.
            readUpstreamID = true
            if let range = JSONScanner.rangeOfTopLevelValue(forKey: "id", in: bytes), range.count > 2, bytes[range.lowerBound] == UInt8(ascii: "\"") {
                upstreamID = UpstreamIdentifier.sanitized(UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)]),
                                                          redactor: redactor)
            }
        }
        if !answerBegan {
            if !Self.carriesAnswer(bytes) && held.count <= Self.maxHeldBytes {
                let count = forwardedEvents
                var held = self.held
                self.held = []
                _ = appendEvent(bytes, leading: leading, into: &held)
                self.held = held
                forwardedEvents = count
                return
            }
            answerBegan = true
            out.append(contentsOf: held)
            held = []
        }
        _ = appendEvent(bytes, leading: leading, into: &out)
    }

    /// One event: `data: ` and the object `bytes` with `leading` written first (checked as it is
    /// copied), made safe for a data line. False, with nothing written and the relay stopping,
    /// when `bytes` is not one JSON object. The per-token path: no allocation beyond `out`'s.
    private mutating func appendEvent(_ bytes: UnsafeRawBufferPointer, leading: JSONScanner.LeadingMembers,
                                      into out: inout [UInt8]) -> Bool {
        let lineStart = out.count
        out.append(contentsOf: "data: ".utf8)
        guard JSONScanner.appendObject(bytes, leading: leading, to: &out) else {
            out.removeSubrange(lineStart...)
            stop = .invalid
            return false
        }
        switch Self.repairsNeeded(out, from: lineStart + 6) {
        case .none:
            break
        case .escapes:
            Self.repairSurrogateEscapes(&out, from: lineStart + 6)
        case .all:
            Self.repairUTF8(&out, from: lineStart + 6)
            Self.repairSurrogateEscapes(&out, from: lineStart + 6)
            SSEEncoder.makeDataLineSafe(&out, from: lineStart + 6)
        }
        out.append(contentsOf: "\n\n".utf8)
        forwardedEvents += 1
        return true
    }

    public mutating func relay(_ bytes: [UInt8], into out: inout [UInt8]) -> Outcome {
        bytes.withUnsafeBytes { relay($0, into: &out) }
    }

    /// An OpenAI-format whole answer to a streamed request, as the stream its server would have
    /// sent (`ChatCompletionBody.asStream`), relayed to its end. Its events may be as large as
    /// the answer (bounded when it was collected); `estimatedOutputTokens`, the answer's output
    /// by its size, is what a usage estimate says when it carries none.
    public mutating func relayWhole(_ stream: [UInt8], estimatedOutputTokens: Int64?, into out: inout [UInt8]) {
        decoder = SSEDecoder(maxEventBytes: max(decoder.maxEventBytes, stream.count), errorLinesAreEvents: true)
        self.estimatedOutputTokens = estimatedOutputTokens
        _ = relay(stream, into: &out)
        upstreamDidEnd(failure: nil, into: &out)
    }

    /// The upstream body ended. Without `[DONE]` first, a body whose last chunk gave a finish
    /// reason is complete (some servers omit `[DONE]`); one with neither was cut short.
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        if let failure, !usageAfterFinish {
            fail(failure, into: &out)
        } else if everyChoiceFinished {
            // Also after a failure once its usage came after its finish: the answer is whole,
            // whatever broke after it (`[DONE]` still to come: review 71C #7, 72A).
            finishStream(into: &out)
        } else {
            fail(truncation, into: &out)
        }
    }

    /// How a stream that did not finish was cut, naming the choice left unfinished when others
    /// finished (review 78 #9: "it gave no finish reason" when choice 0 had).
    private var truncation: APIError {
        guard eventCame else {
            // Said as what it was (review 117 #5: "ended before the answer was complete" when
            // no answer had begun); still a truncation, retried and passed on as one.
            var error = APIError.upstreamTruncated()
            error.message = "The upstream's stream ended before any event with data (it sent none, or its body was not a server-sent event stream)."
            return error
        }
        guard finishReason != nil, let choice = choicesSeen.first(notIn: choicesFinished) else { return .upstreamTruncated() }
        var error = APIError.upstreamTruncated()
        error.message = "The upstream's stream ended before the answer was complete (choice \(choice) gave no finish reason)."
        return error
    }

    /// A finish came, and with `n` > 1 one for each choice that was streamed.
    private var everyChoiceFinished: Bool {
        finishReason != nil && (choicesAsked <= 1 || choicesSeen.isSubset(of: choicesFinished))
    }

    /// Ends the stream with `error` (as an error chunk with this completion's id and model:
    /// clients raise on it) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        // What was generated before the failure is still the client's to count, when it asked
        // for usage: before the error chunk its SDK raises on.
        appendOwedUsage(into: &out)
        SSEEncoder.appendData(error.streamChunk(id: id, model: model, created: created), to: &out)
        out.append(contentsOf: SSEEncoder.done)
        outcome = .failed(error)
    }

    /// `[DONE]`, after the usage chunk the client asked for; an error when nothing was answered,
    /// or when the answer never said it finished.
    private mutating func finishStream(into out: inout [UInt8]) {
        guard answerBegan else {
            fail(.upstreamProtocol("the upstream's stream ended without answering"), into: &out)
            return
        }
        guard everyChoiceFinished else {
            fail(truncation, into: &out)
            return
        }
        appendOwedUsage(into: &out)
        out.append(contentsOf: SSEEncoder.done)
        outcome = .done
    }

    /// The usage chunk the client asked for and has not had: the upstream's when it came with an
    /// answer chunk, an estimate (`"estimated": true`) when it never came.
    private mutating func appendOwedUsage(into out: inout [UInt8]) {
        if usageChunkOwed, let usage {
            usageChunkOwed = false
            let chunk = Array(#"{"object":"chat.completion.chunk","choices":[],"usage":"#.utf8)
                + usage.serialized() + [UInt8(ascii: "}")]
            let count = forwardedEvents
            appendChunk(chunk, into: &out)
            forwardedEvents = count  // not an event of the answer (and not counted when held)
        }
        // No answer went out: nothing to estimate (the attempt was not the upstream's answer, and
        // a key's charge never depends on whether its client asked to see usage: review 59B #2).
        if usage == nil, answerBegan, let fallback = usageFallback {
            usageEstimated = true
            var chunk: [UInt8] = []
            chunk.append(contentsOf: #"{"id":"#.utf8)
            JSONWriting.appendString(id, to: &chunk)
            chunk.append(contentsOf: #","object":"chat.completion.chunk","created":\#(created ?? fallback.created),"model":"#.utf8)
            JSONWriting.appendString(model, to: &chunk)
            // Estimated: the prompt from the request's size, the completion one token per event
            // (a whole answer's by its size).
            let completion = estimatedOutputTokens ?? Int64(forwardedEvents)
            var estimate = #"{"prompt_tokens":\#(fallback.promptTokens),"completion_tokens":\#(completion),"total_tokens":\#(fallback.promptTokens + completion)"#
            let cost = Usage(promptTokens: fallback.promptTokens, completionTokens: completion).costed(at: fallback.price).cost
            if cost > 0 { estimate += #","cost":"# + String(decoding: JSONValue.double(cost).serialized(), as: UTF8.self) }
            estimate += #","estimated":true}"#
            chunk.append(contentsOf: #","choices":[],"usage":\#(estimate)}"#.utf8)
            SSEEncoder.appendData(chunk, to: &out)
            usage = try? JSONValue.parse(Array(estimate.utf8))
        }
    }
}
