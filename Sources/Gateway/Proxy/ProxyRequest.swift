import Fusion
import GatewayCore
import Providers
import Surfaces

/// A client's request on its way to one provider, in whatever API the client spoke: how to ask
/// the upstream, and how the answer goes back (`Relay` streamed, `wholeBody` not). The proxy
/// (`CompletionProxy`) is the same for every API.
protocol ProxyRequest: Sendable {
    associatedtype Relay: ClientRelay
    var api: ClientAPI { get }
    var stream: Bool { get }
    /// The model the client asked for (every response and record names it).
    var clientModel: String { get }
    /// The request in neutral form.
    var neutral: ModelRequest { get }
    /// The prompt's tokens, roughly (a quarter of its bytes): what a stream that ends without the
    /// upstream's usage is charged for its prompt.
    var estimatedPromptTokens: Int64 { get }
    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest
    /// The relay for one attempt's stream (or the whole body answering a streamed request:
    /// `ClientRelay.relayWhole`).
    func makeRelay(route: ModelRoute, context: ProxyContext) -> Relay
    /// The non-streamed answer: `body` the upstream's 2xx body, `events` what it says.
    func wholeBody(route: ModelRoute, body: [UInt8], events: [ModelEvent], context: ProxyContext) throws(APIError) -> [UInt8]
    /// A field of the neutral request (chat's names, as providers' checks name them) under the
    /// name this client sent it.
    func clientParam(_ param: String) -> String
    /// A whole (non-streamed) answer from `route` goes to the client as its upstream wrote it
    /// (ids and model replaced), usage included: nothing the gateway computes is added to it.
    func relaysWholeBodyAsSent(route: ModelRoute) -> Bool
    /// A whole answer's output in tokens (about four bytes each) when its events say less than
    /// the client got (an OpenAI-format answer of `n` > 1 choices: the events hold choice 0's).
    func wholeAnswerOutputTokens(route: ModelRoute, body: [UInt8]) -> Int64?
}

extension ProxyRequest {
    func clientParam(_ param: String) -> String { api.clientParam(param) }
    func relaysWholeBodyAsSent(route: ModelRoute) -> Bool { false }
    func wholeAnswerOutputTokens(route: ModelRoute, body: [UInt8]) -> Int64? { nil }

    /// For a whole answer without usage, the estimate its record charges
    /// (`ProxyAccounting.wholeAnswer`: the prompt by its size, the output at about four bytes a
    /// token), costed as a stream's is: the client is told it, flagged, rather than `null` or a
    /// measured zero (review 52A #6). Nil when the upstream reported usage or said nothing.
    func wholeUsageEstimate(_ events: [ModelEvent], route: ModelRoute) -> Usage? {
        guard !events.contains(where: { if case .usage = $0 { true } else { false } }),
              let completion = ModelEvent.estimatedOutputTokens(events) else { return nil }
        return Usage.estimate(prompt: Usage(promptTokens: estimatedPromptTokens), completionTokens: completion).costed(at: route.price)
    }
}

/// What every response of one proxied request shares.
struct ProxyContext: Sendable {
    let generationID: String
    let created: Int
    let maxEventBytes: Int
    let redactor: Redactor
}

/// A chat completion (`POST /v1/chat/completions`).
struct ChatProxyRequest: ProxyRequest {
    /// As the client sent it.
    let chat: ChatRequest
    /// In neutral form, `model` the slug to route.
    let neutral: ModelRequest
    /// Nothing was rewritten: to a provider speaking the client's format, the client's own bytes
    /// are relayed (only `model` replaced), unknown fields and all.
    let relayRawBody: Bool

    var api: ClientAPI { .chatCompletions }
    var stream: Bool { chat.stream }
    var clientModel: String { chat.model }
    var estimatedPromptTokens: Int64 { Int64(chat.rawBody.count / 4) }

    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        if relayRawBody && route.provider.wireFormat == .openAIChat {
            return ProviderHTTPRequest(
                url: route.endpoint.baseURL + "/chat/completions",
                headers: OpenAICompatibleProvider.headers(endpoint: route.endpoint, stream: stream, extra: extraHeaders),
                body: chat.upstreamBody(model: route.upstreamModel, maxTokensField: route.endpoint.maxTokensField.rawValue,
                                        asksForUsage: route.endpoint.asksForStreamUsage, toOpenRouter: route.endpoint.isOpenRouter))
        }
        var request = neutral
        request.model = route.upstreamModel
        return route.provider.httpRequest(for: request, endpoint: route.endpoint, extraHeaders: extraHeaders)
    }

    func makeRelay(route: ModelRoute, context: ProxyContext) -> ChatStreamRelay {
        let fallback = chat.asksForUsage
            ? SSERelay.UsageFallback(promptTokens: estimatedPromptTokens, created: context.created, price: route.price) : nil
        if route.provider.wireFormat == .openAIChat {  // a whole answer too (`ChatStreamRelay.relayWhole`)
            return .passThrough(id: context.generationID, model: route.slug, created: context.created, maxEventBytes: context.maxEventBytes,
                                includeUsage: chat.asksForUsage, usageFallback: fallback, redactor: context.redactor, choices: chat.choices)
        }
        return .translating(route.provider.streamDecoder(maxEventBytes: context.maxEventBytes, redactor: context.redactor),
                            id: context.generationID, model: route.slug, created: context.created, includeUsage: chat.asksForUsage,
                            usageFallback: fallback, price: route.price)  // a whole answer without usage: estimated by its size
    }

    func relaysWholeBodyAsSent(route: ModelRoute) -> Bool { route.provider.wireFormat == .openAIChat }

    func wholeAnswerOutputTokens(route: ModelRoute, body: [UInt8]) -> Int64? {
        guard chat.choices > 1, route.provider.wireFormat == .openAIChat,
              let bytes = ChatCompletionBody.outputBytes(body, choices: chat.choices), bytes > 0 else { return nil }
        return Int64(bytes / 4 + 1)
    }

    func wholeBody(route: ModelRoute, body: [UInt8], events: [ModelEvent], context: ProxyContext) throws(APIError) -> [UInt8] {
        let whole = relaysWholeBodyAsSent(route: route)
            ? ChatCompletionBody.rewriting(body, id: context.generationID, model: route.slug, created: context.created, choices: chat.choices)
            : ChatCompletionBody.make(id: context.generationID, model: route.slug, created: context.created, events: events)
        guard let whole else { throw .upstreamProtocol("the upstream's response is not a JSON object") }
        return whole
    }
}

/// An Anthropic Messages request (`POST /v1/messages`).
struct MessagesProxyRequest: ProxyRequest {
    let messages: MessagesRequest
    let neutral: ModelRequest
    /// Nothing was rewritten: an Anthropic upstream gets the client's own bytes (thinking
    /// blocks with their signatures, cache controls), only `model` replaced.
    let relayRawBody: Bool
    /// The client's `anthropic-beta` names, for an Anthropic upstream (others have no such thing).
    var betas: String?

    var api: ClientAPI { .messages }
    var stream: Bool { messages.stream }
    var clientModel: String { messages.model }
    var estimatedPromptTokens: Int64 { Int64(messages.rawBody.count / 4) }

    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        var request = neutral
        request.model = route.upstreamModel
        var http = route.provider.httpRequest(for: request, endpoint: route.endpoint, extraHeaders: extraHeaders)
        if route.provider.wireFormat == .anthropicMessages {
            if relayRawBody { http.body = messages.upstreamBody(model: route.upstreamModel) }
            http.headers = AnthropicProvider.addingBetas(betas, to: http.headers)
        }
        return http
    }

    /// `model`: the route that answers, a fallback's when one took over, as chat's and Responses'.
    /// A stream names it in `message_start`, which waits for the answer's first block (an
    /// attempt that failed before showed nothing).
    func makeRelay(route: ModelRoute, context: ProxyContext) -> TranslatingRelay<MessagesStreamWriter> {
        TranslatingRelay(decoder: route.provider.streamDecoder(maxEventBytes: context.maxEventBytes, redactor: context.redactor),
                         writer: MessagesStreamWriter(id: context.generationID, model: route.slug, deferredStart: true, stopSequences: neutral.stop),
                         estimatedPromptTokens: estimatedPromptTokens, price: route.price)
    }

    func wholeBody(route: ModelRoute, body: [UInt8], events: [ModelEvent], context: ProxyContext) throws(APIError) -> [UInt8] {
        var response = MessagesResponse(id: context.generationID, model: route.slug, stopSequences: neutral.stop)
        for event in events { response.add(event) }
        if let estimate = wholeUsageEstimate(events, route: route) { response.addEstimatedUsage(estimate) }
        return try response.body()
    }
}

/// An OpenAI Responses request (`POST /v1/responses`): always translated (no provider speaks it).
struct ResponsesProxyRequest: ProxyRequest {
    let responses: ResponsesRequest
    let neutral: ModelRequest

    var api: ClientAPI { .responses }
    var stream: Bool { responses.stream }
    var clientModel: String { responses.model }
    var estimatedPromptTokens: Int64 { Int64(responses.bodyBytes / 4) }

    func httpRequest(for route: ModelRoute, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        var request = neutral
        request.model = route.upstreamModel
        return route.provider.httpRequest(for: request, endpoint: route.endpoint, extraHeaders: extraHeaders)
    }

    /// `model`: the route that answers, a fallback's when one took over (as chat's and the record's
    /// say; review 64B #2 read the model that failed). A stream names it too: `response.created`
    /// waits for the answer's first event, and nothing is retried or fallen back from after it
    /// (review 107 #1; before, it went out at the first upstream's head and kept that model).
    private func envelope(_ context: ProxyContext, route: ModelRoute) -> ResponseEnvelope {
        ResponseEnvelope(generationID: context.generationID, createdAt: context.created, model: route.slug,
                         echoed: responses.echoedFields)
    }

    func makeRelay(route: ModelRoute, context: ProxyContext) -> TranslatingRelay<ResponsesTranslation> {
        TranslatingRelay(decoder: route.provider.streamDecoder(maxEventBytes: context.maxEventBytes, redactor: context.redactor),
                         writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: envelope(context, route: route), stream: true)),
                         estimatedPromptTokens: estimatedPromptTokens, price: route.price)
    }

    func wholeBody(route: ModelRoute, body: [UInt8], events: [ModelEvent], context: ProxyContext) throws(APIError) -> [UInt8] {
        var writer = ResponsesStreamWriter(envelope: envelope(context, route: route), stream: false)
        var discarded: [UInt8] = []
        for event in events { writer.append(event, to: &discarded) }
        if !events.contains(.finish(.length)), let refusal = ResponsesTranslation.refusalAtEnd(of: writer) { throw refusal }
        let estimate = ResponsesTranslation.usageJSON(wholeUsageEstimate(events, route: route), estimated: true)
        return writer.response(usage: estimate, completedAt: ResponsesTranslation.now()).serialized()
    }
}
