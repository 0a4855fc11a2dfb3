import GatewayCore
import Providers
import Surfaces
import Testing

/// An OpenAI-format server that answers a streamed request with one whole body: the client's
/// stream is the one that server would have sent, nothing of the answer dropped (review 74A #6:
/// choices after the first, `logprobs`, `system_fingerprint` and every member the neutral events
/// do not model were lost).
struct WholeAnswerStreamTests {
    static let body = #"""
        {"id":"up-1","object":"chat.completion","created":5,"model":"up-model","system_fingerprint":"fp_1","service_tier":"default",
         "choices":[
          {"index":0,"message":{"role":"assistant","content":"hi","annotations":[{"type":"url_citation"}]},"logprobs":{"content":[{"token":"hi","logprob":-0.5}]},"finish_reason":"stop"},
          {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],
         "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}
        """#

    func chunks(_ body: String, events: [ModelEvent] = [.text("hi")], includeUsage: Bool = true, choices: Int = 2) throws -> (chunks: [JSONValue], outcome: SSERelay.Outcome) {
        var relay = ChatStreamRelay.passThrough(id: "gen-1", model: "p/m", created: 9, maxEventBytes: 64, includeUsage: includeUsage,
                                                usageFallback: SSERelay.UsageFallback(promptTokens: 2, created: 9), choices: choices)
        var out: [UInt8] = []
        relay.relayWhole(events, body: Array(body.utf8), into: &out)
        var decoder = SSEDecoder()
        var events: [String] = []
        try out.withUnsafeBytes { bytes in try decoder.feed(bytes) { events.append(String(decoding: $0.data, as: UTF8.self)) } }
        #expect(events.last == "[DONE]")
        return (try events.dropLast().map { try JSONValue.parse(Array($0.utf8)) }, relay.outcome)
    }

    @Test func everyChoiceAndMemberReachesTheStream() throws {
        let (chunks, outcome) = try chunks(Self.body)
        #expect(outcome == .done)
        #expect(chunks.count == 3, "a chunk per choice, then the usage: \(chunks)")
        for chunk in chunks {
            #expect(chunk["id"] == .string("gen-1") && chunk["model"] == .string("p/m") && chunk["created"] == .int(9))
            #expect(chunk["object"] == .string("chat.completion.chunk"))
        }
        // The other top-level members ride on the first chunk only (review 78 #1).
        #expect(chunks[0]["system_fingerprint"] == .string("fp_1") && chunks[0]["service_tier"] == .string("default"))
        #expect(chunks.dropFirst().allSatisfy { $0["system_fingerprint"] == nil })
        let first = try #require(chunks[0]["choices"]?.arrayValue?.first)
        #expect(first["index"] == .int(0) && first["finish_reason"] == .string("stop"))
        #expect(first["delta"]?["content"] == .string("hi") && first["delta"]?["annotations"]?.arrayValue?.count == 1)
        #expect(first["logprobs"]?["content"]?.arrayValue?.first?["logprob"] == .double(-0.5))
        let second = try #require(chunks[1]["choices"]?.arrayValue?.first)
        #expect(second["index"] == .int(1) && second["finish_reason"] == .string("tool_calls"))
        let calls = try #require(second["delta"]?["tool_calls"]?.arrayValue)
        #expect(calls.map { $0["index"] } == [.int(0), .int(1)], "a streamed call needs its index")
        #expect(calls.map { $0["id"] } == [.string("c1"), .string("c2")] && calls[0]["function"]?["arguments"] == .string(#"{"a":1}"#))
        #expect(chunks[2]["choices"]?.arrayValue?.isEmpty == true && chunks[2]["usage"]?["total_tokens"] == .int(7))
    }

    /// The events are as large as the answer (bounded when it was collected), not the stream's
    /// per-event limit; without usage, the estimate is the answer's size, not a token per event.
    @Test func aLargeAnswerWithoutUsageIsOneEstimatedStream() throws {
        let text = String(repeating: "word ", count: 100)
        let body = #"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"\#(text)"},"finish_reason":"length"}]}"#
        let (chunks, outcome) = try chunks(body, events: [.text(text)], choices: 1)
        #expect(outcome == .done)
        #expect(chunks.first?["choices"]?[0]?["delta"]?["content"] == .string(text))
        #expect(chunks.last?["usage"]?["estimated"] == .bool(true) && chunks.last?["usage"]?["completion_tokens"] == .int(Int64(text.utf8.count / 4 + 1)),
                "by the events' text (`ModelEvent.estimatedOutputTokens`): \(chunks.last ?? .null)")
    }

    /// The stream is about the body's size: a thousand empty choices and a large member make one
    /// chunk for the one choice asked for, the member once (review 78 #1: 1 MB became 1 GB).
    /// Choices are numbered by their place, whatever index the server wrote (review 78 #7), a
    /// call without an id gets one (review 78 #4), and an estimate counts every choice taken
    /// (review 78 #5).
    @Test func theStreamIsTheBodysSizeAndWellFormed() throws {
        let blob = String(repeating: "x", count: 100_000)
        let empties = Array(repeating: "{}", count: 1_000).joined(separator: ",")
        let amplified = #"{"id":"a","blob":"\#(blob)","choices":[{"index":0,"message":{"content":"hi"},"finish_reason":"stop"},\#(empties)]}"#
        let (stream, _) = try #require(ChatCompletionBody.asStream(Array(amplified.utf8), choices: 1))
        #expect(stream.count < amplified.utf8.count - 1_000 && stream.count > blob.utf8.count, "\(stream.count)")
        // Calls of nothing, each given an id and an index: refused before the stream is built
        // past about twice the body (review 79 #4: 537 KB became 21 MB).
        let calls = Array(repeating: "{}", count: 100_000).joined(separator: ",")
        let manyCalls = #"{"choices":[{"index":0,"message":{"tool_calls":[\#(calls)]},"finish_reason":"tool_calls"}]}"#
        #expect(ChatCompletionBody.asStream(Array(manyCalls.utf8)) == nil)
        let hostile = #"""
            {"id":"up","choices":[
             {"index":-5,"message":{"content":"aaaa"},"finish_reason":"stop"},
             {"index":"zero","message":{"content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"},
             {"index":0,"message":{"content":"cccc"},"finish_reason":"stop"}]}
            """#
        let (chunks, outcome) = try chunks(hostile, choices: 3)
        #expect(outcome == .done, "\(chunks)")
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["index"] } == [.int(0), .int(1), .int(2)])
        let call = chunks[1]["choices"]?.arrayValue?.first?["delta"]?["tool_calls"]?.arrayValue?.first
        #expect(call?["id"]?.stringValue?.hasPrefix("call_") == true && call?["id"]?.stringValue?.hasSuffix("_0") == true
                && (call?["id"]?.stringValue?.count ?? 99) <= 28 && call?["index"] == .int(0), "\(call ?? .null)")
        // No usage: every choice's output counts (4 + 3 + 4 bytes), not choice 0's alone.
        #expect(chunks.last?["usage"]?["completion_tokens"] == .int(11 / 4 + 1), "\(chunks.last ?? .null)")
        #expect(ChatCompletionBody.asStream(Array(hostile.utf8), choices: 3)?.outputBytes == 11)
        // Choices listed out of order keep their numbers (review 79 #9).
        let reversed = #"{"choices":[{"index":1,"message":{"content":"second"},"finish_reason":"stop"},{"index":0,"message":{"content":"first"},"finish_reason":"length"}]}"#
        let (ordered, _) = try self.chunks(reversed, choices: 2)
        #expect(ordered.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue } == ["first", "second"])
        #expect(try self.chunks(reversed, choices: 1).chunks.first?["choices"]?.arrayValue?.first?["delta"]?["content"] == .string("first"))
        // A non-streamed answer's estimate reads the same choices (review 79 #6).
        #expect(ChatCompletionBody.outputBytes(Array(hostile.utf8), choices: 3) == 11)
        #expect(ChatCompletionBody.outputBytes(Array(hostile.utf8), choices: 1) == 4)
    }

    /// The output estimate counts content given as parts, arguments given as an object, and
    /// reasoning under both names once (review 79 #1: 8 KB of parts was one token); a call that
    /// is no object makes the body no chat completion (review 79 #5: the SDK raised).
    @Test func theEstimateReadsEveryFormOfOutput() throws {
        let text = String(repeating: "p", count: 8_000)
        let parts = #"{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"\#(text)"}]},"finish_reason":"stop"}]}"#
        let arguments = #"{"choices":[{"index":0,"message":{"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"a":"\#(text)"}}}]},"finish_reason":"tool_calls"}]}"#
        let both = #"{"choices":[{"index":0,"message":{"content":"x","reasoning":"\#(text)","reasoning_content":"\#(text)"},"finish_reason":"stop"}]}"#
        for body in [parts, arguments, both] {
            let bytes = try #require(ChatCompletionBody.asStream(Array(body.utf8))?.outputBytes)
            #expect((8_000...8_100).contains(bytes), "\(bytes)")
        }
        #expect(ChatCompletionBody.asStream(Array(#"{"choices":[{"index":0,"message":{"tool_calls":[5,"x"]},"finish_reason":"tool_calls"}]}"#.utf8)) == nil)
    }

    /// A choice the body leaves unfinished, or a body that is no chat completion, is the
    /// upstream's failure, as in a stream.
    @Test func anUnfinishedOrForeignBodyFails() throws {
        let unfinished = #"{"choices":[{"index":0,"message":{"content":"a"},"finish_reason":"stop"},{"index":1,"message":{"content":"b"}}]}"#
        guard case .failed(let error) = try chunks(unfinished).outcome else { Issue.record("not refused"); return }
        #expect(error.code == "upstream_truncated" && error.message.contains("choice 1"), "\(error)")
        for foreign in [#"{"answer":"a"}"#, "[1]", #"{"choices":[]}"#] {
            guard case .failed = try chunks(foreign).outcome else {
                Issue.record("\(foreign) was not refused")
                continue
            }
        }
    }
}
