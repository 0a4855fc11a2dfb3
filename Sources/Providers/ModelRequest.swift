import GatewayCore

/// A chat request in no provider's format: what the gateway asks of a model. Client surfaces
/// parse into it, Fusion builds its inner calls as it, and each provider encodes it for its API.
public struct ModelRequest: Sendable, Equatable {
    /// The model as its provider names it.
    public var model: String
    public var messages: [ModelMessage]
    public var tools: [ToolDefinition] = []
    public var toolChoice: ToolChoice?
    public var parallelToolCalls: Bool?
    /// The most tokens to generate (reasoning included), if the caller set a limit.
    public var maxOutputTokens: Int64?
    public var temperature: Double?
    public var topP: Double?
    /// Sample only from the k likeliest tokens: Anthropic's `top_k`, Gemini's `topK`. OpenAI's
    /// API has no such field (it refuses unknown ones), so OpenAI-compatible upstreams are not sent it.
    public var topK: Int64?
    public var stop: [String] = []
    /// The end user's id, for the upstream's abuse monitoring: OpenAI's `user`, from an
    /// Anthropic client's `metadata.user_id` (which reaches an Anthropic upstream in its
    /// `metadata`). Gemini's API has no such field.
    public var user: String?
    public var reasoning: Reasoning?
    /// `{"type": "json_object"}` or a JSON schema, in OpenAI's shape.
    public var responseFormat: JSONValue?
    /// The client's body, whose tool and format objects an encoder writes as the client wrote
    /// them when they are unchanged (`VerbatimJSON`: their members' order is the order a model
    /// writes a schema's fields in).
    public var clientBody: ClientBody?
    /// What the encoders write verbatim: nothing unless the request has tools or a format.
    public var verbatim: VerbatimJSON? {
        guard let clientBody, !tools.isEmpty || responseFormat != nil else { return nil }
        return clientBody.verbatim
    }
    public var stream: Bool
    /// Ask the upstream to report usage at the end of a stream.
    public var includeUsage = true
    /// Fields of the client's request this type does not model (`seed`, a chat client's `user`,
    /// `logprobs`, Anthropic's `metadata`, provider-specific options), forwarded as they are to
    /// upstreams speaking `extraFieldsFormat` and left out for others (whose API would refuse
    /// another's fields).
    public var extraFields: [String: JSONValue] = [:]
    /// The wire format `extraFields` belong to: the client surface's.
    public var extraFieldsFormat = WireFormat.openAIChat

    public init(model: String, messages: [ModelMessage], stream: Bool = true) {
        self.model = model
        self.messages = messages
        self.stream = stream
    }

    public struct Reasoning: Sendable, Equatable {
        /// `minimal`…`xhigh`, as OpenAI and OpenRouter name efforts.
        public var effort: String?
        public var maxTokens: Int64?
        public var exclude: Bool?
        /// OpenRouter's `enabled`: false asks for no reasoning whatever else is set.
        public var enabled: Bool?
        public init(effort: String? = nil, maxTokens: Int64? = nil, exclude: Bool? = nil, enabled: Bool? = nil) {
            self.effort = effort
            self.maxTokens = maxTokens
            self.exclude = exclude
            self.enabled = enabled
        }
    }
}

/// One message of a conversation.
public struct ModelMessage: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable {
        case system, developer, user, assistant, tool
    }

    public var role: Role
    public var content: [ContentPart]
    /// The tool calls an assistant turn made.
    public var toolCalls: [ToolCall] = []
    /// For a tool result: the call it answers.
    public var toolCallID: String?
    /// A participant name (OpenAI's `name`), or the tool's name on a tool result.
    public var name: String?
    /// An assistant turn's reasoning blocks the provider needs back (`ReasoningBlock`), in order.
    public var reasoning: [ReasoningBlock] = []
    /// A tool result that says the call failed (Anthropic's `is_error`): Anthropic's
    /// `is_error` and Gemini's `error` key carry it; OpenAI's tool messages have no place for it.
    public var isError = false
    /// Where in the client's request it came from, for refusals (`MessageOrigin`); nil for
    /// chat's messages, named `messages[i]` as they were sent. Not compared by `==`.
    public var origin: MessageOrigin? {
        get { originSlot.origin }
        set { originSlot.origin = newValue }
    }
    private var originSlot = MessageOrigin.Slot()

    public init(role: Role, content: [ContentPart], toolCalls: [ToolCall] = [], toolCallID: String? = nil, name: String? = nil,
                reasoning: [ReasoningBlock] = []) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
        self.reasoning = reasoning
    }

    public init(role: Role, text: String) {
        self.init(role: role, content: text.isEmpty ? [] : [.text(text)])
    }

    /// The text parts joined (other parts left out).
    public var text: String {
        content.compactMap { if case .text(let text) = $0 { text } else { nil } }.joined(separator: "\n")
    }

    /// The type of the first block of the asker's (a user turn, a tool result) that only
    /// Anthropic's API reads (`search_result`, a document by URL, a file by id…): `portable`
    /// would leave it out, losing part of the question, so other APIs refuse the request by it.
    public var anthropicOnlyInputBlock: (part: Int, type: String)? {
        guard role != .assistant else { return nil }  // server tools' blocks: Anthropic's state, rightly left out
        for (index, part) in content.enumerated() {
            if case .providerBlock(let block) = part, block["type"]?.stringValue != "text" {
                return (index, String((block["type"]?.stringValue ?? "?").prefix(64)))
            }
        }
        return nil
    }

    /// The message as APIs other than Anthropic's take it: Anthropic's own blocks as their text,
    /// or left out (`ContentPart.providerBlock`), and without cache breakpoints. Itself when it
    /// has none, as almost every one.
    public var portable: ModelMessage {
        guard content.contains(where: \.isAnthropicOnly) else { return self }
        var message = self
        message.content = content.compactMap { part in
            switch part {
            case .providerBlock(let block):
                guard block["type"]?.stringValue == "text", let text = block["text"]?.stringValue, !text.isEmpty else { return nil }
                return .text(text)
            case .cacheBreakpoint:
                return nil
            default:
                return part
            }
        }
        return message
    }
}

public enum ContentPart: Sendable, Equatable {
    case text(String)
    /// An image by URL (`https:` or a `data:` URI).
    case image(url: String, detail: String?)
    /// A part of another kind (audio, files), in OpenAI's shape: passed to OpenAI-compatible
    /// upstreams, refused by others.
    case other(JSONValue)
    /// An Anthropic content block of an assistant turn that the neutral types do not model (a
    /// server tool's `server_tool_use` and result blocks, a text block with its `citations`), as
    /// it came: Anthropic's server tools need them back in the turn that continues. Sent as is to
    /// Anthropic; other APIs get a text block's text and nothing of the rest (their models
    /// cannot read Anthropic's server state).
    case providerBlock(JSONValue)
    /// Anthropic's prompt-cache breakpoint (`cache_control`, e.g. `{"type":"ephemeral"}`) on the
    /// part before it, as a client marked it (on a chat text part, as OpenRouter takes it, or on
    /// a Messages block): written on that block for Anthropic, left out for APIs without one.
    case cacheBreakpoint(JSONValue)

    /// The `cache_control` of a client's part, block or tool, when it is an object (anything else
    /// is no mark): what `cacheBreakpoint` and `ToolDefinition.function`'s `cacheControl` carry.
    public static func cacheControl(of json: JSONValue) -> JSONValue? {
        guard let control = json["cache_control"], case .object = control else { return nil }
        return control
    }

    /// A part only Anthropic's API knows (`ModelMessage.portable` leaves it out or makes it text).
    var isAnthropicOnly: Bool {
        switch self {
        case .providerBlock, .cacheBreakpoint: true
        default: false
        }
    }
}

/// A tool the model may call.
public enum ToolDefinition: Sendable, Equatable {
    /// `cacheControl`: Anthropic's prompt-cache breakpoint on the definition (`cache_control`:
    /// the tools up to this one are cached); only an Anthropic upstream gets it.
    case function(name: String, description: String?, parameters: JSONValue?, strict: Bool?, cacheControl: JSONValue? = nil)
    /// Another kind of tool (a provider's built-in), in OpenAI's shape.
    case other(JSONValue)

    public var functionName: String? {
        if case .function(let name, _, _, _, _) = self { return name }
        return nil
    }
}

public enum ToolChoice: Sendable, Equatable {
    case auto, none, required
    case function(String)
}
