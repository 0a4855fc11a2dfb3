import Foundation
import GatewayCore
import PropertyBased
@testable import Surfaces
import Testing

/// The relay reads a finish or usage chunk in place when it can (`PlainChunk`); the reference is
/// the full path it skips (the chunk parsed, its error, index, tool calls and usage checked). The
/// two must relay the same bytes and account the same figures for any chunk: generated from the
/// shapes upstreams send and the hostile ones reviews found (escaped and duplicate keys, counts
/// that are no whole numbers, errors, tool calls, a second choice, `abort`).
@Suite struct PlainChunkTests {
    /// A tape of choices; `Chunk` reads its shape from it.
    static let tape = Gen.int(in: 0...9999).array(of: 48...48)

    @Test func readsAsTheFullPathReads() async {
        var accepted = 0
        var total = 0
        await propertyCheck(count: 4000, input: Self.tape) { tape in
            var chunk = Chunk(tape: tape)
            let text = chunk.text()
            let includeUsage = chunk.pick(2) == 0
            let stream = #"data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"# + "\n\n"
                + "data: \(text)\n\n" + (chunk.pick(2) == 0 ? "data: [DONE]\n\n" : "")
            func run(plain: Bool) -> (out: [UInt8], relay: SSERelay) {
                var relay = SSERelay(id: "gen-1", model: "m", created: 7, includeUsage: includeUsage,
                                     usageFallback: .init(promptTokens: 4, created: 7))
                relay.readsPlainChunks = plain
                var out: [UInt8] = []
                _ = relay.relay(Array(stream.utf8), into: &out)
                relay.upstreamDidEnd(failure: nil, into: &out)
                return (out, relay)
            }
            let fast = run(plain: true), full = run(plain: false)
            let fastText = String(decoding: fast.out, as: UTF8.self), fullText = String(decoding: full.out, as: UTF8.self)
            #expect(fastText == fullText, "\(text)")
            #expect(fast.relay.outcome == full.relay.outcome, "\(text)")
            #expect(fast.relay.finishReason == full.relay.finishReason, "\(text)")
            #expect(fast.relay.usage == full.relay.usage, "\(text)")
            #expect(fast.relay.usageEstimated == full.relay.usageEstimated, "\(text)")
            #expect(fast.relay.forwardedEvents == full.relay.forwardedEvents, "\(text)")
            total += 1
            if Array(text.utf8).withUnsafeBytes({ PlainChunk($0) }) != nil { accepted += 1 }
        }
        // Both kinds of chunk are common in the generated set: the in-place path is exercised.
        #expect(accepted > total / 20, "\(accepted) of \(total)")
    }

    /// The common chunks are read in place (else the path would never run).
    @Test func theCommonChunksAreReadInPlace() {
        for text in [#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                     #"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"cost":0.000016}}"#,
                     #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#] {
            #expect(Array(text.utf8).withUnsafeBytes { PlainChunk($0) } != nil, "\(text)")
        }
        for text in [#"{"choices":[{"index":0,"delta":{},"finish_reason":"abort"}]}"#,
                     #"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
                     #"{"choices":[{"delta":{"tool_calls":[{"index":0}]},"finish_reason":"tool_calls"}]}"#,
                     #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":7}}"#,
                     #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"cost":0.00000012345}}"#] {
            #expect(Array(text.utf8).withUnsafeBytes { PlainChunk($0) } == nil, "\(text)")
        }
    }

    /// A chunk's text, its shape read from the tape.
    struct Chunk {
        var tape: [Int]
        var position = 0

        init(tape: [Int]) { self.tape = tape }

        mutating func pick(_ count: Int) -> Int {
            defer { position += 1 }
            return tape[position % tape.count] % count
        }

        mutating func one(_ options: [String]) -> String { options[pick(options.count)] }

        /// `"name"`, or spelled with an escape.
        mutating func key(_ name: String) -> String {
            guard pick(8) == 0, let first = name.unicodeScalars.first else { return "\"\(name)\"" }
            return "\"" + String(format: "\\u%04x", Int(first.value)) + name.dropFirst() + "\""
        }

        /// `"name":value`, sometimes after a duplicate with another value.
        mutating func member(_ name: String, _ value: String, other: String) -> String {
            let member = "\(key(name)):\(value)"
            switch pick(10) {
            case 0: return "\(key(name)):\(other),\(member)"
            case 1: return "\(member),\(key(name)):\(other)"
            default: return member
            }
        }

        mutating func count() -> String {
            one(["3", "0", "5", "12", "1099511627776", "1099511627777", "99999999999999", "-5", "1.5", "2.0", "1e300", "1e400",
                 #""12""#, "null", "3", "5", "8"])
        }

        mutating func usage() -> String {
            var members: [String] = []
            let prompt = pick(3) == 0 ? count() : "3"
            let completion = pick(3) == 0 ? count() : "5"
            if pick(12) != 0 { members.append(member("prompt_tokens", prompt, other: count())) }
            if pick(12) != 0 { members.append(member("completion_tokens", completion, other: count())) }
            let sum = (Int(prompt) ?? 0) + (Int(completion) ?? 0)
            let total = one(["\(sum)", "\(sum)", "\(sum + 5)", "\(max(sum - 1, 0))", count()])
            if pick(12) != 0 { members.append(member("total_tokens", total, other: count())) }
            switch pick(6) {
            case 0: members.append(member("cost", one(["0.000016", "0.0000161234567", "-1", #""0.1""#, "1e400", "0", "16"]), other: "0.5"))
            case 1: members.append(member("cost", "0.000016", other: "0.000016"))
            default: break
            }
            if pick(3) == 0 {
                let details = one([#"{"cached_tokens":2}"#, #"{"cached_tokens":-1}"#, #"{"cached_tokens":"x"}"#, #"{"audio_tokens":1.5}"#,
                                   "5", "{}", #"{"cache_write_tokens":3,"audio_tokens":0}"#, #"{"cached_tokens":2,"cached_tokens":2.5}"#])
                members.append(member("prompt_tokens_details", details, other: "{}"))
            }
            if pick(3) == 0 {
                let details = one([#"{"reasoning_tokens":2}"#, #"{"reasoning_tokens":1e999}"#, #"{"accepted_prediction_tokens":"1"}"#,
                                   #"{"rejected_prediction_tokens":-2}"#, "[]"])
                members.append(member("completion_tokens_details", details, other: #"{"reasoning_tokens":1}"#))
            }
            if pick(8) == 0 { members.shuffle(using: &self) }
            return "{" + members.joined(separator: ",") + "}"
        }

        mutating func choice() -> String {
            var members: [String] = []
            switch pick(8) {
            case 0: break
            case 1: members.append(member("index", one(["1", #""0""#, "0.0", "-0", "1e400", "-1"]), other: "0"))
            default: members.append(member("index", "0", other: "1"))
            }
            let delta = one(["{}", "{}", #"{"content":"done"}"#, #"{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
                             #"{"tool_calls":null}"#, #"{"role":"assistant"}"#, "null"])
            if pick(6) != 0 { members.append(member("delta", delta, other: "{}")) }
            let finish = one([#""stop""#, #""stop""#, #""length""#, "null", #""""#, #""error""#, #""abort""#, "5", #"{"x":1}"#, #""tool_calls""#])
            if pick(8) != 0 { members.append(member("finish_reason", finish, other: #""length""#)) }
            if pick(8) == 0 { members.append(member("error", one(["null", #"{"message":"bad"}"#, "1e400"]), other: "null")) }
            if pick(8) == 0 { members.append(#""logprobs":null"#) }
            return "{" + members.joined(separator: ",") + "}"
        }

        mutating func text() -> String {
            var members = [#""id":"chatcmpl-1""#, #""object":"chat.completion.chunk""#, #""created":1"#, #""model":"up""#]
            let usageChunk = pick(2) == 0
            let choices: String
            switch pick(12) {
            case 0: choices = "null"
            case 1: choices = "{}"
            case 2: choices = "[\(choice()),\(choice())]"
            default: choices = usageChunk && pick(4) != 0 ? "[]" : "[\(choice())]"
            }
            if pick(16) != 0 { members.append(member("choices", choices, other: "[]")) }
            if usageChunk || pick(6) == 0 { members.append(member("usage", pick(10) == 0 ? "null" : usage(), other: "null")) }
            if pick(10) == 0 { members.append(member("error", one(["null", #"{"message":"upstream broke"}"#, "1e400"]), other: "null")) }
            return "{" + members.joined(separator: ",") + "}"
        }
    }
}

extension PlainChunkTests.Chunk: RandomNumberGenerator {
    /// The tape as a generator too (a shuffle's order comes from it).
    mutating func next() -> UInt64 {
        UInt64(pick(10_000)) &* 0x9E37_79B9_7F4A_7C15
    }
}
