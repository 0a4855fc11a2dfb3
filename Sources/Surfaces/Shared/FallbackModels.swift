import GatewayCore

/// OpenRouter's `models`: the models tried in order when the request's own fails before its
/// answer began (`CompletionProxy`, and a deliberation's outer turn), on every surface. At most
/// eight names, each a non-empty string; the request's own model and repeats are dropped.
enum FallbackModels {
    /// The fallbacks `value` names beside `model`; a wrong value is the surface's error:
    /// `wrongList` for what is not a list of at most eight, `wrongName(i)` for item `i`.
    static func parse(_ value: JSONValue?, besides model: String, wrongList: (JSONValue) -> APIError,
                      wrongName: (Int) -> APIError) throws(APIError) -> [String] {
        guard let value, value != .null else { return [] }
        guard let list = value.arrayValue, list.count <= 8 else { throw wrongList(value) }
        var fallbacks: [String] = []
        for (index, item) in list.enumerated() {
            guard let name = item.stringValue, !name.isEmpty else { throw wrongName(index) }
            if name != model && !fallbacks.contains(name) { fallbacks.append(name) }
        }
        return fallbacks
    }

    /// The OpenAI-shaped surfaces' errors for it (chat and Responses): `models[1]`.
    static func parse(_ value: JSONValue?, besides model: String) throws(APIError) -> [String] {
        try parse(value, besides: model,
                  wrongList: { ChatRequest.invalidType("models", expected: "an array of at most 8 model names", got: $0) },
                  wrongName: { .invalidRequest("'models[\($0)]' must be a non-empty string.", param: "models[\($0)]") })
    }
}
