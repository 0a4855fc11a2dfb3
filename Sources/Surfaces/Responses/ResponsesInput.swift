import Fusion
import GatewayCore
import Providers

/// A Responses request's `input` (with `instructions`) as a conversation, validated: every
/// mistake is a 400 naming its path (`input[2].content[0].image_url`).
///
/// The gateway is stateless and speaks chat to its upstreams, so each item becomes what a chat
/// model would have seen (openai-python 3.57.0 `response_input_item_param.py` for the shapes):
/// - `message` items (also without `type`, the SDK's EasyInputMessage): their role and parts;
///   `input_text`/`input_image`/`input_file` for users, `output_text`/`refusal` for the assistant;
/// - `function_call` items: tool calls of the assistant turn they follow (consecutive calls, and
///   an assistant message just before them, make one turn, as chat requires);
/// - `function_call_output`: a tool message answering an earlier `function_call`'s `call_id`.
///   Every call needs exactly one output later in the input, as OpenAI's API requires (a call
///   left unanswered, even the last item, is a 400: the model would never see its result, and
///   chat upstreams refuse a tool call without its tool message);
/// - `reasoning` items: the summary was for the client and is not sent; an `encrypted_content`
///   the gateway issued (`ReasoningBlock.token`: an Anthropic model's signed thinking) goes back
///   at the head of the assistant turn that follows it, as the API needs for thinking with tools.
///   Another API's `encrypted_content` (OpenAI's own) is left out, no upstream here could read it;
///   one of ours that was altered is a 400;
/// - the fusion output item (`openrouter:fusion`, which OpenRouter accepts back as input): the
///   outer model's fusion call (`call_id`, `arguments`), joined to the assistant turn it belongs
///   to like a `function_call`, and the result it was given as the tool message answering it,
///   placed after that turn's calls (the chat shape of the turn the model made; chat's
///   `reasoning_details` records are restored the same way). An item without `call_id` (an
///   older client's) is the result as assistant text, so a later turn still knows the
///   deliberation;
/// - `item_reference` (server-side state) and other hosted-tool items: a 400.
enum ResponsesInput {
    static let messageRoles: [String: ModelMessage.Role] = [
        "user": .user, "system": .system, "developer": .developer, "assistant": .assistant,
    ]
    /// Fields of a fusion item that are the tool result the outer model was given (its `status` is
    /// the item's lifecycle, not the result's: `failure_reason` says what went wrong).
    static let fusionResultFields: Set<String> = ["analysis", "responses", "panel", "failed_models", "failure_reason", "error", "sources"]

    static func messages(_ input: JSONValue) throws(APIError) -> [ModelMessage] {
        switch input {
        case .string(let text):
            guard !text.isEmpty else { throw .invalidRequest("'input' must not be empty.", param: "input") }
            var message = ModelMessage(role: .user, text: text)
            message.origin = MessageOrigin(.responses, path: "input", parts: ["input"])
            return [message]
        case .array(let items):
            guard !items.isEmpty else { throw .invalidRequest("'input' must contain at least one item.", param: "input") }
            var conversation = Conversation()
            for (index, item) in items.enumerated() {
                try conversation.add(item, path: "input[\(index)]")
            }
            conversation.flushResults()
            try conversation.requireEveryOutput()
            guard !conversation.messages.isEmpty else {
                throw .invalidRequest("'input' holds nothing a model reads (reasoning items are not sent upstream).", param: "input")
            }
            return resultsAfterTheirCalls(conversation.messages)
        default:
            throw ResponsesRequest.invalidType("input", expected: "a string or an array of input items", got: input)
        }
    }

    /// Each call's output right after the assistant turn that made it (in input order), ahead of
    /// any message sent between them (a user's interjection): chat APIs refuse a turn whose calls
    /// are not followed by their tool messages, where Responses takes an output anywhere after its
    /// call (review 107 #5). Anthropic's and Gemini's encoders also put results first.
    static func resultsAfterTheirCalls(_ messages: [ModelMessage]) -> [ModelMessage] {
        var answering: [String: Int] = [:]  // a call's id → the place of the tool message answering it
        for (place, message) in messages.enumerated() where message.role == .tool {
            if let id = message.toolCallID { answering[id] = place }
        }
        var moved = Set<Int>()
        var ordered: [ModelMessage] = []
        ordered.reserveCapacity(messages.count)
        for (place, message) in messages.enumerated() where !moved.contains(place) {
            ordered.append(message)
            guard message.role == .assistant, !message.toolCalls.isEmpty else { continue }
            let results = message.toolCalls.compactMap { answering[$0.id] }.filter { $0 > place }.sorted()
            for result in results where moved.insert(result).inserted { ordered.append(messages[result]) }
        }
        return ordered
    }

    /// The messages built so far, and what later items need to know of them.
    struct Conversation {
        var messages: [ModelMessage] = []
        /// The last message is an assistant turn that function calls may still join.
        var assistantTurnOpen = false
        var callIDs: Set<String> = []
        /// Each function call's id and the path of its item, in input order.
        var calls: [(id: String, path: String)] = []
        /// Each answered call's id → the path of its output.
        var outputs: [String: String] = [:]
        /// Fusion calls restored from their items: answered by the item itself.
        var fusionCallIDs: Set<String> = []
        /// The tool messages of restored fusion calls, sent once their turn's calls are all in.
        var deferredResults: [ModelMessage] = []
        /// Signed reasoning from `reasoning` items, for the assistant turn that comes next.
        var pendingReasoning: [ReasoningBlock] = []

        /// The assistant turn `message` starts, or the open one it joins, takes the pending reasoning.
        mutating func takeReasoning(into message: inout ModelMessage) {
            message.reasoning += pendingReasoning
            pendingReasoning.removeAll()
        }

        /// Ends the open assistant turn's calls: the restored fusion results follow them.
        mutating func flushResults() {
            messages += deferredResults
            deferredResults.removeAll()
        }

        /// A call without an output is a 400 naming the call's item.
        func requireEveryOutput() throws(APIError) {
            for call in calls where outputs[call.id] == nil {
                throw .invalidRequest("No function_call_output found for the function call '\(call.path)' (call_id '\(call.id.shortened(toBytes: 128))'): "
                                          + "send each call's output after it.", param: call.path)
            }
        }

        mutating func add(_ item: JSONValue, path: String) throws(APIError) {
            guard case .object(let fields) = item else {
                throw ResponsesRequest.invalidType(path, expected: "an object", got: item)
            }
            let type: String
            switch fields["type"] {
            case nil, .null?:
                guard fields["role"] != nil else {
                    throw .invalidRequest("Missing required parameter: '\(path).type'.", param: "\(path).type",
                                          code: "missing_required_parameter")
                }
                type = "message"
            case .string(let name)?:
                type = name
            case let other?:
                throw ResponsesRequest.invalidType("\(path).type", expected: "a string", got: other)
            }
            if type == "message" || type == "function_call_output" { flushResults() }
            switch type {
            case "message":
                var message = try ResponsesInput.message(fields, path: path)
                if message.role == .assistant { takeReasoning(into: &message) }
                pendingReasoning.removeAll()  // before another role's message, it has no turn
                if message.role == .assistant, assistantTurnOpen, var turn = messages.last, turn.role == .assistant, !turn.toolCalls.isEmpty {
                    // Text after the turn's calls (a model that writes after calling; the gateway's
                    // own output sent back) joins that turn: as a second assistant message before
                    // the calls' outputs, chat APIs refuse the conversation (review 44 Responses #3).
                    turn.content += message.content
                    turn.reasoning += message.reasoning
                    turn.origin?.parts += message.origin?.parts ?? []
                    messages[messages.count - 1] = turn
                } else {
                    messages.append(message)
                }
                assistantTurnOpen = message.role == .assistant
            case "function_call":
                let call = try ResponsesInput.functionCall(fields, path: path)
                guard callIDs.insert(call.id).inserted else {
                    throw .invalidRequest("'\(path).call_id' repeats an earlier function call's id '\(call.id.shortened(toBytes: 128))'.", param: "\(path).call_id")
                }
                calls.append((call.id, path))
                joinTurn(ToolCall(index: 0, id: call.id, name: call.name, arguments: call.arguments), path: path)
            case "function_call_output":
                let output = try ResponsesInput.functionCallOutput(fields, path: path, known: callIDs)
                let callID = output.toolCallID ?? ""
                if fusionCallIDs.contains(callID) {
                    throw .invalidRequest("'\(path).call_id' answers the fusion call '\(callID.shortened(toBytes: 128))', which its openrouter:fusion item already answers.",
                                          param: "\(path).call_id")
                }
                if let earlier = outputs[callID] {
                    throw .invalidRequest("'\(path).call_id' answers the function call '\(callID.shortened(toBytes: 128))' again: '\(earlier)' already did.",
                                          param: "\(path).call_id")
                }
                outputs[callID] = path
                messages.append(output)
                pendingReasoning.removeAll()
                assistantTurnOpen = false
            case "reasoning":
                // See the type's comment; it does not end an assistant turn either.
                if let block = try ResponsesInput.reasoningBlock(fields, path: path) { pendingReasoning.append(block) }
            case "openrouter:fusion":
                try addFusionItem(fields, path: path)
            case "item_reference":
                throw .invalidRequest(
                    "'\(path)' refers to a stored item, but this gateway stores nothing: send the item itself.",
                    param: "\(path).type", code: "unsupported_parameter")
            default:
                throw .invalidRequest(
                    "Unsupported input item type '\(type.shortened(toBytes: 128))' at '\(path).type' (supported: message, function_call, "
                        + "function_call_output, reasoning, openrouter:fusion).",
                    param: "\(path).type")
            }
        }
    }
}

extension ResponsesInput.Conversation {
    /// A call joins the open assistant turn, or starts one; either takes the pending reasoning.
    mutating func joinTurn(_ call: ToolCall, path: String) {
        var turn = assistantTurnOpen ? messages.popLast() ?? ModelMessage(role: .assistant, content: []) : ModelMessage(role: .assistant, content: [])
        if turn.origin == nil { turn.origin = MessageOrigin(.responses, path: path) }  // a turn the call starts is named by it
        turn.toolCalls.append(ToolCall(index: turn.toolCalls.count, id: call.id, name: call.name, arguments: call.arguments))
        turn.origin?.calls.append(path)
        takeReasoning(into: &turn)
        messages.append(turn)
        assistantTurnOpen = true
    }

    /// A fusion item sent back (see `ResponsesInput`): with its call, that call joins the open
    /// assistant turn (or starts one) and its result waits for the turn's other calls; without,
    /// the result as assistant text.
    mutating func addFusionItem(_ fields: [String: JSONValue], path: String) throws(APIError) {
        let result = String(decoding: JSONValue.object(fields.filter { ResponsesInput.fusionResultFields.contains($0.key) }).serialized(),
                            as: UTF8.self)
        guard let idValue = fields["call_id"], idValue != .null else {
            // Inside a turn whose calls wait for their outputs, its text joins that turn: as an
            // assistant message between the calls and their outputs, chat APIs refuse the
            // conversation (review 60C #4).
            if assistantTurnOpen, var turn = messages.last, turn.role == .assistant, !turn.toolCalls.isEmpty {
                turn.content.append(.text("[fusion result]\n" + result))
                turn.origin?.parts.append(path)
                messages[messages.count - 1] = turn
                return
            }
            flushResults()
            var message = ModelMessage(role: .assistant, text: "[fusion result]\n" + result)
            message.origin = MessageOrigin(.responses, path: path, parts: [path])
            messages.append(message)
            assistantTurnOpen = false
            return
        }
        guard let id = idValue.stringValue, !id.isEmpty else {
            throw ResponsesRequest.invalidType("\(path).call_id", expected: "a non-empty string", got: idValue)
        }
        let arguments: String
        switch fields["arguments"] {
        case nil, .null?: arguments = "{}"
        case .string(let text)?: arguments = FusionCallRecord.objectArguments(text)  // as chat's records (review 60C #3)
        case let other?: throw ResponsesRequest.invalidType("\(path).arguments", expected: "a string", got: other)
        }
        guard callIDs.insert(id).inserted else {
            throw .invalidRequest("'\(path).call_id' repeats an earlier call's id '\(id.shortened(toBytes: 128))'.", param: "\(path).call_id")
        }
        fusionCallIDs.insert(id)
        joinTurn(ToolCall(index: 0, id: id, name: FusionPlan.toolName, arguments: arguments), path: path)
        var answer = ModelMessage(role: .tool, content: [.text(result)], toolCallID: id)
        answer.origin = MessageOrigin(.responses, path: path, parts: [path])
        deferredResults.append(answer)
    }
}

extension ResponsesInput {
    static func message(_ fields: [String: JSONValue], path: String) throws(APIError) -> ModelMessage {
        guard let roleValue = fields["role"] else {
            throw .invalidRequest("Missing required parameter: '\(path).role'.", param: "\(path).role", code: "missing_required_parameter")
        }
        guard let name = roleValue.stringValue, let role = messageRoles[name] else {
            throw .invalidRequest("Invalid value for '\(path).role': expected one of \(messageRoles.keys.sorted().joined(separator: ", ")).",
                                  param: "\(path).role")
        }
        switch fields["content"] {
        case .string(let text)?:
            var message = ModelMessage(role: role, text: text)
            message.origin = MessageOrigin(.responses, path: path, parts: message.content.map { _ in "\(path).content" })
            return message
        case .array(let parts)?:
            var message = ModelMessage(role: role, content: [])
            message.origin = MessageOrigin(.responses, path: path)
            for (index, part) in parts.enumerated() {
                message.content.append(try contentPart(part, path: "\(path).content[\(index)]", assistant: role == .assistant))
                message.origin?.parts.append("\(path).content[\(index)]")
            }
            return message
        case nil:
            throw .invalidRequest("Missing required parameter: '\(path).content'.", param: "\(path).content",
                                  code: "missing_required_parameter")
        case let other?:
            throw ResponsesRequest.invalidType("\(path).content", expected: "a string or an array of content parts", got: other)
        }
    }

    /// One content part. The assistant's history speaks `output_text` / `refusal`; everyone else
    /// `input_text` / `input_image` / `input_file` (what OpenAI accepts; `input_text` from the
    /// assistant is tolerated, it means the same).
    static func contentPart(_ part: JSONValue, path: String, assistant: Bool) throws(APIError) -> ContentPart {
        guard case .object(let fields) = part, let type = fields["type"]?.stringValue else {
            throw .invalidRequest("'\(path)' must be an object with a string 'type'.", param: path)
        }
        let allowed = assistant ? ["output_text", "refusal", "input_text"] : ["input_text", "input_image", "input_file"]
        guard allowed.contains(type) else {
            throw .invalidRequest("Invalid value for '\(path).type': expected one of \(allowed.joined(separator: ", ")), got '\(type)'.",
                                  param: "\(path).type")
        }
        switch type {
        case "input_text", "output_text":
            return .text(try string(fields, "text", path: path))
        case "refusal":
            return .text(try string(fields, "refusal", path: path))
        case "input_image":
            if fields["file_id"] != nil && fields["file_id"] != .null {
                throw .invalidRequest("'\(path).file_id': file ids need a Files API, which this gateway does not have; send 'image_url' (a URL or a data: URI).",
                                      param: "\(path).file_id", code: "unsupported_parameter")
            }
            let url = try string(fields, "image_url", path: path)
            guard !url.isEmpty else { throw .invalidRequest("'\(path).image_url' must not be empty.", param: "\(path).image_url") }
            var detail: String?
            if let value = fields["detail"], value != .null {
                guard let text = value.stringValue, ["low", "high", "auto", "original"].contains(text) else {
                    throw ResponsesRequest.invalidType("\(path).detail", expected: "one of low, high, auto, original", got: value)
                }
                // "original" is OpenAI's newest; chat models know only the first three.
                detail = text == "original" ? "high" : text
            }
            return .image(url: url, detail: detail)
        default:  // input_file
            return try filePart(fields, path: path)
        }
    }

    /// `input_file` as chat's `file` part (OpenRouter reads `file_data` as a data: URI or a URL).
    static func filePart(_ fields: [String: JSONValue], path: String) throws(APIError) -> ContentPart {
        if fields["file_id"] != nil && fields["file_id"] != .null {
            throw .invalidRequest("'\(path).file_id': file ids need a Files API, which this gateway does not have; send 'file_data' or 'file_url'.",
                                  param: "\(path).file_id", code: "unsupported_parameter")
        }
        var file: [String: JSONValue] = [:]
        for key in ["file_data", "file_url"] {
            guard let value = fields[key], value != .null else { continue }
            guard let text = value.stringValue, !text.isEmpty else {
                throw ResponsesRequest.invalidType("\(path).\(key)", expected: "a non-empty string", got: value)
            }
            guard file["file_data"] == nil else {
                throw .invalidRequest("'\(path)' has both 'file_data' and 'file_url': send one.", param: "\(path).\(key)")
            }
            file["file_data"] = .string(text)
        }
        guard file["file_data"] != nil else {
            throw .invalidRequest("'\(path)' needs 'file_data' or 'file_url'.", param: "\(path).file_data", code: "missing_required_parameter")
        }
        if let value = fields["filename"], value != .null {
            guard let name = value.stringValue else { throw ResponsesRequest.invalidType("\(path).filename", expected: "a string", got: value) }
            file["filename"] = .string(name)
        }
        return .other(.object(["type": .string("file"), "file": .object(file)]))
    }

    /// A `reasoning` item's signed block, if its `encrypted_content` is one the gateway issued.
    static func reasoningBlock(_ fields: [String: JSONValue], path: String) throws(APIError) -> ReasoningBlock? {
        guard let value = fields["encrypted_content"], value != .null else { return nil }
        guard let token = value.stringValue else {
            throw ResponsesRequest.invalidType("\(path).encrypted_content", expected: "a string", got: value)
        }
        guard ReasoningBlock.isToken(token) else { return nil }
        guard let block = ReasoningBlock(token: token) else {
            throw .invalidRequest("'\(path).encrypted_content' is not reasoning as this gateway gave it (altered or cut): send the item as it came.",
                                  param: "\(path).encrypted_content")
        }
        return block
    }

    static func functionCall(_ fields: [String: JSONValue], path: String) throws(APIError) -> ToolCall {
        let callID = try nonEmpty(fields, "call_id", path: path)
        let name = try nonEmpty(fields, "name", path: path)
        let arguments = try string(fields, "arguments", path: path)
        return ToolCall(index: 0, id: callID, name: name, arguments: arguments)
    }

    static func functionCallOutput(_ fields: [String: JSONValue], path: String, known: Set<String>) throws(APIError) -> ModelMessage {
        let callID = try nonEmpty(fields, "call_id", path: path)
        guard known.contains(callID) else {
            throw .invalidRequest("No function call found for '\(path).call_id' '\(callID)': send the function_call item before its output.",
                                  param: "\(path).call_id")
        }
        var message = ModelMessage(role: .tool, content: [], toolCallID: callID)
        message.origin = MessageOrigin(.responses, path: path)
        switch fields["output"] {
        case .string(let text)?:
            if !text.isEmpty {
                message.content = [.text(text)]
                message.origin?.parts = ["\(path).output"]
            }
            return message
        case .array(let parts)?:
            for (index, part) in parts.enumerated() {
                message.content.append(try contentPart(part, path: "\(path).output[\(index)]", assistant: false))
                message.origin?.parts.append("\(path).output[\(index)]")
            }
            return message
        case nil, .null?:
            throw .invalidRequest("Missing required parameter: '\(path).output'.", param: "\(path).output", code: "missing_required_parameter")
        case let other?:
            throw ResponsesRequest.invalidType("\(path).output", expected: "a string or an array of content parts", got: other)
        }
    }

    static func string(_ fields: [String: JSONValue], _ key: String, path: String) throws(APIError) -> String {
        guard let value = fields[key] else {
            throw .invalidRequest("Missing required parameter: '\(path).\(key)'.", param: "\(path).\(key)", code: "missing_required_parameter")
        }
        guard let text = value.stringValue else { throw ResponsesRequest.invalidType("\(path).\(key)", expected: "a string", got: value) }
        return text
    }

    static func nonEmpty(_ fields: [String: JSONValue], _ key: String, path: String) throws(APIError) -> String {
        let text = try string(fields, key, path: path)
        guard !text.isEmpty else { throw .invalidRequest("'\(path).\(key)' must not be empty.", param: "\(path).\(key)") }
        return text
    }
}
