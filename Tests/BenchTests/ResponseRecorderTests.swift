@testable import Bench
import Testing

/// Replays known timelines through the recorder: exact TTFT, ITL, TPOT, E2E and tokens/s, and
/// every error kind, without sockets.
@Suite struct ResponseRecorderTests {
    static let ms: UInt64 = 1_000_000

    static func chunk(_ content: String?, finish: String? = nil) -> String {
        let delta = content.map { #"{"content":"\#($0)"}"# } ?? #"{"role":"assistant","content":""}"#
        let reason = finish.map { #""\#($0)""# } ?? "null"
        return #"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":\#(delta),"finish_reason":\#(reason)}]}"# + "\n\n"
    }

    static let usage = #"data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"# + "\n\n"
    static let done = "data: [DONE]\n\n"

    /// A role-only chunk, three content events, a finish chunk, usage and [DONE], at known times.
    static let timeline: [(UInt64, String)] = [
        (1 * ms, chunk(nil)), (2 * ms, chunk("Hello")), (5 * ms, chunk(" wor")), (9 * ms, chunk("ld")),
        (10 * ms, chunk(nil, finish: "stop")), (11 * ms, usage), (12 * ms, done),
    ]

    static func replay(_ events: [(UInt64, String)], streamed: Bool = true, status: Int? = 200, byteByByte: Bool = false,
                       maxEventBytes: Int = 1 << 20, failure: TransportFailure? = nil, endAt: UInt64 = 13 * ms) -> RequestOutcome {
        var recorder = ResponseRecorder(target: 0, streamed: streamed, scheduledAt: 0, sentAt: 0, maxEventBytes: maxEventBytes)
        if let status { recorder.didReceiveHead(status: status) }
        for (time, text) in events {
            let bytes = Array(text.utf8)
            let pieces = byteByByte ? bytes.map { [$0] } : [bytes]
            for piece in pieces {
                let more = piece.withUnsafeBytes { recorder.didReceive($0, at: time) }
                if !more { return recorder.finish(nil, at: time) }
            }
        }
        return recorder.finish(failure, at: endAt)
    }

    /// An event that is not UTF-8 is malformed (JSON is UTF-8); a tool call or a refusal is content.
    /// `[DONE]` ends what is read (the transfer is ended there), and a stream past its byte cap
    /// is malformed (review 48 bench #4, #5).
    @Test func doneEndsTheReadingAndAStreamHasACap() {
        var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        recorder.didReceiveHead(status: 200, contentType: "text/event-stream")
        let first = Array((Self.chunk("Hi") + Self.done).utf8)
        #expect(first.withUnsafeBytes { recorder.didReceive($0, at: Self.ms) } == false, "nothing more is needed after [DONE]")
        #expect(recorder.finish(nil, at: 2 * Self.ms).succeeded)

        var flooded = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0, maxStreamBytes: 1_000)
        flooded.didReceiveHead(status: 200, contentType: "text/event-stream")
        let chunk = Array(Self.chunk("x").utf8)
        var reading = true
        for step in 0..<100 where reading { reading = chunk.withUnsafeBytes { flooded.didReceive($0, at: UInt64(step) * Self.ms) } }
        #expect(!reading && flooded.hasFailed)
        let outcome = flooded.finish(nil, at: 200 * Self.ms)
        #expect(outcome.error == .malformed && outcome.errorDetail?.contains("over 1000 bytes") == true, "\(outcome)")
    }

    @Test func invalidUTF8IsMalformedAndToolCallsAreContent() {
        var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        recorder.didReceiveHead(status: 200)
        let bad: [UInt8] = Array(#"data: {"choices":[{"delta":{"content":"a"#.utf8) + [0xFF, 0xFE] + Array("\"}}]}\n\n".utf8)
        _ = bad.withUnsafeBytes { recorder.didReceive($0, at: 1) }
        #expect(recorder.finish(nil, at: 2).error == .malformed)
        let call = #"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"# + "\n\n"
        let refusal = #"data: {"choices":[{"delta":{"refusal":"No."}}]}"# + "\n\n"
        for first in [call, refusal] {
            let outcome = Self.replay([(1 * Self.ms, first), (2 * Self.ms, Self.chunk(nil, finish: "stop")), (3 * Self.ms, Self.done)])
            #expect(outcome.succeeded && outcome.firstContentAt == 1 * Self.ms, "\(first)")
        }
    }

    @Test func knownTimelineGivesExactMetrics() {
        let outcome = Self.replay(Self.timeline)
        #expect(outcome.error == nil)
        #expect(outcome.ttftMilliseconds == 2)  // the role-only chunk is not the first token
        #expect(outcome.interTokenMilliseconds == [3, 4])
        #expect(outcome.e2eMilliseconds == 10)  // the finish chunk; usage and [DONE] excluded
        #expect(outcome.outputTokens == 3)
        #expect(outcome.tokenSource == .usage)
        #expect(outcome.tpotMilliseconds == 4)  // (10 − 2) / (3 − 1)
        #expect(outcome.streamTokensPerSecond == 300)  // 3 tokens in 10 ms
    }

    @Test func byteByByteFeedingGivesTheSameOutcome() {
        #expect(Self.replay(Self.timeline, byteByByte: true) == Self.replay(Self.timeline))
    }

    @Test func withoutUsageContentEventsAreCounted() {
        let outcome = Self.replay(Self.timeline.filter { $0.1 != Self.usage })
        #expect(outcome.outputTokens == 3)
        #expect(outcome.tokenSource == .countedEvents)
        #expect(outcome.tpotMilliseconds == 4)
    }

    @Test func reasoningCountsAsContentAndOneTokenHasNoTPOT() {
        let reasoning = #"data: {"choices":[{"index":0,"delta":{"reasoning":"hmm"}}]}"# + "\n\n"
        let outcome = Self.replay([(4 * Self.ms, reasoning), (5 * Self.ms, Self.done)])
        #expect(outcome.ttftMilliseconds == 4)
        #expect(outcome.outputTokens == 1)
        #expect(outcome.tpotMilliseconds == nil)
        #expect(outcome.interTokenGaps.isEmpty)
    }

    @Test func httpStatusesAreClassifiedWithTheServerMessage() {
        let body = #"{"error":{"message":"Invalid API key","type":"auth"}}"#
        let unauthorized = Self.replay([(1 * Self.ms, body)], status: 401)
        #expect(unauthorized.error == .http4xx)
        #expect(unauthorized.errorDetail == "HTTP 401: Invalid API key")
        #expect(Self.replay([], status: 503).error == .http5xx)
        #expect(Self.replay([], status: 302).error == .httpOther)
        #expect(Self.replay([], status: 204).error == .truncated)  // 2xx without a stream
    }

    @Test func anEndlessErrorBodyIsNotReadToTheEnd() {
        var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        recorder.didReceiveHead(status: 502)
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1000)
        let answers = (0..<6).map { _ in chunk.withUnsafeBytes { recorder.didReceive($0, at: 1) } }
        #expect(answers == [true, true, true, true, false, false])  // 4096 bytes kept for the message
        let outcome = recorder.finish(nil, at: 2)
        #expect(outcome.error == .http5xx)
        #expect(outcome.errorDetail?.hasPrefix("HTTP 502: xxx") == true)
    }

    @Test func anErrorChunkIsAStreamError() {
        let error = #"data: {"error":{"message":"Provider disconnected","code":502}}"# + "\n\n"
        let outcome = Self.replay([(2 * Self.ms, Self.chunk("a")), (3 * Self.ms, error), (4 * Self.ms, Self.done)])
        #expect(outcome.error == .streamError)
        #expect(outcome.errorDetail == "Provider disconnected")
    }

    /// An event named `error` and llama.cpp's `error:` line are the server's failure, with its
    /// message (review 103 #6: counted `empty`, the message lost).
    @Test(arguments: [
        ("event: error\ndata: {\"message\":\"overloaded\"}\n\n", "overloaded"),
        ("event: error\ndata: {\"error\":{\"message\":\"quota\"}}\n\n", "quota"),
        ("event: error\ndata: not json\n\n", "not json"),
        ("error: {\"code\":500,\"message\":\"context full\"}\n\n", "context full"),
    ])
    func anErrorEventIsAStreamErrorWithItsMessage(event: String, message: String) {
        let outcome = Self.replay([(2 * Self.ms, event), (3 * Self.ms, Self.done)])
        #expect(outcome.error == .streamError && outcome.errorDetail == message, "\(String(describing: outcome.errorDetail))")
    }

    @Test func aStreamWithoutDoneIsTruncated() {
        let outcome = Self.replay(Array(Self.timeline.dropLast()))
        #expect(outcome.error == .truncated)
        let broken = Self.replay(Array(Self.timeline.prefix(3)), failure: .broken("connection reset"))
        #expect(broken.error == .truncated)
        #expect(broken.errorDetail == "connection reset")
    }

    /// A stream that ends with bytes but not one SSE event (a gzip body nobody asked for, plain
    /// text) is no SSE: malformed, not cut short (review 64A #4); one cut after an event is.
    @Test func aStreamWithoutAnyEventIsMalformed() {
        let gzip = String(decoding: [0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03], as: UTF8.self)
        for body in [gzip, "just some text", "data: [DONE]"] {
            let outcome = Self.replay([(1 * Self.ms, body)])
            #expect(outcome.error == .malformed && outcome.errorDetail?.contains("no SSE event") == true, "\(body): \(outcome)")
        }
        #expect(Self.replay([(1 * Self.ms, Self.chunk("a")), (2 * Self.ms, "data: [DO")]).error == .truncated)
        #expect(Self.replay([]).error == .truncated, "no bytes at all: cut short")
    }

    @Test func aConnectionBrokenAfterDoneTookNothing() {
        #expect(Self.replay(Self.timeline, failure: .broken("reset")).error == nil)
    }

    @Test func transportFailuresAreClassified() {
        #expect(Self.replay([], status: nil, failure: .connect("refused")).error == .connect)
        #expect(Self.replay([(1 * Self.ms, Self.chunk("a"))], failure: .timeout("slow")).error == .timeout)
        var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        #expect(recorder.finish(.connect("no route"), at: 1).error == .connect)
    }

    @Test func anEventThatIsNotJSONIsMalformedAndStopsReading() {
        var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        recorder.didReceiveHead(status: 200)
        let more = Array("data: {\"choices\":[{\"delta\":{\"content\":\"unterminated\n\n".utf8).withUnsafeBytes {
            recorder.didReceive($0, at: 1)
        }
        #expect(!more)
        #expect(recorder.finish(nil, at: 2).error == .malformed)
    }

    /// A streamed request answered 2xx with something else than an event stream (a login page,
    /// a whole JSON body) is malformed, as a body that is not JSON is without streaming.
    @Test func aStreamedRequestAnsweredWithoutAnEventStreamIsMalformed() {
        for type in ["text/html; charset=utf-8", "application/json"] {
            var recorder = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
            recorder.didReceiveHead(status: 200, contentType: type)
            let more = Array("<html>".utf8).withUnsafeBytes { recorder.didReceive($0, at: 1) }
            let outcome = recorder.finish(nil, at: 2)
            #expect(more == (type == "application/json"), "a JSON body is read for the error it may carry")
            #expect(outcome.error == .malformed && outcome.errorDetail?.contains(type) == true, "\(type)")
        }
        // An error in it (OpenRouter's way when a request fails before streaming) is the
        // server's, with its message (review 48 bench #9).
        var json = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        json.didReceiveHead(status: 200, contentType: "application/json")
        _ = Array(#"{"error":{"message":"quota exceeded\u202e","code":429}}"#.utf8).withUnsafeBytes { json.didReceive($0, at: 1) }
        let failed = json.finish(nil, at: 2)
        #expect(failed.error == .streamError && failed.errorDetail == "quota exceeded", "the bidi override dropped: \(failed)")
        var sse = ResponseRecorder(target: 0, streamed: true, scheduledAt: 0, sentAt: 0)
        sse.didReceiveHead(status: 200, contentType: "Text/Event-Stream; charset=utf-8")
        #expect(Array(Self.chunk("Hi").utf8).withUnsafeBytes { sse.didReceive($0, at: 1) }, "read on")
    }

    @Test func anOversizedEventIsMalformed() {
        let big = "data: {\"choices\":[{\"delta\":{\"content\":\"" + String(repeating: "x", count: 5000) + "\"}}]}\n\n"
        let outcome = Self.replay([(1 * Self.ms, big), (2 * Self.ms, Self.done)], maxEventBytes: 1024)
        #expect(outcome.error == .malformed)
        #expect(outcome.errorDetail == "an SSE event over 1024 bytes")
    }

    @Test(arguments: ["1e300", "-3", "2.5", "100000000000000000000", "\"3\"", "true", "1e400", "-1e400", " \n 1E999"])
    func anInsaneUsageCountIsMalformed(count: String) {
        let usage = #"data: {"choices":[],"usage":{"completion_tokens":\#(count)}}"# + "\n\n"
        let outcome = Self.replay([(1 * Self.ms, Self.chunk("a")), (2 * Self.ms, usage), (3 * Self.ms, Self.done)])
        #expect(outcome.error == .malformed)
        #expect(outcome.outputTokens == 0)
    }

    /// A null count is no count (usage counted from the events), also beside a text or another
    /// object that spells the key out; a count beyond a double's range is not null, also with
    /// its key escaped (reviews 127 #2, 129 #3).
    @Test func aNullCountIsNoCountAndAnEscapedKeyIsText() {
        let null = #"data: {"choices":[],"usage":{"completion_tokens":null}}"# + "\n\n"
        #expect(Self.replay([(1 * Self.ms, Self.chunk("a")), (2 * Self.ms, null), (3 * Self.ms, Self.done)]).error == nil)
        let quoted = #"data: {"choices":[{"delta":{"content":"\"completion_tokens\": 1e400"}}],"usage":{"completion_tokens":null}}"# + "\n\n"
        #expect(Self.replay([(1 * Self.ms, quoted), (3 * Self.ms, Self.done)]).error == nil)
        let elsewhere = #"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":null},"x_provider":{"usage":{"completion_tokens":2}}}"# + "\n\n"
        #expect(Self.replay([(1 * Self.ms, Self.chunk("a")), (2 * Self.ms, elsewhere), (3 * Self.ms, Self.done)]).error == nil)
        let escaped = #"data: {"choices":[],"usage":{"completion\u005ftokens":1e400}}"# + "\n\n"
        #expect(Self.replay([(1 * Self.ms, Self.chunk("a")), (2 * Self.ms, escaped), (3 * Self.ms, Self.done)]).error == .malformed)
        #expect(ResponseRecorder.countBeyondRange(in: Array(#"{"usage":{"completion_tokens" : 1e400}}"#.utf8)))
        #expect(!ResponseRecorder.countBeyondRange(in: Array(#"{"usage":{"prompt_tokens":1e400,"completion_tokens":null}}"#.utf8)))
        // Another number beyond range first, or a key that only looks like the path (review 131 #3).
        #expect(ResponseRecorder.countBeyondRange(in: Array(#"{"usage":{"prompt_tokens":1e400,"completion_tokens":-1e999}}"#.utf8)))
        #expect(!ResponseRecorder.countBeyondRange(in: Array(#"{"usage.completion_tokens":1e400,"usage":{"completion_tokens":null}}"#.utf8)))
    }

    @Test func aStreamWithoutContentIsEmpty() {
        let outcome = Self.replay([(1 * Self.ms, Self.chunk(nil)), (2 * Self.ms, Self.chunk(nil, finish: "stop")), (3 * Self.ms, Self.done)])
        #expect(outcome.error == .empty)
    }

    @Test func aWholeResponseIsTimedEndToEnd() {
        let body = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"}}],"usage":{"completion_tokens":2}}"#
        let outcome = Self.replay([(3 * Self.ms, body)], streamed: false, endAt: 4 * Self.ms)
        #expect(outcome.error == nil)
        #expect(outcome.e2eMilliseconds == 4)
        #expect(outcome.ttftMilliseconds == nil)
        #expect(outcome.outputTokens == 2)
        #expect(outcome.tokenSource == .usage)
        #expect(Self.replay([(1, "not json")], streamed: false).error == .malformed)
        #expect(Self.replay([(1, #"{"choices":[]}"#)], streamed: false).error == .empty)
        let noUsage = Self.replay([(1, #"{"choices":[{"message":{"content":"x"}}]}"#)], streamed: false)
        #expect(noUsage.tokenSource == .none)
    }

    @Test func aWholeResponseOverTheLimitIsMalformed() {
        var recorder = ResponseRecorder(target: 0, streamed: false, scheduledAt: 0, sentAt: 0, maxBodyBytes: 10)
        recorder.didReceiveHead(status: 200)
        let more = Array(#"{"choices":[{"message":{"content":"long"}}]}"#.utf8).withUnsafeBytes { recorder.didReceive($0, at: 1) }
        #expect(!more)
        #expect(recorder.finish(nil, at: 2).error == .malformed)
    }

    @Test func serverTextIsCleanedAndBounded() {
        let body = "{\"error\":{\"message\":\"line one\\nline two\\u0007" + String(repeating: "y", count: 500) + "\"}}"
        let detail = Self.replay([(1, body)], status: 500).errorDetail ?? ""
        #expect(detail.hasPrefix("HTTP 500: line one line two "))
        // Kept whole until its secrets are out (`LoopDriver`), then shortened for the report.
        #expect(detail.count > 200 && ResponseRecorder.shortDetail(detail).count == 200)
    }
}
