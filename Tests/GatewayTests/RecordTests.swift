import Foundation
import Fusion
import GatewayCore
import PropertyBased
import Providers
import Testing
import UpstreamClient
@testable import Gateway

/// The generation record without sockets: how an ending is told, the JSON both ways, the
/// overhead arithmetic, who may read a record.
@Suite struct RecordTests {
    @Test(arguments: [
        // sent status, upstream finish, error?, cancelled → status, finish_reason
        (200 as Int?, "stop" as String?, false, false, 200, "stop" as String?),
        (200, "length", false, false, 200, "length"),
        (200, nil, false, false, 200, nil),  // the upstream gave none: none is invented
        (200, "stop", true, false, 200, "error"),  // an error chunk after the head: 200 sent, error
        (502, nil, true, false, 502, "error"),  // a 502 is never "stop"
        (nil, nil, false, true, 499, "cancelled"),  // the client left before any answer: not 0
        (200, "stop", false, true, 200, "cancelled"),
        (nil, nil, true, true, 499, "cancelled"),  // dropped as too slow: cancelled, with its error
    ])
    func anEndingIsToldOneWay(_ sent: Int?, _ upstream: String?, _ failed: Bool, _ cancelled: Bool, _ status: Int, _ finish: String?) {
        let error = failed ? RecordError(type: "upstream_error", code: "upstream_error", message: "boom") : nil
        let ending = ResponseEnding(sentStatus: sent, upstreamFinishReason: upstream, error: error, cancelled: cancelled)
        var record = GenerationRecord(id: "gen-1", route: .chatCompletions, kind: .proxy, requestedModel: "m", streamed: true,
                                      created: 1, owner: nil)
        record.overheadMilliseconds = 1
        record.close(ending, durationMilliseconds: 5)
        #expect(record.status == status)
        #expect(record.finishReason == finish)
        #expect(record.cancelled == cancelled)
        #expect(record.error == error)
        #expect(record.overheadMilliseconds == (cancelled ? nil : 1), "a cancelled request has no overhead figure")
    }

    @Test func anErrorsMessageIsRedactedWhenRecorded() {
        let error = RecordError(APIError.upstreamUnavailable("provider said: bad key sk-secret-123456"),
                                redactor: Redactor(secrets: ["sk-secret-123456"]))
        #expect(error.message == "provider said: bad key [redacted]")
        #expect(error.type == "upstream_error" && error.code == "upstream_unavailable")
    }

    static func sample(owner: String? = "sha256:ab", kind: RecordKind = .fusion) -> GenerationRecord {
        var record = GenerationRecord(id: "gen-0123", route: .chatCompletions, kind: kind, requestedModel: "fusion",
                                      streamed: true, created: 1_764_523_171, owner: owner)
        record.model = "mock/outer"
        record.provider = "mock"
        record.router = "fusion"
        record.usage = Usage(promptTokens: 120, completionTokens: 224, totalTokens: 344, reasoningTokens: 3, cachedTokens: 7,
                             cost: 0.0006879999999999999)
        record.firstTokenMilliseconds = 12.345
        record.usageUnknown = true
        record.upstreamFirstTokenMilliseconds = 1.5
        record.overheadMilliseconds = 0.25
        record.upstreamAttempts = 6
        record.retries = 1
        record.fallbacks = 0
        record.numSearchResults = 4
        record.webToolCalls = 2
        record.fusionCalls = [.object(["model": .string("mock/expert-1"), "role": .string("panel"), "status": .string("ok")])]
        record.phases = [.init(phase: .outerFirst, durationMilliseconds: 3, overheadMilliseconds: 0.125),
                         .init(phase: .panel, durationMilliseconds: 40.5, overheadMilliseconds: 0.5)]
        var call = CallRecord(role: "panel", model: "mock/expert-1", provider: "mock")
        call.httpStatus = 503
        call.attempts = 3
        call.fallbacks = 1
        call.finishReason = "error"
        call.error = RecordError(type: "upstream_error", code: "upstream_error", message: "HTTP 503")
        call.durationMilliseconds = 17.001
        call.upstreamMilliseconds = 16.875
        call.startMilliseconds = 2.5
        var cut = CallRecord(role: "judge", model: "mock/judge", provider: "mock")
        cut.cancelled = true
        cut.finishReason = "cancelled"
        cut.usage = Usage(promptTokens: 1, completionTokens: 2, totalTokens: 3, cost: 0.000006)
        record.innerCalls = [call, cut]
        record.close(ResponseEnding(sentStatus: 200, upstreamFinishReason: "stop"), durationMilliseconds: 60.75)
        return record
    }

    @Test func aRecordReadsBackFromItsStoredJSON() throws {
        for record in [Self.sample(), Self.sample(owner: nil, kind: .proxy), Self.sample(kind: .rejected)] {
            let text = record.storedJSON.serialized()
            let parsed = try JSONValue.parse(text)
            #expect(GenerationRecord(stored: parsed) == record)
        }
        #expect(GenerationRecord(stored: .object(["id": .string("x")])) == nil, "a corrupt entry is a miss, not a crash")
        #expect(GenerationRecord(stored: .array([])) == nil)
    }

    @Test func theAPIShowsEveryFieldButTheOwner() throws {
        let record = Self.sample()
        let data = try #require(record.apiJSON["data"])
        #expect(data["owner"] == nil)
        #expect(record.storedJSON["owner"] == .string("sha256:ab"))
        #expect(data["id"] == .string("gen-0123"))
        #expect(data["status"] == .int(200))
        #expect(data["finish_reason"] == .string("stop"))
        #expect(data["created_at"] == .string("2025-11-30T17:19:31Z"))
        #expect(data["native_tokens_reasoning"] == .int(3))
        #expect(data["inner_calls"]?.arrayValue?.count == 2)
        #expect(data["fusion"]?["phases"]?.arrayValue?.first?["phase"] == .string("outer_first"))
        // The cost as a decimal of at most 10 places, the same in the usage object.
        let text = String(decoding: record.apiJSON.serialized(), as: UTF8.self)
        #expect(text.contains(#""total_cost":0.000688"#))
        #expect(!text.contains("0.0006879999"))
        #expect(data["usage"]?["cost"] == data["total_cost"])
    }

    @Test func overheadIsTheWallTimeNoWaitCovered() {
        var meter = OverheadMeter()
        meter.begin(.outerFirst, at: 0)
        meter.waited(from: 1_000_000, to: 9_000_000)  // the outer call: 1–9 ms
        meter.begin(.panel, at: 10_000_000)
        meter.waited(from: 10_500_000, to: 30_000_000)  // two members, overlapping
        meter.waited(from: 11_000_000, to: 40_000_000)
        meter.waited(from: 35_000_000, to: 38_000_000)  // a tool call inside a member's wait
        meter.begin(.outerFinal, at: 41_000_000)
        meter.waited(from: 41_200_000, to: 50_000_000)
        meter.end(at: 50_100_000)
        let timings = meter.timings()
        #expect(timings.map(\.phase) == [.outerFirst, .panel, .outerFinal])
        #expect(timings.map(\.durationMilliseconds) == [10, 31, 9.1])
        #expect(timings.map(\.overheadMilliseconds) == [2, 1.5, 0.3])
        #expect(meter.totalOverheadMilliseconds() == 3.8)
        // A phase is begun once; a wait reported after its phase still counts in it.
        meter.begin(.panel, at: 60_000_000)
        #expect(meter.timings().count == 3)
    }

    @Test func overheadNeverGoesNegativeOrCountsOutsideItsPhase() async {
        let times = Gen.int(in: 0...1_000).array(of: 0...12)
        await propertyCheck(count: 300, input: times, times) { starts, lengths in
            var meter = OverheadMeter()
            meter.begin(.proxy, at: 100)
            for (start, length) in zip(starts, lengths) { meter.waited(from: UInt64(start), to: UInt64(start + length)) }
            meter.end(at: 900)
            let timing = meter.timings()[0]
            #expect(timing.durationMilliseconds == 0.001)
            #expect(timing.overheadMilliseconds >= 0 && timing.overheadMilliseconds <= timing.durationMilliseconds)
        }
    }

    @Test func onlyTheKeyThatMadeARecordReadsIt() {
        let owner = KeyFingerprint.owner(presentedKey: "gw-key-one", gatewayHasKeys: true)
        #expect(owner == "sha256:" + SHA256.hex(Array("gw-key-one".utf8)))
        #expect(owner?.contains("gw-key-one") == false)
        let one = KeyFingerprint.owner(presentedKey: "gw-key-one", gatewayHasKeys: true)
        let two = KeyFingerprint.owner(presentedKey: "gw-key-two", gatewayHasKeys: true)
        #expect(KeyFingerprint.mayRead(owner: owner, presented: one, gatewayHasKeys: true))
        #expect(!KeyFingerprint.mayRead(owner: owner, presented: two, gatewayHasKeys: true))
        #expect(!KeyFingerprint.mayRead(owner: nil, presented: one, gatewayHasKeys: true), "no owner: fail closed")
        #expect(!KeyFingerprint.mayRead(owner: owner, presented: nil, gatewayHasKeys: true))
        #expect(KeyFingerprint.owner(presentedKey: "gw-key-one", gatewayHasKeys: false) == nil)
        #expect(KeyFingerprint.mayRead(owner: nil, presented: nil, gatewayHasKeys: false), "no keys: records are open")
    }

    /// A signature or encrypted data of any real size crosses the fan-in whole, in pieces no
    /// larger than a text record, two calls' pieces interleaved (review 16 #1: one over 16 KiB
    /// was dropped, and the client's writers merged two thinking blocks under one signature).
    @Test func largeSignaturesCrossTheFanInWhole() {
        var assembly = InnerCallRecord.OpaqueAssembly()
        let big = String(repeating: "S", count: 40_000) + "=="
        var records: [(UInt16, UInt8, [UInt8])] = []
        InnerCallRecord.encode(.reasoningSignature(big)) { records.append((1, $0, $1)) }
        var other: [(UInt16, UInt8, [UInt8])] = []
        InnerCallRecord.encode(.redactedReasoning(String(repeating: "R", count: 17_000))) { other.append((2, $0, $1)) }
        #expect(records.count == 5 && records.allSatisfy { $0.2.count <= InnerCallRecord.opaquePieceBytes })
        var events: [UInt16: [ModelEvent]] = [:]
        for (producer, kind, bytes) in zip(records, other + other.prefix(2)).flatMap({ [$0, $1] }) {
            if let event = bytes.withUnsafeBytes({ assembly.event(from: producer, kind: kind, $0) }) { events[producer, default: []].append(event) }
        }
        #expect(events[1] == [.reasoningSignature(big)])
        #expect(events[2]?.first == .redactedReasoning(String(repeating: "R", count: 17_000)))
        // A call that ended mid-pieces leaves nothing for the next record.
        InnerCallRecord.encode(.reasoningSignature(big)) { kind, bytes in
            if kind == InnerCallRecord.opaquePart { _ = bytes.withUnsafeBytes { assembly.event(from: 3, kind: kind, $0) } }
        }
        assembly.end(3)
        #expect(Array("s".utf8).withUnsafeBytes { assembly.event(from: 3, kind: InnerCallRecord.reasoningSignature, $0) } == .reasoningSignature("s"))
    }

    /// A server tool's blocks cross the fan-in as they came, large results in pieces (review 16
    /// #6: they were dropped, so a Fusion outer model's web search never reached the client).
    @Test func providerBlocksCrossTheFanInWhole() {
        var assembly = InnerCallRecord.OpaqueAssembly()
        let result: JSONValue = .object(["type": .string("web_search_tool_result"), "tool_use_id": .string("srvtoolu_1"),
                                         "content": .array([.object(["encrypted_content": .string(String(repeating: "E", count: 30_000))])])])
        let sent: [ModelEvent] = [.providerBlock(.start(.object(["type": .string("server_tool_use"), "id": .string("srvtoolu_1")]))),
                                  .providerBlock(.delta(.object(["type": .string("input_json_delta"), "partial_json": .string(#"{"q":"\u00e9"}"#)]))),
                                  .providerBlock(.stop), .providerBlock(.start(result)), .providerBlock(.stop)]
        var received: [ModelEvent] = []
        for event in sent {
            InnerCallRecord.encode(event) { kind, bytes in
                #expect(bytes.count <= InnerCallRecord.opaquePieceBytes)
                if let decoded = bytes.withUnsafeBytes({ assembly.event(from: 1, kind: kind, $0) }) { received.append(decoded) }
            }
        }
        #expect(received == sent)
    }

    /// A delta's text handed where it stands (the per-token path) is the record `encode` writes:
    /// text, reasoning and refusal up to a record's size, including the sizes at the bound and
    /// non-ASCII; anything else, or longer, is left to `encode` (false, nothing handed).
    @Test func smallTextIsTheRecordEncodeWrites() {
        let bound = InnerCallRecord.maxTextBytes
        let texts = ["", "a", "é🙂", String(repeating: "x", count: bound), String(repeating: "é", count: bound / 2),
                     String(repeating: "y", count: bound + 1), String(repeating: "🙂", count: bound / 4 + 1)]
        for text in texts {
            for event in [ModelEvent.text(text), .reasoning(text), .refusal(text)] {
                var fast: [(UInt8, [UInt8])] = []
                let handled = InnerCallRecord.encodeSmallText(event) { kind, bytes in fast.append((kind, Array(bytes))) }
                var whole: [(UInt8, [UInt8])] = []
                InnerCallRecord.encode(event) { kind, bytes in whole.append((kind, bytes)) }
                #expect(handled == (text.utf8.count <= bound), "\(text.utf8.count) bytes")
                if handled {
                    #expect(fast.count == 1 && whole.count == 1 && fast[0] == whole[0], "\(text.utf8.count) bytes")
                } else {
                    #expect(fast.isEmpty)
                }
            }
        }
        for event in [ModelEvent.finish(.stop), .usage(Usage(promptTokens: 1, completionTokens: 2)),
                      .toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: "{}"))] {
            #expect(!InnerCallRecord.encodeSmallText(event) { _, _ in Issue.record("handed \(event)") })
        }
    }

    /// A tool call whose arguments come in one large event (Gemini sends a call whole) crosses
    /// as fragments of that call, each within a text record's size, that read back as the call
    /// (review 59C #2: one record larger than the ring failed the outer turn).
    @Test func largeToolCallsCrossTheFanInAsFragments() {
        let arguments = #"{"content":""# + String(repeating: "é", count: 20_000) + #""}"#
        var records: [[UInt8]] = []
        InnerCallRecord.encode(.toolCall(ToolCallFragment(index: 3, id: "call_1", name: "write_file", arguments: arguments))) { kind, bytes in
            #expect(kind == InnerCallRecord.toolCall)
            records.append(bytes)
        }
        #expect(records.count == 5 && records.allSatisfy { $0.count <= InnerCallRecord.maxTextBytes + 64 }, "\(records.map(\.count))")
        var accumulator = ToolCallAccumulator()
        for record in records {
            guard case .toolCall(let fragment)? = record.withUnsafeBytes({ InnerCallRecord.decodeEvent(kind: InnerCallRecord.toolCall, $0) }) else {
                Issue.record("not a call")
                return
            }
            #expect(fragment.index == 3)
            accumulator.add(fragment)
        }
        #expect(accumulator.calls.map(\.arguments) == [arguments] && accumulator.calls.map(\.name) == ["write_file"] && accumulator.calls.map(\.id) == ["call_1"])
        // A small one is one record, as it came.
        var small: [ModelEvent] = []
        InnerCallRecord.encode(.toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: nil))) { kind, bytes in
            if let event = bytes.withUnsafeBytes({ InnerCallRecord.decodeEvent(kind: kind, $0) }) { small.append(event) }
        }
        #expect(small == [.toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: nil))])
    }

    /// An upstream call that found no descriptor left is the gateway's 503, named as its own
    /// (review 60B #1: "Could not connect to provider", `upstream_unreachable`).
    @Test func outOfDescriptorsIsTheGatewaysOwnFailure() {
        let error = UpstreamFailure.apiError(for: .outOfDescriptors("Couldn't connect to server"), provider: "mock")
        #expect(error.status == 503 && error.type == "server_error" && error.code == "out_of_descriptors"
                && error.message.contains("no file descriptor left"), "\(error)")
        #expect(MetricLabels.errorCode("out_of_descriptors") == "out_of_descriptors")
    }

    /// curl's text names the provider's host, address and port, and the TLS library: the
    /// client reads curl's fixed description, the operator's log the whole text (review 71B #7).
    @Test func anUnreachableProvidersAddressStaysInTheLog() {
        let full = "Failed to connect to internal-llm.corp port 8000 after 0 ms: Couldn't connect to server"
        let detail = UpstreamFailure.Detail(client: "Couldn't connect to server", full: full)
        for failure in [UpstreamFailure.couldNotConnect(detail), .couldNotResolve(detail), .timedOut(detail), .transfer(detail),
                        .refused(detail), .outOfDescriptors(detail)] {
            for midStream in [false, true] {
                let error = UpstreamFailure.apiError(for: failure, provider: "local", midStream: midStream)
                #expect(!error.message.contains("internal-llm") && !error.message.contains("8000") && error.message.contains("'local'"),
                        "\(error.message)")
                #expect(!String(decoding: error.body, as: UTF8.self).contains("internal-llm"), "never encoded")
                #expect(error.detail == full)
                #expect(RecordError(error, redactor: Redactor(secrets: [])).detail == full)
                // A Fusion member's failure crosses the fan-in with it.
                let crossed = InnerCallRecord.encodeFailure(error, .upstreamError).withUnsafeBytes { InnerCallRecord.decodeFailure($0) }
                #expect(crossed.0.detail == full && crossed.0.message == error.message)
            }
        }
    }

    @Test func aCallsSummaryCrossesTheFanInIntact() {
        let summary = InnerCallRecord.Summary(httpStatus: 429, attempts: 3, route: 1, upstreamStart: 123_456_789, upstreamEnd: 987_654_321,
                                              upstreamID: "chatcmpl-1", upstreamRequestID: nil)
        let end = InnerCallRecord.encodeEnd(.complete, summary)
        #expect(end.withUnsafeBytes { InnerCallRecord.decodeEnd($0) } == (.complete, summary))
        let bothIDs = InnerCallRecord.Summary(upstreamID: "", upstreamRequestID: "req-1")
        #expect(InnerCallRecord.encodeEnd(.truncated, bothIDs).withUnsafeBytes { InnerCallRecord.decodeEnd($0) } == (.truncated, bothIDs))
        let failure = InnerCallRecord.encodeFailure(.upstreamUnavailable("x"), .rateLimited, summary)
        let decoded = failure.withUnsafeBytes { InnerCallRecord.decodeFailure($0) }
        #expect(decoded.1 == .rateLimited && decoded.2 == summary && decoded.0.message == "x" && decoded.0.origin == .gateway)
        // An upstream's error stays one across the fan-in (review 65 #1: every one came out the gateway's).
        var upstream = APIError(status: 502, type: "upstream_error", code: "upstream_auth_failed", message: "401")
        upstream.origin = .upstream
        let crossed = InnerCallRecord.encodeFailure(upstream, .upstreamError, summary).withUnsafeBytes { InnerCallRecord.decodeFailure($0) }
        #expect(crossed.0.origin == .upstream && crossed.0.code == "upstream_auth_failed")
        // Short or garbled records read as zeros, never trap.
        for length in 0..<end.count {
            _ = Array(end.prefix(length)).withUnsafeBytes { InnerCallRecord.decodeEnd($0) }
            _ = Array(failure.prefix(length)).withUnsafeBytes { InnerCallRecord.decodeFailure($0) }
        }
        let huge = [UInt8](repeating: 0xFF, count: 60)
        #expect(huge.withUnsafeBytes { InnerCallRecord.decodeEnd($0) }.1.attempts == 0)
    }

    @Test func theCallLogTellsEachCallsEnding() {
        let log = InnerCallLog(requestStart: 0, redactor: Redactor(secrets: ["sk-secret-123456"]))
        let routes = [(model: "mock/a", provider: "mock"), (model: "other/b", provider: "other")]
        // Prompts of 160 bytes of text (+16 per message): 44 tokens.
        let request = ModelRequest(model: "a", messages: [ModelMessage(role: .user, text: String(repeating: "x", count: 160))], stream: true)
        log.started(1, role: .member(index: 0), routes: routes, request: request, at: 1_000_000)
        log.started(2, role: .judge, routes: routes, request: request, at: 2_000_000)
        log.started(3, role: .outer(final: true), routes: routes, request: request, at: 3_000_000)
        log.event(1, .text("hi"), at: 4_000_000)
        log.event(2, .text("a"), at: 4_000_000)
        log.event(2, .reasoning("b"), at: 4_000_000)
        log.event(1, .finish(.stop), at: 5_000_000)
        log.event(1, .usage(Usage(promptTokens: 1, completionTokens: 2, totalTokens: 3)), at: 5_000_000)
        let summary = InnerCallRecord.Summary(httpStatus: 200, attempts: 2, route: 1, upstreamStart: 1_100_000, upstreamEnd: 5_500_000)
        let wait = log.ended(1, .complete, summary, at: 6_000_000)
        #expect(wait.map { [$0.0, $0.1] } == [1_100_000, 5_500_000])
        _ = log.failed(2, .upstreamUnavailable("key sk-secret-123456 refused", code: "upstream_timeout", status: 504),
                       InnerCallRecord.Summary(httpStatus: 0, attempts: 1), at: 7_000_000)
        log.cancelAll(at: 8_000_000)
        log.event(3, .text("late"), at: 9_000_000)  // after its end: ignored
        let records = log.records
        #expect(records.map(\.role) == ["panel", "judge", "outer_final"])
        #expect(records[0].model == "other/b" && records[0].provider == "other" && records[0].fallbacks == 1)
        #expect(records[0].finishReason == "stop" && records[0].httpStatus == 200 && records[0].attempts == 2)
        #expect(records[0].firstTokenMilliseconds == 3 && records[0].durationMilliseconds == 5)
        #expect(records[0].usage?.totalTokens == 3)
        #expect(records[1].finishReason == "error" && records[1].httpStatus == nil)
        #expect(records[1].error?.code == "upstream_timeout" && records[1].error?.message == "key [redacted] refused")
        // Failed after two pieces of output, before its usage: charged its own prompt and those.
        #expect(records[1].usage == Usage(promptTokens: 44, completionTokens: 2, totalTokens: 46) && records[1].usageEstimated)
        #expect(log.charges == [MemberStats.Estimate(role: "judge", model: "mock/a", usage: Usage(promptTokens: 44, completionTokens: 2, totalTokens: 46),
                                                       firstTokenMilliseconds: 2, durationMilliseconds: 5)])
        #expect(records[2].cancelled && records[2].finishReason == "cancelled" && records[2].firstTokenMilliseconds == nil)
        #expect(records[2].startMilliseconds == 3)
    }

    /// A call cut before its usage is charged its prompt as its upstream counted it, when it said
    /// so before answering (Anthropic's `message_start`: 9,000 tokens, 8,000 of them read from
    /// the cache), not the prompt's size (review 22: a cut call on Anthropic was charged 44).
    @Test func aCutCallIsChargedThePromptItsUpstreamCounted() {
        let log = InnerCallLog(requestStart: 0, redactor: .none)
        let request = ModelRequest(model: "a", messages: [ModelMessage(role: .user, text: String(repeating: "x", count: 160))], stream: true)
        let counted = Usage(promptTokens: 9_000, cachedTokens: 8_000)
        let record = InnerCallRecord.encodeUsage(counted)
        let decoded = record.withUnsafeBytes { InnerCallRecord.decodeUsage($0) }
        #expect(decoded == counted)
        for length in 0..<record.count { _ = Array(record.prefix(length)).withUnsafeBytes { InnerCallRecord.decodeUsage($0) } }
        log.started(1, role: .member(index: 0), routes: [(model: "anthropic/c", provider: "anthropic")], request: request, at: 0)
        log.started(2, role: .member(index: 1), routes: [(model: "mock/a", provider: "mock")], request: request, at: 0)
        log.promptUsage(1, decoded)
        for id in [1, 2] as [InnerCallLog.CallID] {
            for piece in ["a", "b", "c"] { log.event(id, .text(piece), at: 1_000) }
        }
        log.cancelAll(at: 2_000)
        log.promptUsage(1, Usage(promptTokens: 1))  // after its end: ignored
        let records = log.records
        #expect(records[0].usage == Usage(promptTokens: 9_000, completionTokens: 3, totalTokens: 9_003, cachedTokens: 8_000))
        #expect(records[0].usageEstimated)
        #expect(records[1].usage == Usage(promptTokens: 44, completionTokens: 3, totalTokens: 47), "no counts first: by size")
        // Counts that arrive just after the cut (one read carried the first output and them):
        // the estimate is made again from them; a call with its upstream's usage keeps it.
        log.promptUsage(2, Usage(promptTokens: 500))
        #expect(log.records[1].usage == Usage(promptTokens: 500, completionTokens: 3, totalTokens: 503) && log.records[1].usageEstimated)
        log.started(3, role: .judge, routes: [(model: "anthropic/c", provider: "anthropic")], request: request, at: 0)
        log.event(3, .text("x"), at: 1_000)
        log.event(3, .usage(Usage(promptTokens: 7, completionTokens: 1, totalTokens: 8)), at: 1_000)
        _ = log.ended(3, .complete, InnerCallRecord.Summary(), at: 2_000)
        log.promptUsage(3, Usage(promptTokens: 9_000))
        #expect(log.records[2].usage == Usage(promptTokens: 7, completionTokens: 1, totalTokens: 8) && !log.records[2].usageEstimated)
    }

    /// A cut call's output is estimated a token a piece, or one per four bytes of a large piece
    /// (review 101 #1: 20 KB in one delta was one token).
    @Test func aLargePieceOfOutputIsEstimatedByItsSize() {
        let log = InnerCallLog(requestStart: 0, redactor: .none)
        let request = ModelRequest(model: "a", messages: [ModelMessage(role: .user, text: "x")], stream: true)
        let ledger = CallLedger()
        log.started(1, role: .member(index: 0), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: ledger, at: 0)
        ledger.accepted()
        ledger.outputPiece(bytes: 20_000)
        ledger.outputPiece(bytes: 3)
        log.cancelAll(at: 1_000)
        #expect(log.records[0].usage?.completionTokens == 5_001 && log.records[0].usageEstimated, "\(String(describing: log.records[0].usage))")
    }

    /// A call whose upstream never took its request (cut before it went out, refused) owes
    /// nothing: its usage is known, zero, and the record's `usage_unknown` stays false; only a
    /// call whose upstream took the prompt and reported no usage and wrote nothing makes it true
    /// (review 97 #4: a tool loop's turn cut before it went out said "unknown" while the
    /// breakdown's rows said known).
    @Test func onlyACallThatMayOweWhatNoFigureSaysMakesTheUsageUnknown() {
        let log = InnerCallLog(requestStart: 0, redactor: .none)
        let request = ModelRequest(model: "a", messages: [ModelMessage(role: .user, text: "x")], stream: true)
        let ledgers = (1...3).map { _ in CallLedger() }
        for id in 1...3 as ClosedRange<InnerCallLog.CallID> {
            log.started(id, role: .member(index: Int(id)), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: ledgers[Int(id) - 1], at: 0)
        }
        ledgers[1].requestSent()
        ledgers[1].refused()
        _ = log.failed(2, .upstreamUnavailable("refused", code: "upstream_error", status: 400), InnerCallRecord.Summary(httpStatus: 400), at: 10)
        log.cancelled(1, at: 20)  // never sent
        #expect(!log.usageUnknown)
        #expect(log.silentlyCancelledMembers.map(\.usage) == [Usage()], "its row: known, zero")
        ledgers[2].accepted()
        _ = log.ended(3, .complete, InnerCallRecord.Summary(httpStatus: 200), at: 30)  // no usage, no output
        #expect(log.usageUnknown)
        #expect(log.records.map(\.usage) == [nil, nil, nil])
        // A judge row is its own calls': a refused fallback judge owes nothing beside a judge that
        // answered without usage (review 100 #1: both rows said unknown).
        let (silent, refused) = (CallLedger(), CallLedger())
        log.started(4, role: .judge, routes: [(model: "mock/j", provider: "mock")], request: request, ledger: silent, at: 0)
        log.started(5, role: .judge, routes: [(model: "mock/k", provider: "mock")], request: request, ledger: refused, at: 0)
        silent.accepted()
        _ = log.ended(4, .complete, InnerCallRecord.Summary(httpStatus: 200), at: 40)
        refused.requestSent()
        refused.refused()
        _ = log.failed(5, .upstreamUnavailable("refused", code: "upstream_error", status: 500), InnerCallRecord.Summary(httpStatus: 500), at: 50)
        #expect(log.mayOweUnknown(member: nil, role: "judge", model: "mock/j"))
        #expect(!log.mayOweUnknown(member: nil, role: "judge", model: "mock/k"))
        #expect(!log.mayOweUnknown(member: 2, role: "panel", model: "mock/a") && log.mayOweUnknown(member: 3, role: "panel", model: "mock/a"))
    }

    /// A call cut before any answer owes its prompt once its request went out whole, unless its
    /// upstream refused it (a status not 2xx, for the attempt that sent it). The call says so in
    /// its ledger, then in a record that crosses loops: the record may be read after the cut, or
    /// never (held behind a client that reads nothing, review 94 #3), and the charge follows the
    /// ledger as it stood when the call was cut, or when the record is filed.
    @Test func aCallCutBeforeItsAnswerOwesThePromptItSentUnlessRefused() {
        let log = InnerCallLog(requestStart: 0, redactor: .none)
        let request = ModelRequest(model: "a", messages: [ModelMessage(role: .user, text: String(repeating: "x", count: 160))], stream: true)
        let prompt = Usage(promptTokens: 44, completionTokens: 0, totalTokens: 44)
        var ledgers: [InnerCallLog.CallID: CallLedger] = [:]
        for id in 1...9 as ClosedRange<InnerCallLog.CallID> {
            ledgers[id] = CallLedger()
            log.started(id, role: .member(index: Int(id)), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: ledgers[id]!, at: 0)
        }
        // As `InnerCall` does: the ledger first, then the record (`read: false`: never read).
        func sent(_ id: InnerCallLog.CallID, attempts: Int = 1, read: Bool = true) {
            ledgers[id]!.requestSent()
            if read { log.requestSent(id, InnerCallRecord.Summary(attempts: attempts)) }
        }
        func refused(_ id: InnerCallLog.CallID, status: Int, attempts: Int = 1, read: Bool = true) {
            ledgers[id]!.refused()
            if read { log.refused(id, InnerCallRecord.Summary(httpStatus: status, attempts: attempts)) }
        }
        sent(1)  // sent, then cut
        sent(2); refused(2, status: 500)  // refused, then cut
        sent(3); refused(3, status: 429); sent(3, attempts: 2)  // a retry sent again
        // 4: never sent (connecting when cut); 5: sent, read after the cut; 6: refused, read after;
        // 7: sent, its record never read; 8: sent after the cut, its record never read; 9: refused
        // after the cut, its record never read.
        ledgers[5]!.requestSent()
        sent(6)
        sent(7, read: false)
        sent(9)
        ledgers[6]!.refused()
        log.cancelAll(at: 1_000)
        log.requestSent(5, InnerCallRecord.Summary(attempts: 1))
        log.refused(6, InnerCallRecord.Summary(httpStatus: 500))
        sent(8, read: false)
        refused(9, status: 500, read: false)
        log.settle()  // the record is filed
        let records = log.records
        #expect(records.map(\.usage) == [prompt, nil, prompt, nil, prompt, nil, prompt, prompt, nil], "\(records.map(\.usage))")
        #expect(records.map(\.usageEstimated) == [true, false, true, false, true, false, true, true, false])
        #expect(log.charges.count == 5)
        #expect(records[1].httpStatus == 500, "a refused call's row says what answered")
        #expect(records[2].httpStatus == nil && records[2].attempts == 2, "a retry's row is its own (review 95 #1)")
        // A refusal does not take back what output owes.
        let judge = CallLedger()
        log.started(10, role: .judge, routes: [(model: "mock/a", provider: "mock")], request: request, ledger: judge, at: 0)
        judge.requestSent()
        log.requestSent(10, InnerCallRecord.Summary(attempts: 1))
        log.event(10, .text("x"), at: 1_000)
        log.cancelled(10, at: 2_000)
        judge.refused()
        log.refused(10, InnerCallRecord.Summary(httpStatus: 500))
        log.settle()
        #expect(log.records[9].usage == Usage(promptTokens: 44, completionTokens: 1, totalTokens: 45))
        // Output and a usage report the call read and the session did not: charged from the ledger.
        let (writing, reported) = (CallLedger(), CallLedger())
        log.started(11, role: .member(index: 11), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: writing, at: 0)
        log.started(12, role: .member(index: 12), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: reported, at: 0)
        writing.accepted()
        for piece in 0..<5 {
            writing.outputPiece()
            if piece < 3 { log.event(11, .text("x"), at: 1_000) }
        }
        reported.accepted()
        reported.outputPiece()
        let usage = Usage(promptTokens: 50, completionTokens: 9, totalTokens: 59)
        reported.usage(usage)
        log.cancelAll(at: 3_000)
        #expect(log.records[10].usage == Usage(promptTokens: 44, completionTokens: 5, totalTokens: 49) && log.records[10].usageEstimated)
        #expect(log.records[11].usage == usage && !log.records[11].usageEstimated)
        writing.outputPiece()  // read by the call after the cut, before the record is filed
        log.settle()
        #expect(log.records[10].usage == Usage(promptTokens: 44, completionTokens: 6, totalTokens: 50))
        // An upstream that counts on every chunk: the last count the call read, not the session's.
        let counting = CallLedger()
        log.started(13, role: .member(index: 13), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: counting, at: 0)
        counting.accepted()
        counting.usage(Usage(promptTokens: 50, completionTokens: 1, totalTokens: 51))
        log.event(13, .usage(Usage(promptTokens: 50, completionTokens: 1, totalTokens: 51)), at: 1_000)
        counting.usage(usage)
        log.cancelled(13, at: 2_000)
        #expect(log.records[12].usage == usage && !log.records[12].usageEstimated)
        // What the session's stats lack is charged beyond them, exact: 12's report whole, 13's
        // beyond the earlier report the session read (review 96 #1).
        let beyond = log.charges.filter { !$0.estimated }
        #expect(beyond.map(\.usage) == [usage, Usage(promptTokens: 0, completionTokens: 8, totalTokens: 8)], "\(beyond)")
        // Output after the last report, of a call cut mid-answer: a token a piece on top (review
        // 96 #2: an upstream that reports first had the whole answer free).
        let first = CallLedger()
        log.started(14, role: .member(index: 14), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: first, at: 0)
        first.accepted()
        first.usage(Usage(promptTokens: 50, completionTokens: 0, totalTokens: 50))
        log.event(14, .usage(Usage(promptTokens: 50, completionTokens: 0, totalTokens: 50)), at: 1_000)
        for _ in 0..<7 { first.outputPiece() }
        log.cancelled(14, at: 2_000)
        #expect(log.records[13].usage == Usage(promptTokens: 50, completionTokens: 7, totalTokens: 57) && log.records[13].usageEstimated)
        #expect(log.charges.last?.usage == Usage(promptTokens: 0, completionTokens: 7, totalTokens: 7) && log.charges.last?.estimated == true)
        // The same, its own timeout ending it (review 97 #2: the early report stayed the total);
        // a call that ended whole keeps its last report as it is.
        for (id, complete) in [(15, false), (16, true)] as [(InnerCallLog.CallID, Bool)] {
            let ledger = CallLedger()
            log.started(id, role: .member(index: Int(id)), routes: [(model: "mock/a", provider: "mock")], request: request, ledger: ledger, at: 0)
            ledger.accepted()
            ledger.usage(Usage(promptTokens: 50, completionTokens: 0, totalTokens: 50))
            log.event(id, .usage(Usage(promptTokens: 50, completionTokens: 0, totalTokens: 50)), at: 1_000)
            for _ in 0..<4 {
                ledger.outputPiece()
                log.event(id, .text("x"), at: 1_000)
            }
            if complete {
                _ = log.ended(id, .complete, InnerCallRecord.Summary(), at: 2_000)
            } else {
                _ = log.failed(id, .upstreamUnavailable("no data", code: "upstream_timeout", status: 504), InnerCallRecord.Summary(), at: 2_000)
            }
        }
        #expect(log.records[14].usage == Usage(promptTokens: 50, completionTokens: 4, totalTokens: 54) && log.records[14].usageEstimated)
        #expect(log.records[15].usage == Usage(promptTokens: 50, completionTokens: 0, totalTokens: 50) && !log.records[15].usageEstimated)
    }
}
