import GatewayCore
import Providers
import Testing

@Suite struct GeminiProviderTests {
    let provider = GeminiProvider()
    let endpoint = ProviderEndpoint(name: "gemini", baseURL: "https://generativelanguage.googleapis.com/v1beta", apiKey: "AIza-secret")

    func body(_ request: ModelRequest) throws -> JSONValue {
        try JSONValue.parse(provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: []).body)
    }

    static var richRequest: ModelRequest {
        var request = ModelRequest(model: "gemini-2.5-flash", messages: [
            ModelMessage(role: .system, text: "Be brief."),
            ModelMessage(role: .user, content: [.text("What is this?"), .image(url: "https://x.example/a.PNG?v=1", detail: nil),
                                                .image(url: "data:image/jpeg;base64,/9j/4AA=", detail: "high"),
                                                .image(url: "data:,plain%20text", detail: nil)]),
            ModelMessage(role: .user, text: "And the weather?"),
            ModelMessage(role: .assistant, content: [.text("Looking.")], toolCalls: [
                ToolCall(index: 0, id: "call_1", name: "look", arguments: #"{"what":"a"}"#),
                ToolCall(index: 1, id: "", name: "weather", arguments: ""),
            ]),
            ModelMessage(role: .tool, content: [.text("a cat"), .image(url: "data:image/png;base64,iVBO", detail: nil)], toolCallID: "call_1"),
            ModelMessage(role: .tool, content: [.text(#"{"sky":"clear"}"#)], name: "weather"),
            ModelMessage(role: .assistant, text: ""),
        ])
        request.tools = [
            .function(name: "look", description: "Look at things",
                      parameters: .object(["type": .string("object"), "additionalProperties": .bool(false)]), strict: nil),
            .function(name: "weather", description: nil, parameters: nil, strict: nil),
        ]
        request.toolChoice = .function("look")
        request.maxOutputTokens = 2000
        request.temperature = 0.5
        request.topP = 0.9
        request.topK = 40
        request.user = "u-1"  // Gemini has no such field
        request.stop = ["END"]
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        request.responseFormat = .object(["type": .string("json_schema"), "json_schema": .object(["name": .string("s"),
                                          "schema": .object(["type": .string("object")])])])
        request.extraFields = ["seed": .int(7)]
        return request
    }

    @Test func aRichRequestEncodesToTheGoldenBody() throws {
        let golden = try JSONValue.parse(Array(#"""
            {"systemInstruction":{"parts":[{"text":"Be brief."}]},
             "contents":[
              {"role":"user","parts":[
                {"text":"What is this?"},
                {"fileData":{"fileUri":"https://x.example/a.PNG?v=1","mimeType":"image/png"}},
                {"inlineData":{"mimeType":"image/jpeg","data":"/9j/4AA="}},
                {"inlineData":{"mimeType":"text/plain","data":"cGxhaW4gdGV4dA=="}},
                {"text":"And the weather?"}]},
              {"role":"model","parts":[
                {"text":"Looking."},
                {"functionCall":{"id":"call_1","name":"look","args":{"what":"a"}},"thoughtSignature":"skip_thought_signature_validator"},
                {"functionCall":{"name":"weather","args":{}}}]},
              {"role":"user","parts":[
                {"functionResponse":{"id":"call_1","name":"look","response":{"output":"a cat"}}},
                {"inlineData":{"mimeType":"image/png","data":"iVBO"}},
                {"functionResponse":{"name":"weather","response":{"sky":"clear"}}}]}],
             "tools":[{"functionDeclarations":[
               {"name":"look","description":"Look at things","parametersJsonSchema":{"type":"object","additionalProperties":false}},
               {"name":"weather"}]}],
             "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["look"]}},
             "generationConfig":{"maxOutputTokens":2000,"temperature":0.5,"topP":0.9,"topK":40,"stopSequences":["END"],"seed":7,
               "thinkingConfig":{"thinkingBudget":1000,"includeThoughts":true},
               "responseMimeType":"application/json","responseJsonSchema":{"type":"object"}}}
            """#.utf8))
        try provider.validate(Self.richRequest)
        #expect(try body(Self.richRequest) == golden)
    }

    @Test func urlsHeadersAndTheModelInThePath() throws {
        var request = Self.richRequest
        let http = provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: [("x-fusion-depth", "1")])
        #expect(http.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        #expect(http.headers.map(\.0) == ["Content-Type", "Accept", "x-goog-api-key", "x-fusion-depth"])
        #expect(http.headers.contains { $0 == ("x-goog-api-key", "AIza-secret") })
        request.stream = false
        request.model = "models/gemini-2.5-pro"
        #expect(provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: []).url
                    == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent")
        request.model = "../../x:y?alt=json#frag é"
        #expect(provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: []).url
                    == "https://generativelanguage.googleapis.com/v1beta/models/..%2F..%2Fx%3Ay%3Falt%3Djson%23frag%20%C3%A9:generateContent",
                "the client's model name cannot change the path or the query")
    }

    @Test func toolChoicesReasoningAndFormats() throws {
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "hi")])
        #expect(try body(request)["generationConfig"] == nil && body(request)["tools"] == nil)
        request.tools = [.function(name: "f", description: nil, parameters: nil, strict: nil)]
        for (choice, mode) in [(ToolChoice.auto, "AUTO"), (.none, "NONE"), (.required, "ANY")] {
            request.toolChoice = choice
            #expect(try body(request)["toolConfig"]?["functionCallingConfig"] == .object(["mode": .string(mode)]))
        }
        request.reasoning = ModelRequest.Reasoning(maxTokens: 5000, exclude: true)
        #expect(try body(request)["generationConfig"]?["thinkingConfig"]
                    == .object(["thinkingBudget": .int(5000), "includeThoughts": .bool(false)]))
        for off in [ModelRequest.Reasoning(effort: "none"), ModelRequest.Reasoning(effort: "high", enabled: false)] {
            request.reasoning = off
            #expect(try body(request)["generationConfig"] == .object(["thinkingConfig": .object(["thinkingBudget": .int(0)])]),
                    "2.5 models think unless told not to")
        }
        // An effort's budget stays in Flash's range; a budget leaves half the output limit for the answer.
        for (effort, limit, budget) in [("xhigh", nil, 24576), ("high", nil, 16384), ("high", 2000, 1000), ("low", 100_000, 2048),
                                        ("medium", 1, 1)] as [(String, Int64?, Int64)] {
            request.reasoning = ModelRequest.Reasoning(effort: effort)
            request.maxOutputTokens = limit
            #expect(try body(request)["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(budget), "\(effort) \(limit ?? 0)")
        }
        // Each model's own range (review 18 B10): Pro cannot stop thinking and takes 128–32,768;
        // Flash-Lite 512–24,576.
        for (model, effort, limit, budget) in [("gemini-2.5-pro", "none", nil, 128), ("gemini-2.5-pro", "max", nil, 32768), ("gemini-2.5-pro", "low", 200, 128),
                                               ("gemini-2.5-flash-lite", "low", 200, 512), ("gemini-2.5-flash-lite", "none", nil, 0),
                                               ("gemini-2.5-flash", "none", nil, 0), ("gemini-2.5-flash", "low", 200, 100)] as [(String, String, Int64?, Int64)] {
            request.model = model
            request.reasoning = ModelRequest.Reasoning(effort: effort)
            request.maxOutputTokens = limit
            #expect(try body(request)["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(budget), "\(model) \(effort) \(limit ?? 0)")
        }
        request.model = "m"
        request.maxOutputTokens = nil
        request.reasoning = ModelRequest.Reasoning(maxTokens: 32768)
        #expect(try body(request)["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(32768), "a client's own budget is sent")
        request.reasoning = ModelRequest.Reasoning(maxTokens: 300)
        #expect(try body(request)["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(300), "not raised to Anthropic's 1024 (review 20 B7)")
        request.reasoning = nil
        request.extraFields = ["frequency_penalty": .double(0.5), "presence_penalty": .double(-1.5), "seed": .double(12), "logit_bias": .object([:])]
        #expect(try body(request)["generationConfig"] == .object(["frequencyPenalty": .double(0.5), "presencePenalty": .double(-1.5), "seed": .int(12)]))
        // Gemini 2.5 and later refuse any penalty (a 400): left out; 0, the default, is never sent.
        for (model, kept) in [("gemini-2.5-flash", false), ("gemini-3-pro-preview", false), ("gemini-flash-latest", false),
                              ("gemini-2.0-flash", true), ("gemini-1.5-pro", true)] {
            request.model = model
            let config = try body(request)["generationConfig"]
            #expect((config?["frequencyPenalty"] != nil) == kept && (config?["presencePenalty"] != nil) == kept, "\(model)")
            #expect(config?["seed"] == .int(12))
        }
        request.model = "m"
        request.extraFields = ["frequency_penalty": .double(0)]
        #expect(try body(request)["generationConfig"] == nil || body(request)["generationConfig"]?["frequencyPenalty"] == nil)
        request.extraFields = [:]
        request.responseFormat = .object(["type": .string("json_object")])
        #expect(try body(request)["generationConfig"] == .object(["responseMimeType": .string("application/json")]))
    }

    @Test(arguments: [
        ("arguments", "messages[0].tool_calls[0].function.arguments"),
        ("audio", "messages[1].content[0]"),
        ("nameless", "messages[2].tool_call_id"),
        ("server-tool", "tools[0]"),
        ("format", "response_format"),
        ("empty-turn", "messages[1].content"),
        ("choices", "n"),
        ("logprobs", "logprobs"),
        ("top-logprobs", "top_logprobs"),
        ("seed", "seed"),
        ("allowed-tools", "tool_choice"),
        ("legacy-functions", "functions"),
        ("custom-call", "messages[0].tool_calls[0]"),
    ])
    func whatTheAPICannotExpressIsRefusedNamingTheField(_ fault: String, _ param: String) {
        var request = ModelRequest(model: "m", messages: [
            ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "t", name: "f", arguments: "{}")]),
            ModelMessage(role: .user, content: [.text("x"), .image(url: "data:audio/wav;base64,AAAA", detail: nil)]),
            ModelMessage(role: .tool, content: [.text("r")], toolCallID: "t"),
        ])
        #expect(throws: Never.self) { try provider.validate(request) }
        switch fault {
        case "arguments": request.messages[0].toolCalls[0].arguments = "not json"
        case "audio": request.messages[1].content[0] = .other(.object(["type": .string("input_audio")]))
        case "nameless": request.messages[2].toolCallID = "unknown"
        case "empty-turn": request.messages[1].content = []
        case "choices": request.extraFields["n"] = .int(2)
        case "logprobs": request.extraFields["logprobs"] = .bool(true)
        case "top-logprobs": request.extraFields["top_logprobs"] = .int(3)
        case "seed": request.extraFields["seed"] = .int(Int64(Int32.max) + 1)
        case "legacy-functions": request.extraFields["functions"] = .array([.object(["name": .string("f")])])  // review 49 SDK F2
        case "custom-call": request.messages[0].toolCalls[0] = ToolCall(index: 0, id: "t", name: "g", arguments: "print(1)", isCustom: true)  // review 49 #3
        case "allowed-tools": request.extraFields["tool_choice"] = .object(["type": .string("allowed_tools")])  // review 48 surfaces #5
        case "server-tool": request.tools = [.other(.object(["type": .string("web_search_preview")]))]
        default: request.responseFormat = .object(["type": .string("xml")])
        }
        do {
            try provider.validate(request)
            Issue.record("\(fault) was accepted")
        } catch {
            #expect(error.status == 400 && error.param == param, "\(fault): \(error.message)")
        }
    }

    @Test func aWholeResponseDecodesToTheEventsOfAStream() throws {
        let body = Array(#"""
            {"candidates":[{"content":{"parts":[{"text":"hm","thought":true},{"text":"Hi"},
              {"functionCall":{"name":"f","args":{"x":1}},"thoughtSignature":"c2ln"}],"role":"model"},
              "finishReason":"STOP","index":0}],
             "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"thoughtsTokenCount":4,"totalTokenCount":9},
             "responseId":"resp1"}
            """#.utf8)
        #expect(try provider.decodeResponse(body, redactor: .none) == [
            .reasoning("hm"), .text("Hi"), .toolCall(ToolCallFragment(index: 0, id: "call_resp1_0", name: "f", arguments: #"{"x":1}"#)),
            .finish(.toolCalls), .usage(Usage(promptTokens: 3, completionTokens: 6, totalTokens: 9, reasoningTokens: 4)),
        ])
        let error = try provider.decodeResponse(Array(#"{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}"#.utf8), redactor: .none)
        #expect(error == [.error(APIError(status: 503, type: "upstream_error", code: "unavailable", message: "The upstream reported an error: busy"))])
        // Hostile counts: clamped, and the total is their sum, not the upstream's figure; a
        // negative one makes no measurement (review 119 #3).
        let hostile = try provider.decodeResponse(Array(#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1e308,"totalTokenCount":0}}"#.utf8), redactor: .none)
        #expect(hostile.last == .usage(Usage(promptTokens: 5, completionTokens: Usage.maxTokens, totalTokens: Usage.maxTokens)))
        let negative = try provider.decodeResponse(Array(#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":-5,"candidatesTokenCount":3}}"#.utf8), redactor: .none)
        #expect(!negative.contains { if case .usage = $0 { true } else { false } }, "\(negative)")
        // No count that is a number (beyond a double, a string): no usage, not a measured zero.
        let unreadable = try provider.decodeResponse(Array(#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1e400,"candidatesTokenCount":"9"}}"#.utf8), redactor: .none)
        #expect(!unreadable.contains { if case .usage = $0 { true } else { false } }, "\(unreadable)")
    }

    /// Calls of a response without a `responseId` get ids no other response's calls share (review
    /// 77A #4: `call__0` on every turn, so a conversation repeated a call id); within one
    /// response they stay distinct and stable.
    @Test func callIDsWithoutAResponseIDDifferAcrossResponses() throws {
        let body = Array(#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}},{"functionCall":{"name":"g","args":{}}}]},"finishReason":"STOP"}]}"#.utf8)
        func ids() throws -> [String] {
            try provider.decodeResponse(body, redactor: .none).compactMap { if case .toolCall(let call) = $0 { call.id } else { nil } }
        }
        let first = try ids(), second = try ids()
        #expect(first.count == 2 && Set(first).count == 2 && first.allSatisfy { $0.hasPrefix("call_") && $0.count > 8 }, "\(first)")
        #expect(Set(first).isDisjoint(with: second), "\(first) \(second)")
    }

    /// `streamGenerateContent` without `alt=sse` answers with a JSON array of the stream's chunks.
    @Test func aWholeArrayOfChunksDecodesLikeTheStream() throws {
        let body = Array(#"""
            [{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}},
             {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2}},
             {"candidates":[{"content":{"parts":[{"text":"after the finish: ignored"}]}}]}]
            """#.utf8)
        #expect(try provider.decodeResponse(body, redactor: .none) == [
            .text("Hel"), .text("lo"), .finish(.stop), .usage(Usage(promptTokens: 3, completionTokens: 2, totalTokens: 5)),
        ])
        let failed = try provider.decodeResponse(Array(#"[{"candidates":[{"content":{"parts":[{"text":"x"}]}}]},{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}]"#.utf8), redactor: .none)
        #expect(failed.first == .text("x") && failed.count == 2)
        if case .error(let error)? = failed.last { #expect(error.status == 503) } else { Issue.record("\(failed)") }
        for bad in ["[]", "[1]", #"[{"candidates":[]},"x"]"#, "\"text\"", "null"] {
            #expect(throws: StreamDecodingError.self, "\(bad)") { try provider.decodeResponse(Array(bad.utf8), redactor: .none) }
        }
    }

    /// A body with neither a candidate nor a blocked prompt (`{}`, usage alone) is no answer: a
    /// protocol error the proxy retries or falls back from (review 52A #3: an empty success).
    @Test func aWholeResponseWithoutACandidateIsAProtocolError() throws {
        for body in ["{}", #"{"candidates":[],"usageMetadata":{"promptTokenCount":3}}"#, #"{"promptFeedback":{}}"#, #"[{"usageMetadata":{"promptTokenCount":3}}]"#] {
            let events = try provider.decodeResponse(Array(body.utf8), redactor: .none)
            #expect(events.count == 1 && { if case .error(let error) = events[0] { error.code == "upstream_protocol_error" && error.status == 502 } else { false } }(),
                    "\(body): \(events)")
        }
        // A blocked prompt has no candidate and is an answer: content_filter.
        let blocked = try provider.decodeResponse(Array(#"{"promptFeedback":{"blockReason":"SAFETY"}}"#.utf8), redactor: .none)
        #expect(blocked == [.finish(.contentFilter)])
    }

    @Test func finishReasonsMapToOpenAIsVocabulary() throws {
        for (reason, finish) in [("STOP", FinishReason.stop), ("MAX_TOKENS", .length), ("SAFETY", .contentFilter), ("RECITATION", .contentFilter),
                                 ("BLOCKLIST", .contentFilter), ("PROHIBITED_CONTENT", .contentFilter), ("SPII", .contentFilter),
                                 ("OTHER", .stop), ("FINISH_REASON_UNSPECIFIED", .stop), ("SOMETHING_NEW", .stop)] {
            let body = Array(#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"\#(reason)"}]}"#.utf8)
            #expect(try provider.decodeResponse(body, redactor: .none) == [.text("x"), .finish(finish)], "\(reason)")
        }
        // Gemini 2.5's empty answer: a candidate with no content that says STOP is the upstream's
        // failure (retried, passed to `models`), not an empty completed answer (review 71C #13).
        let empty = try provider.decodeResponse(Array(#"{"candidates":[{"finishReason":"STOP"}]}"#.utf8), redactor: .none)
        #expect(empty.count == 1 && { if case .error(let error) = empty[0] { error.code == "upstream_protocol_error" } else { false } }(), "\(empty)")
        let missing = try provider.decodeResponse(Array(#"{"candidates":[{"finishReason":"MISSING_THOUGHT_SIGNATURE"}]}"#.utf8), redactor: .none)
        guard case .error(let error)? = missing.first else { Issue.record("\(missing)"); return }
        #expect(error.code == "missing_thought_signature" && error.status == 502)
    }
}

@Suite struct GeminiErrorTests {
    let provider = GeminiProvider()

    func error(_ status: Int, _ body: String, headers: [(String, String)] = [], secrets: [String] = []) -> APIError {
        provider.error(status: status, body: Array(body.utf8), headers: headers, provider: "gemini", redactor: Redactor(secrets: secrets))
    }

    @Test func googleErrorBodiesMapByStatus() {
        let exhausted = error(429, #"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
                              headers: [("Retry-After", "3")])
        #expect(exhausted.status == 429 && exhausted.code == "rate_limited" && exhausted.headers.map(\.1) == ["3"])
        let invalid = error(400, #"{"error":{"code":400,"message":"Invalid value. key=AIza-leaked","status":"INVALID_ARGUMENT"}}"#,
                            secrets: ["AIza-leaked"])
        #expect(invalid.status == 400 && invalid.code == "invalid_argument" && invalid.message.contains("[redacted]"))
        #expect(!invalid.message.contains("AIza-leaked"))
        // Google's answer to a bad key is a 400 too: it is the gateway's credential, not the
        // client's request (502), and so is a project the API is not offered to.
        let badKey = error(400, #"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","#
                           + #""details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#)
        #expect(badKey.status == 502 && badKey.code == "upstream_auth_failed", "\(badKey)")
        #expect(badKey.message.contains("(HTTP 400)"), "the status Google sent, not the one read (review 64D #7): \(badKey.message)")
        let region = error(400, #"[{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}]"#)
        #expect(region.status == 502 && region.code == "upstream_auth_failed", "\(region)")
        #expect(GeminiProvider().meaningOfStatus(400, body: Array(#"{"error":{"status":"INVALID_ARGUMENT"}}"#.utf8)) == 400)
    }

    /// An upstream's error body is hostile too: whatever it holds, reading its meaning never
    /// traps and only Google's exact shapes change a 400 (a reason of another type, a body past
    /// 64 KiB, other statuses are left as they came).
    @Test func anErrorBodyOfAnyShapeKeepsItsStatusUnlessGoogleSaysOtherwise() {
        let keyReason = #"{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}"#
        let hostile = ["", "null", "[]", "[1]", #"{"error":[]}"#, #"{"error":"API_KEY_INVALID"}"#, #"{"error":{"details":"x"}}"#,
                       #"{"error":{"details":[{"@type":1,"reason":"API_KEY_INVALID"}]}}"#,
                       #"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":7}]}}"#,
                       #"{"error":{"status":["FAILED_PRECONDITION"]}}"#, String(repeating: "[", count: 100_000),
                       #"{"error":{"details":["# + keyReason + "]" + String(repeating: " ", count: 70_000) + "}}",
                       "\u{0}\r\n{" + keyReason]
        for body in hostile {
            #expect(GeminiProvider().meaningOfStatus(400, body: Array(body.utf8)) == 400, "\(body.prefix(80))")
        }
        let refused = Array((#"{"error":{"details":["# + keyReason + "]}}").utf8)
        #expect(GeminiProvider().meaningOfStatus(400, body: refused) == 401)
        for status in [401, 403, 404, 429, 500, 503] { #expect(GeminiProvider().meaningOfStatus(status, body: refused) == status) }
        let denied = error(403, #"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#)
        #expect(denied.status == 502 && denied.code == "upstream_auth_failed")
        let unavailable = error(503, #"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#)
        #expect(unavailable.status == 503 && unavailable.code == "unavailable")
        #expect(error(502, "<html>bad gateway</html>").message.contains("<html>bad gateway</html>"))
    }

    /// Google says when to retry in the body (`RetryInfo.retryDelay`): it becomes
    /// `retry-after-ms`, unless a header said; a hostile delay is bounded or ignored. The array
    /// form of an error body is read too.
    @Test func retryInfoBecomesRetryAfterAndTheArrayFormIsRead() {
        func body(_ delay: String) -> String {
            #"[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"\#(delay)"}]}}]"#
        }
        let limited = error(429, body("7.5s"))
        #expect(limited.status == 429 && limited.message.contains("Quota exceeded") && !limited.message.contains("RetryInfo"))
        #expect(limited.headers.map(\.0) == ["retry-after-ms"] && limited.headers.map(\.1) == ["7500"])
        #expect(error(429, body("7s"), headers: [("Retry-After", "2")]).headers.map(\.1) == ["2"], "a header wins")
        #expect(error(429, body("1e400s")).headers.isEmpty && error(429, body("-3s")).headers.isEmpty && error(429, body("7")).headers.isEmpty)
        #expect(error(429, body("99999999s")).headers.map(\.1) == ["86400000"], "at most a day")
    }

    /// The retry decision reads the body's delay too (review 59A #1: a "retry in 3 s" was
    /// retried after 40 ms, and one in 37 s at once, the client then told not to retry).
    @Test func theRetryDecisionReadsRetryInfo() {
        let body = Array(#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3s"}]}}"#.utf8)
        #expect(provider.retryHeaders(status: 429, body: body, headers: [("x-a", "1")]).map(\.1) == ["1", "3000"])
        #expect(provider.retryHeaders(status: 429, body: body, headers: [("retry-after", "1")]).map(\.1) == ["1"], "a header wins")
        #expect(provider.retryHeaders(status: 429, body: Array("<html>".utf8), headers: []).isEmpty)
        #expect(OpenAICompatibleProvider().retryHeaders(status: 429, body: body, headers: []).isEmpty, "only Google's API says it in the body")
        let policy = RetryPolicy(maxRetries: 2, baseDelayMilliseconds: 50, maxDelayMilliseconds: 10_000)
        let headers = provider.retryHeaders(status: 429, body: body, headers: [])
        #expect(policy.decide(status: 429, connectFailed: false, headers: headers, attempt: 0, hasNextModel: false, jitter: 0.5) == .retry(afterMilliseconds: 3000))
    }

    /// Usage Google reported reaches the record when the answer fails after it began (an error
    /// finish after thought parts, a stream cut off), not before (review 59A #2: an estimate of
    /// 31 tokens for 17,000 billed); a failure before any answer is retried, its counts not
    /// the answer's.
    @Test func usageReportedBeforeAFailureAfterTheAnswerBeganIsKept() throws {
        let thought = #"data: {"candidates":[{"content":{"parts":[{"text":"hm","thought":true}]}}],"usageMetadata":{"promptTokenCount":5000,"thoughtsTokenCount":6000,"totalTokenCount":11000}}"# + "\n\n"
        let malformed = #"data: {"candidates":[{"finishReason":"MALFORMED_FUNCTION_CALL"}],"usageMetadata":{"promptTokenCount":5000,"candidatesTokenCount":0,"thoughtsTokenCount":12000,"totalTokenCount":17000}}"# + "\n\n"
        let (events, end) = try ProviderFixtures.decode([Array((thought + malformed).utf8)], with: provider)
        #expect(end == .complete)
        guard events.count == 3, case .usage(let usage) = events[1], case .error(let error) = events[2] else { Issue.record("\(events)"); return }
        #expect(usage.promptTokens == 5000 && usage.reasoningTokens == 12000 && usage.totalTokens == 17000 && error.code == "malformed_function_call")
        // Whole, the same.
        let whole = try provider.decodeResponse(Array(("[" + thought.dropFirst(6).dropLast(2) + "," + malformed.dropFirst(6).dropLast(2) + "]").utf8), redactor: .none)
        #expect(whole.count == 3 && whole[1] == .usage(usage), "\(whole)")
        // Before any answer: the error alone.
        let (first, _) = try ProviderFixtures.decode([Array(malformed.utf8)], with: provider)
        #expect(first.count == 1, "\(first)")
        // Cut off after the answer began: the running usage, the stream still cut short.
        let (cut, cutEnd) = try ProviderFixtures.decode([Array(thought.utf8)], with: provider)
        #expect(cut.count == 2 && cut[1] == .usage(Usage(promptTokens: 5000, completionTokens: 6000, totalTokens: 11000, reasoningTokens: 6000)) && cutEnd == .truncated,
                "\(cut)")
        // An error object after the answer began: its usage first, as before an error finish
        // (review 119 #6: it was estimated instead).
        let failure = #"data: {"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}"# + "\n\n"
        let (failed, _) = try ProviderFixtures.decode([Array((thought + failure).utf8)], with: provider)
        #expect(failed.count == 3 && failed[1] == cut[1], "\(failed)")
        guard case .error? = failed.last else { Issue.record("\(failed)"); return }
    }

    /// A count that is negative or no number makes the usage no measurement (the call is
    /// estimated), not a measured 0 (review 119 #3); a fraction rounds up; cached tokens are at
    /// most the prompt.
    @Test func usageCountsThatAreNoCountsMakeNoMeasurement() throws {
        func usage(_ metadata: String) throws -> Usage? {
            let chunk = #"data: {"candidates":[{"content":{"parts":[{"text":"hi!"}]},"finishReason":"STOP"}],"usageMetadata":\#(metadata)}"# + "\n\n"
            return try ProviderFixtures.decode([Array(chunk.utf8)], with: provider).0.compactMap { if case .usage(let usage) = $0 { usage } else { nil } }.last
        }
        for bad in [#"{"promptTokenCount":-100,"candidatesTokenCount":-5,"totalTokenCount":-1}"#,
                    #"{"promptTokenCount":10,"candidatesTokenCount":-5}"#, #"{"promptTokenCount":10,"thoughtsTokenCount":"7"}"#] {
            #expect(try usage(bad) == nil, "\(bad)")
        }
        let fractional = try usage(#"{"promptTokenCount":0.5,"candidatesTokenCount":2.1,"cachedContentTokenCount":900}"#)
        #expect(fractional?.promptTokens == 1 && fractional?.completionTokens == 3 && fractional?.cachedTokens == 1, "\(String(describing: fractional))")
    }

    @Test func midStreamErrorsTakeTheirStatusFromTheCodeOrItsName() throws {
        for (error, status) in [(#"{"code":500,"message":"m","status":"INTERNAL"}"#, 502), (#"{"code":"x","status":"RESOURCE_EXHAUSTED"}"#, 429),
                                (#"{"code":1e300,"status":"UNAVAILABLE"}"#, 503), (#"{"code":-4,"status":"DEADLINE_EXCEEDED"}"#, 504),
                                (#"{"code":200}"#, 502), (#""just text""#, 502)] {
            let bytes = Array("data: {\"error\": \(error)}\r\n\r\n".utf8)
            let (events, end) = try ProviderFixtures.decode([bytes], with: provider)
            guard case .error(let apiError)? = events.first else { Issue.record("\(error): \(events)"); continue }
            #expect(apiError.status == status && end == .complete, "\(error)")
        }
    }

    /// A call's args are an object, or absent or null (none); anything else is a protocol error.
    @Test func functionCallArgsThatAreNoObjectAreAProtocolError() throws {
        func stream(_ args: String) -> [UInt8] {
            Array(("data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"f\"" + args + "}}]},\"finishReason\":\"STOP\"}]}\n\n").utf8)
        }
        for bad in [#","args":"a string""#, #","args":[1,2]"#, #","args":5"#] {
            #expect(throws: StreamDecodingError.self, "\(bad)") { _ = try ProviderFixtures.decode([stream(bad)], with: provider) }
        }
        for fine in ["", #","args":null"#, #","args":{}"#] {
            let events = try ProviderFixtures.decode([stream(fine)], with: provider).0
            #expect(events.contains { if case .toolCall(let call) = $0 { call.arguments == "{}" } else { false } }, "\(fine): \(events)")
        }
    }

    /// The one candidate asked for is the answer: another index is not (review 98 #1: a second
    /// candidate's text was shown, and the first's lost when it came second in a chunk), streamed
    /// and whole; a part carrying text and a call loses neither (review 98 #2).
    @Test func onlyTheFirstCandidateIsTheAnswer() throws {
        func chunk(_ candidates: String) -> String { "data: {\"candidates\":[" + candidates + "]}\n\n" }
        func candidate(_ index: String?, _ text: String, finish: Bool = false) -> String {
            "{" + (index.map { "\"index\":\($0)," } ?? "") + "\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"\(text)\"}]}"
                + (finish ? ",\"finishReason\":\"STOP\"" : "") + "}"
        }
        func text(_ events: [ModelEvent]) -> String {
            events.map { if case .text(let piece) = $0 { piece } else { "" } }.joined()
        }
        let interleaved = chunk(candidate("0", "zero ")) + chunk(candidate("1", "ONE")) + chunk(candidate(nil, "zero-end", finish: true))
        let swapped = chunk(candidate("1", "c1 ") + "," + candidate("0", "c0 ")) + chunk(candidate("0", "c0end", finish: true) + "," + candidate("1", "c1end", finish: true))
        let oddIndex = chunk(candidate("\"0\"", "string index ") + "," + candidate("0.0", "zero")) + chunk(candidate("0", "", finish: false)) + chunk(candidate("0", "!", finish: true))
        for (stream, expected) in [(interleaved, "zero zero-end"), (swapped, "c0 c0end"), (oddIndex, "zero!")] {
            let (events, end) = try ProviderFixtures.decode([Array(stream.utf8)], with: provider)
            #expect(text(events) == expected && end == .complete, "\(events)")
        }
        let whole = try provider.decodeResponse(Array(#"{"candidates":[{"index":1,"content":{"parts":[{"text":"not this"}]},"finishReason":"STOP"},{"index":0,"content":{"parts":[{"text":"this"}]},"finishReason":"STOP"}]}"#.utf8), redactor: .none)
        #expect(text(whole) == "this", "\(whole)")
        // A chunk whose only candidate's index is no integer is refused, not dropped (review 119 #9).
        let stringOnly = chunk(candidate("0", "a ")) + chunk(candidate("\"0\"", "lost")) + chunk(candidate("0", "!", finish: true))
        #expect(throws: StreamDecodingError.self) { _ = try ProviderFixtures.decode([Array(stringOnly.utf8)], with: provider) }
        // None the first: refused as such, not as a response with no candidates (review 99 #6);
        // whole, one whose index is no integer too (a 502, retried, as any broken answer).
        #expect(throws: StreamDecodingError.self) {
            _ = try provider.decodeResponse(Array(#"{"candidates":[{"index":"0","content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#.utf8), redactor: .none)
        }
        let otherIndex = try provider.decodeResponse(Array(#"{"candidates":[{"index":2,"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#.utf8), redactor: .none)
        guard case .error(let error)? = otherIndex.first else { Issue.record("\(otherIndex)"); return }
        #expect(error.message.contains("no candidate of index 0"), "\(error.message)")
        // Streamed, the same (review 102 #3: "the stream ended … no finish reason").
        let streamed = chunk(#"{"index":1,"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}"#)
        #expect(throws: StreamDecodingError.self) { _ = try ProviderFixtures.decode([Array(streamed.utf8)], with: provider) }
        let none = try provider.decodeResponse(Array(#"{"candidates":[]}"#.utf8), redactor: .none)
        guard case .error(let empty)? = none.first else { Issue.record("\(none)"); return }
        #expect(empty.message.contains("no candidates"), "\(empty.message)")
        let both = chunk(#"{"content":{"parts":[{"text":"said ","functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP"}"#)
        let events = try ProviderFixtures.decode([Array(both.utf8)], with: provider).0
        #expect(text(events) == "said " && events.contains { if case .toolCall(let call) = $0 { call.name == "f" } else { false } }, "\(events)")
    }

    /// Google's raw JSON error may end the body with its closing brace and no line end: read at
    /// the end, with its message and status (review 52A #5: "the stream ended" instead), in any
    /// split; a last `data:` line without its blank line is still no event.
    @Test func aRawJSONErrorEndingTheBodyWithoutALineEndIsRead() throws {
        let body = Array(("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"part\"}]}}]}\r\n\r\n"
            + "{\n  \"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}\n}").utf8)
        for chunks in ProviderFixtures.splits(body) {
            let (events, end) = try ProviderFixtures.decode(chunks, with: provider)
            guard events.count == 2, events[0] == .text("part"), case .error(let error) = events[1] else {
                Issue.record("\(chunks.map(\.count)): \(events)")
                return
            }
            #expect(error.status == 503 && error.message.contains("The model is overloaded.") && end == .complete)
        }
        let (unended, end) = try ProviderFixtures.decode([Array(#"data: {"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#.utf8)],
                                                         with: provider)
        #expect(unended.isEmpty && end == .truncated, "\(unended)")
    }

    @Test func rawLinesThatAreNotJSONAreAProtocolError() {
        #expect(throws: StreamDecodingError.self) {
            _ = try ProviderFixtures.decode([Array("<html>\r\n".utf8)], with: provider)
        }
        var decoder = provider.streamDecoder(maxEventBytes: 64, redactor: .none)
        let bytes = Array(("{\n" + String(repeating: "\"x\": 1,\n", count: 20)).utf8)
        #expect(throws: StreamDecodingError.self) { _ = try bytes.withUnsafeBytes { try decoder.decode($0) { _ in } } }
    }
}
