import Foundation
import EventLoop
import Gateway
import GatewayCore
import HTTPServer
import MockUpstream
import Testing

/// The streaming proxy against the mock upstream over real loopback sockets, one scenario each.
@Suite struct ProxyStreamingTests {
    /// What every OpenAI client needs from a stream (WIRE-FACTS.md).
    func expectWellFormedStream(_ response: TestResponse, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == 200, sourceLocation: sourceLocation)
        #expect(response.header("content-type")?.hasPrefix("text/event-stream") == true, sourceLocation: sourceLocation)
        let text = response.text
        #expect(!text.hasPrefix("id:") && !text.contains("\nid:"), "no id: lines", sourceLocation: sourceLocation)
        #expect(!text.contains("data: \n") && !text.contains("data:\n"), "no empty data lines", sourceLocation: sourceLocation)
        #expect(!text.contains("event:"), "no named events for plain clients", sourceLocation: sourceLocation)
        #expect(text.hasSuffix("data: [DONE]\n\n"), "ends right after [DONE]", sourceLocation: sourceLocation)
        #expect(response.events.filter { $0 == "[DONE]" }.count == 1, sourceLocation: sourceLocation)
    }

    @Test func streamsANormalAnswer() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=2", prompt: "Why is the sky blue?"))
        expectWellFormedStream(response)
        #expect(response.streamedContent.hasPrefix("This is a simulated answer"))
        #expect(response.streamedContent.contains("Why is the sky blue?"))
        #expect(!response.text.contains("MOCK PROCESSING"), "upstream comments are not forwarded")
        let first = try #require(response.chunksJSON.first)
        #expect(first["object"]?.stringValue == "chat.completion.chunk")
        #expect(first["choices"]?.arrayValue?.first?["delta"]?["role"]?.stringValue == "assistant")
    }

    @Test func eachEventIsForwardedAsItArrives() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=15:deltas=20")))
        var arrivals: [Date] = []
        let response = try client.readResponse { _ in arrivals.append(Date()) }
        expectWellFormedStream(response)
        #expect(response.streamedContent == (0..<20).map { "t\($0) " }.joined())
        // Not buffered: the deltas arrive spread over the upstream's pace, in separate writes.
        #expect(response.chunks.count >= 20)
        let span = arrivals.last!.timeIntervalSince(arrivals.first!)
        #expect(span > 0.2, "20 deltas 15 ms apart arrived within \(span) s")
        // Every delta carries the mock's send stamp.
        let stamped = response.chunksJSON.filter { $0["sent_at_us"]?.intValue != nil }
        #expect(stamped.count >= 20)
    }

    @Test func sequentialRequestsReuseOneUpstreamConnection() throws {
        // One loop: each loop's curl keeps its own connections.
        let env = try TestEnvironment(loops: 1)
        for stream in [true, false, true, true] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: stream))
            #expect(response.status == 200)
        }
        #expect(env.mockStats.counts.requests == 4)
        #expect(env.mockStats.counts.connections == 1, "the upstream connection is kept alive and reused")
    }

    @Test func everyCompletionHasAGenerationRecord() throws {
        let env = try TestEnvironment()
        let streamed = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", extra: #","stream_options":{"include_usage":true}"#))
        let id = try #require(streamed.header("x-generation-id"))
        #expect(id.hasPrefix("gen-"))
        let record = try #require(try env.generation(id))
        #expect(record["id"] == .string(id))
        #expect(record["model"] == .string("mock/normal:pace_ms=1"))
        #expect(record["router"] == .null)
        #expect(record["streamed"] == .bool(true))
        #expect(record["finish_reason"] == .string("stop"))
        #expect((record["tokens_completion"]?.intValue ?? 0) > 0)
        #expect((record["total_cost"]?.doubleValue ?? 0) > 0)
        #expect(record["latency"]?.doubleValue != nil && record["generation_time"]?.doubleValue != nil)

        let whole = try env.chat(TestEnvironment.chatBody(model: "mock/normal", stream: false))
        #expect(try env.generation(whole.header("x-generation-id"))?["tokens_prompt"]?.intValue ?? 0 > 0)
        let failed = try env.chat(TestEnvironment.chatBody(model: "mock/error:status=503"))
        #expect(try env.generation(failed.header("x-generation-id"))?["status"] == .int(503))
        let missing = try env.get("/api/v1/generation?id=gen-nope")
        #expect(missing.status == 404)
        #expect(missing.json?["error"]?["code"] == .string("generation_not_found"))
        #expect(try env.get("/api/v1/generation").status == 400)
    }

    @Test func nonStreamingReturnsOneCompletion() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal", stream: false))
        #expect(response.status == 200)
        #expect(response.header("content-type") == "application/json")
        let json = try #require(response.json)
        #expect(json["object"]?.stringValue == "chat.completion")
        #expect(json["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue?.hasPrefix("This is a simulated") == true)
        #expect(json["usage"]?["total_tokens"]?.intValue != nil)
    }

    @Test func slowFirstTokenGetsKeepAliveComments() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/slow-first-token:first_ms=600:pace_ms=1"))
        expectWellFormedStream(response)
        let text = response.text
        let firstKeepAlive = try #require(text.range(of: ": keep-alive\n\n"))
        let firstData = try #require(text.range(of: "data: "))
        #expect(firstKeepAlive.lowerBound < firstData.lowerBound)
        #expect(text.components(separatedBy: ": keep-alive").count - 1 >= 2)
        #expect(response.streamedContent.hasPrefix("This is a simulated answer"))
    }

    /// An upstream that only pings while it thinks (Anthropic's `ping`, consumed by the gateway)
    /// leaves the client its keep-alives: only bytes the client got count as a sign of life
    /// (review 16 #4: the client heard nothing until the first token).
    @Test func anUpstreamsPingsDoNotSilenceTheKeepAlives() throws {
        let env = try MessagesRouteTests.environment()
        let response = try env.chat(TestEnvironment.chatBody(model: "anth/slow-first-token:first_ms=800:ping_ms=40:pace_ms=1"))
        expectWellFormedStream(response)
        let text = response.text
        let firstData = try #require(text.range(of: "data: "))
        #expect(text[..<firstData.lowerBound].components(separatedBy: ": keep-alive").count - 1 >= 2, "\(text.prefix(300))")
    }

    @Test func errorBeforeTheFirstTokenKeepsItsStatus() throws {
        let env = try TestEnvironment()
        for stream in [true, false] {
            let response = try env.chat(TestEnvironment.chatBody(model: "mock/error:status=503", stream: stream))
            #expect(response.status == 503)
            #expect(response.header("content-type") == "application/json")
            let error = try #require(response.json?["error"])
            #expect(error["type"]?.stringValue == "upstream_error")
            #expect(error["message"]?.stringValue?.contains("Mock upstream failure") == true)
            #expect(error["code"]?.stringValue != nil)
        }
        let internalError = try env.chat(TestEnvironment.chatBody(model: "mock/error"))
        #expect(internalError.status == 502, "an upstream 500 is the gateway's 502")
    }

    @Test func rateLimitPassesRetryAfter() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/rate-limited:retry_after=7"))
        #expect(response.status == 429)
        #expect(response.header("retry-after") == "7")
        #expect(response.json?["error"]?["type"]?.stringValue == "rate_limit_error")
    }

    @Test func errorMidStreamIsForwardedThenTheStreamEnds() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/error-mid-stream:after=3:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(response.streamedContent == "This is a ")
        let error = try #require(response.streamError)
        #expect(error["message"]?.stringValue?.hasSuffix("Provider disconnected unexpectedly") == true)
    }

    @Test func malformedUpstreamEventBecomesAnErrorChunk() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/malformed:after=2:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(response.streamedContent == "This is ")
        #expect(response.streamError?["code"]?.stringValue == "upstream_protocol_error")
    }

    @Test func stalledUpstreamTimesOutAndIsCancelled() throws {
        let env = try TestEnvironment()
        let started = Date()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/stall:after=2:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(Date().timeIntervalSince(started) >= 0.7, "waited for the 800 ms idle timeout")
        #expect(response.streamError?["code"]?.stringValue == "upstream_timeout")
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 1 })
    }

    @Test func abruptUpstreamDisconnectBecomesAnErrorChunk() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/disconnect:after=3:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(response.streamedContent == "This is a ")
        #expect(response.streamError?["code"]?.stringValue == "upstream_connection_lost")
        // In words a client reads, not curl's "Transferred a partial file" (review 109 #4).
        #expect(response.streamError?["message"]?.stringValue?.hasSuffix("broke off: the connection closed before the response ended") == true,
                "\(String(describing: response.streamError))")
    }

    @Test func toolCallDeltasAreForwardedIntact() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(
            model: "mock/tool-call:pace_ms=1",
            extra: #","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]"#))
        expectWellFormedStream(response)
        var arguments = ""
        var name: String?
        var finish: String?
        for chunk in response.chunksJSON {
            let choice = chunk["choices"]?.arrayValue?.first
            if let call = choice?["delta"]?["tool_calls"]?.arrayValue?.first {
                arguments += call["function"]?["arguments"]?.stringValue ?? ""
                name = name ?? call["function"]?["name"]?.stringValue
            }
            finish = choice?["finish_reason"]?.stringValue ?? finish
        }
        #expect(name == "get_weather")
        #expect(arguments == #"{"location":"Paris, France","unit":"celsius"}"#)
        #expect(finish == "tool_calls")
    }

    /// OpenAI's `stream_options.include_usage` and OpenRouter's `usage: {include: true}` both
    /// ask for it (review 74A #3: an app moved from OpenRouter saw no usage on any stream).
    @Test(arguments: [#","stream_options":{"include_usage":true}"#, #","usage":{"include":true}"#])
    func usageChunkIsForwarded(asking: String) throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", extra: asking))
        expectWellFormedStream(response)
        let usage = try #require(response.chunksJSON.last)
        #expect(usage["choices"]?.arrayValue?.isEmpty == true)
        #expect(usage["usage"]?["completion_tokens"]?.intValue ?? 0 > 0)
        let unasked = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", extra: #","usage":{"include":false}"#))
        #expect(!unasked.chunksJSON.contains { $0["usage"]?["completion_tokens"] != nil })
    }

    @Test func everyFieldIsForwardedAndOnlyTheModelRewritten() throws {
        let env = try TestEnvironment()
        let body = #"{"model":"mock/echo","stream":false,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":12,"max_tokens":11,"temperature":0.25,"top_p":0.5,"stop":["x"],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto","response_format":{"type":"json_object"},"reasoning":{"effort":"low"},"seed":3,"user":"u1","x_vendor_extension":{"keep":[1,2,3]}}"#
        let response = try env.chat(body)
        #expect(response.status == 200)
        let echoed = try #require(response.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue)
        let sent = try JSONValue.parse(Array(body.utf8))
        let received = try JSONValue.parse(Array(echoed.utf8))
        guard case .object(var expected) = sent else { return }
        expected["model"] = .string("echo")
        // Both output limits given: the one read and held (`max_completion_tokens`) goes, under
        // the provider's field (review 48 surfaces #2).
        expected["max_completion_tokens"] = nil
        expected["max_tokens"] = .int(12)
        #expect(received == .object(expected))
    }

    @Test func providerKeyIsSentUpstreamAndNeverReturned() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "keyed/normal:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(env.mockStats.lastRequestHeader("authorization") == "Bearer \(TestEnvironment.secretKey)")
        #expect(env.mockStats.lastRequestHeader("x-title") == "fusion-gateway tests")
        #expect(!response.text.contains(TestEnvironment.secretKey))
        // A client's own Authorization header is not forwarded to the provider.
        _ = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1"), headers: ["Authorization": "Bearer client-key"])
        #expect(env.mockStats.lastRequestHeader("authorization") == nil)
    }

    @Test func missingProviderKeyIsAClearError() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "unkeyed/normal"))
        #expect(response.status == 502)
        #expect(response.json?["error"]?["code"]?.stringValue == "provider_key_missing")
        // Says whose key is missing, not the operator's variable (review 62D #1: a key pasted
        // there reached every client).
        #expect(response.text.contains("Provider 'unkeyed' has no API key configured") && !response.text.contains("TEST_UNSET_KEY"))
        #expect(env.mockStats.counts.requests == 0)
    }

    @Test func unreachableUpstreamIsABadGateway() throws {
        let env = try TestEnvironment()
        for stream in [true, false] {
            let response = try env.chat(TestEnvironment.chatBody(model: "dead/normal", stream: stream))
            #expect(response.status == 502)
            #expect(response.json?["error"]?["code"]?.stringValue == "upstream_unreachable")
            #expect(response.json?["error"]?["message"]?.stringValue?.contains("'dead'") == true)
        }
    }

    @Test func unknownModelsAreNamedInA404() throws {
        let env = try TestEnvironment()
        let unknownProvider = try env.chat(TestEnvironment.chatBody(model: "nope/gpt-9"))
        #expect(unknownProvider.status == 404)
        #expect(unknownProvider.json?["error"]?["code"]?.stringValue == "model_not_found")
        #expect(unknownProvider.json?["error"]?["message"]?.stringValue?.contains("nope/gpt-9") == true)
        let unlisted = try env.chat(TestEnvironment.chatBody(model: "listed/paced"))
        #expect(unlisted.status == 404)
        #expect(unlisted.json?["error"]?["message"]?.stringValue?.contains("listed/normal") == true)
        let noPrefix = try env.chat(TestEnvironment.chatBody(model: "gpt-4o"))
        #expect(noPrefix.status == 404)
        let unknownSim = try env.chat(TestEnvironment.chatBody(model: "sim/no-such-scenario"))
        #expect(unknownSim.status == 404)
        let listedOK = try env.chat(TestEnvironment.chatBody(model: "listed/normal:pace_ms=1"))
        #expect(listedOK.status == 404, "a listed provider routes only exact model ids")
        #expect(try env.chat(TestEnvironment.chatBody(model: "listed/normal", stream: false)).status == 200)
    }

    @Test func simulatedModelsAreServedAndListed() throws {
        let env = try TestEnvironment()
        let response = try env.chat(TestEnvironment.chatBody(model: "sim/normal:pace_ms=1"))
        expectWellFormedStream(response)
        #expect(response.streamedContent.contains("Hello there"))
        let models = try env.get("/v1/models")
        #expect(models.status == 200)
        let data = try #require(models.json?["data"]?.arrayValue)
        let simulated = data.filter { $0["simulated"]?.boolValue == true }
        #expect(simulated.contains { $0["id"]?.stringValue == "sim/normal" })
        let prefixes = ["sim/", "sim-anthropic/", "sim-gemini/"]
        #expect(simulated.allSatisfy { entry in prefixes.contains { entry["id"]?.stringValue?.hasPrefix($0) == true } })
        #expect(simulated.contains { $0["id"]?.stringValue == "sim-gemini/normal" })
        #expect(data.contains { $0["id"]?.stringValue == "listed/normal" })
        // The aliases describe the deliberation; unlisted providers are named, not enumerated.
        let fusion = data.first { $0["id"] == .string("fusion") }?["fusion"]
        #expect(fusion?["presets"]?["budget"]?.arrayValue?.count == 2 && fusion?["default_preset"] == .string("quality"), "\(models.text)")
        #expect(data.contains { $0["id"] == .string("openrouter/fusion") })
        let unlisted = models.json?["providers"]?.arrayValue ?? []
        #expect(unlisted.contains { $0["name"] == .string("mock") && $0["models"] == .string("any") }, "\(models.text)")
        #expect(!unlisted.contains { $0["name"] == .string("listed") })
    }
}
