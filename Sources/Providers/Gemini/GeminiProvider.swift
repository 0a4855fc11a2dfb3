import GatewayCore

/// Google's Gemini API (`POST {base}/models/{model}:streamGenerateContent?alt=sse`, or
/// `:generateContent` not streamed; base e.g. `https://generativelanguage.googleapis.com/v1beta`),
/// authenticated with `x-goog-api-key`.
public struct GeminiProvider: Provider {
    public init() {}

    public var wireFormat: WireFormat { .gemini }

    public func validate(_ request: ModelRequest) throws(APIError) {
        try NativeRequestRules.validateOptions(request, api: "Gemini's API")
        try NativeRequestRules.validateMessages(request.messages, api: "Gemini's API", accepts: { _ in true })
        try NativeRequestRules.refuseAnthropicOnlyInput(request.messages, api: "Gemini's API")
        for (index, message) in request.messages.enumerated()
        where message.role == .tool && GeminiRequestEncoder.functionName(answeredBy: message, in: request.messages) == nil {
            throw .invalidRequest("A tool result for Gemini's API needs the function's name: give 'name', or the id of an earlier call.",
                                  param: message.toolCallIDPath(at: index))
        }
        for (index, tool) in request.tools.enumerated() where tool.functionName == nil {
            throw .invalidRequest("Gemini's API takes function tools only.", param: "tools[\(index)]")
        }
        // Gemini's `seed` is a 32-bit integer; a larger one would be Gemini's own 400, in its words.
        if request.extraFieldsFormat == .openAIChat, let seed = request.extraFields["seed"]?.intValue, Int32(exactly: seed) == nil {
            throw .invalidRequest("Gemini's API takes a 'seed' from \(Int32.min) to \(Int32.max).", param: "seed")
        }
        if let format = request.responseFormat?["type"]?.stringValue, !["text", "json_object", "json_schema"].contains(format) {
            throw .invalidRequest("Gemini's API has no structured output format '\(format)'.", param: "response_format")
        }
    }

    public func httpRequest(for request: ModelRequest, endpoint: ProviderEndpoint, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        var headers: [(String, String)] = [
            ("Content-Type", "application/json"),
            ("Accept", request.stream ? "text/event-stream" : "application/json"),
        ]
        if let key = endpoint.apiKey { headers.append(("x-goog-api-key", key)) }
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
        return ProviderHTTPRequest(url: endpoint.baseURL + GeminiRequestEncoder.path(model: request.model, stream: request.stream),
                                   headers: headers + extraHeaders, body: GeminiRequestEncoder.json(request).serialized(verbatim: request.verbatim, in: ["tools", "generationConfig"]))
    }

    public func streamDecoder(maxEventBytes: Int, redactor: Redactor) -> any ModelStreamDecoder {
        GeminiStreamDecoder(maxEventBytes: maxEventBytes, redactor: redactor)
    }

    public func decodeResponse(_ body: [UInt8], redactor: Redactor) throws(StreamDecodingError) -> [ModelEvent] {
        // `streamGenerateContent` without `alt=sse` (a server ignoring it, or a proxy that drops
        // the query) answers with one JSON array of the chunks a stream would carry: read in
        // order, as the stream would be.
        let responses: [JSONValue]
        switch try? JSONValue.parse(body) {
        case .object(let fields)?: responses = [.object(fields)]
        case .array(let chunks)? where !chunks.isEmpty: responses = chunks
        default: throw StreamDecodingError("the upstream's response is not a JSON object or an array of them")
        }
        var reader = GeminiResponseReader(redactor: redactor)
        var events: [ModelEvent] = []
        for response in responses { try reader.read(response) { events.append($0) } }
        reader.bodyEnded { events.append($0) }
        // Neither a candidate nor a blocked prompt (`{}`): no answer, retried or fallen back from
        // like a 502 rather than passed on as an empty success (review 52A #3).
        guard reader.answered else {
            // Review 99 #6: a candidate whose `index` is "0" (a string) was told as none at all.
            let what = reader.onlyOtherCandidates ? "no candidate of index 0 (the one asked for)" : "no candidates"
            return [.error(.upstreamProtocol("the upstream's response has \(what)"))]
        }
        // An answer without a `finishReason` is cut, as a stream without one is: never passed on
        // as finished (review 64D #1: a whole body, or the array form, became `stop`/`end_turn`,
        // and a chat stream ended with no finish at all). Nothing of it was shown yet: retried
        // or fallen back from.
        guard reader.ended else {
            var error = APIError.upstreamTruncated()
            error.message = "The upstream's answer ended without a finish reason (it may be incomplete)."
            return [.error(error)]
        }
        return events
    }

    public func error(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        GeminiErrors.map(status: meaningOfStatus(status, body: body), sentStatus: status, body: body, headers: headers, provider: provider,
                         redactor: redactor)
    }

    public func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int { GeminiErrors.meaningOfStatus(status, body: body) }

    public func retryHeaders(status: Int, body: [UInt8], headers: [(String, String)]) -> [(String, String)] {
        GeminiErrors.retryHeaders(body: body, headers: headers)
    }
}
