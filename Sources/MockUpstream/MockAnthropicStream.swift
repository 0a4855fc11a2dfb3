import GatewayCore
import HTTPServer

/// Anthropic's Messages API (`POST /v1/messages`) as the simulator speaks it: `message_start`
/// and a `ping` first, one content block per run of text, thinking (with its signature before
/// the block stops) or tool call, `message_delta` with the stop reason and usage,
/// `message_stop`; errors as `{"type":"error","error":{type, message}}`, mid-stream as an
/// `error` event (`overloaded_error`, as the API sends under load).
struct MockAnthropicStream: MockWire {
    let script: MockScript
    private enum Block: Equatable { case text, thinking, tool(Int) }
    private var open: Block?
    private var blockIndex = -1

    init(script: MockScript) { self.script = script }

    func appendPing(to out: inout [UInt8]) {
        event("ping", to: &out) { $0.append(contentsOf: #"{"type": "ping"}"#.utf8) }
    }

    mutating func appendStart(to out: inout [UInt8]) {
        event("message_start", to: &out) { out in
            out.append(contentsOf: #"{"type":"message_start","message":{"id":"\#(messageID)","type":"message","role":"assistant","model":"#.utf8)
            JSONWriting.appendString(script.model, to: &out)
            out.append(contentsOf: #","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":\#(script.promptTokens),"output_tokens":1,"service_tier":"standard"}}}"#.utf8)
        }
        event("ping", to: &out) { $0.append(contentsOf: #"{"type": "ping"}"#.utf8) }
        if let query = script.serverSearch { appendServerSearch(query, to: &out) }
    }

    /// `outer:server_search=1`: the turn first runs Anthropic's web search, as the API streams a
    /// server tool: its `server_tool_use` block (the input as `input_json_delta`), then its
    /// `web_search_tool_result` block whole.
    private mutating func appendServerSearch(_ query: String, to out: inout [UInt8]) {
        let (use, result) = Self.serverSearchBlocks(query)
        var start = use.objectValue ?? [:]
        start["input"] = .object([:])
        blockStart(.object(start), to: &out)
        delta(to: &out) { out in
            out.append(contentsOf: #"{"type":"input_json_delta","partial_json":"#.utf8)
            JSONWriting.appendString(String(decoding: (use["input"] ?? .object([:])).serialized(), as: UTF8.self), to: &out)
        }
        blockStop(to: &out)
        blockStart(result, to: &out)
        blockStop(to: &out)
    }

    private mutating func blockStart(_ block: JSONValue, to out: inout [UInt8]) {
        blockIndex += 1
        event("content_block_start", to: &out) { out in
            out.append(contentsOf: #"{"type":"content_block_start","index":\#(blockIndex),"content_block":"#.utf8)
            JSONWriting.appendValue(block, to: &out)
            out.append(UInt8(ascii: "}"))
        }
    }

    static let serverSearchID = "srvtoolu_mock_1"

    /// The search's two blocks, whole.
    static func serverSearchBlocks(_ query: String) -> (use: JSONValue, result: JSONValue) {
        (.object(["type": .string("server_tool_use"), "id": .string(serverSearchID), "name": .string("web_search"),
                  "input": .object(["query": .string(query)])]),
         .object(["type": .string("web_search_tool_result"), "tool_use_id": .string(serverSearchID), "content": .array([
             .object(["type": .string("web_search_result"), "url": .string("https://search.example/result"), "title": .string("A result"),
                      "encrypted_content": .string("bW9jay1wYWdl"), "page_age": .null]),
         ])]))
    }

    mutating func appendStep(_ step: MockScript.Step, to out: inout [UInt8]) {
        switch step {
        case .content(let text):
            openBlock(.text, to: &out) { $0.append(contentsOf: #"{"type":"text","text":""}"#.utf8) }
            delta(to: &out) { out in
                out.append(contentsOf: #"{"type":"text_delta","text":"#.utf8)
                JSONWriting.appendString(text, to: &out)
            }
        case .reasoning(let text):
            openBlock(.thinking, to: &out) { $0.append(contentsOf: #"{"type":"thinking","thinking":""}"#.utf8) }
            delta(to: &out) { out in
                out.append(contentsOf: #"{"type":"thinking_delta","thinking":"#.utf8)
                JSONWriting.appendString(text, to: &out)
            }
        case .toolCall(let index, let id, let name, let arguments):
            if open != .tool(index) {
                openBlock(.tool(index), to: &out) { out in
                    out.append(contentsOf: #"{"type":"tool_use","id":"#.utf8)
                    JSONWriting.appendString(id ?? "toolu_mock_\(index)", to: &out)
                    out.append(contentsOf: #","name":"#.utf8)
                    JSONWriting.appendString(name ?? "", to: &out)
                    out.append(contentsOf: #","input":{}}"#.utf8)
                }
            }
            delta(to: &out) { out in
                out.append(contentsOf: #"{"type":"input_json_delta","partial_json":"#.utf8)
                JSONWriting.appendString(arguments, to: &out)
            }
        }
    }

    mutating func appendFinish(to out: inout [UInt8]) {
        closeBlock(to: &out)
        let (reason, sequence) = script.anthropicStop
        event("message_delta", to: &out) {
            $0.append(contentsOf: #"{"type":"message_delta","delta":{"stop_reason":"\#(reason)","stop_sequence":\#(sequence.map { "\"\($0)\"" } ?? "null")},"usage":{"output_tokens":\#(script.completionTokens)}}"#.utf8)
        }
        event("message_stop", to: &out) { $0.append(contentsOf: #"{"type":"message_stop"}"#.utf8) }
    }

    mutating func appendMidStreamError(to out: inout [UInt8]) {
        // `unshown=1`: first a server tool's block opens (what chat and Responses have no form for).
        if script.scenario.option("unshown", default: 0) == 1 {
            closeBlock(to: &out)
            blockStart(.object(["type": .string("server_tool_use"), "id": .string(Self.serverSearchID), "name": .string("web_search"),
                                "input": .object([:])]), to: &out)
        }
        // Byte for byte what the API sends under load (docs.claude.com, streaming): then nothing.
        event("error", to: &out) { $0.append(contentsOf: #"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#.utf8) }
    }

    func appendMalformed(to out: inout [UInt8]) {
        out.append(contentsOf: "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"unterminated\n\n".utf8)
    }

    func wholeResponse() -> [UInt8] {
        var content: [JSONValue] = []
        if let query = script.serverSearch {
            let (use, result) = Self.serverSearchBlocks(query)
            content += [use, result]
        }
        if !script.fullReasoning.isEmpty {
            content.append(.object(["type": .string("thinking"), "thinking": .string(script.fullReasoning), "signature": .string(Self.signature)]))
        }
        if !script.fullContent.isEmpty { content.append(.object(["type": .string("text"), "text": .string(script.fullContent)])) }
        for call in script.toolCalls {
            let input = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:])
            content.append(.object(["type": .string("tool_use"), "id": .string(call.id), "name": .string(call.name), "input": input]))
        }
        let body: JSONValue = .object([
            "id": .string(messageID), "type": .string("message"), "role": .string("assistant"), "model": .string(script.model),
            "content": .array(content), "stop_reason": .string(script.anthropicStop.reason),
            "stop_sequence": script.anthropicStop.sequence.map(JSONValue.string) ?? .null,
            "usage": .object(["input_tokens": .int(Int64(script.promptTokens)), "output_tokens": .int(Int64(script.completionTokens))]),
        ])
        return body.serialized()
    }

    static func errorResponse(_ error: APIError) -> HTTPResponse {
        var body: [UInt8] = []
        body.append(contentsOf: #"{"type":"error","error":{"type":"#.utf8)
        JSONWriting.appendString(errorType(status: error.status), to: &body)
        body.append(contentsOf: #","message":"#.utf8)
        JSONWriting.appendString(error.message, to: &body)
        body.append(contentsOf: #"},"request_id":"req_mock"}"#.utf8)
        return HTTPResponse(status: error.status, headers: [("Content-Type", "application/json")] + error.headers, body: body)
    }

    /// The error type the API names for `status` (docs.claude.com/en/api/errors).
    static func errorType(status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 402: "billing_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 504: "timeout_error"
        case 529: "overloaded_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }

    /// A stand-in for the opaque signature the API puts on thinking blocks.
    static let signature = "bW9jay1zaWduYXR1cmU="

    private var messageID: String { "msg_" + script.id }

    private mutating func openBlock(_ block: Block, to out: inout [UInt8], start: (inout [UInt8]) -> Void) {
        guard open != block else { return }
        closeBlock(to: &out)
        open = block
        blockIndex += 1
        event("content_block_start", to: &out) { out in
            out.append(contentsOf: #"{"type":"content_block_start","index":\#(blockIndex),"content_block":"#.utf8)
            start(&out)
            out.append(UInt8(ascii: "}"))
        }
    }

    private mutating func closeBlock(to out: inout [UInt8]) {
        guard let block = open else { return }
        if block == .thinking {
            delta(to: &out) { $0.append(contentsOf: #"{"type":"signature_delta","signature":"\#(Self.signature)""#.utf8) }
        }
        blockStop(to: &out)
        open = nil
    }

    private func blockStop(to out: inout [UInt8]) {
        event("content_block_stop", to: &out) { $0.append(contentsOf: #"{"type":"content_block_stop","index":\#(blockIndex)}"#.utf8) }
    }

    /// A `content_block_delta` of the open block; `body` writes the delta object without its `}`.
    private func delta(to out: inout [UInt8], _ body: (inout [UInt8]) -> Void) {
        event("content_block_delta", to: &out) { out in
            out.append(contentsOf: #"{"type":"content_block_delta","index":\#(blockIndex),"delta":"#.utf8)
            body(&out)
            out.append(contentsOf: "}}".utf8)
        }
    }

    private func event(_ name: String, to out: inout [UInt8], _ data: (inout [UInt8]) -> Void) {
        out.append(contentsOf: "event: \(name)\ndata: ".utf8)
        data(&out)
        out.append(contentsOf: "\n\n".utf8)
    }

    /// What Anthropic's API refuses of an assistant turn's server tool blocks: a
    /// `server_tool_use` whose result block is not in the same turn.
    static func serverToolError(_ request: JSONValue) -> APIError? {
        for (index, message) in (request["messages"]?.arrayValue ?? []).enumerated() where message["role"] == .string("assistant") {
            let blocks = message["content"]?.arrayValue ?? []
            let answered = Set(blocks.compactMap { $0["type"]?.stringValue?.hasSuffix("_tool_result") == true ? $0["tool_use_id"]?.stringValue : nil })
            for (position, block) in blocks.enumerated() where block["type"] == .string("server_tool_use") {
                guard let id = block["id"]?.stringValue, answered.contains(id) else {
                    return .invalidRequest("messages.\(index).content.\(position): `server_tool_use` blocks must be followed by their result block in the same turn")
                }
            }
        }
        return nil
    }

    /// What Anthropic's API refuses of a request's thinking blocks (`invalid_request_error`, 400):
    /// a thinking block whose signature is not one it issued (here, the mock's), and, with
    /// `thinking` enabled, a tool loop whose assistant turn does not start with its thinking block.
    /// Anthropic's rule for tool blocks: a request whose messages hold `tool_use` or
    /// `tool_result` blocks must define tools (its API's 400, quoted).
    static func toolsError(_ request: JSONValue) -> APIError? {
        guard (request["tools"]?.arrayValue ?? []).isEmpty else { return nil }
        let blocks = (request["messages"]?.arrayValue ?? []).flatMap { $0["content"]?.arrayValue ?? [] }
        guard blocks.contains(where: { ["tool_use", "tool_result"].contains($0["type"]?.stringValue ?? "") }) else { return nil }
        return .invalidRequest("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    }

    static func thinkingError(_ request: JSONValue) -> APIError? {
        let messages = request["messages"]?.arrayValue ?? []
        for (index, message) in messages.enumerated() {
            for (position, block) in (message["content"]?.arrayValue ?? []).enumerated()
            where block["type"] == .string("thinking") && block["signature"] != .string(signature) {
                return .invalidRequest("messages.\(index).content.\(position): Invalid `signature` in `thinking` block")
            }
        }
        guard ["enabled", "adaptive"].contains(request["thinking"]?["type"]?.stringValue ?? ""), messages.count >= 2,
              let last = messages.last, last["role"] == .string("user"),
              last["content"]?.arrayValue?.contains(where: { $0["type"] == .string("tool_result") }) == true,
              messages[messages.count - 2]["role"] == .string("assistant") else { return nil }
        let first = messages[messages.count - 2]["content"]?.arrayValue?.first?["type"]?.stringValue ?? "text"
        guard first != "thinking" && first != "redacted_thinking" else { return nil }
        return .invalidRequest("messages.\(messages.count - 2).content.0.type: Expected `thinking` or `redacted_thinking`, but found `\(first)`. "
                                   + "When `thinking` is enabled, a final `assistant` message must start with a thinking block.")
    }

    /// The request in the OpenAI shape `MockScript` and `MockRoles` read: the system prompt as a
    /// system message, tool uses as `tool_calls`, tool results as `tool` messages.
    static func chatShape(of request: JSONValue) -> JSONValue {
        var messages: [JSONValue] = []
        if let system = text(request["system"]), !system.isEmpty {
            messages.append(.object(["role": .string("system"), "content": .string(system)]))
        }
        for message in request["messages"]?.arrayValue ?? [] {
            let role = message["role"]?.stringValue ?? "user"
            guard let blocks = message["content"]?.arrayValue else {
                messages.append(.object(["role": .string(role), "content": message["content"] ?? .string("")]))
                continue
            }
            for block in blocks where block["type"]?.stringValue == "tool_result" {
                messages.append(.object(["role": .string("tool"), "tool_call_id": block["tool_use_id"] ?? .null,
                                         "content": .string(text(block["content"]) ?? "")]))
            }
            let calls: [JSONValue] = blocks.filter { $0["type"]?.stringValue == "tool_use" }.map { block in
                .object(["id": block["id"] ?? .null, "type": .string("function"),
                         "function": .object(["name": block["name"] ?? .null,
                                              "arguments": .string(JSONWriting.compact(block["input"] ?? .object([:])))])])
            }
            let said = blocks.filter { $0["type"]?.stringValue == "text" }.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
            if !said.isEmpty || !calls.isEmpty {
                var object: [String: JSONValue] = ["role": .string(role), "content": .string(said)]
                if !calls.isEmpty { object["tool_calls"] = .array(calls) }
                messages.append(.object(object))
            }
        }
        let tools = (request["tools"]?.arrayValue ?? []).compactMap { tool -> JSONValue? in
            guard let name = tool["name"]?.stringValue else { return nil }
            return .object(["type": .string("function"), "function": .object(["name": .string(name)])])
        }
        var shaped: [String: JSONValue] = ["model": request["model"] ?? .null, "messages": .array(messages), "tools": .array(tools)]
        if let limit = request["max_tokens"] { shaped["max_tokens"] = limit }
        switch request["tool_choice"]?["type"]?.stringValue {
        case "any"?: shaped["tool_choice"] = .string("required")
        case "none"?: shaped["tool_choice"] = .string("none")
        default: break
        }
        return .object(shaped)
    }

    /// A string, or the text of an array of text blocks.
    private static func text(_ value: JSONValue?) -> String? {
        if let text = value?.stringValue { return text }
        return value?.arrayValue?.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }
}
