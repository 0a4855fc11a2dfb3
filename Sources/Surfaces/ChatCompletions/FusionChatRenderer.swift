import Fusion
import GatewayCore
import Providers

/// A Fusion session's output as a chat completion: streamed (progress as SSE comments or named
/// events, the answer as `chat.completion.chunk`s, a usage chunk, `[DONE]`) or whole (one
/// `chat.completion` with the fusion result). One id and one model over both outer turns.
public struct FusionChatRenderer: Sendable {
    public let stream: Bool
    public let includeUsage: Bool
    private var chunks: ChatChunkWriter
    private let progress: FusionProgressEncoder
    /// The message as the client receives it (for the non-streamed message): the outer model's
    /// words before it called fusion, then the final answer, as the stream shows them.
    private var content = ""
    private var reasoning = ""
    private var refusal = ""
    private var toolCalls = ToolCallAccumulator()
    /// Fusion calls answered in a turn handed back to the client (`FusionCallRecord`), and the
    /// outer model's signed reasoning blocks (`ReasoningDetail`), in the order they came.
    private var reasoningDetails: [JSONValue] = []
    private var reasoningBlocks = ReasoningBlockBuilder()
    /// The final turn's text alone: what citations' spans index into.
    private var finalText = ""
    private var inFinalAnswer = false
    /// Unicode scalars of the message before the final answer (the outer model's words before it
    /// called fusion, and the break after them): citations index the whole message, streamed or
    /// whole.
    private var finalOffset = 0
    private var annotationsSent = false

    public init(id: String, model: String, created: Int, stream: Bool, includeUsage: Bool, namedEvents: Bool) {
        chunks = ChatChunkWriter(id: id, model: model, created: created)
        self.stream = stream
        self.includeUsage = includeUsage
        progress = FusionProgressEncoder(form: namedEvents ? .namedEvents : .comments)
    }

    /// Appends what `output` shows the client (nothing for a non-streamed response, which is
    /// rendered whole by `completion`).
    public mutating func render(_ output: FusionSessionMachine.Output, sources: SourceList, at milliseconds: Double,
                                into out: inout [UInt8]) {
        switch output {
        case .progress(let update):
            if stream { progress.append(update, at: milliseconds, to: &out) }
        case .finalAnswerStarts(let model):
            // The words before the fusion call and the answer are one message, streamed or whole:
            // a paragraph break between them, not "…it is so.Drawing on…" (review 20 B3).
            let needsBreak = !content.isEmpty && content.last?.isWhitespace == false
            if stream {
                progress.appendFinalAnswerStarts(model: model, at: milliseconds, to: &out)
                if needsBreak { chunks.append(.text("\n\n"), to: &out) }
            }
            if needsBreak { content += "\n\n" }
            finalOffset = content.unicodeScalars.count
            inFinalAnswer = true
            finalText = ""
        case .answer(let event):
            switch event {
            case .text(let text):
                content += text
                if inFinalAnswer { finalText += text }
            case .reasoning(let text):
                reasoning += text
            case .refusal(let text):
                refusal += text
            case .toolCall(let fragment):
                toolCalls.add(fragment)
            case .finish:
                if stream { appendAnnotations(sources, to: &out) }
            case .usage, .error, .reasoningSignature, .redactedReasoning, .stopDetail, .messageExtras, .providerBlock:
                break
            }
            if stream { chunks.append(event, to: &out) }
            if let block = reasoningBlocks.add(event) {
                let detail = ReasoningDetail.json(block, index: reasoningDetails.count)
                reasoningDetails.append(detail)
                if stream { chunks.appendReasoningDetails([detail], to: &out) }
            }
        case .serverToolCalls(let answered):
            let records = answered.enumerated().map { FusionCallRecord.json($1, index: reasoningDetails.count + $0) }
            reasoningDetails += records
            if stream { chunks.appendReasoningDetails(records, to: &out) }
        }
    }

    /// The end of a streamed response: citations (if the final turn ended without a finish
    /// chunk), the usage chunk when asked for, `[DONE]`.
    public mutating func renderEnd(usage: JSONValue, sources: SourceList, into out: inout [UInt8]) {
        renderEnd(sources: sources, into: &out) { JSONWriting.appendValue(usage, to: &$0) }
    }

    /// The end, with the usage (when asked for) as `usage` writes it.
    public mutating func renderEnd(sources: SourceList, into out: inout [UInt8], usage: (inout [UInt8]) -> Void) {
        appendAnnotations(sources, to: &out)
        if includeUsage { chunks.appendUsage(to: &out, usage) }
        out.append(contentsOf: SSEEncoder.done)
    }

    /// An error after the stream began: an error chunk, then `[DONE]`.
    /// An error mid-stream: the usage chunk first when the client asked for usage (what the
    /// calls so far used, as a proxied stream's failure gives it), the error chunk, `[DONE]`.
    public func renderError(_ error: APIError, into out: inout [UInt8], usage: ((inout [UInt8]) -> Void)? = nil) {
        if includeUsage, let usage { chunks.appendUsage(to: &out, usage) }
        chunks.appendError(error, to: &out)
        out.append(contentsOf: SSEEncoder.done)
    }

    /// The whole, non-streamed response body.
    public func completion(usage: JSONValue, fusion: FusionResult?, finishReason: FinishReason?, sources: SourceList, model: String? = nil) -> [UInt8] {
        var message: [String: JSONValue] = ["role": .string("assistant"),
                                            "content": content.isEmpty && !toolCalls.calls.isEmpty ? .null : .string(content)]
        if !reasoning.isEmpty { message["reasoning"] = .string(reasoning) }
        if !refusal.isEmpty {
            message["refusal"] = .string(refusal)
            if content.isEmpty { message["content"] = .null }
        }
        if !toolCalls.calls.isEmpty { message["tool_calls"] = .array(toolCalls.calls.map(\.json)) }
        if !reasoningDetails.isEmpty { message["reasoning_details"] = .array(reasoningDetails) }
        if !sources.isEmpty { message["annotations"] = .array(sources.annotations(for: finalText).map { Self.shifted($0, by: finalOffset) }) }
        var body: [String: JSONValue] = [
            "id": .string(chunks.id), "object": .string("chat.completion"), "created": .int(Int64(chunks.created)),
            "model": .string(model ?? chunks.model),
            "choices": .array([.object(["index": .int(0), "message": .object(message),
                                        "finish_reason": .string(finishReason?.rawValue ?? "stop")])]),
            "usage": usage,
        ]
        if let fusion { body["fusion"] = fusion.json }
        return JSONValue.object(body).serialized()
    }

    /// The sources as `url_citation` annotations on the final message, once, just before its finish.
    private mutating func appendAnnotations(_ sources: SourceList, to out: inout [UInt8]) {
        guard inFinalAnswer, !annotationsSent, !sources.isEmpty else { return }
        annotationsSent = true
        chunks.appendAnnotations(sources.annotations(for: finalText).map { Self.shifted($0, by: finalOffset) }, to: &out)
    }

    /// A `url_citation` annotation with its span moved `offset` scalars on.
    static func shifted(_ annotation: JSONValue, by offset: Int) -> JSONValue {
        guard offset > 0, case .object(var outer) = annotation, case .object(var citation)? = outer["url_citation"] else { return annotation }
        for key in ["start_index", "end_index"] {
            if let index = citation[key]?.intValue { citation[key] = .int(index + Int64(offset)) }
        }
        outer["url_citation"] = .object(citation)
        return .object(outer)
    }
}
