import Foundation
import GatewayCore

/// Any server speaking OpenAI's chat completions API: OpenAI, OpenRouter, vLLM, llama.cpp,
/// Ollama, the simulated models.
public struct OpenAICompatibleProvider: Provider {
    public init() {}

    public var wireFormat: WireFormat { .openAIChat }

    public func httpRequest(for request: ModelRequest, endpoint: ProviderEndpoint, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        ProviderHTTPRequest(url: endpoint.baseURL + "/chat/completions",
                            headers: Self.headers(endpoint: endpoint, stream: request.stream, extra: extraHeaders),
                            body: OpenAIRequestEncoder.body(request, maxTokensField: endpoint.maxTokensField))
    }

    /// The headers of every request to `endpoint` (also used when a client's body is relayed as is).
    public static func headers(endpoint: ProviderEndpoint, stream: Bool, extra: [(String, String)]) -> [(String, String)] {
        var headers: [(String, String)] = [
            ("Content-Type", "application/json"),
            ("Accept", stream ? "text/event-stream" : "application/json"),
        ]
        if let key = endpoint.apiKey { headers.append(("Authorization", "Bearer \(key)")) }
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
        return headers + extra
    }

    public func streamDecoder(maxEventBytes: Int, redactor: Redactor) -> any ModelStreamDecoder {
        OpenAIStreamDecoder(maxEventBytes: maxEventBytes, redactor: redactor)
    }

    public func decodeResponse(_ body: [UInt8], redactor: Redactor) throws(StreamDecodingError) -> [ModelEvent] {
        guard let json = try? JSONValue.parse(body), case .object = json else {
            throw StreamDecodingError("the upstream's response is not a JSON object")
        }
        if let error = json["error"], error != .null {
            return [.error(OpenAIErrors.streamError(error, redactor: redactor))]
        }
        var events: [ModelEvent] = []
        if let choice = json["choices"]?.arrayValue?.first {
            let message = choice["message"]
            if let reasoning = (message?["reasoning"] ?? message?["reasoning_content"])?.stringValue, !reasoning.isEmpty {
                events.append(.reasoning(reasoning))
            }
            if let text = message?["content"]?.stringValue, !text.isEmpty { events.append(.text(text)) }
            for (position, call) in (message?["tool_calls"]?.arrayValue ?? []).enumerated() {
                events.append(.toolCall(OpenAIChunk.fragment(call, position: position)))
            }
            if let reason = choice["finish_reason"]?.stringValue { events.append(.finish(FinishReason(rawValue: reason))) }
        }
        if let usage = Usage(openAI: json["usage"]) { events.append(.usage(usage)) }
        return events
    }

    public func error(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        OpenAIErrors.map(status: status, body: body, headers: headers, provider: provider, redactor: redactor)
    }

    /// An `error` object an upstream put inside its stream, as the error our client sees
    /// (trimmed, redacted).
    public static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        OpenAIErrors.streamError(error, redactor: redactor)
    }
}

/// What one `chat.completion.chunk` carries, as events.
enum OpenAIChunk {
    /// The events of one chunk, in the order a client would show them. Read through a
    /// `JSONView`: runs on every token of every inner call, and only these few members matter.
    static func events(_ chunk: JSONView, redactor: Redactor, emit: (ModelEvent) -> Void) {
        let root = chunk.root
        if let error = chunk.member("error", in: root), !chunk.isNull(error) {
            emit(.error(OpenAIErrors.streamError(chunk.value(error), redactor: redactor)))
            return
        }
        if let choices = chunk.member("choices", in: root), let choice = chunk.firstElement(in: choices) {
            if let delta = chunk.member("delta", in: choice) {
                if let reasoning = chunk.member("reasoning", in: delta) ?? chunk.member("reasoning_content", in: delta),
                   let text = chunk.string(reasoning), !text.isEmpty {
                    emit(.reasoning(text))
                }
                if let content = chunk.member("content", in: delta), let text = chunk.string(content), !text.isEmpty { emit(.text(text)) }
                if let calls = chunk.member("tool_calls", in: delta), case .array(let list) = chunk.value(calls) {
                    for (position, call) in list.enumerated() { emit(.toolCall(fragment(call, position: position))) }
                }
            }
            if let reason = chunk.member("finish_reason", in: choice), let text = chunk.string(reason) {
                emit(.finish(FinishReason(rawValue: text)))
            }
        }
        if let usage = chunk.member("usage", in: root).flatMap({ Usage(openAI: chunk.value($0)) }) { emit(.usage(usage)) }
    }

    static func fragment(_ call: JSONValue, position: Int) -> ToolCallFragment {
        // An index out of any sane range is taken as the call's position (never trusted as an Int).
        let index = call["index"]?.intValue.flatMap { (0...1024).contains($0) ? Int($0) : nil } ?? position
        return ToolCallFragment(index: index, id: call["id"]?.stringValue, name: call["function"]?["name"]?.stringValue,
                                arguments: call["function"]?["arguments"]?.stringValue)
    }
}
