import GatewayCore

/// Anthropic's Messages API (`POST {base}/messages`, e.g. `https://api.anthropic.com/v1`).
///
/// Authenticates with `x-api-key` and pins `anthropic-version: 2023-06-01` (an endpoint's
/// `headers` may name another version; see `AnthropicRequestEncoder` for what changes with it).
public struct AnthropicProvider: Provider {
    public static let defaultAPIVersion = "2023-06-01"
    /// `max_tokens` is required by the API: this is sent when the request sets no limit.
    public static let defaultMaxTokens: Int64 = 4096
    /// The inline media Anthropic reads: images and PDFs (as documents).
    static let inlineMediaTypes: Set<String> = ["image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"]

    public let defaultMaxTokens: Int64

    public init(defaultMaxTokens: Int64 = AnthropicProvider.defaultMaxTokens) {
        self.defaultMaxTokens = min(max(defaultMaxTokens, 1), Usage.maxTokens)
    }

    public var wireFormat: WireFormat { .anthropicMessages }

    public func validate(_ request: ModelRequest) throws(APIError) {
        try NativeRequestRules.validateOptions(request, api: "Anthropic's API")
        try NativeRequestRules.validateMessages(request.messages, api: "Anthropic's API", accepts: Self.inlineMediaTypes.contains)
        for (index, message) in request.messages.enumerated() where message.role == .tool && (message.toolCallID ?? "").isEmpty {
            throw .invalidRequest("A tool result for Anthropic's API needs the id of the call it answers.",
                                  param: message.toolCallIDPath(at: index))
        }
        // Another API's hosted tools (Responses' web_search_preview, custom tools) have no shape
        // here; Anthropic's own server tools (every one a versioned type, `web_search_20250305`)
        // go as they came, from any client.
        for (index, tool) in request.tools.enumerated() {
            guard case .other(let json) = tool else { continue }
            let type = json["type"]?.stringValue ?? ""
            guard !Self.isServerToolType(type) else { continue }
            throw .invalidRequest("Anthropic's API has no '\(type)' tool: send function tools, or its own server tools (e.g. web_search_20250305).",
                                  param: "tools[\(index)]")
        }
        // A Messages client's own `output_config.format` goes as it came (its neutral copy is for
        // other APIs); a `json_schema` format is `output_config.format` (`AnthropicRequestEncoder`).
        let ownFormat = request.extraFieldsFormat == .anthropicMessages && request.extraFields["output_config"]?["format"] != nil
        if !ownFormat, let format = request.responseFormat?["type"]?.stringValue, format != "json_object" && format != "text" {
            guard format == "json_schema" else {
                throw .invalidRequest("Anthropic's API has no structured output format '\(format)' (json_object is left to the prompt).",
                                      param: "response_format")
            }
            guard AnthropicRequestEncoder.jsonSchema(request.responseFormat) != nil else {
                throw .invalidRequest("A json_schema response format needs its schema, a JSON object, for Anthropic's API.",
                                      param: "response_format")
            }
        }
    }

    /// A tool as Anthropic's API takes it (`name`, `description`, `input_schema`).
    public static func toolJSON(_ tool: ToolDefinition) -> JSONValue { AnthropicRequestEncoder.tool(tool) }

    /// `id` as Anthropic's API takes it (`[a-zA-Z0-9_-]+`): itself if it is, else a valid id of
    /// its own, the same for the same id (a call and its result stay paired).
    public static func toolID(_ id: String) -> String { AnthropicRequestEncoder.toolID(id) }

    /// `name_YYYYMMDD`: how Anthropic versions its server tools' types.
    static func isServerToolType(_ type: String) -> Bool {
        let bytes = Array(type.utf8)
        guard bytes.count > 9, bytes[bytes.count - 9] == UInt8(ascii: "_") else { return false }
        return bytes.suffix(8).allSatisfy { (0x30...0x39).contains($0) }
    }

    public func httpRequest(for request: ModelRequest, endpoint: ProviderEndpoint, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        let version = endpoint.headers.first { $0.key.lowercased() == "anthropic-version" }?.value
        let body = AnthropicRequestEncoder.json(request, version: version ?? Self.defaultAPIVersion, defaultMaxTokens: defaultMaxTokens)
        return ProviderHTTPRequest(url: endpoint.baseURL + "/messages",
                                   headers: Self.headers(endpoint, accept: request.stream ? "text/event-stream" : "application/json") + extraHeaders,
                                   body: body.serialized(verbatim: request.verbatim, in: ["tools", "output_config"]))
    }

    /// `POST {base}/messages/count_tokens` with `body` (a Messages body without `max_tokens`, as
    /// the client sent it, its model the upstream's): Anthropic's own count of its input.
    public static func tokenCountRequest(body: [UInt8], endpoint: ProviderEndpoint) -> ProviderHTTPRequest {
        ProviderHTTPRequest(url: endpoint.baseURL + "/messages/count_tokens", headers: headers(endpoint, accept: "application/json"), body: body)
    }

    /// A client's `anthropic-beta` (the SDKs' `betas=`: features a request opts into, some
    /// enabling fields of its body), as the names it lists joined by commas; nil when absent or
    /// empty. Names are letters, digits, `.`, `_`, `-` (at most 128 bytes each, 32 of them).
    public static func betaNames(_ header: String?) throws(APIError) -> String? {
        guard let header else { return nil }
        var names: [String] = []
        for piece in header.split(separator: ",", omittingEmptySubsequences: false) {
            let name = piece.trimmingASCIIBlanks()
            if name.isEmpty { continue }
            guard name.utf8.count <= 128, name.utf8.allSatisfy(Self.isBetaNameByte), names.count < 32 else {
                throw .invalidRequest("anthropic-beta must list at most 32 beta names (letters, digits, '.', '_', '-'), separated by commas.")
            }
            if !names.contains(name) { names.append(name) }
        }
        return names.isEmpty ? nil : names.joined(separator: ",")
    }

    /// `headers` with a client's beta names added: to the endpoint's own `anthropic-beta` if it
    /// has one, else as one.
    public static func addingBetas(_ betas: String?, to headers: [(String, String)]) -> [(String, String)] {
        guard let betas else { return headers }
        var headers = headers
        if let index = headers.firstIndex(where: { $0.0.lowercased() == "anthropic-beta" }) {
            let configured = headers[index].1.split(separator: ",").map { $0.trimmingASCIIBlanks() }.filter { !$0.isEmpty }
            let added = betas.split(separator: ",").map(String.init).filter { !configured.contains($0) }
            headers[index].1 = (configured + added).joined(separator: ",")
        } else {
            headers.append(("anthropic-beta", betas))
        }
        return headers
    }

    private static func isBetaNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"): true
        default: false
        }
    }

    /// The key, the API version (unless the endpoint names one) and the endpoint's own headers.
    private static func headers(_ endpoint: ProviderEndpoint, accept: String) -> [(String, String)] {
        var headers: [(String, String)] = [("Content-Type", "application/json"), ("Accept", accept)]
        if let key = endpoint.apiKey { headers.append(("x-api-key", key)) }
        if !endpoint.headers.keys.contains(where: { $0.lowercased() == "anthropic-version" }) {
            headers.append(("anthropic-version", defaultAPIVersion))
        }
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
        return headers
    }

    public func streamDecoder(maxEventBytes: Int, redactor: Redactor) -> any ModelStreamDecoder {
        AnthropicStreamDecoder(maxEventBytes: maxEventBytes, redactor: redactor)
    }

    public func decodeResponse(_ body: [UInt8], redactor: Redactor) throws(StreamDecodingError) -> [ModelEvent] {
        guard let json = try? JSONValue.parse(body), case .object = json else {
            throw StreamDecodingError("the upstream's response is not a JSON object")
        }
        return AnthropicResponse.events(json, redactor: redactor)
    }

    public func error(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        AnthropicErrors.map(status: status, body: body, headers: headers, provider: provider, redactor: redactor)
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmingASCIIBlanks() -> String {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
