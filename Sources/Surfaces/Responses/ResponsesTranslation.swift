import Foundation
import GatewayCore
import Providers

/// The Responses API as a `NeutralStreamWriter` (a proxied answer, not Fusion's): the writer's
/// events, `response.completed` with the usage (the estimate flagged `estimated`), or
/// `response.failed`.
public struct ResponsesTranslation: NeutralStreamWriter {
    public var writer: ResponsesStreamWriter

    public init(writer: ResponsesStreamWriter) {
        self.writer = writer
    }

    /// Nothing: `response.created` goes out with the answer's first event (the writer starts
    /// itself), so an upstream that answers 200 and then fails before any answer is answered
    /// with its own HTTP status, as on chat and Messages (review 107 #1: a 200 stream ending in
    /// `response.failed`, which no SDK retries), and a fallback that answers is the model the
    /// Response names.
    public mutating func appendStart(to out: inout [UInt8]) {}

    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        writer.append(event, to: &out)
    }

    public mutating func appendEnd(usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        writer.appendEnd(usage: Self.usageJSON(usage, estimated: estimated), completedAt: Self.now(), to: &out)
    }

    /// `response.failed` with the usage so far.
    public mutating func appendFailure(_ error: APIError, usage: Usage?, estimated: Bool, to out: inout [UInt8]) {
        writer.appendFailure(error, usage: usage.map { Self.usageJSON($0, estimated: estimated) } ?? nil, to: &out)
    }

    /// A fragment for a call already done (an upstream that went back to it after another
    /// item): no item can take it, and dropping it would change the call.
    public mutating func refusal(ofToolCall fragment: ToolCallFragment) -> APIError? {
        Self.refusal(ofToolCall: fragment, in: writer)
    }

    /// `refusal(ofToolCall:)` for `writer`'s answer (a proxied one, or a Fusion session's).
    public static func refusal(ofToolCall fragment: ToolCallFragment, in writer: ResponsesStreamWriter) -> APIError? {
        // An empty or white-space fragment changes nothing (some servers send one at the end).
        guard writer.isClosedCall(fragment.index), !(fragment.arguments ?? "").allSatisfy(\.isWhitespace) else { return nil }
        return .upstreamProtocol("the upstream went back to tool call \(fragment.index) after it had ended")
    }

    /// A stream that ended inside a call's arguments is no completed response (review 64B #3: it
    /// was `response.completed` with arguments no tool runner could read; Messages failed it).
    public func refusalAtEnd() -> APIError? { Self.refusalAtEnd(of: writer) }

    /// `writer`'s answer ended inside a call's arguments (streamed, or a whole answer: review 65 #3).
    public static func refusalAtEnd(of writer: ResponsesStreamWriter) -> APIError? {
        // A call whose name never came: no client can run or answer it (review 71C #9).
        if writer.hasCallWithoutName { return .upstreamProtocol("the upstream sent a tool call without a name") }
        // Cut short, or never JSON: the message says either (review 71C #12).
        return writer.callWithIncompleteArguments().map { name in
            APIError(status: 502, type: "upstream_error", code: "invalid_tool_arguments",
                     message: "The model called '\(name)' with arguments that are not a whole JSON value (cut short, or not JSON).")
        }
    }

    public static func usageJSON(_ usage: Usage?, estimated: Bool) -> JSONValue? {
        usage.map { ResponsesUsage.json($0, extra: estimated ? ["estimated": .bool(true)] : [:]) }
    }

    /// Unix seconds (`completed_at`), from the clock `created_at` is read from: glibc's `time()`
    /// reads a coarser one, which can still say the previous second (review 64B #4:
    /// `completed_at` a second before `created_at`).
    public static func now() -> Int { Int(Date().timeIntervalSince1970) }
}
