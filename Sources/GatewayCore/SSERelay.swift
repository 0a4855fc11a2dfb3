/// The streaming proxy's per-event logic, without sockets: upstream SSE bytes in, bytes for the
/// client out.
///
/// Each upstream event is re-framed as `data: …\n\n` the moment its blank line arrives. Comments,
/// `id:`/`retry:` fields, event names and empty events are dropped. Payloads are checked for JSON
/// syntax with `JSONScanner` (no decoding): garbage becomes an error chunk rather than something
/// that crashes a client's JSON parser. `[DONE]` ends the relay.
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
    /// Events forwarded to the client so far.
    public private(set) var forwardedEvents = 0
    /// The last `usage` object and non-null `finish_reason` seen, for accounting. Found by a
    /// byte search, so only the (usually one or two) chunks that carry them are parsed.
    public private(set) var usage: JSONValue?
    public private(set) var finishReason: String?
    public private(set) var outcome = Outcome.streaming

    public init(maxEventBytes: Int = 1 << 20) {
        decoder = SSEDecoder(maxEventBytes: maxEventBytes)
    }

    /// Relays `bytes` (any split) into `out`. After `.done` or `.failed`, further input is ignored.
    public mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Outcome {
        guard outcome == .streaming else { return outcome }
        // The callback may not touch `self` while `decoder` is being mutated: it works on locals.
        var sawDone = false
        var invalid = false
        var forwarded = 0
        var usage: JSONValue?
        var finishReason: String?
        do {
            try decoder.feed(bytes) { event in
                guard !sawDone, !invalid, !event.data.isEmpty else { return }
                if event.isDone {
                    out.append(contentsOf: SSEEncoder.done)
                    sawDone = true
                } else if JSONScanner.isValid(event.data) {
                    SSEEncoder.appendData(event.data, to: &out)
                    forwarded += 1
                    if event.data.containsEither(Self.usageKey, Self.finishKey) {
                        let chunk = try? JSONValue.parse(Array(event.data))
                        if let value = chunk?["usage"], value != .null { usage = value }
                        if let reason = chunk?["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue { finishReason = reason }
                    }
                } else {
                    invalid = true
                }
            }
        } catch {
            forwardedEvents += forwarded
            if let usage { self.usage = usage }
            fail(.upstreamProtocol("the upstream sent an event larger than \(decoder.maxEventBytes) bytes"), into: &out)
            return outcome
        }
        forwardedEvents += forwarded
        if let usage { self.usage = usage }
        if let finishReason { self.finishReason = finishReason }
        if sawDone {
            outcome = .done
        } else if invalid {
            fail(.upstreamProtocol("the upstream sent an event that is not valid JSON"), into: &out)
        }
        return outcome
    }

    public mutating func relay(_ bytes: [UInt8], into out: inout [UInt8]) -> Outcome {
        bytes.withUnsafeBytes { relay($0, into: &out) }
    }

    /// The upstream body ended. Without a `[DONE]` first, that is either a clean end from a server
    /// that omits it (`failure == nil`: close the stream normally) or a broken stream (error chunk).
    public mutating func upstreamDidEnd(failure: APIError?, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        if let failure {
            fail(failure, into: &out)
        } else {
            out.append(contentsOf: SSEEncoder.done)
            outcome = .done
        }
    }

    /// Ends the stream with `error` (as an error chunk clients raise on) and `[DONE]`.
    public mutating func fail(_ error: APIError, into out: inout [UInt8]) {
        guard outcome == .streaming else { return }
        SSEEncoder.appendData(error.streamChunk(), to: &out)
        out.append(contentsOf: SSEEncoder.done)
        outcome = .failed(error)
    }
}

extension SSERelay {
    static let usageKey = Array(#""usage":{"#.utf8)
    static let finishKey = Array(#""finish_reason":""#.utf8)
}

extension UnsafeRawBufferPointer {
    /// Whether either needle occurs, in one pass (both start with a quote, so only quote
    /// positions are compared). Runs on every relayed event: the cheap way to know which few
    /// chunks are worth parsing for accounting.
    func containsEither(_ first: [UInt8], _ second: [UInt8]) -> Bool {
        var index = 0
        while index < count {
            if self[index] == UInt8(ascii: "\"") && (matches(first, at: index) || matches(second, at: index)) { return true }
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

extension APIError {
    public static func upstreamProtocol(_ message: String) -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_protocol_error", message: message)
    }
}
