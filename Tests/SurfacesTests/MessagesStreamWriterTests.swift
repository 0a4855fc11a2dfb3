import FixtureFiles
import Fusion
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// The Messages stream as Anthropic's SDKs need it, checked two ways: its shape (what the SDK
/// code requires, per the research notes) and a round trip through the gateway's own Anthropic
/// decoder, which must give back the events that were written.
@Suite struct MessagesStreamWriterTests {
    static func render(_ events: [ModelEvent], usage: Usage? = nil, stopSequences: [String] = []) -> [UInt8] {
        var writer = MessagesStreamWriter(id: "msg_gw1", model: "fusion", stopSequences: stopSequences)
        var out: [UInt8] = []
        writer.appendStart(to: &out)
        MessagesStreamWriter.appendPing(to: &out)
        for event in events { writer.append(event, to: &out) }
        writer.appendEnd(usage: usage, to: &out)
        return out
    }

    /// (name, data) of every event; comments skipped.
    static func events(_ bytes: [UInt8]) throws -> [(name: String, data: JSONValue)] {
        var decoder = SSEDecoder()
        var events: [(String, JSONValue)] = []
        try decoder.feed(bytes) { events.append(($0.nameString, try JSONValue.parse(Array($0.data)))) }
        return events
    }

    static func decoded(_ bytes: [UInt8]) throws -> ([ModelEvent], StreamEnd) {
        var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        _ = try bytes.withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
        return (events, decoder.end())
    }

    static let answer: [ModelEvent] = [
        .reasoning("Thinking"), .reasoning(" hard."), .text("Hello"), .text(" there"),
        .toolCall(ToolCallFragment(index: 0, id: "call_1", name: "look", arguments: "")),
        .toolCall(ToolCallFragment(index: 0, arguments: #"{"what":"#)), .toolCall(ToolCallFragment(index: 0, arguments: #""a"}"#)),
        .toolCall(ToolCallFragment(index: 1, id: "call_2", name: "time", arguments: "{}")),
        .finish(.toolCalls),
        .usage(Usage(promptTokens: 50, completionTokens: 9, totalTokens: 59, cachedTokens: 20)),
    ]

    /// `tool_use` only with a `tool_use` block to answer: a server whose tool parser failed sends
    /// the call as text and finishes `tool_calls` (review 71C #5), streamed and whole.
    @Test func toolUseWithoutACallIsEndTurn() throws {
        let events: [ModelEvent] = [.text("<tool_call>{\"name\":\"f\"}</tool_call>"), .finish(.toolCalls)]
        let delta = try Self.events(Self.render(events)).first { $0.name == "message_delta" }
        #expect(delta?.data["delta"]?["stop_reason"] == .string("end_turn"), "\(String(describing: delta))")
        var whole = MessagesResponse(id: "msg_1", model: "m")
        for event in events { whole.add(event) }
        #expect(try JSONValue.parse(whole.body())["stop_reason"] == .string("end_turn"))
        let called = try Self.events(Self.render([.toolCall(ToolCallFragment(index: 0, id: "t", name: "f", arguments: "{}")), .finish(.toolCalls)]))
        #expect(called.first { $0.name == "message_delta" }?.data["delta"]?["stop_reason"] == .string("tool_use"))
    }

    @Test func theStreamHasTheShapeTheSDKsRequire() throws {
        let bytes = Self.render(Self.answer)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(!text.contains("\nid:") && text.hasSuffix("\n\n"))
        let events = try Self.events(bytes)
        #expect(events.allSatisfy { !$0.name.isEmpty && $0.data["type"] == .string($0.name) }, "every event named, its type its name")
        #expect(events.map(\.name) == ["message_start", "ping",
                                       "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                       "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                       "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                       "content_block_start", "content_block_delta", "content_block_stop",
                                       "message_delta", "message_stop"])
        let starts = events.filter { $0.name == "content_block_start" }
        #expect(starts.map { $0.data["index"] } == [.int(0), .int(1), .int(2), .int(3)], "dense, in start order")
        #expect(starts.map { $0.data["content_block"]?["type"]?.stringValue ?? "" } == ["thinking", "text", "tool_use", "tool_use"])
        #expect(starts[2].data["content_block"]?["input"] == .object([:]), "a placeholder, not a fragment")
        let start = try #require(events.first?.data["message"])
        #expect(start["id"] == .string("msg_gw1") && start["usage"]?["input_tokens"] != nil && start["usage"]?["output_tokens"] != nil)
        let delta = try #require(events.first { $0.name == "message_delta" }?.data)
        #expect(delta["delta"]?["stop_reason"] == .string("tool_use"))
        #expect(delta["usage"] == .object(["input_tokens": .int(30), "cache_creation_input_tokens": .int(0), "cache_read_input_tokens": .int(20),
                                           "output_tokens": .int(9)]))
    }

    /// An Anthropic upstream's server tool blocks (web search) and citations reach an Anthropic
    /// client as they came, streamed and whole: it sends them back on its next turn.
    @Test func serverToolBlocksAndCitationsPassThrough() throws {
        let upstream = try Fixtures.bytes("providers/anthropic-server-and-parallel-tools.sse")
        let (events, end) = try Self.decoded(upstream)
        #expect(end == .complete)
        let (again, _) = try Self.decoded(Self.render(events))
        // Relayed, it decodes to what came: the same blocks in order, and the same calls (a
        // call that began while another was open comes whole, after it).
        func blocks(_ events: [ModelEvent]) -> [ModelEvent] {
            events.filter { if case .usage = $0 { false } else if case .toolCall = $0 { false } else { true } }
        }
        func calls(_ events: [ModelEvent]) -> [ToolCall] {
            var calls = ToolCallAccumulator()
            for case .toolCall(let fragment) in events { calls.add(fragment) }
            return calls.calls
        }
        #expect(blocks(again) == blocks(events) && calls(again) == calls(events), "relayed, it decodes to what came")
        var whole = MessagesResponse(id: "msg_1", model: "claude-x")
        for event in events { whole.add(event) }
        let content = try JSONValue.parse(whole.body())["content"]?.arrayValue ?? []
        #expect(content.map { $0["type"]?.stringValue ?? "" } == ["server_tool_use", "web_search_tool_result", "text", "tool_use", "tool_use"])
        #expect(content[2]["citations"]?.arrayValue?.first?["url"] == .string("https://x.example"))
        #expect(content[0]["input"] == .object(["query": .string("x")]), "its streamed input, whole")
    }

    /// A server tool's delta arriving while a tool_use or thinking block is open (an upstream
    /// that interleaved its blocks) is dropped, never written into that block (review 16 #5:
    /// it bypassed the arguments' JSON check and the SDK raised).
    @Test func aProviderDeltaNeverLandsInAnotherKindOfBlock() throws {
        let injected: JSONValue = .object(["type": .string("input_json_delta"), "partial_json": .string("}}]]!!")])
        let citation: JSONValue = .object(["type": .string("citations_delta"), "citation": .object(["url": .string("https://x.example")])])
        let bytes = Self.render([
            .providerBlock(.start(.object(["type": .string("server_tool_use"), "id": .string("srv_1"), "name": .string("web_search"), "input": .object([:])]))),
            .toolCall(ToolCallFragment(index: 0, id: "t1", name: "f", arguments: #"{"city":"#)),
            .providerBlock(.delta(injected)), .providerBlock(.delta(citation)),
            .toolCall(ToolCallFragment(index: 0, arguments: #""Paris"}"#)),
            .reasoning("hm"), .providerBlock(.delta(citation)), .reasoningSignature("sig"),
            .text("Cited."), .providerBlock(.delta(citation)), .finish(.toolCalls),
        ])
        let deltas = try Self.events(bytes).filter { $0.name == "content_block_delta" }.map { $0.data["delta"] ?? .null }
        #expect(!deltas.contains(injected) && deltas.filter { $0 == citation }.count == 1, "\(deltas)")
    }

    /// A web-search answer alternates uncited and cited text blocks, a cited block's citations
    /// before its text (as Anthropic records show): each block reaches the client apart, with
    /// its own citations, streamed and whole (review 45 Anthropic #2: the first block's
    /// citations were dropped after a tool result, the rest merged into one block).
    @Test func citedTextBlocksStayApartWithTheirOwnCitations() throws {
        func citation(_ url: String) -> String { #"{"type":"web_search_result_location","url":"\#(url)","title":"T","encrypted_index":"aQ==","cited_text":"c"}"# }
        let sse = [
            #"{"type":"message_start","message":{"id":"msg_u","type":"message","role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":5,"output_tokens":0}}}"#,
            #"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srv_1","name":"web_search","input":{}}}"#,
            #"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"tides\"}"}}"#,
            #"{"type":"content_block_stop","index":0}"#,
            #"{"type":"content_block_start","index":1,"content_block":{"type":"web_search_tool_result","tool_use_id":"srv_1","content":[]}}"#,
            #"{"type":"content_block_stop","index":1}"#,
            #"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":"","citations":[]}}"#,
            #"{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":\#(citation("https://a.example"))}}"#,
            #"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"High tide is at noon"}}"#,
            #"{"type":"content_block_stop","index":2}"#,
            #"{"type":"content_block_start","index":3,"content_block":{"type":"text","text":""}}"#,
            #"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":" and "}}"#,
            #"{"type":"content_block_stop","index":3}"#,
            #"{"type":"content_block_start","index":4,"content_block":{"type":"text","text":"","citations":[]}}"#,
            #"{"type":"content_block_delta","index":4,"delta":{"type":"citations_delta","citation":\#(citation("https://b.example"))}}"#,
            #"{"type":"content_block_delta","index":4,"delta":{"type":"text_delta","text":"low at six."}}"#,
            #"{"type":"content_block_stop","index":4}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
            #"{"type":"message_stop"}"#,
        ].map { "event: x\ndata: \($0)\n\n" }.joined()
        var relay = TranslatingRelay(decoder: AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: MessagesStreamWriter(id: "msg_gw", model: "m"))
        var out: [UInt8] = []
        relay.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        // The client's view, as the SDKs accumulate it: blocks by index, citations by index.
        var blocks: [Int: (type: String, text: String, citations: [String])] = [:]
        for event in try Self.events(out) {
            guard let index = event.data["index"]?.intValue.map(Int.init) else { continue }
            if event.name == "content_block_start" {
                blocks[index] = (event.data["content_block"]?["type"]?.stringValue ?? "", "", [])
            } else if event.name == "content_block_delta", let delta = event.data["delta"] {
                if let text = delta["text"]?.stringValue { blocks[index]?.text += text }
                if let url = delta["citation"]?["url"]?.stringValue { blocks[index]?.citations.append(url) }
            }
        }
        let texts = blocks.keys.sorted().compactMap { blocks[$0] }.filter { $0.type == "text" }
        #expect(texts.map(\.text) == ["High tide is at noon", " and ", "low at six."], "\(texts)")
        #expect(texts.map(\.citations) == [["https://a.example"], [], ["https://b.example"]])

        let whole = try AnthropicProvider().decodeResponse(Array(#"""
            {"type":"message","content":[
              {"type":"text","text":"High tide is at noon","citations":[\#(citation("https://a.example"))]},
              {"type":"text","text":" and "},
              {"type":"text","text":"low at six.","citations":[\#(citation("https://b.example"))]}],
             "stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":9}}
            """#.utf8), redactor: .none)
        var response = MessagesResponse(id: "m", model: "x")
        whole.forEach { response.add($0) }
        let content = try JSONValue.parse(response.body())["content"]?.arrayValue ?? []
        #expect(content.map { $0["text"]?.stringValue ?? "" } == ["High tide is at noon", " and ", "low at six."])
        #expect(content.map { ($0["citations"]?.arrayValue ?? []).compactMap { $0["url"]?.stringValue } } == [["https://a.example"], [], ["https://b.example"]])
    }

    /// What an Anthropic message says beyond the neutral events reaches an Anthropic client:
    /// a refusal's `stop_details`, code execution's `container`, usage's `server_tool_use`,
    /// `cache_creation` and `service_tier`, streamed and whole (review 45 Anthropic #3: dropped,
    /// so a container could not be reused and web searches went uncounted).
    @Test func anAnthropicMessagesOwnMembersReachTheClient() throws {
        let sse = [
            #"{"type":"message_start","message":{"id":"msg_u","type":"message","role":"assistant","model":"claude-x","content":[],"container":null,"usage":{"input_tokens":5,"output_tokens":0,"service_tier":"standard"}}}"#,
            #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"No."}}"#,
            #"{"type":"content_block_stop","index":0}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null,"stop_details":{"type":"refusal","category":"cyber"},"container":{"id":"container_1","expires_at":"2026-12-04T15:00:00Z"}},"usage":{"output_tokens":3,"server_tool_use":{"web_search_requests":2},"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":7}}}"#,
            #"{"type":"message_stop"}"#,
        ].map { "data: \($0)\n\n" }.joined()
        var relay = TranslatingRelay(decoder: AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: MessagesStreamWriter(id: "msg_gw", model: "m"))
        var out: [UInt8] = []
        relay.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        let delta = try #require(try Self.events(out).first { $0.name == "message_delta" }?.data)
        #expect(delta["delta"]?["stop_reason"] == .string("refusal"))
        #expect(delta["delta"]?["stop_details"]?["category"] == .string("cyber"))
        #expect(delta["delta"]?["container"]?["id"] == .string("container_1"))
        #expect(delta["usage"]?["server_tool_use"]?["web_search_requests"] == .int(2))
        #expect(delta["usage"]?["cache_creation"]?["ephemeral_1h_input_tokens"] == .int(7))
        #expect(delta["usage"]?["service_tier"] == .string("standard"))

        let whole = try AnthropicProvider().decodeResponse(Array(#"""
            {"type":"message","content":[{"type":"text","text":"No."}],"stop_reason":"refusal","stop_details":{"type":"refusal","category":"cyber"},
             "container":{"id":"container_1"},"usage":{"input_tokens":5,"output_tokens":3,"server_tool_use":{"web_search_requests":2},"service_tier":"priority"}}
            """#.utf8), redactor: .none)
        var response = MessagesResponse(id: "m", model: "x")
        whole.forEach { response.add($0) }
        let message = try JSONValue.parse(response.body())
        #expect(message["stop_details"]?["category"] == .string("cyber") && message["container"]?["id"] == .string("container_1"))
        #expect(message["usage"]?["server_tool_use"]?["web_search_requests"] == .int(2) && message["usage"]?["service_tier"] == .string("priority"))
        #expect(message["id"] == .string("m") && message["type"] == .string("message"), "the gateway's own members win")
    }

    @Test func theGatewaysAnthropicDecoderReadsBackWhatWasWritten() throws {
        let (events, end) = try Self.decoded(Self.render(Self.answer))
        #expect(end == .complete)
        // The same events; a call's first fragment comes back split in its block start (no arguments)
        // and its first delta.
        // A block's end comes back as one (`.providerBlock(.stop)`: blocks keep their citations
        // apart, and a call's block stops when the upstream's did).
        #expect(events == Array(Self.answer.prefix(4)) + [.providerBlock(.stop)] + Array(Self.answer[4..<7]) + [
            .providerBlock(.stop),
            .toolCall(ToolCallFragment(index: 1, id: "call_2", name: "time", arguments: "")),
            .toolCall(ToolCallFragment(index: 1, arguments: "{}")),
            .providerBlock(.stop),
        ] + Self.answer.suffix(2))
        // Usage given at the end wins; none at all is zeros, never absent.
        let bare = try Self.events(Self.render([.text("x")]))
        #expect(bare.first { $0.name == "message_delta" }?.data["usage"]?["output_tokens"] == .int(0))
        #expect(bare.first { $0.name == "message_delta" }?.data["delta"]?["stop_reason"] == .string("end_turn"))
    }

    /// An Anthropic upstream's parallel calls: each block stops when the upstream's did, and the
    /// next call's input streams in its own block as it comes (review 55A #3: the first block's stop
    /// waited for the message's end, and the second call's input was held and sent whole).
    @Test func anAnthropicUpstreamsCallsStopAndStreamAsTheyCome() throws {
        let upstream = Array("""
            event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n\
            event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"f","input":{}}}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":1}"}}\n\n\
            event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n\
            event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_b","name":"g","input":{}}}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"b\\":"}}\n\n
            """.utf8)
        var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var writer = MessagesStreamWriter(id: "m", model: "x")
        var out: [UInt8] = []
        _ = try upstream.withUnsafeBytes { bytes in try decoder.decode(bytes) { writer.append($0, to: &out) } }
        // Before the message ends: the first block stopped, the second open with its first piece.
        let events = try Self.events(out)
        let stops = events.filter { $0.name == "content_block_stop" }.map { $0.data["index"] }
        #expect(stops == [.int(0)], "\(String(decoding: out, as: UTF8.self))")
        let second = events.filter { $0.name == "content_block_delta" && $0.data["index"] == .int(1) }
        #expect(second.map { $0.data["delta"]?["partial_json"] } == [.string(#"{"b":"#)], "\(String(decoding: out, as: UTF8.self))")
    }

    /// An upstream interleaving its tool blocks on Anthropic's wire (a proxy translating parallel
    /// calls) stops one while another is the client's open block: both calls still reach the
    /// client whole, in blocks of their own (review 56 #6: the stop closed the open block, and the
    /// stream ended in an error).
    @Test func interleavedToolBlocksStillCompleteTheirCalls() throws {
        let upstream = Array("""
            event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n\
            event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"f","input":{}}}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}\n\n\
            event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_b","name":"g","input":{}}}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}\n\n\
            event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}\n\n\
            event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n\
            event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}\n\n\
            event: message_stop\ndata: {"type":"message_stop"}\n\n
            """.utf8)
        let (events, end) = try Self.decoded(upstream)
        #expect(end == .complete)
        let events2 = try Self.events(Self.render(events))
        #expect(!events2.contains { $0.name == "error" }, "\(events2.map(\.name))")
        var inputs: [Int64: String] = [:]
        for event in events2 where event.name == "content_block_delta" {
            inputs[event.data["index"]?.intValue ?? -1, default: ""] += event.data["delta"]?["partial_json"]?.stringValue ?? ""
        }
        #expect(inputs.keys.sorted().map { inputs[$0]! } == [#"{"city":"Paris"}"#, "{}"], "in the model's order: \(inputs)")
    }

    /// Extended thinking with tools: the client sends each thinking block back with its signature
    /// (and redacted blocks as they came), so both reach it, streamed and whole, block by block.
    @Test func thinkingSignaturesAndRedactedThinkingReachTheClient() throws {
        let answer: [ModelEvent] = [
            .reasoning("First."), .reasoningSignature("c2lnLTE="), .redactedReasoning("ZW5jcnlwdGVk"),
            .reasoning("Second."), .reasoningSignature("c2lnLTI="), .text("Answer."),
            .toolCall(ToolCallFragment(index: 0, id: "toolu_1", name: "look", arguments: "")), .finish(.toolCalls),
        ]
        let bytes = Self.render(answer)
        let events = try Self.events(bytes)
        let starts = events.filter { $0.name == "content_block_start" }.map { $0.data["content_block"] }
        #expect(starts.map { $0?["type"]?.stringValue } == ["thinking", "redacted_thinking", "thinking", "text", "tool_use"])
        #expect(starts[1]?["data"] == .string("ZW5jcnlwdGVk"))
        let signatures = events.filter { $0.data["delta"]?["type"] == .string("signature_delta") }
        #expect(signatures.map { $0.data["index"] } == [.int(0), .int(2)])
        #expect(signatures.map { $0.data["delta"]?["signature"] } == [.string("c2lnLTE="), .string("c2lnLTI=")])
        // Each block is closed after its signature, before anything else starts.
        #expect(events.map(\.name).filter { $0.hasPrefix("content_block") } == [
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_stop",
        ])
        #expect(try Self.decoded(bytes).0.prefix(6) == answer.prefix(6))

        var whole = MessagesResponse(id: "msg_1", model: "claude-x")
        for event in answer { whole.add(event) }
        let message = try JSONValue.parse(try whole.body())
        #expect(message["content"]?.arrayValue?.prefix(4) == [
            .object(["type": .string("thinking"), "thinking": .string("First."), "signature": .string("c2lnLTE=")]),
            .object(["type": .string("redacted_thinking"), "data": .string("ZW5jcnlwdGVk")]),
            .object(["type": .string("thinking"), "thinking": .string("Second."), "signature": .string("c2lnLTI=")]),
            .object(["type": .string("text"), "text": .string("Answer.")]),
        ])
        #expect(try AnthropicProvider().decodeResponse(try whole.body(), redactor: .none).prefix(6) == answer.prefix(6))
    }

    /// A turn that ends in tool calls is `tool_use` whatever the upstream called its end: OpenAI
    /// says `stop` for a call `tool_choice` forced (review 43 #1), and an agent loop built on
    /// Anthropic's SDK runs the tools only on `tool_use`.
    @Test func aTurnEndingInToolCallsIsToolUseWhateverTheUpstreamSaid() throws {
        let call = ModelEvent.toolCall(ToolCallFragment(index: 0, id: "call_1", name: "look", arguments: #"{"q":1}"#))
        for (events, expected) in [([call, .finish(.stop)], "tool_use"), ([call, .finish(.toolCalls)], "tool_use"),
                                   ([call, .finish(.length)], "max_tokens"), ([.text("x"), .finish(.stop)], "end_turn"),
                                   ([call, .stopDetail(reason: "pause_turn", sequence: nil), .finish(.stop)], "pause_turn")] {
            let delta = try Self.events(Self.render(events)).first { $0.name == "message_delta" }?.data["delta"]
            #expect(delta?["stop_reason"] == .string(expected), "\(events): \(String(describing: delta))")
            var whole = MessagesResponse(id: "msg_1", model: "claude-x")
            for event in events { whole.add(event) }
            #expect(try JSONValue.parse(try whole.body())["stop_reason"] == .string(expected), "whole: \(events)")
        }
    }

    /// An Anthropic upstream's own stop reason reaches an Anthropic client, with the sequence that
    /// matched: `pause_turn` means "send it back to continue", not done. The sequence is said
    /// only when it is one of the request's (review 119 #10: an upstream's `stop_sequence` of
    /// its own, its key, reached the client).
    @Test func theUpstreamsOwnStopReasonIsKept() throws {
        let asked = ["END\"\n", "STOP"]
        for (detail, reason, sequence) in [(ModelEvent.stopDetail(reason: "pause_turn", sequence: nil), "pause_turn", JSONValue.null),
                                           (.stopDetail(reason: "stop_sequence", sequence: "END\"\n"), "stop_sequence", .string("END\"\n")),
                                           (.stopDetail(reason: "stop_sequence", sequence: "sk-ant-not-asked-for"), "stop_sequence", .null)] {
            let events = try Self.events(Self.render([.text("x"), detail, .finish(.stop)], stopSequences: asked))
            let delta = events.first { $0.name == "message_delta" }?.data["delta"]
            #expect(delta?["stop_reason"] == .string(reason) && delta?["stop_sequence"] == sequence, "\(String(describing: delta))")
            var whole = MessagesResponse(id: "msg_1", model: "claude-x", stopSequences: asked)
            for event in [ModelEvent.text("x"), detail, .finish(.stop)] { whole.add(event) }
            let message = try JSONValue.parse(try whole.body())
            #expect(message["stop_reason"] == .string(reason) && message["stop_sequence"] == sequence)
        }
    }

    @Test func interleavedToolCallsKeepTheirBlocks() throws {
        // As an OpenAI-compatible upstream may send parallel calls (Fixtures/providers/openai-tool-calls).
        let (events, _) = try Self.decoded(Self.render([
            .toolCall(ToolCallFragment(index: 0, id: "c1", name: "get_weather", arguments: "")),
            .toolCall(ToolCallFragment(index: 0, arguments: #"{"loc"#)),
            .toolCall(ToolCallFragment(index: 1, id: "c2", name: "get_time", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 0, arguments: #"ation":"Paris"}"#)),
            .finish(.toolCalls),
        ]))
        var calls = ToolCallAccumulator()
        for case .toolCall(let fragment) in events { calls.add(fragment) }
        #expect(calls.calls.map(\.arguments) == [#"{"location":"Paris"}"#, "{}"])
        #expect(calls.calls.map(\.id) == ["c1", "c2"])
        // Every delta lands in its block before that block stops (review 18 B5: the SDKs hand a
        // call's input out at its content_block_stop).
        let written = try Self.events(Self.render([
            .toolCall(ToolCallFragment(index: 0, id: "c1", name: "a", arguments: #"{"x":"#)),
            .toolCall(ToolCallFragment(index: 1, id: "c2", name: "b", arguments: "{")),
            .toolCall(ToolCallFragment(index: 2, id: "c3", name: "c", arguments: "{}")),
            .toolCall(ToolCallFragment(index: 0, arguments: "1}")),
            .toolCall(ToolCallFragment(index: 1, arguments: "}")),
            .finish(.toolCalls),
        ]))
        var stopped: Set<Int> = []
        for event in written {
            let index = event.data["index"]?.intValue.map(Int.init) ?? -1
            if event.name == "content_block_stop" { stopped.insert(index) }
            if event.name == "content_block_delta" { #expect(!stopped.contains(index), "a delta after block \(index) stopped") }
        }
        #expect(written.filter { $0.name == "content_block_start" }.count == 3)
    }

    @Test func errorsAndKeepAlives() throws {
        var writer = MessagesStreamWriter(id: "m", model: "x")
        var out: [UInt8] = []
        writer.append(.text("partial"), to: &out)
        writer.append(.error(APIError(status: 503, type: "upstream_error", code: "overloaded", message: "The upstream reported an error: Overloaded")), to: &out)
        let events = try Self.events(out)
        #expect(events.map(\.name) == ["message_start", "content_block_start", "content_block_delta", "error"])
        #expect(events.last?.data["error"]?["type"] == .string("overloaded_error"))
        let (decoded, end) = try Self.decoded(out)
        guard case .error(let error)? = decoded.last else { Issue.record("\(decoded)"); return }
        #expect(error.status == 503 && end == .complete)
        var ping: [UInt8] = []
        MessagesStreamWriter.appendPing(to: &ping)
        #expect(String(decoding: ping, as: UTF8.self) == "event: ping\ndata: {\"type\":\"ping\"}\n\n")
    }

    /// Model output is steerable by any web page a panel member read: nothing in it can end an
    /// event or forge one.
    @Test func modelTextCannotForgeEvents() async {
        let pieces = Gen.element(of: ["\n", "\r\n", "\r", "\n\n", "\u{2028}", "\u{85}", "\0", "event: message_stop", "data: {}", "\"", "\\", "}", "é", "a"])
            .array(of: 0...16).map { $0.compactMap { $0 }.joined() }
        await propertyCheck(count: 300, input: pieces, pieces) { text, pieces in
            // A name never empty: a nameless call is the upstream's protocol error (review 71C #9).
            let name = "f" + text
            // An input that is not white space alone starts as an object (the decoder reading
            // the stream back refuses any other: review 119 #2).
            let arguments = pieces.allSatisfy(\.isWhitespace) ? pieces : "{" + pieces
            let bytes = Self.render([.text(text), .toolCall(ToolCallFragment(index: 0, id: text, name: name, arguments: arguments)),
                                     .reasoning(text), .finish(.stop)])
            guard let (events, end) = try? Self.decoded(bytes) else { Issue.record("undecodable for \(text.debugDescription)"); return }
            #expect(end == .complete)
            #expect(events.filter { $0 == .text(text) }.count == (text.isEmpty ? 0 : 1), "\(text.debugDescription)")
            var calls = ToolCallAccumulator()
            for case .toolCall(let fragment) in events { calls.add(fragment) }
            // No argument text is a call without arguments: `{}`, as Anthropic's own input is.
            // White space alone is not sent (an SDK parsing `partial_json` raised on it: review 72A).
            #expect(calls.calls.first?.arguments == (arguments.allSatisfy(\.isWhitespace) ? "{}" : arguments) && calls.calls.first?.name == name)
        }
    }
}

@Suite struct MessagesResponseTests {
    @Test func aWholeMessageHasItsBlocksInOrder() throws {
        var response = MessagesResponse(id: "msg_1", model: "claude-x")
        for event in MessagesStreamWriterTests.answer { response.add(event) }
        let message = try JSONValue.parse(try response.body(extra: ["fusion": .object(["status": .string("ok")])]))
        #expect(message["type"] == .string("message") && message["role"] == .string("assistant") && message["id"] == .string("msg_1"))
        #expect(message["content"] == .array([
            .object(["type": .string("thinking"), "thinking": .string("Thinking hard."), "signature": .string("")]),
            .object(["type": .string("text"), "text": .string("Hello there")]),
            .object(["type": .string("tool_use"), "id": .string("call_1"), "name": .string("look"), "input": .object(["what": .string("a")])]),
            .object(["type": .string("tool_use"), "id": .string("call_2"), "name": .string("time"), "input": .object([:])]),
        ]))
        #expect(message["stop_reason"] == .string("tool_use") && message["stop_sequence"] == .null)
        #expect(message["usage"]?["input_tokens"] == .int(30) && message["usage"]?["output_tokens"] == .int(9))
        #expect(message["fusion"]?["status"] == .string("ok"))
        // The gateway's own Anthropic provider reads it back.
        let events = try AnthropicProvider().decodeResponse(try response.body(), redactor: .none)
        #expect(events.contains(.text("Hello there")) && events.contains(.finish(.toolCalls)))
    }

    /// An OpenAI-compatible upstream's tool call, relayed to a Messages client with its arguments
    /// split as `fragments`: what the client received.
    static func relayedToolCall(_ fragments: [String], finish: String = "tool_calls") throws -> [(name: String, data: JSONValue)] {
        var relay = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: MessagesStreamWriter(id: "msg_gw1", model: "m"))
        var sse = #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"look","arguments":""}}]}}]}"# + "\n\n"
        for fragment in fragments {
            var escaped: [UInt8] = []
            JSONWriting.appendString(fragment, to: &escaped)
            sse += #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"# + String(decoding: escaped, as: UTF8.self) + "}}]}}]}\n\n"
        }
        sse += #"data: {"choices":[{"index":0,"delta":{},"finish_reason":""# + finish + #""}]}"# + "\n\ndata: [DONE]\n\n"
        var out: [UInt8] = []
        relay.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        return try MessagesStreamWriterTests.events(out)
    }

    /// Anthropic's SDKs parse a tool_use block's input on every delta and raise on a fragment that
    /// cannot continue a JSON object: such a fragment is never sent; the stream ends with the
    /// error a whole message gets for it, as it does when the object never closes.
    @Test func brokenToolArgumentsEndTheStreamBeforeTheyReachTheClient() throws {
        let good = try Self.relayedToolCall([#"{"loc"#, #"ation": "Par"#, #"is", "days": [1, 2.5e1]}"#])
        #expect(good.map(\.name).suffix(2) == ["message_delta", "message_stop"])
        let sent = good.compactMap { $0.data["delta"]?["partial_json"]?.stringValue }.joined()
        #expect(sent == #"{"location": "Paris", "days": [1, 2.5e1]}"#)

        for (fragments, sentBefore) in [([#"{"location""#, #" "Paris"}"#], #"{"location""#), ([#"{"a": 01}"#], ""),
                                         ([#"{"a": "b"}"#, "{}"], #"{"a": "b"}"#), ([#"{"a": ["#, "]]"], #"{"a": ["#),
                                         ([#"{"what": "#], #"{"what": "#)] {
            let events = try Self.relayedToolCall(fragments)
            #expect(events.map(\.name).last == "error", "\(fragments): \(events.map(\.name))")
            #expect(!events.contains { $0.name == "message_stop" })
            let error = events.last?.data["error"]
            #expect(error?["type"] == .string("api_error") && error?["message"]?.stringValue?.contains("'look'") == true, "\(String(describing: error))")
            #expect(events.compactMap { $0.data["delta"]?["partial_json"]?.stringValue }.joined() == sentBefore, "\(fragments)")
        }
    }

    /// A call cut off by the output limit ends as Anthropic ends it: the block stops, the stop
    /// reason is `max_tokens` (agents check for it and retry with a higher limit), never an error
    /// (review 45 Anthropic #1: the SDKs raised, and a whole answer's 502 was retried and paid for
    /// three times).
    @Test func aCallCutOffByTheOutputLimitEndsMaxTokens() throws {
        let events = try Self.relayedToolCall([#"{"path": "a.py", "content": "import os\n"#], finish: "length")
        #expect(events.map(\.name).suffix(3) == ["content_block_stop", "message_delta", "message_stop"], "\(events.map(\.name))")
        #expect(events.first { $0.name == "message_delta" }?.data["delta"]?["stop_reason"] == .string("max_tokens"))
        let sent = events.compactMap { $0.data["delta"]?["partial_json"]?.stringValue }.joined()
        #expect(sent == #"{"path": "a.py", "content": "import os\n"#)

        var response = MessagesResponse(id: "m", model: "x")
        response.add(.toolCall(ToolCallFragment(index: 0, id: "c", name: "write", arguments: #"{"path": "a.py", "con"#)))
        response.add(.finish(.length))
        let message = try JSONValue.parse(response.body())
        #expect(message["stop_reason"] == .string("max_tokens"))
        let block = message["content"]?.arrayValue?.first
        #expect(block?["type"] == .string("tool_use") && block?["name"] == .string("write") && block?["input"] == .object([:]))
        // Broken, not cut off: still the 502 below.
        var broken = MessagesResponse(id: "m", model: "x")
        broken.add(.toolCall(ToolCallFragment(index: 0, id: "c", name: "write", arguments: #"{"path": "a.py", "con"#)))
        broken.add(.finish(.toolCalls))
        #expect(throws: APIError.self) { _ = try broken.body() }
    }

    @Test func brokenToolArgumentsAreABadGatewayNotAnEmptyInput() {
        var response = MessagesResponse(id: "m", model: "x")
        response.add(.toolCall(ToolCallFragment(index: 0, id: "c", name: "look", arguments: #"{"what": "#)))
        #expect(throws: APIError.self) { _ = try response.body() }
        do { _ = try response.body() } catch {
            #expect(error.status == 502 && error.code == "invalid_tool_arguments" && error.message.contains("'look'"))
        }
    }
}

@Suite struct FusionMessagesRendererTests {
    @Test func theDeliberationIsCommentsTheAnswerAMessagesStream() throws {
        var renderer = FusionMessagesRenderer(id: "msg_f", model: "fusion", stream: true)
        var out: [UInt8] = []
        renderer.render(.progress(.memberStarted(index: 0, model: "anth/expert-1")), at: 1, into: &out)
        renderer.render(.progress(.memberDelta(index: 0, model: "anth/expert-1", text: "line\nevent: message_stop")), at: 2, into: &out)
        renderer.render(.progress(.memberText(index: 0, model: "anth/expert-1", text: "line\nevent: message_stop", reasoning: false)),
                        at: 2, into: &out)
        renderer.render(.progress(.memberCut(index: 1, model: "anth/expert-2", characters: 12, cause: .grace)), at: 2, into: &out)
        renderer.render(.progress(.judgeItem(model: "j", attempt: 1, item: AnalysisItem(field: "blind_spots", index: 0, value: .string("Cost")))),
                        at: 2, into: &out)
        renderer.render(.finalAnswerStarts(model: "sim/outer"), at: 3, into: &out)
        renderer.render(.answer(.text("Drawing on a panel")), at: 4, into: &out)
        renderer.render(.answer(.finish(.stop)), at: 5, into: &out)
        renderer.renderEnd(usage: Usage(promptTokens: 10, completionTokens: 4, totalTokens: 14), into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.hasPrefix(": fusion panel[0] anth/expert-1: started at 1 ms\n\n: fusion panel[0] anth/expert-1 | line\\nevent: message_stop\n\n"
            + ": fusion panel[1] anth/expert-2: cut for latency at 2 ms (the grace period after the quorum ran out; 12 chars written, "
            + "not given to the judge)\n\n: fusion judge: blind spot: Cost\n\n"))
        #expect(text.contains(": fusion: sim/outer is writing the final answer\n\n"))
        let events = try MessagesStreamWriterTests.events(out)
        #expect(events.map(\.name) == ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"])
        #expect(events.allSatisfy { !$0.name.isEmpty }, "no data-only event: the SDK would drop it")

        var whole = FusionMessagesRenderer(id: "msg_f", model: "fusion", stream: false)
        var nothing: [UInt8] = []
        whole.render(.progress(.memberStarted(index: 0, model: "m")), at: 1, into: &nothing)
        whole.render(.answer(.text("Final.")), at: 2, into: &nothing)
        #expect(nothing.isEmpty)
        let message = try JSONValue.parse(try whole.message(usage: Usage(promptTokens: 3, completionTokens: 2, totalTokens: 5), fusion: nil))
        #expect(message["content"]?.arrayValue?.first?["text"] == .string("Final.") && message["usage"]?["output_tokens"] == .int(2))
    }
}
