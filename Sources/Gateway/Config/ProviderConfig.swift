import Foundation
import Providers
import Yams

extension GatewayConfig {
    /// One entry of `providers:`, checked whole: its name, kind, base URL, headers and models.
    /// `index`: its place under `providers:`, which names it when its name is no provider name
    /// (a secret pasted there is never printed: review 124 #3).
    static func parseProvider(_ name: String, _ provider: ConfigNode, index: Int = 0) throws -> Provider {
        guard !simulatedProviderNames.contains(name) else {
            throw ConfigError("\(provider.path): the provider name '\(name)' is reserved for the built-in simulated models")
        }
        // A model's first segment, in slugs, logs and metric labels: one word (review 52B #6).
        guard (1...64).contains(name.utf8.count), name.utf8.allSatisfy({ Self.nameBytes.contains($0) }) else {
            throw ConfigError("providers: entry \(index + 1)'s name is not a provider name: 1 to 64 letters, digits, '.', '_' or '-' (it is the first segment of its models' names)")
        }
        try provider.allowOnly(["kind", "base_url", "api_key_env", "headers", "headers_env", "models", "max_tokens_field", "reasoning_field",
                                "stream_usage"],
                               hint: "API keys never go in the config: set api_key_env to the name of an environment variable")
        let kindName = try provider.string("kind") ?? "openai"
        guard let kind = Provider.Kind(rawValue: kindName) else {
            throw ConfigError("\(provider.path).kind: unknown provider kind '\(kindName)' (supported: \(Provider.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let baseURL = try provider.string("base_url") ?? kind.defaultBaseURL else {
            throw ConfigError("\(provider.path).base_url is required")
        }
        try ConfigError.checkBaseURL(baseURL, path: "\(provider.path).base_url")
        var headers: [String: String] = [:]
        if let headerNode = try provider.child("headers") {
            for (index, (header, value)) in try headerNode.members().enumerated() {
                try checkHeaderName(header, path: value.path, parent: headerNode.path, index: index)
                // A credential written here is no secret to the redactor: an upstream echoing it
                // put it in clients' errors, records and logs (review 62D #2).
                guard !Self.credentialHeaders.contains(header.lowercased()) else {
                    throw ConfigError("\(value.path): \(header) carries a credential, which never goes in the config: "
                                      + "name its environment variable in headers_env (or the key's in api_key_env)")
                }
                guard let text = value.node.scalar?.string else {
                    throw ConfigError("\(value.path) must be a string")
                }
                guard !text.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) else {
                    throw ConfigError("\(value.path) holds a control character (a line break?), which no header value may")
                }
                headers[header] = text
            }
        }
        var secretHeaders: [String: String] = [:]
        if let headerNode = try provider.child("headers_env") {
            for (index, (header, value)) in try headerNode.members().enumerated() {
                try checkHeaderName(header, path: value.path, parent: headerNode.path, index: index)
                let variable = try value.environmentVariableName()
                guard !headers.keys.contains(where: { $0.lowercased() == header.lowercased() }) else {
                    throw ConfigError("\(value.path): \(header) is also in \(provider.path).headers; give it in one place")
                }
                // The key goes in its own header (`Authorization`, Anthropic's `x-api-key`,
                // Gemini's `x-goog-api-key`): another given beside it went upstream twice.
                if try provider.string("api_key_env") != nil, header.lowercased() == kind.keyHeader {
                    throw ConfigError("\(value.path): the key named by api_key_env is sent in \(header); give it in one place")
                }
                secretHeaders[header] = variable
            }
        }
        var parsed = Provider(
            name: name, kind: kind,
            baseURL: normalizedBaseURL(baseURL),
            apiKeyEnvironmentVariable: try provider.environmentVariable("api_key_env"),
            headers: headers,
            models: try parseModels(provider))
        parsed.headerEnvironmentVariables = secretHeaders
        // Fields of OpenAI-compatible servers only: the native kinds have their own.
        for key in ["max_tokens_field", "reasoning_field", "stream_usage"] where kind != .openai {
            guard try provider.child(key) == nil else {
                throw ConfigError("\(provider.path).\(key) applies to kind openai only (\(kind.rawValue) has its own field)")
            }
        }
        parsed.maxTokensField = try provider.choice("max_tokens_field", of: ProviderEndpoint.MaxTokensField.self)
            ?? .standard(forBaseURL: parsed.baseURL)
        parsed.reasoningField = try provider.choice("reasoning_field", of: ProviderEndpoint.ReasoningField.self)
        parsed.streamUsage = try provider.bool("stream_usage") ?? true
        return parsed
    }

    /// The scheme in lower case (read as such elsewhere; RFC 3986 schemes ignore case) and no
    /// trailing slash (the API's path is appended with one: `…/v1//chat/completions` otherwise).
    static func normalizedBaseURL(_ url: String) -> String {
        var normalized = url
        if let colon = normalized.firstIndex(of: ":") { normalized = normalized[..<colon].lowercased() + normalized[colon...] }
        while normalized.hasSuffix("/") { normalized.removeLast() }
        return normalized
    }

    static let nameBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".utf8)

    /// Headers that carry a credential, in lower case (every kind's key header among them): only
    /// `headers_env` may set them.
    static let credentialHeaders: Set<String> = ["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"]
    /// Headers the gateway and curl write for the request's framing and connection: a configured
    /// one made the upstream read another request than the one sent (review 62D #5).
    static let framingHeaders: Set<String> = ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                                              "trailer", "upgrade", "expect", "proxy-connection"]

    /// A configured header's name: an RFC 9110 token, and none of the framing headers.
    /// One that is no header name is named by its place under `parent` (`"Bearer sk-…"` pasted
    /// there is never printed: review 124 #3).
    static func checkHeaderName(_ name: String, path: String, parent: String, index: Int) throws {
        guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else {
            throw ConfigError("\(parent): entry \(index + 1)'s name is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        }
        guard !framingHeaders.contains(name.lowercased()) else {
            throw ConfigError("\(path): \(name) is the gateway's to write (it frames the request); leave it out")
        }
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }

    /// `models:` (the only models a provider serves): a list that names something, each once.
    private static func parseModels(_ provider: ConfigNode) throws -> [String]? {
        guard let models = try provider.stringList("models") else { return nil }
        guard !models.isEmpty else {
            throw ConfigError("\(provider.path).models is empty, which would route nothing: list its models, or leave models out for any")
        }
        var seen = Set<String>()
        for (index, model) in models.enumerated() {
            guard !model.trimmingCharacters(in: .whitespaces).isEmpty else { throw ConfigError("\(provider.path).models[\(index)] is empty") }
            guard seen.insert(model).inserted else { throw ConfigError("\(provider.path).models[\(index)] repeats '\(model)'") }
        }
        return models
    }
}

extension GatewayConfig.Provider.Kind {
    /// The header its API key goes in, lower case.
    var keyHeader: String {
        switch self {
        case .openai: "authorization"
        case .anthropic: "x-api-key"
        case .gemini: "x-goog-api-key"
        }
    }
}
