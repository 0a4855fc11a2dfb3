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
    /// The events of one chunk, in the order a client would show them.
    static func events(_ chunk: JSONValue, redactor: Redactor, emit: (ModelEvent) -> Void) {
        if let error = chunk["error"], error != .null {
            emit(.error(OpenAIErrors.streamError(error, redactor: redactor)))
            return
        }
        if let choice = chunk["choices"]?.arrayValue?.first {
            if let delta = choice["delta"] {
                if let reasoning = (delta["reasoning"] ?? delta["reasoning_content"])?.stringValue, !reasoning.isEmpty {
                    emit(.reasoning(reasoning))
                }
                if let text = delta["content"]?.stringValue, !text.isEmpty { emit(.text(text)) }
                for (position, call) in (delta["tool_calls"]?.arrayValue ?? []).enumerated() {
                    emit(.toolCall(fragment(call, position: position)))
                }
            }
            if let reason = choice["finish_reason"]?.stringValue { emit(.finish(FinishReason(rawValue: reason))) }
        }
        if let usage = Usage(openAI: chunk["usage"]) { emit(.usage(usage)) }
    }

    static func fragment(_ call: JSONValue, position: Int) -> ToolCallFragment {
        // An index out of any sane range is taken as the call's position (never trusted as an Int).
        let index = call["index"]?.intValue.flatMap { (0...1024).contains($0) ? Int($0) : nil } ?? position
        return ToolCallFragment(index: index, id: call["id"]?.stringValue, name: call["function"]?["name"]?.stringValue,
                                arguments: call["function"]?["arguments"]?.stringValue)
    }
}
