import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// An upstream on Anthropic's wire that interleaves its content blocks (Anthropic never does; a
/// proxy translating another API's stream may): text, thinking or a server tool's block inside
/// an open tool call's block, or the other way round. Messages and Responses clients see one
/// block (item) at a time, so the decoder holds the other blocks' events until the calls' blocks
/// are done: every call still arrives whole, every text in its order, and neither writer refuses
/// the stream (review 57 #7, 58 #2: "the upstream went back to tool call 0").
@Suite struct InterleavedBlockTests {
    enum Kind: Int, CaseIterable { case tool, text, emptyText, thinking }

    /// One upstream block: its start, deltas and stop, as Anthropic's events.
    struct Block {
        let index: Int
        let kind: Kind
        let deltas: Int

        var toolInput: [String] {
            deltas == 0 ? [] : ["{\"k\(index)\":\"", (0..<deltas).map { "v\($0)" }.joined(separator: ""), "\"}"]
        }

        var pieces: [String] { (0..<deltas).map { "b\(index).\($0) " } }

        var events: [String] {
            var events: [String]
            switch kind {
            case .tool:
                events = [#"{"type":"content_block_start","index":\#(index),"content_block":{"type":"tool_use","id":"toolu_\#(index)","name":"f","input":{}}}"#]
                events += toolInput.map { #"{"type":"content_block_delta","index":\#(index),"delta":{"type":"input_json_delta","partial_json":\#(JSONWriting.compact(.string($0)))}}"# }
            case .text, .emptyText:
                events = [#"{"type":"content_block_start","index":\#(index),"content_block":{"type":"text","text":""}}"#]
                if kind == .text {
                    events += pieces.map { #"{"type":"content_block_delta","index":\#(index),"delta":{"type":"text_delta","text":"\#($0)"}}"# }
                }
            case .thinking:
                events = [#"{"type":"content_block_start","index":\#(index),"content_block":{"type":"thinking","thinking":""}}"#]
                events += pieces.map { #"{"type":"content_block_delta","index":\#(index),"delta":{"type":"thinking_delta","thinking":"\#($0)"}}"# }
                events.append(#"{"type":"content_block_delta","index":\#(index),"delta":{"type":"signature_delta","signature":"c2ln"}}"#)
            }
            return events + [#"{"type":"content_block_stop","index":\#(index)}"#]
        }
    }

    /// The upstream's body: every block's events, interleaved as `schedule` picks, each block's
    /// own in order; and the blocks in the order they started.
    static func body(_ blocks: [Block], schedule: [Int]) -> (body: [UInt8], started: [Block]) {
        var queues = blocks.map { $0.events[...] }
        var started: [Block] = []
        var lines = [#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#]
        var step = 0
        while let first = queues.indices.first(where: { !queues[$0].isEmpty }) {
            let open = queues.indices.filter { !queues[$0].isEmpty }
            let pick = step < schedule.count ? open[schedule[step] % open.count] : first
            step += 1
            if queues[pick].count == blocks[pick].events.count { started.append(blocks[pick]) }
            lines.append(queues[pick].removeFirst())
        }
        lines += [#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#, #"{"type":"message_stop"}"#]
        return (Array(lines.map { "event: x\ndata: \($0)\n\n" }.joined().utf8), started)
    }

    static func decoded(_ body: [UInt8]) throws -> [ModelEvent] {
        var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        _ = try body.withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
        try decoder.finish { events.append($0) }
        #expect(decoder.end() == .complete)
        return events
    }

    static let blocks = zip(Gen.int(in: 0...3), Gen.int(in: 0...3)).array(of: 1...4).map { specs in
        specs.enumerated().map { Block(index: $0.offset, kind: Kind(rawValue: $0.element.0) ?? .tool, deltas: $0.element.1) }
    }

    @Test func anyInterleavingReachesMessagesAndResponsesClientsWhole() async {
        await propertyCheck(count: 400, input: Self.blocks, Gen.int(in: 0...1000).array(of: 0...40)) { blocks, schedule in
            let (body, started) = Self.body(blocks, schedule: schedule)
            let events = try Self.decoded(body)
            let calls = started.filter { $0.kind == .tool }  // numbered as they start
            let inputs = calls.map { $0.toolInput.isEmpty ? "{}" : $0.toolInput.joined() }
            let context = "\(blocks.map { ($0.kind, $0.deltas) }) \(schedule)\n\(String(decoding: body, as: UTF8.self))"

            // Messages: no refusal, one block open at a time, each call's input whole, each text in order.
            var writer = MessagesStreamWriter(id: "m", model: "x")
            var out: [UInt8] = []
            for event in events {
                if case .toolCall(let fragment) = event { #expect(writer.refusal(ofToolCall: fragment) == nil, "\(context)") }
                writer.append(event, to: &out)
            }
            #expect(writer.refusalAtEnd() == nil)
            writer.appendEnd(to: &out)
            var decoder = SSEDecoder()
            var open: Int64?
            var toolInputs: [String: String] = [:], toolOrder: [String] = [], texts: [String] = [], thinking: [String] = []
            try decoder.feed(out) { event in
                let data = try JSONValue.parse(Array(event.data))
                let index = data["index"]?.intValue
                switch data["type"]?.stringValue {
                case "content_block_start":
                    #expect(open == nil, "\(context)")
                    open = index
                    if let id = data["content_block"]?["id"]?.stringValue { toolOrder.append(id) }
                case "content_block_delta":
                    #expect(open == index, "\(context)")
                    let delta = data["delta"]
                    if let piece = delta?["partial_json"]?.stringValue { toolInputs[toolOrder.last ?? "", default: ""] += piece }
                    if let piece = delta?["text"]?.stringValue { texts.append(piece) }
                    if let piece = delta?["thinking"]?.stringValue { thinking.append(piece) }
                case "content_block_stop":
                    #expect(open == index, "\(context)")
                    open = nil
                case "error"?:
                    Issue.record("an error event: \(context)")
                default: break
                }
            }
            #expect(toolOrder == calls.map { "toolu_\($0.index)" }, "\(context)")
            #expect(toolOrder.map { toolInputs[$0] ?? "{}" } == inputs, "\(context)")
            for block in blocks {
                let mine = { (piece: String) in piece.hasPrefix("b\(block.index).") }
                if block.kind == .text { #expect(texts.filter(mine) == block.pieces, "\(context)") }
                if block.kind == .thinking { #expect(thinking.filter(mine) == block.pieces, "\(context)") }
            }

            // Responses: no refusal, the stream the SDK accepts, each call's arguments whole.
            var responses = ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true))
            var bytes: [UInt8] = []
            for event in events {
                if case .toolCall(let fragment) = event { #expect(responses.refusal(ofToolCall: fragment) == nil, "\(context)") }
                responses.append(event, to: &bytes)
            }
            responses.appendEnd(usage: nil, estimated: false, to: &bytes)
            let decodedResponses = try ResponsesStreamCheck.decode(bytes)
            #expect(ResponsesStreamCheck.problems(decodedResponses) == [], "\(context)")
            let output = decodedResponses.last?.json["response"]?["output"]?.arrayValue ?? []
            let arguments = output.filter { $0["type"] == .string("function_call") }.compactMap { $0["arguments"]?.stringValue }
            #expect(arguments == inputs, "\(context)")
        }
    }

    static func lines(_ events: [String]) -> [UInt8] { Array(events.map { "event: x\ndata: \($0)\n\n" }.joined().utf8) }
    static let openCallAndText = [
        #"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        #"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"f","input":{}}}"#,
        #"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        #"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"HELD"}}"#,
    ]

    /// What is held is never lost: it goes on before an error, before a stop reason that comes
    /// while a call's block is still open, and before a cut stream's end (review 60 #2).
    @Test func heldEventsGoOnBeforeAnErrorAStopReasonOrTheBodysEnd() throws {
        func decoded(_ body: [UInt8]) throws -> ([ModelEvent], StreamEnd) {
            var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
            var events: [ModelEvent] = []
            _ = try body.withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
            try decoder.finish { events.append($0) }
            return (events, decoder.end())
        }
        let failed = try decoded(Self.lines(Self.openCallAndText + [#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#]))
        #expect(failed.0.count == 3 && failed.0[1] == .text("HELD"), "\(failed.0)")
        let cut = try decoded(Self.lines(Self.openCallAndText))
        #expect(cut.0.last == .text("HELD") && cut.1 == .truncated, "\(cut.0)")
        let stopped = try decoded(Self.lines(Self.openCallAndText + [#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#]))
        let textAt = stopped.0.firstIndex(of: .text("HELD")), finishAt = stopped.0.firstIndex(of: .finish(.toolCalls))
        #expect(textAt != nil && finishAt != nil && textAt! < finishAt!, "\(stopped.0)")
    }

    /// Past its bound the hold is given up: what was held and what follows pass as they come,
    /// never a response's worth in memory (review 60 #1: 200 MB held, 856 MB resident).
    @Test func theHoldIsBounded() throws {
        let piece = String(repeating: "x", count: 100_000)
        var events = Self.openCallAndText
        for _ in 0..<12 { events.append(#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"\#(piece)"}}"#) }
        var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var texts = 0
        _ = try Self.lines(events).withUnsafeBytes { try decoder.decode($0) { if case .text = $0 { texts += 1 } } }
        #expect(texts == 13, "all passed on before the call's block stopped: \(texts)")
    }

    /// The reviews' cases, each spelled out: a text block with text, and an empty one, inside an
    /// open call's block; the call continues after it.
    @Test func aTextBlockInsideAnOpenCallFollowsTheCall() throws {
        for kind in [Kind.text, .emptyText] {
            let body = Array([
                #"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
                #"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"f","input":{}}}"#,
                #"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
                #"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            ].map { "event: x\ndata: \($0)\n\n" }.joined().utf8)
                + (kind == .text ? Array("event: x\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n".utf8) : [])
                + Array([
                    #"{"type":"content_block_stop","index":1}"#,
                    #"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
                    #"{"type":"content_block_stop","index":0}"#,
                    #"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#, #"{"type":"message_stop"}"#,
                ].map { "event: x\ndata: \($0)\n\n" }.joined().utf8)
            let events = try Self.decoded(body)
            let expected: [ModelEvent] = [
                .toolCall(ToolCallFragment(index: 0, id: "toolu_a", name: "f", arguments: "")),
                .toolCall(ToolCallFragment(index: 0, arguments: #"{"city":"#)), .toolCall(ToolCallFragment(index: 0, arguments: #""Paris"}"#)),
                .providerBlock(.stop),
            ] + (kind == .text ? [.text("Hi")] : []) + [.providerBlock(.stop), .finish(.toolCalls), .usage(Usage(promptTokens: 3, completionTokens: 9, totalTokens: 12))]
            #expect(events == expected)
        }
    }
}
