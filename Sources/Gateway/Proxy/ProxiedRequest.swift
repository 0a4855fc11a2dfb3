import Providers
import Surfaces

/// A chat request on its way to a provider.
struct ProxiedRequest {
    /// As the client sent it.
    let chat: ChatRequest
    /// In neutral form, `model` the slug to route.
    let neutral: ModelRequest
    /// Nothing was rewritten: to a provider speaking the client's format, the client's own bytes
    /// are relayed (only `model` replaced), unknown fields and all.
    let relayRawBody: Bool

    var stream: Bool { chat.stream }

    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        if relayRawBody && route.provider.wireFormat == .openAIChat {
            return ProviderHTTPRequest(
                url: route.endpoint.baseURL + "/chat/completions",
                headers: OpenAICompatibleProvider.headers(endpoint: route.endpoint, stream: stream, extra: extraHeaders),
                body: chat.upstreamBody(model: route.upstreamModel, maxTokensField: route.endpoint.maxTokensField.rawValue))
        }
        var request = neutral
        request.model = route.upstreamModel
        return route.provider.httpRequest(for: request, endpoint: route.endpoint, extraHeaders: extraHeaders)
    }
}
