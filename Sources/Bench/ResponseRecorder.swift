import GatewayCore

/// Turns one response, fed as it arrives, into a `RequestOutcome`: no sockets, so any timeline of
/// bytes can be replayed in a test.
///
/// Every byte is untrusted: whatever the server sends (broken SSE, an event that is not JSON, a
/// gigabyte event, a token count of 1e300) ends as a classified error, never a trap.
public struct ResponseRecorder {
    public let streamed: Bool
    private var outcome: RequestOutcome
    private var decoder: SSEDecoder
    private var phase = Phase.awaitingHead
    private var lastContentAt: UInt64?
    private var usageTokens: Int?
    /// A non-streamed body, or the first bytes of an error response (for its message).
    private var body: [UInt8] = []
    private let maxBodyBytes: Int
    /// A stream's bytes so far, and the most one may send: each content event is kept (its gap),
    /// so a server flooding events would otherwise grow the bench without bound (review 48
    /// bench #5).
    private var streamedBytes = 0
    private let maxStreamBytes: Int
    /// The stream held at least one SSE event: one that ends with bytes but none is not SSE
    /// (gzip nobody asked for, plain text), malformed, not cut short (review 64A #4).
    private var sawEvent = false

    enum Phase {
        case awaitingHead
        case errorStatus
        case streaming
        case buffering
        case afterDone
        /// A streamed request answered 2xx with a JSON body: read (its first bytes) for the error
        /// it may carry, as OpenRouter answers one that failed before streaming (review 48 bench #9).
        case jsonInsteadOfStream
        /// The outcome is an error decided mid-body: the rest is not read.
        case failed
    }

    /// Largest `completion_tokens` believed: more is a server bug or an attack, not a count.
    public static let maxUsageTokens = 100_000_000
    static let maxErrorBodyBytes = 4096
    static let maxDetailCharacters = 200
    /// What an outcome keeps of server text until its secrets are taken out: a key cut in half
    /// is not recognised as one, so the text is shortened (`shortDetail`) only after that.
    static let keptDetailCharacters = 16 << 10

    public init(target: Int, streamed: Bool, scheduledAt: UInt64, sentAt: UInt64,
                maxEventBytes: Int = 1 << 20, maxBodyBytes: Int = 16 << 20, maxStreamBytes: Int = 64 << 20) {
        self.streamed = streamed
        self.maxStreamBytes = maxStreamBytes
        outcome = RequestOutcome(target: target, scheduledAt: scheduledAt, sentAt: sentAt)
        // llama.cpp's `error:` lines are events named `error`, as the gateway reads them.
        decoder = SSEDecoder(maxEventBytes: maxEventBytes, errorLinesAreEvents: true)
        self.maxBodyBytes = maxBodyBytes
    }

    /// The final response head arrived. `contentType`: its `Content-Type`, when it sent one: a
    /// streamed request answered 2xx with anything but `text/event-stream` (a login page, a
    /// whole JSON body) is malformed, as a body that is not JSON is without streaming.
    public mutating func didReceiveHead(status: Int, contentType: String? = nil) {
        guard case .awaitingHead = phase else { return }
        outcome.status = status
        if let kind = ErrorKind.forStatus(status) {
            outcome.error = kind
            outcome.errorDetail = "HTTP \(status)"
            phase = .errorStatus
        } else if streamed, let contentType, contentType.lowercased().hasPrefix("application/json") {
            phase = .jsonInsteadOfStream
        } else if streamed, let contentType, !contentType.lowercased().hasPrefix("text/event-stream") {
            fail(.malformed, "a streamed request answered with Content-Type \(Self.clean(contentType)), not text/event-stream")
        } else {
            phase = streamed ? .streaming : .buffering
        }
    }

    /// Body bytes that arrived at `now`. Returns false when nothing more of the response is
    /// needed: the outcome is a failure already, or the stream said `[DONE]` (a client stops
    /// there, as the SDKs do: a server holding the stream open after it would otherwise hold the
    /// request until its timeout, counted a success, review 48 bench #4). The caller ends the
    /// transfer then.
    public mutating func didReceive(_ bytes: UnsafeRawBufferPointer, at now: UInt64) -> Bool {
        switch phase {
        case .awaitingHead:
            return true
        case .afterDone:
            return false
        case .failed:
            return false
        case .errorStatus, .jsonInsteadOfStream:
            // Enough for the server's message; the rest of an error body is not worth reading.
            body.append(contentsOf: bytes.prefix(max(0, Self.maxErrorBodyBytes - body.count)))
            return body.count < Self.maxErrorBodyBytes
        case .buffering:
            guard body.count + bytes.count <= maxBodyBytes else {
                fail(.malformed, "response body over \(maxBodyBytes) bytes")
                return false
            }
            body.append(contentsOf: bytes)
            return true
        case .streaming:
            streamedBytes += bytes.count
            guard streamedBytes <= maxStreamBytes else {
                fail(.malformed, "a streamed response over \(maxStreamBytes) bytes")
                return false
            }
            // The events are copied out (they are parsed as arrays anyway) because the decoder's
            // callback cannot mutate the recorder that owns the decoder.
            var events: [(isError: Bool, data: [UInt8])] = []
            var decodeError: String?
            do {
                try decoder.feed(bytes) { event in events.append((event.name.elementsEqual("error".utf8), Array(event.data))) }
            } catch let error as SSEDecoder.EventTooLarge {
                decodeError = "an SSE event over \(error.limit) bytes"
            } catch {
                decodeError = "\(error)"
            }
            if !events.isEmpty { sawEvent = true }
            for event in events {
                if event.isError {
                    failWithErrorEvent(event.data)
                } else {
                    handle(event.data, at: now)
                }
            }
            if let decodeError, phase == .streaming { fail(.malformed, decodeError) }
            return phase == .streaming
        }
    }

    /// An event named `error` (a server's failure mid-stream, llama.cpp's `error:` line): the
    /// request failed with the server's message (review 103 #6: counted `empty`, its message lost).
    private mutating func failWithErrorEvent(_ data: [UInt8]) {
        guard phase == .streaming else { return }
        let json = try? JSONValue.parse(data)
        fail(.streamError, json.map { Self.message(of: $0["error"].flatMap { $0 == .null ? nil : $0 } ?? $0) } ?? Self.excerpt(data))
    }

    private mutating func handle(_ data: [UInt8], at now: UInt64) {
        guard phase == .streaming else { return }  // after [DONE] or a failure: ignored
        if data.elementsEqual("[DONE]".utf8) {
            phase = .afterDone
            return
        }
        guard data.withUnsafeBytes({ UTF8Validation.firstInvalidOffset($0) }) == nil else {
            fail(.malformed, "an event that is not UTF-8: " + Self.excerpt(data))
            return
        }
        guard let chunk = try? JSONValue.parse(data) else {
            fail(.malformed, "an event that is not JSON: " + Self.excerpt(data))
            return
        }
        if let error = chunk["error"], error != .null {
            fail(.streamError, Self.message(of: error))
            return
        }
        if !readUsage(chunk["usage"], raw: data) { return }
        guard let choices = chunk["choices"]?.arrayValue, let choice = choices.first else { return }
        outcome.endAt = now
        if Self.hasContent(choice["delta"]) {
            if let last = lastContentAt {
                outcome.interTokenGaps.append(now >= last ? now - last : 0)
            } else {
                outcome.firstContentAt = now
            }
            lastContentAt = now
            outcome.contentEvents += 1
        }
    }

    /// Reads a usage block; false (and the outcome failed) when its token count is not sane.
    /// `raw`: the JSON it was parsed from, for a count the parser read as null because it is
    /// beyond a double's range (`1e400`: review 127 #2, silently dropped).
    private mutating func readUsage(_ usage: JSONValue?, raw: [UInt8]) -> Bool {
        guard let usage, usage != .null, let tokens = usage["completion_tokens"] else { return true }
        if tokens == .null {
            guard Self.countBeyondRange(in: raw) else { return true }
            fail(.malformed, "usage.completion_tokens is not a token count: a number beyond any range")
            return false
        }
        guard let count = tokens.intValue, (0...Int64(Self.maxUsageTokens)).contains(count) else {
            fail(.malformed, "usage.completion_tokens is not a token count: " + Self.excerpt(tokens.serialized()))
            return false
        }
        usageTokens = Int(count)
        return true
    }

    /// Whether `raw`'s `usage.completion_tokens` is a number (which the lenient parse read as
    /// null: one beyond a double's range). Found by scanning `raw`'s members and then the usage
    /// object's, keys decoded, the last duplicate winning as in the parse: a search of the bytes
    /// for the key found another object's count (review 129 #3), and a strict parse stopped at
    /// the first number beyond range, wherever it was (review 131 #3). Only when the count read
    /// as null, so rare.
    static func countBeyondRange(in raw: [UInt8]) -> Bool {
        guard let usage = JSONScanner.topLevelMembers(in: raw)?.last(where: { $0.key == "usage" })?.value,
              let count = JSONScanner.topLevelMembers(in: Array(raw[usage]))?.last(where: { $0.key == "completion_tokens" })?.value,
              usage.lowerBound + count.lowerBound < raw.count else { return false }
        let first = raw[usage.lowerBound + count.lowerBound]
        return first == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
    }

    /// The outcome is a failure already (decided by the head or the body so far).
    public var hasFailed: Bool { phase == .failed }

    private mutating func fail(_ kind: ErrorKind, _ detail: String) {
        outcome.error = kind
        outcome.errorDetail = Self.clean(detail)
        phase = .failed
    }

    /// The transfer ended at `now`: successfully at the transport level (`failure` nil) or not.
    public mutating func finish(_ failure: TransportFailure?, at now: UInt64) -> RequestOutcome {
        // A connection that breaks after [DONE] took nothing from the response.
        if outcome.error == nil, let failure, phase != .afterDone {
            switch failure {
            case .connect(let detail): fail(.connect, detail)
            case .timeout(let detail): fail(.timeout, detail)
            case .broken(let detail): fail(.truncated, detail)
            case .malformed(let detail): fail(.malformed, detail)
            }
        }
        switch phase {
        case .awaitingHead:
            if outcome.error == nil { fail(.truncated, "no response") }
        case .errorStatus:
            if !body.isEmpty { outcome.errorDetail = Self.clean("HTTP \(outcome.status ?? 0): " + Self.serverMessage(body)) }
        case .jsonInsteadOfStream:
            if let json = try? JSONValue.parse(body), let error = json["error"], error != .null {
                fail(.streamError, Self.message(of: error))
            } else {
                fail(.malformed, "a streamed request answered with Content-Type application/json, not text/event-stream: " + Self.excerpt(body))
            }
        case .streaming where !sawEvent && streamedBytes > 0:
            fail(.malformed, "no SSE event in the stream's \(streamedBytes) bytes (compressed, or not SSE)")
        case .streaming:
            fail(.truncated, "the stream ended without [DONE] after \(outcome.contentEvents) content events")
        case .afterDone:
            if outcome.contentEvents == 0 { fail(.empty, "no content event before [DONE]") }
        case .buffering:
            finishBody(at: now)
        case .failed:
            break
        }
        if outcome.error == nil {
            if let usageTokens {
                outcome.outputTokens = usageTokens
                outcome.tokenSource = .usage
            } else if streamed {
                outcome.outputTokens = outcome.contentEvents
                outcome.tokenSource = .countedEvents
            }
        }
        return outcome
    }

    /// The request was abandoned in flight (the run stopped): `interrupted`, unless its stream
    /// had already said `[DONE]`, which makes it complete.
    public mutating func abandon(at now: UInt64) -> RequestOutcome {
        if phase != .afterDone && phase != .failed { fail(.interrupted, "still in flight when the run stopped") }
        return finish(nil, at: now)
    }

    private mutating func finishBody(at now: UInt64) {
        guard let json = try? JSONValue.parse(body) else {
            fail(.malformed, "a response body that is not JSON: " + Self.excerpt(body))
            return
        }
        if let error = json["error"], error != .null {
            fail(.streamError, Self.message(of: error))
            return
        }
        guard readUsage(json["usage"], raw: body) else { return }
        guard let choice = json["choices"]?.arrayValue?.first, Self.hasContent(choice["message"]) else {
            fail(.empty, "no content in the response")
            return
        }
        outcome.endAt = now
    }

    /// Visible text, reasoning text, a refusal or a tool call: what a client sees arriving (TTFT's
    /// "first token"). An answer that is a tool call is an answer (as `vllm bench serve` counts
    /// any complete 200), timed from the call's first fragment.
    static func hasContent(_ message: JSONValue?) -> Bool {
        guard let message else { return false }
        for key in ["content", "reasoning", "reasoning_content", "refusal"] {
            if let text = message[key]?.stringValue, !text.isEmpty { return true }
        }
        return message["tool_calls"]?.arrayValue?.isEmpty == false
    }

    static func message(of error: JSONValue) -> String {
        error["message"]?.stringValue ?? error.stringValue ?? excerpt(error.serialized())
    }

    /// An error body's `error.message` when it is OpenAI-shaped, else its first bytes.
    static func serverMessage(_ body: [UInt8]) -> String {
        if let json = try? JSONValue.parse(body), let error = json["error"], error != .null { return message(of: error) }
        return excerpt(body)
    }

    static func excerpt(_ bytes: some Collection<UInt8>) -> String {
        clean(String(decoding: bytes.prefix(keptDetailCharacters), as: UTF8.self))
    }

    /// An outcome's detail as reports show it, once its secrets are out: its first characters.
    public static func shortDetail(_ detail: String) -> String {
        String(String.UnicodeScalarView(detail.unicodeScalars.prefix(maxDetailCharacters)))
    }

    /// One line of printable text, bounded: server text ends up in a terminal and in HTML.
    /// Controls and line separators (U+2028) become spaces, format characters (a bidi override,
    /// a zero-width space) are dropped: a report's line must read as what it says (review 48
    /// bench #10), and a key echoed with zero-width characters between its letters must still
    /// read as the key the redactor takes out later (review 59B #5: spaced, it came out whole).
    static func clean(_ text: String) -> String {
        var line = String.UnicodeScalarView()
        for scalar in text.unicodeScalars.prefix(keptDetailCharacters) {
            switch scalar.properties.generalCategory {
            case .format: continue
            case .control, .lineSeparator, .paragraphSeparator: line.append(" ")
            default: line.append(scalar)
            }
        }
        return String(line)
    }
}
