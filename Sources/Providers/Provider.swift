import Foundation
import GatewayCore

/// The wire formats the gateway speaks. A client surface and a provider with the same format
/// need no translation: bytes are relayed, only validated.
public enum WireFormat: String, Sendable, Equatable {
    case openAIChat = "openai"
    /// Anthropic's Messages API (`POST /v1/messages`).
    case anthropicMessages = "anthropic"
    /// Google's Gemini API (`generateContent` / `streamGenerateContent`).
    case gemini
}

/// Where a provider is and how to authenticate to it (from the config and the environment).
public struct ProviderEndpoint: Sendable, Equatable {
    public var name: String
    /// Including the version path, e.g. `https://openrouter.ai/api/v1`.
    public var baseURL: String
    /// Never logged or returned; redacted from anything an upstream sends back.
    public var apiKey: String?
    /// Extra headers sent with every request (e.g. OpenRouter's `HTTP-Referer`).
    public var headers: [String: String]
    /// Which field carries the output limit (servers honour one or the other).
    public var maxTokensField: MaxTokensField
    /// How an OpenAI-compatible server is asked to reason.
    public var reasoningField: ReasoningField
    /// Whether a stream to an OpenAI-compatible server asks for usage
    /// (`stream_options.include_usage`), which the gateway does for its own accounting whatever
    /// the client asked. Off for servers that refuse the member (Mistral's API: 422 "Extra inputs
    /// are not permitted") and report usage anyway, or not at all (then it is estimated).
    public var asksForStreamUsage = true

    public enum MaxTokensField: String, Sendable, Equatable, CaseIterable {
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"

        /// OpenAI's own API (and Azure OpenAI's) honours `max_completion_tokens` for every model,
        /// and its reasoning models refuse `max_tokens` (review 74A #2: the README's example sent
        /// `openai/gpt-5` a limit it refused); most other servers know only `max_tokens`.
        public static func standard(forBaseURL url: String) -> MaxTokensField {
            let host = ProviderEndpoint.host(of: url)
            let openAI = host == "api.openai.com" || host.hasSuffix(".api.openai.com")  // `eu.api.openai.com`, data residency
            let azure = [".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"].contains { host.hasSuffix($0) }
            return openAI || azure ? .maxCompletionTokens : .maxTokens
        }
    }

    /// OpenRouter's own API (its request options, such as `usage: {include: true}`, mean
    /// something there only). Read once, at init: asked on every request.
    public private(set) var isOpenRouter = false

    /// The host of a base URL, in lower case.
    static func host(of url: String) -> String {
        url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: true).dropFirst().first?
            .split(separator: ":").first?.lowercased() ?? ""
    }

    /// OpenRouter takes a `reasoning` object (effort, budget, exclude, enabled); OpenAI's API
    /// and most servers modelled on it take `reasoning_effort` and refuse unknown fields.
    public enum ReasoningField: String, Sendable, Equatable, CaseIterable {
        case object = "reasoning"
        case effort = "reasoning_effort"

        /// OpenRouter's object for OpenRouter, OpenAI's field for everyone else.
        public static func standard(forBaseURL url: String) -> ReasoningField {
            let host = ProviderEndpoint.host(of: url)
            return host == "openrouter.ai" || host.hasSuffix(".openrouter.ai") ? .object : .effort
        }
    }

    public init(name: String, baseURL: String, apiKey: String? = nil, headers: [String: String] = [:],
                maxTokensField: MaxTokensField = .maxTokens, reasoningField: ReasoningField? = nil) {
        self.name = name
        self.baseURL = baseURL
        let host = Self.host(of: baseURL)
        isOpenRouter = host == "openrouter.ai" || host.hasSuffix(".openrouter.ai")
        self.apiKey = apiKey
        self.headers = headers
        self.maxTokensField = maxTokensField
        self.reasoningField = reasoningField ?? .standard(forBaseURL: baseURL)
    }
}

/// An HTTP request to an upstream, ready to send.
public struct ProviderHTTPRequest: Sendable {
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(url: String, headers: [(String, String)], body: [UInt8]) {
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// How an upstream stream ended, as far as its bytes tell.
public enum StreamEnd: Sendable, Equatable {
    /// Its end marker (`[DONE]`) or a finish reason arrived: nothing was lost.
    case complete
    /// The body ended with neither: the answer may be cut short.
    case truncated
}

/// A stream the upstream broke: an event that is not what its format allows, or too large.
public struct StreamDecodingError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// Decodes one upstream response stream into `ModelEvent`s, fed bytes as they arrive (split
/// anywhere). On the per-token path: implementations scan bytes rather than building documents.
public protocol ModelStreamDecoder {
    /// Emits the events `bytes` complete, in order. Returns true once the stream's end marker
    /// arrived (later bytes are ignored). An error event (`.error`) also ends the stream.
    mutating func decode(_ bytes: UnsafeRawBufferPointer, emit: (ModelEvent) -> Void) throws(StreamDecodingError) -> Bool
    /// The body ended: emits what its last bytes complete only now (a last line without its line
    /// end). Call it before `end()`. Default: nothing.
    mutating func finish(emit: (ModelEvent) -> Void) throws(StreamDecodingError)
    /// The stream failed (its transfer broke, or a byte of it was invalid): emits what the decoder
    /// still holds of the answer so far, so it is shown before the failure (review 61 #1: text
    /// held inside an open tool block was lost). Default: nothing.
    mutating func flush(emit: (ModelEvent) -> Void)
    /// The body ended: whether the stream was complete.
    func end() -> StreamEnd
    /// Whether what came is the whole answer even if the transfer breaks now (its end marker
    /// still to come): Anthropic's stop reason, Gemini's finish, an OpenAI-format finish with
    /// the usage chunk after it (a finish alone is not: relays put `stop` on every chunk, and
    /// usage may ride on every chunk too). Default:
    /// `end()` says complete.
    var answerIsWhole: Bool { get }
    /// What the upstream said of the prompt before the answer, when it says it first
    /// (Anthropic's `message_start` usage); nil otherwise. Not a total: `.usage` is.
    var promptUsage: Usage? { get }
    /// The answer's id as the upstream named it (Anthropic's `msg_…`, Gemini's `responseId`),
    /// `UpstreamIdentifier`-sanitized, once read; nil otherwise.
    var upstreamID: String? { get }
    /// Events and comment lines read so far (`SSEDecoder.progressMarks`): a call's idle timer
    /// counts a read as activity only when this grows.
    var progressMarks: Int { get }
}

extension ModelStreamDecoder {
    public mutating func finish(emit: (ModelEvent) -> Void) throws(StreamDecodingError) {}
    public mutating func flush(emit: (ModelEvent) -> Void) {}
    public var promptUsage: Usage? { nil }
    public var upstreamID: String? { nil }
    public var answerIsWhole: Bool { end() == .complete }
}

/// One upstream API: how to ask it and how to read its answers. Pure (no I/O): the gateway's
/// transfers carry the bytes. Implementations keep their wire structs private.
public protocol Provider: Sendable {
    var wireFormat: WireFormat { get }
    /// Refuses, with a 400 naming the field, what this API cannot express faithfully (a content
    /// part it has no block for, tool arguments that are not a JSON object, …). Call it before
    /// `httpRequest`, which assumes it passed. Default: everything is expressible.
    func validate(_ request: ModelRequest) throws(APIError)
    /// The request for `request` (streamed or not, as it says) at `endpoint`.
    func httpRequest(for request: ModelRequest, endpoint: ProviderEndpoint, extraHeaders: [(String, String)]) -> ProviderHTTPRequest
    func streamDecoder(maxEventBytes: Int, redactor: Redactor) -> any ModelStreamDecoder
    /// A whole (non-streamed) response body, as the events a stream would have carried.
    func decodeResponse(_ body: [UInt8], redactor: Redactor) throws(StreamDecodingError) -> [ModelEvent]
    /// An error response (any non-2xx status) as the error the client sees: the provider's
    /// message kept (trimmed, redacted), its status where it describes the client's request.
    func error(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError
    /// The status an error response means, for retries and fallbacks as for `error`: the HTTP
    /// status, unless the API says more in its body (Google answers a bad key with a 400).
    /// Default: the HTTP status.
    func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int
    /// An error response's headers as the gateway's retry decision reads them: the upstream's,
    /// and when the API says when to retry in its body (Google's `RetryInfo`), that too, as
    /// `retry-after-ms` (review 59A #1: Gemini's "retry in 3 s" was retried after 40 ms).
    /// Default: the headers.
    func retryHeaders(status: Int, body: [UInt8], headers: [(String, String)]) -> [(String, String)]
}

extension Provider {
    public func validate(_ request: ModelRequest) throws(APIError) {}
    public func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int { status }
    public func retryHeaders(status: Int, body: [UInt8], headers: [(String, String)]) -> [(String, String)] { headers }
}

/// A provider's own rules for its model names, where a fixed `models` list cannot say (the
/// simulated models take options after their name: `sim/paced:deltas=10`).
public protocol ModelCatalog: Sendable {
    /// The names to list in `/v1/models`.
    var models: [String] { get }
    /// Served only by this process, for demos and tests.
    var isSimulated: Bool { get }
    /// Accepts `model` (the part after `provider/`) or says, in words for the client, why not.
    func validate(_ model: String) throws(APIError)
}
