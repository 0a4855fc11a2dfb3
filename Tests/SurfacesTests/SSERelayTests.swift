import FixtureFiles
import Foundation
import GatewayCore
import Providers
import Surfaces
import Testing

@Suite struct SSERelayTests {
    func relayAll(_ chunks: [[UInt8]], choices: Int = 1) -> (output: String, outcome: SSERelay.Outcome) {
        var relay = SSERelay(choices: choices)
        var out: [UInt8] = []
        var outcome = SSERelay.Outcome.streaming
        for chunk in chunks { outcome = relay.relay(chunk, into: &out) }
        return (String(decoding: out, as: UTF8.self), outcome)
    }

    static let fixtureNames = (try? Fixtures.names(in: "sse", withExtension: "sse")) ?? []

    /// Bytes an upstream sends that are not UTF-8 (a lone continuation byte, an overlong form, an
    /// encoded surrogate) reach the client as U+FFFD, the event otherwise intact.
    @Test func invalidUTF8FromTheUpstreamBecomesReplacementCharacters() throws {
        var input = Array(#"data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"#.utf8)
        input += [0xFF, 0xFE, 0xC0, 0xAF, 0xED, 0xA0, 0x80]
        input += Array(#"b é"},"finish_reason":null}]}"#.utf8) + Array("\n\ndata: [DONE]\n\n".utf8)
        var relay = SSERelay()
        var out: [UInt8] = []
        _ = relay.relay(input, into: &out)
        #expect(out.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } == nil)
        let data = try #require(String(decoding: out, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("data: {") })
        let chunk = try JSONValue.parse(Array(data.dropFirst(6).utf8))
        let content = try #require(chunk["choices"]?[0]?["delta"]?["content"]?.stringValue)
        #expect(content.hasPrefix("a\u{FFFD}") && content.hasSuffix("b é") && !content.contains("\u{FF}"), "\(content.debugDescription)")
    }

    /// Lone surrogate escapes (`\ud800` alone, a low one alone, a high one before another
    /// escape) become `\uFFFD`; a pair, an escaped backslash before a `u` and other escapes
    /// stay as they came (review 16 #7, what was left of review 8 #7).
    @Test(arguments: [
        (#"a\ud800b"#, #"a\uFFFDb"#), (#"\uDC00"#, #"\uFFFD"#), (#"\ud83d\ude00"#, #"\ud83d\ude00"#),
        (#"\ud83d\n"#, #"\uFFFD\n"#), (#"\\ud800"#, #"\\ud800"#), (#"x\"\u00e9\u0041"#, #"x\"\u00e9\u0041"#),
        (#"\ud83d"#, #"\uFFFD"#), (#"12345678\udbff\udfff12345678"#, #"12345678\udbff\udfff12345678"#),
    ])
    func loneSurrogateEscapesBecomeReplacementCharacters(content: String, expected: String) throws {
        let input = Array(("data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + content + "\"}}]}\n\ndata: [DONE]\n\n").utf8)
        var relay = SSERelay()
        var out: [UInt8] = []
        _ = relay.relay(input, into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains("\"content\":\"" + expected + "\""), "\(text)")
    }

    @Test(arguments: fixtureNames)
    func fixtureRelaysIdenticallyHoweverSplit(name: String) throws {
        let input = try Fixtures.bytes("sse/\(name).sse")
        let expected = try JSONSerialization.jsonObject(with: Data(try Fixtures.bytes("sse/\(name).expected.json"))) as! [String: Any]
        let whole = relayAll([input])
        for chunks in splits(input) {
            let result = relayAll(chunks)
            #expect(result.output == whole.output, "split into \(chunks.map(\.count))")
            if result.output != whole.output { return }
        }
        switch (whole.outcome, expected["relay_outcome"] as! String) {
        case (.done, "done"), (.failed, "failed"): break
        default: Issue.record("unexpected outcome \(whole.outcome)")
        }
        // What a client sees: never an id: line, never an empty data: line, always ends with [DONE].
        #expect(!whole.output.contains("\nid:") && !whole.output.hasPrefix("id:"))
        #expect(!whole.output.contains("data: \n") && !whole.output.contains("data:\n"))
        #expect(!whole.output.contains("event:"))
        #expect(whole.output.hasSuffix("data: [DONE]\n\n"))
        // The client's events decode to the fixture's content.
        var content = ""
        var arguments = ""
        for event in try decodeAll([Array(whole.output.utf8)]) where event.data != "[DONE]" {
            let json = try JSONValue.parse(Array(event.data.utf8))
            if let delta = json["choices"]?.arrayValue?.first?["delta"] {
                content += delta["content"]?.stringValue ?? ""
                arguments += delta["tool_calls"]?.arrayValue?.first?["function"]?["arguments"]?.stringValue ?? ""
            }
        }
        #expect(content == expected["content"] as! String)
        if let expectedArguments = expected["tool_arguments"] as? String { #expect(arguments == expectedArguments) }
    }

    @Test func stopsAtDoneAndIgnoresTrailingBytes() {
        let chunk = #"{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"#
        let result = relayAll([Array("data: \(chunk)\n\ndata: [DONE]\n\ndata: {\"late\":1}\n\n".utf8)])
        #expect(result.output == "data: \(chunk)\n\ndata: [DONE]\n\n")
        #expect(result.outcome == .done)
    }

    /// A later usage report that counts fewer tokens does not replace an earlier one (review 117
    /// #3); one that grows does (vLLM's continuous stats).
    @Test func aShrinkingUsageReportIsNotTheOneCharged() {
        func usageChunk(_ prompt: Int, _ completion: Int) -> String {
            #"data: {"choices":[],"usage":{"prompt_tokens":\#(prompt),"completion_tokens":\#(completion),"total_tokens":\#(prompt + completion)}}"# + "\n\n"
        }
        let finish = #"data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"# + "\n\n"
        for (reports, kept) in [([(100, 100), (1, 1)], 200), ([(10, 1), (10, 5), (10, 9)], 19), ([(5, 5), (6, 4)], 10)] {
            var relay = SSERelay()
            var out: [UInt8] = []
            _ = relay.relay(Array((finish + reports.map { usageChunk($0.0, $0.1) }.joined() + "data: [DONE]\n\n").utf8), into: &out)
            #expect(relay.usage.map { Usage.count($0["total_tokens"]) } == Int64(kept), "\(reports): \(String(describing: relay.usage))")
        }
    }

    /// A body with no event at all (HTML, a compressed stream, a `data:` line never ended) is a
    /// truncation said as such (review 117 #5: "ended before the answer was complete").
    @Test func aBodyWithoutASingleEventSaysSo() {
        for body in ["<html><body>Bad gateway</body></html>\n", "\u{1F}\u{8B}\u{08}\u{00}binary", "data: {\"choices\":[", ": keep-alive\n\n"] {
            var relay = SSERelay()
            var out: [UInt8] = []
            _ = relay.relay(Array(body.utf8), into: &out)
            relay.upstreamDidEnd(failure: nil, into: &out)
            guard case .failed(let error) = relay.outcome else { Issue.record("\(body.debugDescription): \(relay.outcome)"); continue }
            #expect(error.code == "upstream_truncated" && error.message.contains("before any event with data"), "\(error.message)")
        }
        var relay = SSERelay()
        var out: [UInt8] = []
        _ = relay.relay(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".utf8), into: &out)
        relay.upstreamDidEnd(failure: nil, into: &out)
        guard case .failed(let error) = relay.outcome else { Issue.record("\(relay.outcome)"); return }
        #expect(error.message.contains("before the answer was complete"), "\(error.message)")
    }

    /// Chunks that say nothing of the answer (a role alone, empty values however spelled, a
    /// filter report without choices) are held until one that does; a stream of only such
    /// chunks is the upstream's failure, not an empty success (review 59B #1, #3; 60 #4).
    @Test(arguments: [
        (#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#, false),
        (#"{"choices":[{"index":0,"delta":{"role":"assistant","content" : "" , "tool_calls" : [ ] , "x" : { } }}]}"#, false),
        (#"{"choices":[{"index":0,"delta":{"content":null,"reasoning":null,"refusal":null}}]}"#, false),
        (#"{"choices":[],"prompt_filter_results":[{"prompt_index":0}]}"#, false),
        (#"{"choices":[{"index":0,"delta":{"role":"assistant","content":" "}}]}"#, true),
        (#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#, true),
        (#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#, true),
        (#"{"choices":[{"index":0,"delta":{"reasoning":"hm"}}]}"#, true),  // (choice 1 with one choice asked: refused, review 81B #3)
    ])
    func chunksThatSayNothingAreHeldAndAloneAreNoAnswer(chunk: String, answers: Bool) {
        let result = relayAll([Array("data: \(chunk)\n\ndata: [DONE]\n\n".utf8)])
        if answers && chunk.contains("finish_reason") {
            #expect(result.outcome == .done && result.output.hasPrefix("data: {"), "\(result.output)")
        } else if answers {
            // An answer that never said it finished was cut, `[DONE]` or not (review 68A #1).
            guard case .failed(let error) = result.outcome else { Issue.record("\(result.output)"); return }
            #expect(error.code == "upstream_truncated" && result.output.hasPrefix("data: {"), "\(result.output)")
        } else {
            guard case .failed(let error) = result.outcome else { Issue.record("\(result.output)"); return }
            #expect(error.code == "upstream_protocol_error" && !result.output.contains("assistant"), "\(result.output)")
        }
        // Before an answer, held and sent with it, once.
        let held = relayAll([Array("data: \(chunk)\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".utf8)])
        #expect(held.outcome == .done && held.output.components(separatedBy: "data: {").count == 3, "\(held.output)")
    }

    /// Usage riding on a chunk that says nothing, then `[DONE]`: no answer, and nothing counted
    /// as forwarded (the count went below zero, which kept the attempt from its retry).
    @Test func usageOnAChunkThatSaysNothingIsNoAnswer() {
        var relay = SSERelay(includeUsage: true)
        var out: [UInt8] = []
        let chunk = #"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#
        let outcome = relay.relay(Array("data: \(chunk)\n\ndata: [DONE]\n\n".utf8), into: &out)
        guard case .failed(let error) = outcome else { Issue.record("\(outcome)"); return }
        #expect(error.code == "upstream_protocol_error" && relay.forwardedEvents == 0)
    }

    /// A named event is not a chat chunk: left out (it would reach the client with no name and
    /// no `choices`); `message` is the default name, and a named `error` still fails the stream.
    @Test func namedEventsAreNotChatChunks() {
        let chunk = #"{"choices":[{"delta":{"content":"ok"},"finish_reason":"stop"}]}"#
        let result = relayAll([Array("event: weird\ndata: {\"foo\":1}\n\nevent: message\ndata: \(chunk)\n\ndata: [DONE]\n\n".utf8)])
        #expect(result.output == "data: \(chunk)\n\ndata: [DONE]\n\n" && result.outcome == .done, "\(result.output)")
        // A named `error` is the upstream's error whatever its data's shape: never a chunk
        // without `choices`, never a clean end (review 68A #4).
        for data in [#"{"error":{"message":"boom"}}"#, #"{"message":"boom","code":500}"#, "boom"] {
            let error = relayAll([Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\nevent: error\ndata: \(data)\n\ndata: [DONE]\n\n".utf8)])
            guard case .failed(let failure) = error.outcome else { Issue.record("\(data): \(error.output)"); continue }
            #expect(failure.message.contains("boom") && !error.output.contains(#""code":500"#), "\(data): \(error.output)")
        }
    }

    /// llama.cpp's server reports a failure mid-stream on an `error:` line, then sends `[DONE]`:
    /// the client gets the error, not a cut answer passed as complete; a 400 before the answer
    /// keeps its status (review 68A #1).
    @Test func llamaCppsErrorLineIsTheStreamsError() {
        let text = #"data: {"choices":[{"delta":{"content":"Hello"}}]}"# + "\n\n"
        let line = #"error: {"code":500,"message":"context shift is disabled","type":"server_error"}"# + "\n\n"
        let result = relayAll([Array((text + line + "data: [DONE]\n\n").utf8)])
        guard case .failed(let error) = result.outcome else { Issue.record("\(result.output)"); return }
        #expect(error.message.contains("context shift is disabled") && result.output.contains("Hello"), "\(result.output)")
        let first = relayAll([Array((#"error: {"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}"# + "\n\ndata: [DONE]\n\n").utf8)])
        guard case .failed(let refused) = first.outcome else { Issue.record("\(first.output)"); return }
        #expect(refused.status == 400 && refused.message.contains("context size"), "\(refused)")
        // Other lines that are no SSE field are still ignored.
        let ignored = relayAll([Array(("errors: x\nwarning: y\n" + #"data: {"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"# + "\n\ndata: [DONE]\n\n").utf8)])
        #expect(ignored.outcome == .done, "\(ignored.output)")
    }

    /// Tool calls passed through are numbered as the other routes number them: shared ids
    /// (DeepSeek, GLM, Kimi), every call at index 0, indexes left out; each call its own index
    /// and id, its id and name once (review 68A #2: the SDK's helper merged two calls into `fg`
    /// with `{"a":1}{"b":2}`, or raised an `IndexError`).
    @Test(arguments: [
        // Two calls sharing one id, each at its own index.
        [#"{"index":0,"id":"call","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}"#,
         #"{"index":1,"id":"call","type":"function","function":{"name":"g","arguments":"{\"b\":2}"}}"#],
        // Every call at index 0, told apart by id.
        [#"{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}"#,
         #"{"index":0,"function":{"arguments":"1}"}}"#,
         #"{"index":0,"id":"c2","type":"function","function":{"name":"g","arguments":"{\"b\":2}"}}"#],
        // The first call at an odd index (the SDK's helper indexes a list).
        [#"{"index":5,"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}"#,
         #"{"index":2,"id":"c2","type":"function","function":{"name":"g","arguments":"{\"b\":2}"}}"#],
        // No index at all.
        [#"{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}"#,
         #"{"id":"c2","type":"function","function":{"name":"g","arguments":"{\"b\":2}"}}"#],
    ])
    func passedThroughToolCallsAreNumberedAsOnTheOtherRoutes(fragments: [String]) throws {
        var body = ""
        for fragment in fragments { body += #"data: {"choices":[{"index":0,"delta":{"tool_calls":[\#(fragment)]}}]}"# + "\n\n" }
        body += #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
        let result = relayAll([Array(body.utf8)])
        #expect(result.outcome == .done, "\(result.output)")
        // Accumulated as the OpenAI SDK's helper does: by index, id and name concatenated.
        var calls: [Int: (id: String, name: String, arguments: String)] = [:]
        for event in try decodeAll([Array(result.output.utf8)]) where event.data != "[DONE]" {
            for call in try JSONValue.parse(Array(event.data.utf8))["choices"]?.arrayValue?.first?["delta"]?["tool_calls"]?.arrayValue ?? [] {
                let index = try #require(call["index"]?.intValue, "\(event.data)")
                var entry = calls[Int(index)] ?? ("", "", "")
                entry.id += call["id"]?.stringValue ?? ""
                entry.name += call["function"]?["name"]?.stringValue ?? ""
                entry.arguments += call["function"]?["arguments"]?.stringValue ?? ""
                calls[Int(index)] = entry
            }
        }
        #expect(calls.keys.sorted() == [0, 1], "\(calls)")
        #expect(calls[0]?.name == "f" && calls[0]?.arguments == #"{"a":1}"# && calls[1]?.name == "g" && calls[1]?.arguments == #"{"b":2}"#, "\(calls)")
        #expect(Set(calls.values.map(\.id)).count == 2 && !(calls[0]?.id.isEmpty ?? true), "\(calls)")
    }

    /// Calls under a new choice index in every chunk end the stream past 128 choices, rather than
    /// keep a numbering per chunk.
    @Test func toolCallsOfEndlesslyManyChoicesAreAnError() {
        var body = ""
        for index in 0..<200 {
            body += #"data: {"choices":[{"index":\#(index),"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]}"# + "\n\n"
        }
        let result = relayAll([Array(body.utf8)], choices: 128)
        guard case .failed(let error) = result.outcome else { Issue.record("\(result.outcome)"); return }
        #expect(error.message.contains("128 choices"), "\(error.message)")
        // With one choice asked for, the second choice's first call ends it.
        guard case .failed(let one) = relayAll([Array(body.utf8)]).outcome else { Issue.record("n = 1 accepted"); return }
        #expect(one.code == "upstream_protocol_error", "\(one)")
    }

    /// A call's index that is there but no integer (`1.5`, `"1"`, past 64 bits) is the stream's
    /// error, on the chat relay and the decoder the other surfaces read (review 71B #2: read as
    /// absent, one call's fragments went into another, `{"b":1}2}`).
    @Test(arguments: ["0.5", #""1""#, "18446744073709551616", "-1", "{}"])
    func aToolCallIndexThatIsNoIntegerIsAnError(index: String) throws {
        let body = #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":\#(index),"id":"c1","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
        let result = relayAll([Array(body.utf8)])
        guard case .failed(let error) = result.outcome else { Issue.record("\(index): \(result.outcome)"); return }
        #expect(error.code == "upstream_protocol_error" && error.message.contains("index"), "\(error.message)")
        var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        _ = try? body.utf8.withContiguousStorageIfAvailable { try decoder.decode(UnsafeRawBufferPointer($0)) { events.append($0) } }
        #expect(events.contains { if case .error = $0 { true } else { false } } && !events.contains { if case .toolCall = $0 { true } else { false } },
                "\(index): \(events)")
    }

    /// A number beyond a double's range goes out as null, streamed and whole: a client's parser
    /// reads `1e309` as infinity or fails the chunk (review 71B #3). Finite ones go out byte for
    /// byte, exponents included.
    @Test func numbersBeyondADoublesRangeGoOutAsNull() throws {
        let chunk = #"{"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-1e309,"bytes":[72]}]},"finish_reason":"stop"}],"big":1\#(String(repeating: "0", count: 400)),"small":-1.5e-7}"#
        let result = relayAll([Array("data: \(chunk)\n\ndata: [DONE]\n\n".utf8)])
        let text = result.output
        #expect(!text.contains("e309") && !text.contains("0000000000") && text.contains(#""logprob":null"#) && text.contains(#""big":null"#), "\(text)")
        let sent = try JSONValue.parse(Array((text.split(separator: "\n").first ?? "").dropFirst(6).utf8))
        #expect(sent["small"]?.doubleValue == -1.5e-7 && sent["choices"]?[0]?["delta"]?["content"] == .string("Hi"), "\(text)")
        #expect(result.outcome == .done)
        let whole = #"{"id":"x","object":"chat.completion","choices":[{"index":1e309,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"n":2.5E+3}"#
        let rewritten = String(decoding: try #require(ChatCompletionBody.rewriting(Array(whole.utf8), id: "gen-1", model: "m", created: 1)), as: UTF8.self)
        #expect(rewritten.contains(#""index":0"#) && rewritten.contains(#""id":"gen-1""#) && !rewritten.contains("e309"), "\(rewritten)")
        #expect(ChatCompletionBody.rewriting(Array(#"{"a":1e309,"b":"#.utf8), id: "g", model: "m", created: 1) == nil, "not JSON stays refused")
        // 309 digits: 1e308 written out is a double, 2e308 is not (review 72A).
        let edge = #"{"choices":[],"within":1\#(String(repeating: "0", count: 308)),"beyond":-2\#(String(repeating: "0", count: 308))}"#
        let edged = String(decoding: try #require(ChatCompletionBody.rewriting(Array(edge.utf8), id: "g", model: "m", created: 1)), as: UTF8.self)
        #expect(edged.contains(#""beyond":null"#) && !edged.contains(#""within":null"#), "\(edged.prefix(200))")
    }

    /// A whole answer's choices keep their `index`es when they are distinct integers below the
    /// `n` asked for; otherwise they are numbered by place, at most `n` of them (review 83B #3:
    /// `1e20`, `"100"`, -5000 and null reached the SDK, whose `index` is an int, and a request
    /// for one choice got three).
    @Test func aWholeAnswersChoicesAreNumberedWhenTheirIndexesAreNot() throws {
        func choice(_ index: String?, _ text: String) -> String {
            #"{\#(index.map { #""index":\#($0),"# } ?? "")"message":{"role":"assistant","content":"\#(text)"},"finish_reason":"stop"}"#
        }
        func indexes(_ choices: [String], n: Int) throws -> (indexes: [JSONValue?], texts: [String], same: Bool) {
            let body = #"{"id":"x","object":"chat.completion","choices":[\#(choices.joined(separator: ","))]}"#
            let out = try #require(ChatCompletionBody.rewriting(Array(body.utf8), id: "gen-1", model: "m", created: 1, choices: n))
            let items = try JSONValue.parse(out)["choices"]?.arrayValue ?? []
            let plain = try #require(ChatCompletionBody.rewriting(Array(body.utf8), id: "gen-1", model: "m", created: 1, choices: 8))
            return (items.map { $0["index"] }, items.compactMap { $0["message"]?["content"]?.stringValue },
                    String(decoding: out, as: UTF8.self).contains(choices.joined(separator: ",")) && out.count <= plain.count + 0)
        }
        for bad in ["1e20", #""100""#, "-5000", "1e400", "1.5", "null", "true", "1"] {
            let result = try indexes([choice(bad, "a")], n: 1)
            #expect(result.indexes == [.int(0)] && result.texts == ["a"], "\(bad)")
        }
        let duplicates = try indexes([choice("0", "a"), choice("0", "b"), choice("-1", "c")], n: 1)
        #expect(duplicates.indexes == [.int(0)] && duplicates.texts == ["a"])
        let twice = try indexes([choice("0", "a"), choice("0", "b")], n: 2)
        #expect(twice.indexes == [.int(0), .int(1)] && twice.texts == ["a", "b"])
        // Something in the array that is no choice is dropped, never kept in the answer's place
        // (review 84 #2: `["x", {…}]` for one choice became `["x"]`).
        for junk in [#""x""#, "null", "1", "[]"] {
            let result = try indexes([junk, choice("0", "a")], n: 1)
            #expect(result.indexes == [.int(0)] && result.texts == ["a"], "\(junk)")
        }
        // Fine as they are: relayed byte for byte.
        for (choices, n) in [([choice("0", "a")], 1), ([choice(nil, "a")], 1), ([choice("1", "b"), choice("0", "a")], 2), ([choice("0", "a")], 3)] {
            let result = try indexes(choices, n: n)
            #expect(result.same, "\(choices)")
        }
    }

    /// With one choice asked for, a chunk of another choice is the upstream's broken stream, also
    /// when it carries only content (review 81B #3: not parsed, it was relayed and the SDK merged
    /// it into the answer); choice 0's chunks, with `index` written any JSON way, still pass.
    @Test func anotherChoicesContentChunkIsRefusedWithOneChoiceAsked() throws {
        let first = #"data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"# + "\n\n"
        for hostile in [#""index":1"#, #""index": 2"#, #""index":"0""#, #""index":0.0"#, #""index":-1"#, #""index":01"#] {
            let chunk = #"data: {"id":"x","choices":[{\#(hostile),"delta":{"content":" there"},"finish_reason":null}]}"# + "\n\n"
            let result = relayAll([Array(first.utf8), Array(chunk.utf8)])
            guard case .failed(let error) = result.outcome else { Issue.record("\(hostile): \(result.outcome)"); continue }
            #expect(error.code == "upstream_protocol_error" && !result.output.contains("there"), "\(hostile): \(result.output)")
        }
        for fine in [#""index":0"#, #""index" : 0 "#, #""index":0}"#] {
            let body = fine.hasSuffix("}") ? #"{"delta":{"content":" there"},"finish_reason":null,\#(fine)"# : #"{\#(fine),"delta":{"content":" there"},"finish_reason":null}"#
            let chunk = #"data: {"id":"x","choices":[\#(body)]}"# + "\n\n"
            let result = relayAll([Array(first.utf8), Array(chunk.utf8), Array("data: [DONE]\n\n".utf8)])
            #expect(result.output.contains("there"), "\(fine): \(result.output)")
        }
    }

    /// A whole answer's bytes that are not UTF-8 and its lone surrogate escapes become U+FFFD,
    /// as a stream's do (review 80B #1: passed through, the OpenAI SDK raised UnicodeDecodeError);
    /// valid text, escapes and pairs are kept byte for byte.
    @Test func aWholeAnswersInvalidTextIsRepaired() throws {
        func rewritten(_ content: [UInt8]) throws -> [UInt8] {
            let body = Array(#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""#.utf8)
                + content + Array(#""},"finish_reason":"stop"}]}"#.utf8)
            return try #require(ChatCompletionBody.rewriting(body, id: "gen-1", model: "m", created: 1))
        }
        let cases: [([UInt8], String)] = [
            ([0x41, 0xFF, 0x42], "A\u{FFFD}B"), ([0x41, 0xC0, 0xAF], "A\u{FFFD}\u{FFFD}"), ([0xED, 0xA0, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),
            ([0xF0, 0x9F, 0x98], "\u{FFFD}"), (Array(#"A\ud800B"#.utf8), "A\u{FFFD}B"), (Array(#"\ude00\ud83d"#.utf8), "\u{FFFD}\u{FFFD}"),
            (Array(#"\ud83d\ude00 é \u00e9"#.utf8), "😀 é é"),
        ]
        for (content, expected) in cases {
            let out = try rewritten(content)
            #expect(out.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) } == nil, "\(content)")
            let parsed = try JSONValue.parse(out)
            #expect(parsed["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == expected, "\(content)")
        }
        let clean = Array(#"plain \ud83d\ude00 text"#.utf8)
        #expect(try rewritten(clean).count == (try rewritten(Array("x".utf8))).count + clean.count - 1, "clean bytes kept as sent")
    }

    /// A whole answer's calls sharing one id each get their own (review 68A #2).
    @Test func aWholeAnswersSharedToolCallIDsAreMadeUnique() throws {
        let body = #"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"call","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#
        let rewritten = try #require(ChatCompletionBody.rewriting(Array(body.utf8), id: "gen-1", model: "m", created: 1))
        let calls = try JSONValue.parse(rewritten)["choices"]?.arrayValue?.first?["message"]?["tool_calls"]?.arrayValue ?? []
        #expect(calls.compactMap { $0["id"]?.stringValue } == ["call", "call_1"], "\(String(decoding: rewritten, as: UTF8.self))")
        #expect(calls.compactMap { $0["function"]?["name"]?.stringValue } == ["f", "g"])
    }

    /// Two choices finished in one chunk, the first finishing in a later member (`n` > 1): the
    /// stream is complete (review 69 #2).
    @Test func anyChoicesFinishCounts() {
        let first = #"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"b"},"finish_reason":null}]}"#
        let chunk = #"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"},{"index":0,"delta":{},"finish_reason":"stop"}]}"#
        let result = relayAll([Array("data: \(first)\n\ndata: \(chunk)\n\ndata: [DONE]\n\n".utf8)], choices: 2)
        #expect(result.outcome == .done, "\(result.output)")
    }

    /// With `n` > 1 the stream is whole once every choice streamed has finished, not at the first
    /// choice's finish (review 70 #5: choice 1 left running ended as a clean `[DONE]`). A server
    /// that ignores `n` and streams one choice is whole at its finish.
    @Test func withSeveralChoicesEveryChoiceMustFinish() {
        func chunk(_ index: Int?, _ text: String, _ finish: String?) -> String {
            let indexMember = index.map { #""index":\#($0),"# } ?? ""
            return "data: " + #"{"choices":[{\#(indexMember)"delta":{"content":"\#(text)"},"finish_reason":"# + (finish.map { "\"\($0)\"" } ?? "null") + "}]}\n\n"
        }
        let cases: [(events: [String], whole: Bool)] = [
            ([chunk(0, "A", nil), chunk(1, "B", nil), chunk(0, "", "stop")], false),
            ([chunk(0, "A", nil), chunk(1, "B", nil), chunk(0, "", "stop"), chunk(1, "", "length")], true),
            ([chunk(1, "B", "stop"), chunk(0, "A", nil)], false),
            ([chunk(0, "A", "stop"), chunk(0, "A", "stop"), chunk(1, "B", "stop")], true),  // a finish on every chunk
            ([chunk(0, "A", nil), chunk(0, "", "stop")], true),  // the server streamed one choice
            ([chunk(nil, "A", "stop"), chunk(1, "B", nil)], false),  // no index is choice 0
        ]
        for (events, whole) in cases {
            for withDone in [true, false] {
                var relay = SSERelay(choices: 2)
                var out: [UInt8] = []
                var outcome = relay.relay(Array((events.joined() + (withDone ? "data: [DONE]\n\n" : "")).utf8), into: &out)
                if outcome == .streaming {
                    relay.upstreamDidEnd(failure: nil, into: &out)
                    outcome = relay.outcome
                }
                if whole {
                    #expect(outcome == .done, "\(events) done: \(withDone)")
                } else if case .failed(let error) = outcome {
                    #expect(error.code == "upstream_truncated", "\(events) done: \(withDone)")
                } else {
                    Issue.record("\(events) done: \(withDone): \(outcome)")
                }
            }
        }
        // The choice left running is named (review 78 #9).
        var relay = SSERelay(choices: 2)
        var out: [UInt8] = []
        _ = relay.relay(Array((chunk(0, "A", "stop") + chunk(1, "B", nil) + "data: [DONE]\n\n").utf8), into: &out)
        guard case .failed(let error) = relay.outcome else { Issue.record("\(relay.outcome)"); return }
        #expect(error.message.contains("choice 1 gave no finish reason"), "\(error.message)")
        // An index that is no integer in 0..<128 is the upstream's broken stream, never choice 0
        // (review 78 #7: a string index faked a whole answer).
        for index in [#""1""#, "-1", "1.5", "1e20", "128", "null"] {
            var relay = SSERelay(choices: 2)
            var out: [UInt8] = []
            let events = chunk(0, "A", nil) + "data: " + #"{"choices":[{"index":\#(index),"delta":{"content":"B"},"finish_reason":"stop"}]}"# + "\n\ndata: [DONE]\n\n"
            _ = relay.relay(Array(events.utf8), into: &out)
            guard case .failed(let error) = relay.outcome else { Issue.record("\(index): \(relay.outcome)"); continue }
            #expect(error.code == "upstream_protocol_error", "\(index): \(error)")
        }
        // With one choice asked for, a chunk of choice 1 is the upstream's broken stream, even one
        // that only carries content (review 81B #3: relayed, the SDK merged it).
        guard case .failed(let one) = relayAll([Array((chunk(0, "A", "stop") + chunk(1, "B", nil) + "data: [DONE]\n\n").utf8)]).outcome else {
            Issue.record("choice 1 with one asked for was relayed")
            return
        }
        #expect(one.code == "upstream_protocol_error", "\(one)")
    }

    /// `[DONE]` followed by white space is the sentinel still (OpenAI's SDKs read it so).
    @Test func doneWithTrailingSpaceEndsTheStream() {
        let result = relayAll([Array((#"data: {"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"# + "\n\ndata:[DONE]  \n\n").utf8)])
        #expect(result.outcome == .done, "\(result.output)")
    }

    @Test func malformedEventBecomesAnErrorChunkThenDone() throws {
        let result = relayAll([Array("data: {\"ok\":1}\n\ndata: not json\n\n".utf8)])
        guard case .failed(let error) = result.outcome else {
            Issue.record("expected failure")
            return
        }
        #expect(error.code == "upstream_protocol_error")
        let events = try decodeAll([Array(result.output.utf8)])
        #expect(events.count == 3)
        let chunk = try JSONValue.parse(Array(events[1].data.utf8))
        #expect(chunk["error"]?["code"]?.stringValue == "upstream_protocol_error")
        #expect(chunk["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "error")
        #expect(events[2].data == "[DONE]")
    }

    /// A choice that says it failed (OpenRouter's `finish_reason: "error"`, or an `error` of its
    /// own) without a top-level `error` is the upstream's failure, never a complete answer:
    /// streamed, translated and whole (review 45 proxy #4: relayed as it came, then `[DONE]`,
    /// and the SDKs raised nothing). Its numeric code is its status.
    @Test func aChoiceThatFailedIsAnErrorNotAnAnswer() throws {
        for chunk in [#"{"choices":[{"index":0,"delta":{},"finish_reason":"error","error":{"code":503,"message":"Provider disconnected"}}]}"#,
                      #"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#,
                      #"{"choices":[{"index":0,"delta":{},"finish_reason":null,"error":{"message":"boom"}}]}"#] {
            let result = relayAll([Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: \(chunk)\n\ndata: [DONE]\n\n".utf8)])
            guard case .failed(let error) = result.outcome else {
                Issue.record("\(chunk): \(result.outcome)")
                continue
            }
            #expect(error.status == (chunk.contains("503") ? 503 : 502), "\(error)")
            #expect(!result.output.contains(#""finish_reason":"error","error":{"code":503"#), "the upstream's chunk is not relayed as it came")

            var events: [ModelEvent] = []
            var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
            try Array("data: \(chunk)\n\n".utf8).withUnsafeBytes { bytes in try decoder.decode(bytes) { events.append($0) } }
            #expect(events.count == 1 && { if case .error = events[0] { true } else { false } }(), "translated: \(events)")
            let whole = #"{"choices":[\#(chunk.dropFirst(#"{"choices":["#.count).dropLast(2).replacingOccurrences(of: "delta", with: "message"))]}"#
            let decoded = try OpenAICompatibleProvider().decodeResponse(Array(whole.utf8), redactor: .none)
            #expect(decoded.count == 1 && { if case .error = decoded[0] { true } else { false } }(), "whole: \(whole) \(decoded)")
        }
        // An ordinary finish is still one.
        #expect(relayAll([Array("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\",\"error\":null}]}\n\ndata: [DONE]\n\n".utf8)]).outcome == .done)
    }

    @Test func oversizedEventFailsTheStream() {
        var relay = SSERelay(maxEventBytes: 64)
        var out: [UInt8] = []
        let outcome = relay.relay(Array(("data: \"" + String(repeating: "x", count: 100) + "\"\n\n").utf8), into: &out)
        guard case .failed(let error) = outcome else {
            Issue.record("expected failure")
            return
        }
        #expect(error.message.contains("larger than 64"))
    }

    @Test func upstreamEndWithoutDone() {
        // A finish reason came: complete (some servers omit [DONE]).
        var relay = SSERelay()
        var out: [UInt8] = []
        let finished = #"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#
        _ = relay.relay(Array("data: \(finished)\n\n".utf8), into: &out)
        relay.upstreamDidEnd(failure: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "data: \(finished)\n\ndata: [DONE]\n\n")
        #expect(relay.outcome == .done)

        // Neither [DONE] nor a finish reason: cut short, and the client is told.
        var cut = SSERelay(id: "gen-1", model: "p/m")
        var cutOut: [UInt8] = []
        _ = cut.relay(Array((#"data: {"choices":[{"delta":{"content":"Hal"}}]}"# + "\n\n").utf8), into: &cutOut)
        cut.upstreamDidEnd(failure: nil, into: &cutOut)
        let text = String(decoding: cutOut, as: UTF8.self)
        #expect(text.contains("upstream_truncated") && text.hasSuffix("data: [DONE]\n\n"))
        #expect(text.contains(#"{"id":"gen-1","object":"chat.completion.chunk","model":"p/m""#), "error chunks carry the stream's id and model")
        #expect(cut.outcome == .failed(.upstreamTruncated()))

        var broken = SSERelay()
        var brokenOut: [UInt8] = []
        broken.upstreamDidEnd(failure: .upstreamUnavailable("gone", code: "upstream_connection_lost"), into: &brokenOut)
        #expect(String(decoding: brokenOut, as: UTF8.self).contains("upstream_connection_lost"))
        #expect(broken.outcome != .done)
    }
}

/// One completion, one id, one `created`, one cost: what the relay writes over an upstream's own.
@Suite struct SSERelayIdentityTests {
    @Test func everyChunkGetsTheCompletionsIdModelAndCreated() throws {
        let upstream = """
            data: {"id":"chatcmpl-up-1","object":"chat.completion.chunk","created":111,"model":"up","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

            data: {"id":"chatcmpl-up-2","created":222,"model":"up","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

            data: {"id":"chatcmpl-up-3","created":333,"model":"up","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":334,"total_tokens":344,"cost":0.0006879999999999999,"cost_details":{"x":1}}}

            data: [DONE]


            """
        var relay = SSERelay(id: "gen-abc", model: "mock/normal", created: 1_700_000_000)
        var out: [UInt8] = []
        #expect(relay.relay(Array(upstream.utf8), into: &out) == .done)
        let chunks = try decodeAll([out]).filter { $0.data != "[DONE]" }.map { try JSONValue.parse(Array($0.data.utf8)) }
        #expect(chunks.count == 3)
        #expect(chunks.allSatisfy { $0["id"] == .string("gen-abc") && $0["model"] == .string("mock/normal") && $0["created"] == .int(1_700_000_000) })
        // The cost as the gateway states it; the rest of the usage as the upstream sent it.
        #expect(chunks[2]["usage"]?["cost"] == .double(0.000688))
        #expect(chunks[2]["usage"]?["cost_details"]?["x"] == .int(1) && chunks[2]["usage"]?["total_tokens"] == .int(344))
        #expect(!String(decoding: out, as: UTF8.self).contains("0.0006879999"))
        #expect(Usage(openAI: relay.usage)?.cost == 0.000688, "what the record will state")
    }

    /// The upstream is always asked for usage: a client that did not ask never sees it, wherever
    /// it comes (its own chunk, or riding on the last answer chunk), and the record has it. A client
    /// that asked gets it as OpenAI sends it: its own chunk, `choices: []`, last before `[DONE]`.
    @Test(arguments: [false, true]) func usageReachesOnlyAClientThatAskedAndAlwaysInItsOwnChunk(together: Bool) throws {
        let usage = #""usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#
        let upstream = together
            ? "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}],\(usage)}\n\ndata: [DONE]\n\n"
            : "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\(usage)}\n\ndata: [DONE]\n\n"
        for includeUsage in [false, true] {
            var relay = SSERelay(id: "gen-1", model: "m", created: 7, includeUsage: includeUsage)
            var out: [UInt8] = []
            #expect(relay.relay(Array(upstream.utf8), into: &out) == .done)
            let events = try decodeAll([out])
            #expect(events.last?.data == "[DONE]")
            let chunks = try events.dropLast().map { try JSONValue.parse(Array($0.data.utf8)) }
            #expect(chunks.map { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.prefix(2) == ["a", "b"])
            #expect(chunks.prefix(2).allSatisfy { $0["usage"] == nil }, "usage on an answer chunk: \(chunks)")
            #expect(chunks[1]["choices"]?.arrayValue?.first?["finish_reason"] == .string("stop"))
            if includeUsage {
                #expect(chunks.count == 3 && chunks[2]["choices"] == .array([]) && chunks[2]["usage"]?["total_tokens"] == .int(5))
                #expect(chunks[2]["id"] == .string("gen-1") && chunks[2]["created"] == .int(7))
            } else {
                #expect(chunks.count == 2)
            }
            #expect(Usage(openAI: relay.usage)?.totalTokens == 5 && relay.finishReason == "stop")
            if !includeUsage { #expect(relay.forwardedEvents == 2, "a hidden usage chunk is not an event of the answer") }
        }
    }

    @Test func theErrorChunkAndTheEstimatedUsageShareTheStreamsCreated() throws {
        var relay = SSERelay(id: "gen-abc", model: "m", created: 42, usageFallback: .init(promptTokens: 5, created: 42))
        var out: [UInt8] = []
        _ = relay.relay(Array("data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".utf8), into: &out)
        var failing = SSERelay(id: "gen-abc", model: "m", created: 42)
        _ = failing.relay(Array("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n".utf8), into: &out)
        failing.upstreamDidEnd(failure: nil, into: &out)
        let chunks = try decodeAll([out]).filter { $0.data != "[DONE]" }.map { try JSONValue.parse(Array($0.data.utf8)) }
        #expect(chunks.contains { $0["usage"]?["estimated"] == .bool(true) })
        #expect(chunks.contains { $0["error"] != nil })
        #expect(chunks.allSatisfy { $0["created"] == .int(42) && $0["id"] == .string("gen-abc") })
    }
}
