import Foundation
import GatewayCore
import HTTPServer

/// OpenAI's chat completions API, as OpenRouter speaks it: a processing comment first, chunks
/// stamped with `sent_at_us` (so a client on this machine can measure latency), usage when
/// `stream_options.include_usage` asks, `[DONE]`.
struct MockOpenAIStream: MockWire {
    let script: MockScript
    let includeUsage: Bool
    /// Appended to error messages (`echo_auth=1`).
    let echoedCredentials: String
    private let created = Int(Date().timeIntervalSince1970)
    private var sentRole = false

    init(script: MockScript, includeUsage: Bool, echoedCredentials: String = "") {
        self.script = script
        self.includeUsage = includeUsage
        self.echoedCredentials = echoedCredentials
    }

    mutating func appendStart(to out: inout [UInt8]) {
        // OpenRouter sends comments while a model warms up; clients and gateways must skip them.
        SSEEncoder.appendComment("MOCK PROCESSING", to: &out)
        // `role_first=1`: a chunk with the role alone before any token, as OpenAI's API, vLLM and
        // llama.cpp's server send.
        if script.scenario.option("role_first", default: 0) == 1 {
            sentRole = true
            appendChunkPrefix(to: &out)
            out.append(contentsOf: #""choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#.utf8)
            out.append(contentsOf: "\n\n".utf8)
        }
    }

    mutating func appendStep(_ step: MockScript.Step, to out: inout [UInt8]) {
        appendChunkPrefix(to: &out)
        out.append(contentsOf: #""choices":[{"index":0,"delta":{"#.utf8)
        if !sentRole {
            sentRole = true
            out.append(contentsOf: #""role":"assistant","#.utf8)
        }
        switch step {
        case .content(let text):
            out.append(contentsOf: #""content":"#.utf8)
            JSONWriting.appendString(text, to: &out)
        case .reasoning(let text):
            out.append(contentsOf: #""content":null,"reasoning":"#.utf8)
            JSONWriting.appendString(text, to: &out)
        case .toolCall(let index, let id, let name, let arguments):
            out.append(contentsOf: #""tool_calls":[{"index":\#(index),"#.utf8)
            if let id { out.append(contentsOf: #""id":"\#(id)","type":"function","#.utf8) }
            out.append(contentsOf: #""function":{"#.utf8)
            if let name { out.append(contentsOf: #""name":"\#(name)","#.utf8) }
            out.append(contentsOf: #""arguments":"#.utf8)
            JSONWriting.appendString(arguments, to: &out)
            out.append(contentsOf: "}}]".utf8)
        }
        out.append(contentsOf: #"},"finish_reason":null}]}"#.utf8)
        out.append(contentsOf: "\n\n".utf8)
    }

    func appendFinish(to out: inout [UInt8]) {
        var copy = self
        copy.appendFinish(lastStep: nil, to: &out)
    }

    /// The finish chunk, the usage (unless `no_usage=1`; its key spaced with `spaced=1`), `[DONE]`.
    /// With `together=1`, `lastStep`'s content, the finish reason and the usage share one chunk.
    mutating func appendFinish(lastStep: MockScript.Step?, to out: inout [UInt8]) {
        let reason = script.truncated ? "length" : script.callsTool ? "tool_calls" : "stop"
        let usage = script.scenario.option("no_usage", default: 0) == 1 ? nil : usageJSON
        let usageKey = script.scenario.option("spaced", default: 0) == 1 ? #""usage" : "# : #""usage":"#
        if script.scenario.option("no_finish", default: 0) == 1 {
            // The finish chunk left out, `[DONE]` still sent (as a server reporting a failure on
            // a line of its own does: llama.cpp's `error:`).
            if let lastStep { appendStep(lastStep, to: &out) }
            if includeUsage, let usage { appendUsageChunk(usage, key: usageKey, to: &out) }
        } else if let lastStep, case .content(let text) = lastStep {
            appendChunkPrefix(to: &out)
            out.append(contentsOf: #""choices":[{"index":0,"delta":{"content":"#.utf8)
            JSONWriting.appendString(text, to: &out)
            out.append(contentsOf: #"},"finish_reason":"\#(reason)"}]"#.utf8)
            if let usage { out.append(contentsOf: ",\(usageKey)\(usage)".utf8) }
            out.append(contentsOf: "}\n\n".utf8)
        } else {
            if let lastStep { appendStep(lastStep, to: &out) }
            appendChunkPrefix(to: &out)
            out.append(contentsOf: #""choices":[{"index":0,"delta":{},"finish_reason":"\#(reason)"}]}"#.utf8)
            out.append(contentsOf: "\n\n".utf8)
            if includeUsage, let usage { appendUsageChunk(usage, key: usageKey, to: &out) }
        }
        if script.scenario.option("drop", default: 0) == 0 { out.append(contentsOf: SSEEncoder.done) }  // 1, 2: none
    }

    /// The usage chunk (`choices: []`) a client that asked for usage gets before `[DONE]`.
    private func appendUsageChunk(_ usage: String, key: String, to out: inout [UInt8]) {
        out.append(contentsOf: "data: ".utf8)
        out.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion.chunk","created":\#(created),"model":"#.utf8)
        JSONWriting.appendString(script.model, to: &out)
        out.append(contentsOf: #","choices":[],\#(key)\#(usage)}"#.utf8)
        out.append(contentsOf: "\n\n".utf8)
    }

    mutating func appendMidStreamError(to out: inout [UInt8]) {
        // `unshown=1`: first a tool call's fragment that names no function yet (held by a
        // translating writer until its name comes).
        if script.scenario.option("unshown", default: 0) == 1 {
            appendChunkPrefix(to: &out)
            out.append(contentsOf: #""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\""}}]},"finish_reason":null}]}"#.utf8)
            out.append(contentsOf: "\n\n".utf8)
        }
        let error = APIError(status: 502, type: "server_error", code: "server_error", message: "Provider disconnected unexpectedly\(echoedCredentials)")
        SSEEncoder.appendData(error.streamChunk(id: script.id, model: script.model), to: &out)
        out.append(contentsOf: SSEEncoder.done)
    }

    func appendMalformed(to out: inout [UInt8]) {
        out.append(contentsOf: "data: {\"choices\":[{\"delta\":{\"content\":\"unterminated\n\n".utf8)
        out.append(contentsOf: SSEEncoder.done)
    }

    func wholeResponse() -> [UInt8] {
        var body: [UInt8] = []
        body.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion","created":\#(created),"model":"#.utf8)
        JSONWriting.appendString(script.model, to: &body)  // the client's text: escaped
        body.append(contentsOf: #","choices":[{"index":0,"message":{"role":"assistant","content":"#.utf8)
        if script.callsTool {
            body.append(contentsOf: #"null,"tool_calls":["#.utf8)
            for (position, call) in script.toolCalls.enumerated() {
                if position > 0 { body.append(UInt8(ascii: ",")) }
                body.append(contentsOf: #"{"id":"#.utf8)
                JSONWriting.appendString(call.id, to: &body)
                body.append(contentsOf: #","type":"function","function":{"name":"#.utf8)
                JSONWriting.appendString(call.name, to: &body)
                body.append(contentsOf: #","arguments":"#.utf8)
                JSONWriting.appendString(call.arguments, to: &body)
                body.append(contentsOf: "}}".utf8)
            }
            body.append(contentsOf: #"]},"finish_reason":"\#(script.truncated ? "length" : "tool_calls")"}]"#.utf8)
        } else {
            JSONWriting.appendString(script.fullContent, to: &body)
            body.append(contentsOf: #"},"finish_reason":"\#(script.truncated ? "length" : "stop")"}]"#.utf8)
        }
        if script.scenario.option("no_usage", default: 0) == 0 {
            body.append(contentsOf: #","usage":"#.utf8)
            body.append(contentsOf: usageJSON.utf8)
        }
        body.append(UInt8(ascii: "}"))
        return body
    }

    static func errorResponse(_ error: APIError) -> HTTPResponse { error.httpResponse }

    private var usageJSON: String {
        // A made-up price (2 µ$ per token) so cost accounting has something to add up.
        let sum = script.promptTokens + script.completionTokens
        let total = script.scenario.options["total_tokens"] ?? sum
        let cost = script.scenario.options["cost_usd"].map(Double.init) ?? Double(sum) * 0.000002
        return #"{"prompt_tokens":\#(script.promptTokens),"completion_tokens":\#(script.completionTokens),"total_tokens":\#(total),"cost":\#(cost)}"#
    }

    private func appendChunkPrefix(to out: inout [UInt8]) {
        out.append(contentsOf: "data: ".utf8)
        out.append(contentsOf: #"{"id":"\#(script.id)","object":"chat.completion.chunk","created":\#(created),"model":"#.utf8)
        JSONWriting.appendString(script.model, to: &out)
        out.append(contentsOf: #","sent_at_us":\#(MockStream.wallClockMicroseconds()),"#.utf8)
    }
}
