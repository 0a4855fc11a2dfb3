import Fusion
import GatewayCore
import Providers

/// What an `InnerCall` reports through its session's fan-in channel: one record per model event,
/// then `ended` or `failed`. The record's kind says which; the bytes are a compact binary
/// encoding, written and read by hand: this is the per-token path of every panel member, and the
/// session's loop reads it without parsing any JSON.
enum InnerCallRecord {
    /// Kinds 0 and 1 are `ClientStream`'s own (client bytes, end of response).
    static let ended: UInt8 = 4
    static let failed: UInt8 = 5
    static let text: UInt8 = 10
    static let reasoning: UInt8 = 11
    static let toolCall: UInt8 = 12
    static let usage: UInt8 = 13
    static let finish: UInt8 = 14
    static let error: UInt8 = 15
    static let reasoningSignature: UInt8 = 16
    static let redactedReasoning: UInt8 = 17
    static let refusal: UInt8 = 18
    /// A piece of the signature or encrypted data in the next `reasoningSignature` or
    /// `redactedReasoning` record (large ones are split, as text is).
    static let opaquePart: UInt8 = 19
    /// An Anthropic block the neutral events do not model (a server tool's), its start and
    /// deltas as JSON text (split as opaque data is) and its end: the outer model's turns show
    /// them to a Messages client, and its final turn carries them back (review 16 #6).
    static let providerStart: UInt8 = 20
    static let providerDelta: UInt8 = 21
    static let providerStop: UInt8 = 22
    /// The prompt's counts the upstream gave before its answer (Anthropic's `message_start`): no
    /// event, but what a call cut before its usage is charged for its prompt (not its size).
    static let promptUsage: UInt8 = 23
    /// An Anthropic upstream's own stop (`stop_sequence` and its sequence, `pause_turn`) and what
    /// its message says of itself (`container`, a usage's `service_tier`): the outer model's
    /// answering turn gives them to a Messages client, as a proxied answer does (review 72B #1:
    /// dropped here, the session never saw them).
    static let stopDetail: UInt8 = 24
    static let messageExtras: UInt8 = 25
    /// The attempt's upstream answered 2xx: it took the prompt. Its payload is the call's summary
    /// so far (status, request id, route), for the record of a call the session then cuts.
    static let accepted: UInt8 = 26
    /// The attempt's whole request went out (`UpstreamTransfer.onRequestSent`): a call cut
    /// before its upstream answers is charged its prompt. Its payload is `accepted`'s (this
    /// attempt's count and route, no status yet: a retry's row no longer shows the refusal's).
    static let requestSent: UInt8 = 27
    /// The attempt's upstream answered with a status not 2xx: it did not take the prompt (a
    /// later attempt's `requestSent` says so again; this attempt's never comes after it). Its
    /// payload is `accepted`'s: the call's summary so far, for the record of a call then cut.
    static let refused: UInt8 = 28

    /// Text longer than this is sent as several records, split between characters, so no delta
    /// is too large for the ring (whose records are at most its capacity).
    static let maxTextBytes = 8 * 1024
    /// A reasoning block's signature or encrypted data goes as `opaquePart` records of this size
    /// and a last record of its own kind, which the session joins (`OpaqueAssembly`).
    static let opaquePieceBytes = 8 * 1024
    /// Beyond this (the upstream's event size bounds it first) a signature or data is not passed
    /// on, and the outer model's final turn goes without its thinking block
    /// (`AnthropicRequestEncoder` then asks it without thinking).
    static let maxOpaqueBytes = 4 << 20

    /// Calls `body` with each record (kind, bytes) for `event`.
    /// A text, reasoning or refusal delta that fits one record, its bytes handed as they stand
    /// in the string (the per-token path: no array made per delta). False for any other event
    /// (`encode` writes it).
    static func encodeSmallText(_ event: ModelEvent, _ body: (UInt8, UnsafeRawBufferPointer) -> Void) -> Bool {
        let kind: UInt8
        var text: String
        switch event {
        case .text(let value): (kind, text) = (Self.text, value)
        case .reasoning(let value): (kind, text) = (reasoning, value)
        case .refusal(let value): (kind, text) = (refusal, value)
        default: return false
        }
        guard text.utf8.count <= maxTextBytes else { return false }
        text.withUTF8 { body(kind, UnsafeRawBufferPointer($0)) }
        return true
    }

    static func encode(_ event: ModelEvent, _ body: (UInt8, [UInt8]) -> Void) {
        switch event {
        case .text(let text): splitText(text) { body(Self.text, $0) }
        case .reasoning(let text): splitText(text) { body(reasoning, $0) }
        case .refusal(let text): splitText(text) { body(refusal, $0) }
        case .reasoningSignature(let signature) where signature.utf8.count <= maxOpaqueBytes:
            splitOpaque(Array(signature.utf8), last: reasoningSignature, body)  // the outer model's final turn sends its thinking back
        case .redactedReasoning(let data) where data.utf8.count <= maxOpaqueBytes:
            splitOpaque(Array(data.utf8), last: redactedReasoning, body)
        case .providerBlock(.start(let block)): splitJSON(block, last: providerStart, body)
        case .providerBlock(.delta(let delta)): splitJSON(delta, last: providerDelta, body)
        case .providerBlock(.stop): body(providerStop, [])
        case .reasoningSignature, .redactedReasoning: break  // beyond any real signature
        case .stopDetail(let reason, let sequence):
            var out: [UInt8] = []
            appendString(reason, &out)
            appendString(sequence, &out)
            body(stopDetail, out)
        case .messageExtras(let extras):
            splitJSON(.object(["message": .object(extras.message), "usage": .object(extras.usage)]), last: messageExtras, body)
        case .toolCall(let fragment):
            // Long arguments (Gemini sends a call's whole, a `write_file` of 32 KB) as fragments
            // of the same call, the first with its id and name, as text is split: one record
            // larger than the ring failed the call (review 59C #2).
            // Per token: a fragment within a record is written as it is, no copy of its text.
            guard let arguments = fragment.arguments, arguments.utf8.count > maxTextBytes else {
                body(toolCall, encodeToolCall(fragment))
                return
            }
            var first = true
            splitText(arguments) { piece in
                let part = String(decoding: piece, as: UTF8.self)
                body(toolCall, encodeToolCall(first ? ToolCallFragment(index: fragment.index, id: fragment.id, name: fragment.name, arguments: part)
                                                    : ToolCallFragment(index: fragment.index, arguments: part)))
                first = false
            }
        case .usage(let usage): body(Self.usage, encodeUsage(usage))
        case .finish(let reason): body(finish, Array(reason.rawValue.utf8))
        case .error(let apiError): body(error, encodeFailure(apiError, .upstreamError))
        }
    }

    private static func encodeToolCall(_ fragment: ToolCallFragment) -> [UInt8] {
        var out: [UInt8] = []
        appendInt(UInt64(truncatingIfNeeded: fragment.index), &out)
        appendString(fragment.id, &out)
        appendString(fragment.name, &out)
        appendString(fragment.arguments, &out)
        return out
    }

    static func encodeUsage(_ usage: Usage) -> [UInt8] {
        var out: [UInt8] = []
        for count in [usage.promptTokens, usage.completionTokens, usage.totalTokens, usage.reasoningTokens, usage.cachedTokens,
                      usage.cacheWriteTokens] {
            appendInt(UInt64(bitPattern: count), &out)
        }
        appendInt(usage.cost.bitPattern, &out)
        return out
    }

    /// Short or garbled bytes read as zeros (as every record here does), never trap.
    static func decodeUsage(_ bytes: UnsafeRawBufferPointer) -> Usage {
        var reader = Reader(bytes: bytes)
        let counts = (0..<6).map { _ in Int64(bitPattern: reader.int()) }
        return Usage(promptTokens: counts[0], completionTokens: counts[1], totalTokens: counts[2],
                     reasoningTokens: counts[3], cachedTokens: counts[4], cacheWriteTokens: counts[5],
                     cost: Double(bitPattern: reader.int()))
    }

    /// Joins the pieces of large signatures, encrypted data and provider blocks (`opaquePart`)
    /// per call, on the session's loop: the events of each call's records, in order.
    struct OpaqueAssembly {
        private var parts: [UInt16: [UInt8]] = [:]

        /// The event a record of an event kind makes (nil for a piece, or a kind that is none).
        mutating func event(from producer: UInt16, kind: UInt8, _ bytes: UnsafeRawBufferPointer) -> ModelEvent? {
            if kind == opaquePart {
                parts[producer, default: []].append(contentsOf: bytes)
                return nil
            }
            guard let pieces = parts.removeValue(forKey: producer) else { return decodeEvent(kind: kind, bytes) }
            return (pieces + bytes).withUnsafeBytes { decodeEvent(kind: kind, $0) }
        }

        /// The call ended: pieces it left are dropped.
        mutating func end(_ producer: UInt16) { parts[producer] = nil }
    }

    /// A provider block's part as JSON text, split as opaque data is; beyond `maxOpaqueBytes`
    /// (the upstream's event size bounds it first) an empty object, which is read as no event.
    private static func splitJSON(_ value: JSONValue, last: UInt8, _ body: (UInt8, [UInt8]) -> Void) {
        let bytes = value.serialized()
        splitOpaque(bytes.count <= maxOpaqueBytes ? bytes : Array("{}".utf8), last: last, body)
    }

    /// `bytes` as `opaquePart` records and a last one of kind `last`.
    private static func splitOpaque(_ bytes: [UInt8], last: UInt8, _ body: (UInt8, [UInt8]) -> Void) {
        var start = 0
        while bytes.count - start > opaquePieceBytes {
            body(opaquePart, Array(bytes[start..<start + opaquePieceBytes]))
            start += opaquePieceBytes
        }
        body(last, Array(bytes[start...]))
    }

    /// The event of a record of kind `kind` (nil for the kinds that are not events).
    static func decodeEvent(kind: UInt8, _ bytes: UnsafeRawBufferPointer) -> ModelEvent? {
        var reader = Reader(bytes: bytes)
        switch kind {
        case text: return .text(String(decoding: bytes, as: UTF8.self))
        case reasoning: return .reasoning(String(decoding: bytes, as: UTF8.self))
        case refusal: return .refusal(String(decoding: bytes, as: UTF8.self))
        case reasoningSignature: return .reasoningSignature(String(decoding: bytes, as: UTF8.self))
        case redactedReasoning: return .redactedReasoning(String(decoding: bytes, as: UTF8.self))
        case toolCall:
            let index = Int(truncatingIfNeeded: reader.int())
            return .toolCall(ToolCallFragment(index: index, id: reader.string(), name: reader.string(), arguments: reader.string()))
        case usage: return .usage(decodeUsage(bytes))
        case providerStart, providerDelta:
            // One the encoder left out (over `maxOpaqueBytes`) is no event: its stop then closes nothing.
            guard let json = try? JSONValue.parse(Array(bytes)), json["type"]?.stringValue != nil else { return nil }
            return .providerBlock(kind == providerStart ? .start(json) : .delta(json))
        case providerStop: return .providerBlock(.stop)
        case stopDetail:
            guard let reason = reader.string() else { return nil }
            return .stopDetail(reason: reason, sequence: reader.string())
        case messageExtras:
            guard let json = try? JSONValue.parse(Array(bytes)) else { return nil }
            let extras = AnthropicMessageExtras(message: json["message"]?.objectValue ?? [:], usage: json["usage"]?.objectValue ?? [:])
            return extras.message.isEmpty && extras.usage.isEmpty ? nil : .messageExtras(extras)
        case finish: return .finish(FinishReason(rawValue: String(decoding: bytes, as: UTF8.self)))
        case error: return .error(decodeFailure(bytes).0)
        default: return nil
        }
    }

    /// How a call went on the wire, for its record and the overhead: reported with its end.
    struct Summary: Sendable, Equatable {
        /// The upstream's last HTTP status (0: none).
        var httpStatus = 0
        /// Upstream requests made (retries and fallbacks included).
        var attempts = 0
        /// Which of the call's routes answered last (0: its own model; more: a fallback).
        var route = 0
        /// From its first upstream request to its end (monotonic ns; 0: it never started one).
        var upstreamStart: UInt64 = 0
        var upstreamEnd: UInt64 = 0
        /// The answering attempt's ids as its upstream gave them (`UpstreamIdentifier`): the
        /// answer's id and the response's request id header.
        var upstreamID: String?
        var upstreamRequestID: String?
    }

    static func encodeEnd(_ end: StreamEnd, _ summary: Summary = Summary()) -> [UInt8] {
        var out: [UInt8] = [end == .complete ? 1 : 0]
        appendSummary(summary, &out)
        return out
    }

    static func encodeAccepted(_ summary: Summary) -> [UInt8] {
        var out: [UInt8] = []
        appendSummary(summary, &out)
        return out
    }

    static func decodeAccepted(_ bytes: UnsafeRawBufferPointer) -> Summary {
        var reader = Reader(bytes: bytes)
        return reader.summary()
    }

    static func decodeEnd(_ bytes: UnsafeRawBufferPointer) -> (StreamEnd, Summary) {
        var reader = Reader(bytes: bytes)
        reader.offset = min(1, bytes.count)
        return (bytes.first == 1 ? .complete : .truncated, reader.summary())
    }

    static func encodeFailure(_ error: APIError, _ reason: MemberFailureReason, _ summary: Summary = Summary()) -> [UInt8] {
        var out: [UInt8] = []
        appendString(reason.rawValue, &out)
        appendInt(UInt64(truncatingIfNeeded: error.status), &out)
        appendString(error.type, &out)
        appendString(error.code, &out)
        appendString(error.message, &out)
        appendSummary(summary, &out)
        // The upstream's wait, as `UpstreamErrors.retryHeaders` read it: for the client's error.
        for name in retryHeaderNames { appendString(error.headers.first { $0.0 == name }?.1, &out) }
        appendString(error.origin.rawValue, &out)  // an upstream's error stays one (review 65 #1)
        appendString(error.detail, &out)  // curl's whole text, for the log line only
        return out
    }

    /// The only headers a failure carries (`UpstreamErrors.retryHeaders`).
    private static let retryHeaderNames = ["retry-after-ms", "Retry-After"]

    static func decodeFailure(_ bytes: UnsafeRawBufferPointer) -> (APIError, MemberFailureReason, Summary) {
        var reader = Reader(bytes: bytes)
        let reason = MemberFailureReason(rawValue: reader.string() ?? "") ?? .upstreamError
        let status = Int(truncatingIfNeeded: reader.int())
        var error = APIError(status: (100...599).contains(status) ? status : 502, type: reader.string() ?? "upstream_error",
                             code: reader.string() ?? "upstream_error", message: reader.string() ?? "upstream failure")
        let summary = reader.summary()
        for name in retryHeaderNames {
            if let value = reader.string(), (1...12).contains(value.utf8.count), value.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
                error.headers.append((name, value))
            }
        }
        error.origin = reader.string().flatMap(APIError.Origin.init(rawValue:)) ?? .gateway
        error.detail = reader.string()
        return (error, reason, summary)
    }

    private static func appendSummary(_ summary: Summary, _ out: inout [UInt8]) {
        for value in [UInt64(truncatingIfNeeded: summary.httpStatus), UInt64(truncatingIfNeeded: summary.attempts),
                      UInt64(truncatingIfNeeded: summary.route), summary.upstreamStart, summary.upstreamEnd] {
            appendInt(value, &out)
        }
        appendString(summary.upstreamID, &out)
        appendString(summary.upstreamRequestID, &out)
    }

    private static func splitText(_ text: String, _ body: ([UInt8]) -> Void) {
        let utf8 = Array(text.utf8)
        guard utf8.count > maxTextBytes else {
            body(utf8)
            return
        }
        var start = 0
        while start < utf8.count {
            var end = min(start + maxTextBytes, utf8.count)
            // Back off to a character boundary (never split a UTF-8 sequence).
            while end < utf8.count && end > start + 1 && utf8[end] & 0xC0 == 0x80 { end -= 1 }
            body(Array(utf8[start..<end]))
            start = end
        }
    }

    private static func appendInt(_ value: UInt64, _ out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Length-prefixed; `UInt32.max` marks nil.
    private static func appendString(_ value: String?, _ out: inout [UInt8]) {
        guard let value else {
            withUnsafeBytes(of: UInt32.max.littleEndian) { out.append(contentsOf: $0) }
            return
        }
        withUnsafeBytes(of: UInt32(value.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: value.utf8)
    }

    /// Reads what the encoder wrote; a short record reads as zeros and nils (never traps).
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        mutating func int() -> UInt64 {
            guard offset + 8 <= bytes.count else { return 0 }
            var value: UInt64 = 0
            withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 8)])) }
            offset += 8
            return UInt64(littleEndian: value)
        }

        /// A summary; out-of-range numbers (never written by the encoder) read as zero.
        mutating func summary() -> Summary {
            func small(_ value: UInt64) -> Int { value <= 1_000_000 ? Int(value) : 0 }
            return Summary(httpStatus: small(int()), attempts: small(int()), route: small(int()), upstreamStart: int(), upstreamEnd: int(),
                           upstreamID: string(), upstreamRequestID: string())
        }

        mutating func string() -> String? {
            guard offset + 4 <= bytes.count else { return nil }
            var length: UInt32 = 0
            withUnsafeMutableBytes(of: &length) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 4)])) }
            offset += 4
            length = UInt32(littleEndian: length)
            guard length != UInt32.max else { return nil }
            let end = min(offset + Int(length), bytes.count)
            defer { offset = end }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), as: UTF8.self)
        }
    }
}
