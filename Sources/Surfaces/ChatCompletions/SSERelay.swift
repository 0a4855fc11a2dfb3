import GatewayCore
import Providers

/// The streaming proxy's per-event logic, without sockets: upstream SSE bytes in, bytes for the
/// client out, when the upstream speaks the client's format (OpenAI chat completions).
///
/// Each upstream event is re-framed as `data: …\n\n` the moment its blank line arrives, its JSON
/// checked for syntax and given the completion's own `id` and `model` in the same pass
/// (`JSONScanner.appendObject`: no decoding). Comments, `id:`/`retry:` fields, event names and
/// empty events are dropped; garbage becomes an error chunk rather than something that crashes a
/// client's JSON parser. `[DONE]` ends the relay. A body that ends with neither `[DONE]` nor a
/// finish reason was cut short: an error chunk says so, never a clean end.
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
    /// Written first into every relayed chunk (and error chunk): `id`, `model`.
    private let leading: [(key: [UInt8], value: [UInt8])]
    private let id: String
    private let model: String
    private let created: Int?
    /// When the client asked for usage and the upstream sends none, an estimate is added.
    private let usageFallback: UsageFallback?
    /// An upstream's error chunk is never relayed as it is (it may echo our key back): it
    /// becomes our own, its message trimmed and redacted.
    private let redactor: Redactor
    /// Reused: one event's rewritten JSON (the per-event path allocates nothing once grown).
    private var scratch: [UInt8] = []
    /// Events forwarded to the client so far.
    public private(set) var forwardedEvents = 0
    /// The last `usage` object and non-null `finish_reason` seen, for accounting. Found by a
    /// byte search, so only the (usually one or two) chunks that carry them are parsed.
    public private(set) var usage: JSONValue?
    public private(set) var finishReason: String?
    /// The usage chunk the client got was the gateway's estimate.
    public private(set) var usageEstimated = false
    public private(set) var outcome = Outcome.streaming

    /// What to say about usage when the upstream said nothing.
    public struct UsageFallback: Sendable {
        public var promptTokens: Int64
        public var created: Int
        public init(promptTokens: Int64, created: Int) {
            self.promptTokens = promptTokens
            self.created = created
        }
    }

    /// `id`/`model`/`created` (when given) replace the upstream's in every chunk, so a whole
    /// stream (its usage chunk and error chunk included) carries one id and one creation time.
    public init(maxEventBytes: Int = 1 << 20, id: String? = nil, model: String? = nil, created: Int? = nil,
                usageFallback: UsageFallback? = nil, redactor: Redactor = .none) {
        self.redactor = redactor
        decoder = SSEDecoder(maxEventBytes: maxEventBytes)
        var leading: [(key: [UInt8], value: [UInt8])] = []
        if let id {
            var value: [UInt8] = []
            JSONWriting.appendString(id, to: &value)
            leading.append((Array("id".utf8), value))
        }
        if let model {
            var value: [UInt8] = []
            JSONWriting.appendString(model, to: &value)
            leading.append((Array("model".utf8), value))
        }
        if let created { leading.append((Array("created".utf8), Array(String(created).utf8))) }
        self.leading = leading
        self.created = created
        self.id = id ?? ""
        self.model = model ?? ""
        self.usageFallback = usageFallback
        scratch.reserveCapacity(1024)
    }

    /// Relays `bytes` (any split) into `out`. After `.done` or `.failed`, further input is ignored.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        guard outcome == .streaming else { return outcome }
        // The callback may not touch `self` while `decoder` is being mutated: it works on locals.
        var sawDone = false
        var invalid = false
        var upstreamError: APIError?
        var forwarded = 0
        var usage: JSONValue?
        var finishReason: String?
        var scratch = self.scratch
        self.scratch = []  // the buffer moves into the closure's local and back: no copy
        let leading = leading
        let redactor = redactor
        do {
            try decoder.feed(bytes) { event in
                guard !sawDone, !invalid, upstreamError == nil, !event.data.isEmpty else { return }
                if event.isDone {
                    sawDone = true
                    return
                }
                // The few chunks that carry accounting or an error are parsed; the rest only scanned.
                var chunk: JSONValue?
                if event.data.containsAny(Self.usageKey, Self.finishKey, Self.errorKey) {
                    chunk = try? JSONValue.parse(Array(event.data))
                    if let error = chunk?["error"], error != .null {
                        upstreamError = OpenAICompatibleProvider.streamError(error, redactor: redactor)
                        return
                    }
                }
                scratch.removeAll(keepingCapacity: true)
                // A usage whose cost has more places than the gateway states is given the
                // rounded cost, so the client, the record and the metrics say the same figure.
                let rounded = chunk.flatMap { Self.usageWithRoundedCost($0["usage"]) }
                guard JSONScanner.appendObject(event.data, leading: rounded.map { leading + [(Self.usageName, $0)] } ?? leading,
                                               to: &scratch) else {
                    invalid = true
                    return
                }
                SSEEncoder.appendData(scratch, to: &out)
                forwarded += 1
                if let chunk {
                    if let value = chunk["usage"], value != .null { usage = value }
                    if let reason = chunk["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue { finishReason = reason }
                }
            }
        } catch {
            self.scratch = scratch
            forwardedEvents += forwarded
            if let usage { self.usage = usage }
            fail(.upstreamProtocol("the upstream sent an event larger than \(decoder.maxEventBytes) bytes"), into: &out)
            return outcome
        }
        self.scratch = scratch
        forwardedEvents += forwarded
        if let usage { self.usage = usage }
        if let finishReason { self.finishReason = finishReason }
        if let upstreamError {
            fail(upstreamError, into: &out)
        } else if sawDone {
            finishStream(into: &out)
        } else if invalid {
            fail(.upstreamProtocol("the upstream sent an event that is not valid JSON"), into: &out)
        }
        return outcome
    }

    public mutating func relay(_ bytes: [UInt8], into out: inout [UInt8]) -> Outcome {
        bytes.withUnsafeBytes { relay($0, into: &out) }
    }

    /// The upstream body ended. Without `[DONE]` first, a body whose last chunk gave a finish
    /// reason is complete (some servers omit `[DONE]`); one with neither was cut short.
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        if let failure {
            fail(failure, into: &out)
        } else if finishReason != nil {
            finishStream(into: &out)
        } else {
            fail(.upstreamTruncated(), into: &out)
        }
    }

    /// Ends the stream with `error` (as an error chunk with this completion's id and model:
    /// clients raise on it) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        SSEEncoder.appendData(error.streamChunk(id: id, model: model, created: created), to: &out)
        out.append(contentsOf: SSEEncoder.done)
        outcome = .failed(error)
    }

    /// `[DONE]`, after an estimated usage chunk if the client asked for usage and got none.
    private mutating func finishStream(into out: inout [UInt8]) {
        if usage == nil, let fallback = usageFallback {
            usageEstimated = true
            var chunk: [UInt8] = []
            chunk.append(contentsOf: #"{"id":"#.utf8)
            JSONWriting.appendString(id, to: &chunk)
            chunk.append(contentsOf: #","object":"chat.completion.chunk","created":\#(created ?? fallback.created),"model":"#.utf8)
            JSONWriting.appendString(model, to: &chunk)
            // Estimated: the prompt from the request's size, the completion one token per event.
            let completion = Int64(forwardedEvents)
            let estimate = #"{"prompt_tokens":\#(fallback.promptTokens),"completion_tokens":\#(completion),"total_tokens":\#(fallback.promptTokens + completion),"estimated":true}"#
            chunk.append(contentsOf: #","choices":[],"usage":\#(estimate)}"#.utf8)
            SSEEncoder.appendData(chunk, to: &out)
            usage = try? JSONValue.parse(Array(estimate.utf8))
        }
        out.append(contentsOf: SSEEncoder.done)
        outcome = .done
    }
}

extension SSERelay {
    static let usageName = Array("usage".utf8)

    /// The encoded `usage` object with its `cost` rounded (`Usage.roundedCost`), or nil when
    /// there is nothing to change (no usage object, no numeric cost, or one already rounded).
    static func usageWithRoundedCost(_ usage: JSONValue?) -> [UInt8]? {
        guard case .object(var object)? = usage, let cost = object["cost"]?.doubleValue else { return nil }
        let rounded = Usage.roundedCost(cost)
        guard rounded != cost else { return nil }
        object["cost"] = .double(rounded)
        return JSONValue.object(object).serialized()
    }

    /// Key names (with their quotes), however the upstream spaces what follows them.
    static let usageKey = Array(#""usage""#.utf8)
    static let finishKey = Array(#""finish_reason""#.utf8)
    static let errorKey = Array(#""error""#.utf8)
}

extension UnsafeRawBufferPointer {
    /// Whether any needle occurs, in one pass (all start with a quote, so only quote positions
    /// are compared; inside a JSON string a quote is escaped, so only keys match). Runs on every
    /// relayed event: the cheap way to know which few chunks are worth parsing.
    func containsAny(_ first: [UInt8], _ second: [UInt8], _ third: [UInt8]) -> Bool {
        var index = 0
        while index < count {
            if self[index] == UInt8(ascii: "\"")
                && (matches(first, at: index) || matches(second, at: index) || matches(third, at: index)) { return true }
            index += 1
        }
        return false
    }

    private func matches(_ needle: [UInt8], at index: Int) -> Bool {
        guard index + needle.count <= count else { return false }
        for offset in 0..<needle.count where self[index + offset] != needle[offset] { return false }
        return true
    }
}
