import Foundation
import GatewayCore
import HTTPServer

/// Gemini's API (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse` or
/// `:generateContent`) as the simulator speaks it, formatted like recorded live traffic
/// (`": "` after keys, CRLF line ends): every chunk a whole `GenerateContentResponse` with
/// running usage; function calls whole, in the last chunk with `finishReason: "STOP"` (the first
/// signed, as Gemini 3 does); errors as `{"error":{code, message, status}}`, mid-stream as raw
/// pretty-printed JSON without `data:`.
struct MockGeminiStream: MockWire {
    let script: MockScript
    private var candidates = 0
    private var thoughts = 0
    private var calls: [(id: String, name: String, arguments: String)] = []

    init(script: MockScript) { self.script = script }

    func appendStart(to out: inout [UInt8]) {}

    mutating func appendStep(_ step: MockScript.Step, to out: inout [UInt8]) {
        switch step {
        case .content(let text):
            candidates += 1
            chunk(to: &out) { out in
                out.append(contentsOf: #"{"text": "#.utf8)
                JSONWriting.appendString(text, to: &out)
                out.append(UInt8(ascii: "}"))
            }
        case .reasoning(let text):
            thoughts += 1
            chunk(to: &out) { out in
                out.append(contentsOf: #"{"text": "#.utf8)
                JSONWriting.appendString(text, to: &out)
                out.append(contentsOf: #","thought": true}"#.utf8)
            }
        case .toolCall(_, let id, let name, let arguments):
            // Gemini sends a call whole: its fragments are gathered until the finish.
            if let name {
                calls.append((id ?? "", name, arguments))
            } else if !calls.isEmpty {
                calls[calls.count - 1].arguments += arguments
            }
        }
    }

    mutating func appendFinish(to out: inout [UInt8]) {
        candidates = script.completionTokens - thoughts
        let calls = calls
        chunk(finish: true, to: &out) { out in
            guard !calls.isEmpty else {
                out.append(contentsOf: #"{"text": ""}"#.utf8)
                return
            }
            for (position, call) in calls.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: #"{"functionCall": {"name": "#.utf8)
                JSONWriting.appendString(call.name, to: &out)
                out.append(contentsOf: #","args": "#.utf8)
                out.append(contentsOf: JSONWriting.compact((try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:])).utf8)
                out.append(contentsOf: #","id": "#.utf8)
                JSONWriting.appendString(call.id, to: &out)
                out.append(UInt8(ascii: "}"))
                if position == 0 { out.append(contentsOf: #","thoughtSignature": "\#(Self.signature)""#.utf8) }
                out.append(UInt8(ascii: "}"))
            }
        }
    }

    func appendMidStreamError(to out: inout [UInt8]) {
        // The shape google-genai's stream parser handles: raw JSON lines, no `data:`, the body
        // ending at the closing brace (google-genai reads what is left at the end; the fixture
        // `gemini-error-midstream` has the line end).
        out.append(contentsOf: "{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"The model is overloaded. Please try again later.\",\n    \"status\": \"UNAVAILABLE\"\n  }\n}".utf8)
    }

    func appendMalformed(to out: inout [UInt8]) {
        out.append(contentsOf: "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"unterminated\r\n\r\n".utf8)
    }

    func wholeResponse() -> [UInt8] {
        var parts: [JSONValue] = []
        if !script.fullReasoning.isEmpty { parts.append(.object(["text": .string(script.fullReasoning), "thought": .bool(true)])) }
        if !script.fullContent.isEmpty { parts.append(.object(["text": .string(script.fullContent)])) }
        for (position, call) in script.toolCalls.enumerated() {
            var part: [String: JSONValue] = ["functionCall": .object([
                "id": .string(call.id), "name": .string(call.name),
                "args": (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:]),
            ])]
            if position == 0 { part["thoughtSignature"] = .string(Self.signature) }
            parts.append(.object(part))
        }
        let reasoning = script.steps.filter { if case .reasoning = $0 { true } else { false } }.count
        let body: JSONValue = .object([
            "candidates": .array([.object(["content": .object(["parts": .array(parts), "role": .string("model")]),
                                           "finishReason": .string(script.truncated ? "MAX_TOKENS" : "STOP"), "index": .int(0)])]),
            "usageMetadata": usage(candidates: script.completionTokens - reasoning, thoughts: reasoning),
            "modelVersion": .string(script.model), "responseId": .string(script.id),
        ])
        return body.serialized()
    }

    /// As Google answers a key it refuses: 400 INVALID_ARGUMENT, the reason in ErrorInfo.
    static let keyNotValid: HTTPResponse = {
        let body = #"{"error": {"code": 400,"message": "API key not valid. Please pass a valid API key.","status": "INVALID_ARGUMENT","#
            + #""details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo","reason": "API_KEY_INVALID","domain": "googleapis.com"}]}}"#
        return HTTPResponse(status: 400, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
    }()

    static func errorResponse(_ error: APIError) -> HTTPResponse {
        var body: [UInt8] = []
        body.append(contentsOf: #"{"error": {"code": \#(error.status),"message": "#.utf8)
        JSONWriting.appendString(error.message, to: &body)
        body.append(contentsOf: #","status": "\#(Self.status(error.status))""#.utf8)
        if error.status == 429 {
            // Google says how long to wait in the error's details only, never in a header.
            let seconds = RetryPolicy.retryAfterMilliseconds(error.headers).map { ($0 + 999) / 1000 } ?? 1
            body.append(contentsOf: #","details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo","retryDelay": "\#(seconds)s"}]"#.utf8)
        }
        body.append(contentsOf: "}}".utf8)
        let headers = error.headers.filter { !$0.0.lowercased().hasPrefix("retry-after") }
        return HTTPResponse(status: error.status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    /// The google.rpc.Code name Google gives with `status` (ai.google.dev/gemini-api/docs/troubleshooting).
    static func status(_ status: Int) -> String {
        switch status {
        case 401: "UNAUTHENTICATED"
        case 403: "PERMISSION_DENIED"
        case 404: "NOT_FOUND"
        case 429: "RESOURCE_EXHAUSTED"
        case 503: "UNAVAILABLE"
        case 504: "DEADLINE_EXCEEDED"
        case 500...: "INTERNAL"
        default: "INVALID_ARGUMENT"
        }
    }

    /// A stand-in for the opaque signature Gemini 3 puts on a turn's first function call.
    static let signature = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ=="

    private func usage(candidates: Int, thoughts: Int) -> JSONValue {
        var usage: [String: JSONValue] = ["promptTokenCount": .int(Int64(script.promptTokens)),
                                          "totalTokenCount": .int(Int64(script.promptTokens + candidates + thoughts))]
        if candidates > 0 { usage["candidatesTokenCount"] = .int(Int64(candidates)) }
        if thoughts > 0 { usage["thoughtsTokenCount"] = .int(Int64(thoughts)) }
        return .object(usage)
    }

    /// One `data:` chunk whose candidate holds the parts `parts` writes.
    private func chunk(finish: Bool = false, to out: inout [UInt8], parts: (inout [UInt8]) -> Void) {
        out.append(contentsOf: #"data: {"candidates": [{"content": {"parts": ["#.utf8)
        parts(&out)
        out.append(contentsOf: #"],"role": "model"},"#.utf8)
        if finish { out.append(contentsOf: #""finishReason": "\#(script.truncated ? "MAX_TOKENS" : "STOP")","#.utf8) }
        out.append(contentsOf: #""index": 0}],"usageMetadata": "#.utf8)
        out.append(contentsOf: JSONWriting.compact(usage(candidates: candidates, thoughts: thoughts)).utf8)
        out.append(contentsOf: #","modelVersion": "#.utf8)
        JSONWriting.appendString(script.model, to: &out)
        out.append(contentsOf: #","responseId": "#.utf8)
        JSONWriting.appendString(script.id, to: &out)
        out.append(contentsOf: "}\r\n\r\n".utf8)
    }

    /// The model and the method a Gemini path names (`/v1beta/models/{model}:{method}`, the model
    /// percent-decoded), or nil for another path.
    static func route(_ path: String) -> (model: String, stream: Bool)? {
        guard let rest = ["/v1beta/models/", "/v1/models/"].lazy.compactMap({ path.hasPrefix($0) ? path.dropFirst($0.count) : nil }).first,
              let colon = rest.lastIndex(of: ":") else { return nil }
        let method = rest[rest.index(after: colon)...]
        guard method == "streamGenerateContent" || method == "generateContent",
              let model = String(rest[..<colon]).removingPercentEncoding, !model.isEmpty else { return nil }
        return (model, method == "streamGenerateContent")
    }

    /// The request in the OpenAI shape `MockScript` and `MockRoles` read.
    static func chatShape(of request: JSONValue, model: String) -> JSONValue {
        var messages: [JSONValue] = []
        let system = (request["systemInstruction"]?["parts"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
        if !system.isEmpty { messages.append(.object(["role": .string("system"), "content": .string(system)])) }
        for content in request["contents"]?.arrayValue ?? [] {
            let parts = content["parts"]?.arrayValue ?? []
            for part in parts {
                guard let response = part["functionResponse"] else { continue }
                let output = response["response"]?["output"]?.stringValue ?? JSONWriting.compact(response["response"] ?? .object([:]))
                messages.append(.object(["role": .string("tool"), "tool_call_id": response["id"] ?? .null, "content": .string(output)]))
            }
            let calls: [JSONValue] = parts.compactMap { $0["functionCall"] }.map { call in
                .object(["id": call["id"] ?? .null, "type": .string("function"),
                         "function": .object(["name": call["name"] ?? .null, "arguments": .string(JSONWriting.compact(call["args"] ?? .object([:])))])])
            }
            let said = parts.filter { $0["thought"]?.boolValue != true }.compactMap { $0["text"]?.stringValue }.joined()
            if !said.isEmpty || !calls.isEmpty {
                var object: [String: JSONValue] = ["role": .string(content["role"]?.stringValue == "model" ? "assistant" : "user"),
                                                   "content": .string(said)]
                if !calls.isEmpty { object["tool_calls"] = .array(calls) }
                messages.append(.object(object))
            }
        }
        let tools: [JSONValue] = (request["tools"]?.arrayValue ?? []).flatMap { $0["functionDeclarations"]?.arrayValue ?? [] }
            .compactMap { $0["name"] }.map { .object(["type": .string("function"), "function": .object(["name": $0])]) }
        var shaped: [String: JSONValue] = ["model": .string(model), "messages": .array(messages), "tools": .array(tools)]
        if let limit = request["generationConfig"]?["maxOutputTokens"] { shaped["max_tokens"] = limit }
        switch request["toolConfig"]?["functionCallingConfig"]?["mode"]?.stringValue {
        case "ANY"?: shaped["tool_choice"] = .string("required")
        case "NONE"?: shaped["tool_choice"] = .string("none")
        default: break
        }
        return .object(shaped)
    }
}
