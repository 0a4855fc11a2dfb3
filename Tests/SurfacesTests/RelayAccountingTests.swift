import FixtureFiles
import Foundation
import GatewayCore
import Providers
import Surfaces
import Testing

/// What the chat relay counts of an upstream's stream (usage, finish, the prompt's count), and
/// how it checks an upstream's usage numbers before they reach the client and the record.
@Suite struct RelayAccountingTests {
    @Test func notesUsageAndFinishReason() {
        var relay = SSERelay()
        var out: [UInt8] = []
        _ = relay.relay(Array(#"data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}\#n\#n"#.utf8), into: &out)
        #expect(relay.finishReason == nil && relay.usage == nil)
        _ = relay.relay(Array(#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}\#n\#n"#.utf8), into: &out)
        _ = relay.relay(Array(#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\#n\#n"#.utf8), into: &out)
        #expect(relay.finishReason == "length")
        #expect(relay.usage?["total_tokens"] == .int(8))
    }

    /// A member name with an escape in it is the same name to every JSON parser, the client's
    /// included: an escaped `usage` is checked and counted, an escaped `error` ends the stream
    /// with the gateway's own error (review 42 F4: both went out as they came).
    @Test func escapedMemberNamesAreReadAsTheNamesTheyAre() throws {
        var relay = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        var out: [UInt8] = []
        _ = relay.relay(Array(#"data: {"choices":[],"us\u0061ge":{"prompt_tokens":-5,"completion_tokens":1e300,"total_tokens":3}}\#n\#n"#.utf8),
                        into: &out)
        let usage = try #require(relay.usage)
        #expect(usage["prompt_tokens"]?.intValue.map { $0 >= 0 } ?? true && usage["completion_tokens"] != .double(1e300), "\(usage)")
        #expect(!String(decoding: out, as: UTF8.self).contains("-5") && !String(decoding: out, as: UTF8.self).contains("1e300"))

        var failing = SSERelay(id: "gen-2", model: "m", created: 1)
        var text: [UInt8] = []
        let outcome = failing.relay(Array(#"data: {"\u0065rror":{"message":"boom sk-live-secret"}}\#n\#ndata: {"choices":[{"delta":{"content":"more"}}]}\#n\#n"#.utf8),
                                    into: &text)
        guard case .failed = outcome else { Issue.record("\(outcome)"); return }
        #expect(!String(decoding: text, as: UTF8.self).contains("more"))
    }

    /// The completion's own id and model replace an upstream's however it spells their names:
    /// an escaped `"\u0069d"` after the gateway's `"id"` would be the one a client's parser keeps.
    @Test func escapedNamesCannotOverrideTheCompletionsIdOrModel() throws {
        var relay = SSERelay(id: "gen-1", model: "m", created: 1)
        var out: [UInt8] = []
        _ = relay.relay(Array(#"data: {"\u0069d":"forged","mod\u0065l":"other","choices":[{"index":0,"delta":{"content":"x"}}]}\#n\#n"#.utf8), into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(!text.contains("forged") && !text.contains("other"), "\(text)")
        let chunk = try JSONValue.parse(Array(try #require(text.split(separator: "\n").first).dropFirst(6).utf8))
        #expect(chunk["id"]?.stringValue == "gen-1" && chunk["model"]?.stringValue == "m")
        #expect(chunk["choices"]?[0]?["delta"]?["content"]?.stringValue == "x")
    }

    /// A cost that is no number is left out, and a count that is none is 0 beside a readable
    /// one, for the client and the accounting alike (review 16 #7: a string cost reached the
    /// client, the record said 0; review 68A #5).
    @Test func usageMembersThatAreNoNumbersAreLeftOut() throws {
        var relay = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        var out: [UInt8] = []
        _ = relay.relay(Array(#"data: {"choices":[],"usage":{"prompt_tokens":"5","completion_tokens":2,"total_tokens":{"x":1},"cost":"0.5"}}\#n\#ndata: [DONE]\#n\#n"#.utf8), into: &out)
        let usage = try #require(relay.usage)
        #expect(usage["cost"] == nil && usage["prompt_tokens"] == .int(0) && usage["completion_tokens"] == .int(2) && usage["total_tokens"] == .int(2), "\(usage)")
        // Beside a readable total, the unreadable one is the rest of it (review 69 #4).
        var rest = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        var restOut: [UInt8] = []
        _ = rest.relay(Array(#"data: {"choices":[],"usage":{"prompt_tokens":"x","completion_tokens":3,"total_tokens":13}}\#n\#n"#.utf8), into: &restOut)
        #expect(rest.usage == .object(["prompt_tokens": .int(10), "completion_tokens": .int(3), "total_tokens": .int(13)]), "\(String(describing: rest.usage))")
        #expect(!String(decoding: out, as: UTF8.self).contains("0.5") && !String(decoding: out, as: UTF8.self).contains(#""x""#))
    }

    /// An upstream's usage numbers are untrusted: whatever it sends, the client (and the
    /// accounting) get whole token counts in range and a total that is their sum; a usage that
    /// needs nothing goes out as it came.
    @Test(arguments: 0..<200) func hostileUsageNumbersGoOutChecked(seed: Int) throws {
        var state = UInt64(seed) &+ 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {  // splitmix64: deterministic per seed
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let numbers = ["-5", "0", "7", "1e308", "-1e308", "12.75", "9007199254740993", "1099511627777", "3.0", "-0.0", "2e3"]
        func pick() -> String { numbers[Int(next() % UInt64(numbers.count))] }
        let usage = #"{"prompt_tokens":\#(pick()),"completion_tokens":\#(pick()),"total_tokens":\#(pick()),"completion_tokens_details":{"reasoning_tokens":\#(pick())},"extra":"kept"}"#
        var relay = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        var out: [UInt8] = []
        let answer = #"data: {"choices":[{"delta":{"content":"a"}}]}"# + "\n\n"
        _ = relay.relay(Array("\(answer)data: {\"choices\":[],\"usage\":\(usage)}\n\ndata: [DONE]\n\n".utf8), into: &out)
        var decoder = SSEDecoder()
        var sent: JSONValue?
        try decoder.feed(out) { event in
            if !event.isDone, let chunk = try? JSONValue.parse(Array(event.data)), let value = chunk["usage"] { sent = value }
        }
        let given = try #require(sent, "\(String(decoding: out, as: UTF8.self))")
        #expect(given == relay.usage, "the client and the accounting see the same usage")
        var counts: [Int64] = []
        for value in [given["prompt_tokens"], given["completion_tokens"], given["total_tokens"], given["completion_tokens_details"]?["reasoning_tokens"]] {
            guard case .int(let count)? = value else { Issue.record("not an integer: \(String(describing: value)) in \(usage)"); return }
            #expect((0...Usage.maxTokens).contains(count), "\(usage)")
            counts.append(count)
        }
        // The total is at least the sum, a larger one kept, as `Usage(openAI:)` reads it (review 71B #4).
        #expect(counts[2] >= min(counts[0] + counts[1], Usage.maxTokens), "\(usage) → \(given)")
        #expect(Usage(openAI: given)?.totalTokens == counts[2], "one rule for the client and the record: \(usage) → \(given)")
        #expect(given["extra"] == .string("kept"))
        // Already whole and in range: untouched, byte for byte.
        var plain = SSERelay(includeUsage: true)
        var plainOut: [UInt8] = []
        let valid = #"data: {"choices":[],"usage":{"total_tokens":8,"prompt_tokens":3,"completion_tokens":5}}\#n\#n"#
        _ = plain.relay(Array((answer + valid).utf8), into: &plainOut)
        #expect(String(decoding: plainOut, as: UTF8.self).contains(#""usage":{"total_tokens":8,"prompt_tokens":3,"completion_tokens":5}"#))
    }

    /// A whole (non-streamed) body's usage is checked the same way; a body whose usage needs
    /// nothing keeps it as it came.
    @Test func aWholeBodysUsageGoesOutChecked() throws {
        let hostile = Array(#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":-5,"completion_tokens":1e308,"total_tokens":3,"cost":0.1234567891234}}"#.utf8)
        let rewritten = try #require(ChatCompletionBody.rewriting(hostile, id: "gen-1", model: "m", created: 1))
        let usage = try JSONValue.parse(rewritten)["usage"]
        #expect(usage?["prompt_tokens"] == .int(0) && usage?["completion_tokens"] == .int(Usage.maxTokens))
        #expect(usage?["total_tokens"] == .int(Usage.maxTokens))
        #expect(usage?["cost"] == .double(Usage.roundedCost(0.1234567891234)))
        let valid = Array(#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#.utf8)
        let kept = try #require(ChatCompletionBody.rewriting(valid, id: "gen-1", model: "m", created: 1))
        #expect(String(decoding: kept, as: UTF8.self).contains(#""usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}"#))
    }

    /// Counts that are no numbers (`1e400` reads as null, strings) never reach the client as they
    /// came (review 21 F2). With none left, the usage is unknown: streamed, the end's estimate
    /// replaces it; whole, it is null; and the accounting has none to record as a measured zero.
    @Test func unreadableUsageCountsAreLeftOutOrEstimated() throws {
        let unreadable = #"{"prompt_tokens":1e400,"completion_tokens":"12","total_tokens":null,"cost":1e400,"prompt_tokens_details":{"cached_tokens":"12"}}"#
        var relay = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true, usageFallback: .init(promptTokens: 4, created: 1))
        var out: [UInt8] = []
        let stream = #"data: {"choices":[{"delta":{"content":"hi"}}]}"# + "\n\n" + #"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"# + "\n\n"
            + "data: {\"choices\":[],\"usage\":\(unreadable)}\n\ndata: [DONE]\n\n"
        _ = relay.relay(Array(stream.utf8), into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(!text.contains("1e400") && !text.contains(#""12""#), "\(text)")
        #expect(text.contains(#""usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6,"estimated":true}"#), "\(text)")
        #expect(relay.usageEstimated && Usage(openAI: relay.usage)?.promptTokens == 4)
        #expect(Usage(openAI: try JSONValue.parse(Array(unreadable.utf8))) == nil)

        // Some counts readable: those go out, an unreadable one of the three is 0 (an SDK reads
        // every one: review 68A #5), other unreadable members are left out.
        let partial = #"{"prompt_tokens":5,"completion_tokens":1e400,"prompt_tokens_details":{"cached_tokens":"3"},"completion_tokens_details":{"reasoning_tokens":2}}"#
        let partialBody = try #require(ChatCompletionBody.rewriting(Array(#"{"choices":[],"usage":\#(partial)}"#.utf8), id: "gen-1", model: "m", created: 1))
        let checked = try JSONValue.parse(partialBody)["usage"]
        #expect(checked == .object(["prompt_tokens": .int(5), "completion_tokens": .int(0), "total_tokens": .int(5), "prompt_tokens_details": .object([:]),
                                    "completion_tokens_details": .object(["reasoning_tokens": .int(2)])]), "\(String(describing: checked))")

        let whole = Array(#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":\#(unreadable)}"#.utf8)
        let rewritten = try #require(ChatCompletionBody.rewriting(whole, id: "gen-1", model: "m", created: 1))
        #expect(try JSONValue.parse(rewritten)["usage"] == .null, "\(String(decoding: rewritten, as: UTF8.self))")
        #expect(!String(decoding: rewritten, as: UTF8.self).contains("1e400"))
    }

    /// A chat client's stream from an Anthropic upstream, cut after `message_start`: the relay
    /// has the upstream's own count of the prompt for the estimate (review 22 F1: 9,000 prompt
    /// tokens were charged as the 33 the request's size gave).
    @Test func aTranslatedStreamKeepsTheUpstreamsPromptCount() {
        var relay = ChatStreamRelay.translating(AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none), id: "gen-1",
                                                model: "m", created: 1, includeUsage: true, usageFallback: .init(promptTokens: 33, created: 1))
        let start = #"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"usage":{"input_tokens":5000,"cache_read_input_tokens":3000,"cache_creation_input_tokens":1000,"output_tokens":1}}}"#
        let delta = #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#
        let block = #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
        var out: [UInt8] = []
        let bytes = Array("event: message_start\ndata: \(start)\n\nevent: content_block_start\ndata: \(block)\n\nevent: content_block_delta\ndata: \(delta)\n\n".utf8)
        _ = bytes.withUnsafeBytes { relay.relay($0, into: &out) }
        #expect(relay.promptUsage?.promptTokens == 9_000 && relay.promptUsage?.cachedTokens == 3_000, "\(String(describing: relay.promptUsage))")
        #expect(ChatStreamRelay.passThrough(id: "g", model: "m", maxEventBytes: 1 << 20, usageFallback: nil).promptUsage == nil)
    }

    /// An upstream that says its finish and then fails before any answer (Anthropic's
    /// `message_delta`, then an error event) has shown a chat client nothing: no finish chunk
    /// went out, so the attempt is retried or fallen back from in one stream (review 102 #2: the
    /// failed model's `finish_reason: "stop"` went out, then the fallback's answer and finish).
    /// A stream that ends well gets its finish at the end, once.
    @Test func aFinishBeforeAFailureShowsNothing() {
        func relay(_ events: String) -> (ChatStreamRelay, String) {
            var relay = ChatStreamRelay.translating(AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none), id: "gen-1",
                                                    model: "m", created: 1, includeUsage: false)
            var out: [UInt8] = []
            let start = #"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#
            _ = Array("event: message_start\ndata: \(start)\n\n\(events)".utf8).withUnsafeBytes { relay.relay($0, into: &out) }
            return (relay, String(decoding: out, as: UTF8.self))
        }
        let finish = #"event: message_delta\#ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":0}}\#n\#n"#
        let error = #"event: error\#ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\#n\#n"#
        let (failed, shown) = relay(finish + error)
        #expect(failed.forwardedEvents == 0 && !shown.contains("finish_reason\":\"stop"), "\(shown)")
        let text = #"event: content_block_start\#ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\#n\#n"#
            + #"event: content_block_delta\#ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\#n\#n"#
            + #"event: content_block_stop\#ndata: {"type":"content_block_stop","index":0}\#n\#n"# + finish
            + #"event: message_stop\#ndata: {"type":"message_stop"}\#n\#n"#
        let (answered, whole) = relay(text)
        #expect(answered.outcome == .done, "\(whole)")
        #expect(whole.components(separatedBy: "finish_reason\":\"stop").count == 2, "one finish: \(whole)")
        #expect(whole.range(of: "\"Hi\"").map { $0.lowerBound < whole.range(of: "finish_reason\":\"stop")!.lowerBound } == true)
    }

    @Test func splicesTopLevelValuesOnly() {
        let chunk = Array(#"{"id":"up-1","object":"chat.completion.chunk","model":"m","choices":[{"delta":{"model":"keep"}}]}"#.utf8)
        let spliced = chunk.withUnsafeBytes { JSONScanner.replacingTopLevelValues(["id": "gen-9", "model": "sim/outer"], in: $0) }
        #expect(spliced.map { String(decoding: $0, as: UTF8.self) }
                == #"{"id":"gen-9","object":"chat.completion.chunk","model":"sim/outer","choices":[{"delta":{"model":"keep"}}]}"#)
        #expect(Array("nope".utf8).withUnsafeBytes { JSONScanner.replacingTopLevelValues(["id": "x"], in: $0) } == nil)
    }
}
