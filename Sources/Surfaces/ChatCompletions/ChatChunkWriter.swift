import GatewayCore
import Providers

/// Writes `chat.completion.chunk` events for one completion: every chunk carries the same
/// `id`, `model` and `created`. Hand-written JSON (not a JSON encoder): this is the per-token
/// path of every stream the gateway composes or translates (~5 µs a chunk saved).
public struct ChatChunkWriter: Sendable {
    public let id: String
    public let model: String
    public let created: Int
    private var sentRole = false
    /// `data: {"id":…,"object":…,"created":…,"model":…,` once: the same for every chunk, and
    /// writing it each time (the number's text, two escaped strings) was most of a chunk's cost.
    private let prefixBytes: [UInt8]

    public init(id: String, model: String, created: Int) {
        self.id = id
        self.model = model
        self.created = created
        var prefix: [UInt8] = []
        prefix.append(contentsOf: #"data: {"id":"#.utf8)
        JSONWriting.appendString(id, to: &prefix)
        prefix.append(contentsOf: #","object":"chat.completion.chunk","created":"#.utf8)
        prefix.append(contentsOf: String(created).utf8)
        prefix.append(contentsOf: #","model":"#.utf8)
        JSONWriting.appendString(model, to: &prefix)
        prefix.append(UInt8(ascii: ","))
        prefixBytes = prefix
    }

    /// Appends the SSE event for `event` (`data: {…}\n\n`); usage is not an event of its own
    /// here (see `appendUsage`), an error becomes an error chunk.
    public mutating func append(_ event: ModelEvent, to out: inout [UInt8]) {
        switch event {
        case .text(let text):
            appendDelta(#""content":"#, text, &out)
        case .reasoning(let text):
            appendDelta(#""reasoning":"#, text, &out)
        case .refusal(let text):
            appendDelta(#""refusal":"#, text, &out)
        case .reasoningSignature, .redactedReasoning, .stopDetail, .messageExtras, .providerBlock:
            break  // a finished signed block goes as `reasoning_details` (`ReasoningDetail`), by the caller
        case .toolCall(let fragment):
            open(&out)
            out.append(contentsOf: #""tool_calls":[{"index":"#.utf8)
            out.append(contentsOf: String(fragment.index).utf8)
            if let id = fragment.id {
                out.append(contentsOf: #","id":"#.utf8)
                JSONWriting.appendString(id, to: &out)
                out.append(contentsOf: #","type":"function""#.utf8)
            }
            out.append(contentsOf: #","function":{"#.utf8)
            if let name = fragment.name {
                out.append(contentsOf: #""name":"#.utf8)
                JSONWriting.appendString(name, to: &out)
                out.append(UInt8(ascii: ","))
            }
            out.append(contentsOf: #""arguments":"#.utf8)
            JSONWriting.appendString(fragment.arguments ?? "", to: &out)
            out.append(contentsOf: "}}]".utf8)
            close(finish: nil, &out)
        case .finish(let reason):
            open(&out, roleless: true)
            close(finish: reason.rawValue, &out)
        case .usage:
            break
        case .error(let error):
            appendError(error, to: &out)
        }
    }

    /// A chunk whose delta carries `annotations` (url_citation objects).
    public mutating func appendAnnotations(_ annotations: [JSONValue], to out: inout [UInt8]) {
        guard !annotations.isEmpty else { return }
        open(&out, roleless: true)
        out.append(contentsOf: #""annotations":"#.utf8)
        out.append(contentsOf: JSONValue.array(annotations).serialized())
        close(finish: nil, &out)
    }

    /// A chunk whose delta carries `reasoning_details` (OpenRouter's records of server tool calls,
    /// signed reasoning blocks).
    public mutating func appendReasoningDetails(_ details: [JSONValue], to out: inout [UInt8]) {
        guard !details.isEmpty else { return }
        open(&out, roleless: true)
        out.append(contentsOf: #""reasoning_details":"#.utf8)
        out.append(contentsOf: JSONValue.array(details).serialized())
        close(finish: nil, &out)
    }

    /// The usage chunk (`choices: []`), sent last when the client asked for usage.
    public func appendUsage(_ usage: JSONValue, to out: inout [UInt8]) {
        appendUsage(to: &out) { JSONWriting.appendValue(usage, to: &$0) }
    }

    /// A usage chunk whose usage object `usage` writes.
    public func appendUsage(to out: inout [UInt8], _ usage: (inout [UInt8]) -> Void) {
        prefix(&out)
        out.append(contentsOf: #""choices":[],"usage":"#.utf8)
        usage(&out)
        out.append(contentsOf: "}\n\n".utf8)
    }

    /// A final chunk carrying `error` (OpenAI SDKs raise on it), with this stream's id and model.
    public func appendError(_ error: APIError, to out: inout [UInt8]) {
        SSEEncoder.appendData(error.streamChunk(id: id, model: model, created: created), to: &out)
    }

    private func prefix(_ out: inout [UInt8]) {
        out.append(contentsOf: prefixBytes)
    }

    /// A chunk whose delta is one text field (`key` written up to its value); nothing for "".
    private mutating func appendDelta(_ key: StaticString, _ text: String, _ out: inout [UInt8]) {
        guard !text.isEmpty else { return }
        open(&out)
        out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        JSONWriting.appendString(text, to: &out)
        close(finish: nil, &out)
    }

    private mutating func open(_ out: inout [UInt8], roleless: Bool = false) {
        prefix(&out)
        out.append(contentsOf: #""choices":[{"index":0,"delta":{"#.utf8)
        if !sentRole && !roleless {
            sentRole = true
            out.append(contentsOf: #""role":"assistant","#.utf8)
        }
    }

    private func close(finish: String?, _ out: inout [UInt8]) {
        out.append(contentsOf: #"},"finish_reason":"#.utf8)
        if let finish { JSONWriting.appendString(finish, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: "}]}\n\n".utf8)
    }
}
