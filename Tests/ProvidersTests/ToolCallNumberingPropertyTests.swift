import GatewayCore
import PropertyBased
import Providers
import Testing

/// However an OpenAI-wire server numbers its parallel calls (by index, all 0 and told apart by
/// id, no index at all, or id and name repeated on every fragment), the decoded stream holds
/// each call once, whole, under an index of its own, its id and name passed on once.
@Suite struct ToolCallNumberingPropertyTests {
    enum Numbering: CaseIterable {
        case byIndex, allZero, noIndex, repeatingIDs
    }

    @Test func everyNumberingDecodesToTheCallsSent() async {
        let input = zip(Gen.int(in: 1...6), Gen.element(of: Numbering.allCases), Gen.int(in: 0...Int(Int32.max)))
        await propertyCheck(count: 400, input: input) { count, numbering, seed in
            guard let numbering else { return }
            var random = seed
            func next(_ bound: Int) -> Int {
                random = (random &* 1_103_515_245 &+ 12_345) & 0x7fff_ffff
                return random % bound
            }
            let calls = (0..<count).map { call in
                ToolCall(index: call, id: "call_\(call)", name: "f\(call)", arguments: #"{"n":\#(call),"s":"\#(String(repeating: "x", count: next(9)))"}"#)
            }
            // Each call's arguments in one to three pieces.
            let pieces = calls.map { call -> [String] in
                let text = Array(call.arguments)
                let cuts = Set((0..<next(3)).map { _ in next(text.count) }).sorted()
                return zip([0] + cuts, cuts + [text.count]).map { String(text[$0..<$1]) }
            }
            // Interleaved only where the index tells calls apart.
            let interleaves = numbering == .byIndex || numbering == .repeatingIDs
            var order: [Int] = []
            var left = pieces.map(\.count)
            while left.contains(where: { $0 > 0 }) {
                let open = left.indices.filter { left[$0] > 0 }
                let call = interleaves ? open[next(open.count)] : open[0]
                order.append(call)
                left[call] -= 1
            }
            var sent = [Int](repeating: 0, count: count)
            var chunks: [[UInt8]] = []
            for call in order {
                let first = sent[call] == 0
                let piece = pieces[call][sent[call]]
                sent[call] += 1
                let index = switch numbering {
                case .byIndex, .repeatingIDs: #""index":\#(call),"#
                case .allZero: #""index":0,"#
                case .noIndex: ""
                }
                let named = first || numbering == .repeatingIDs
                let id = named ? #""id":"call_\#(call)","type":"function","# : ""
                let name = named ? #""name":"f\#(call)","# : ""
                let arguments = JSONWriting.compact(.string(piece))
                chunks.append(Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{\#(index)\#(id)"function":{\#(name)"arguments":\#(arguments)}}]}}]}\#n\#n"#.utf8))
            }
            chunks.append(Array("data: [DONE]\n\n".utf8))
            guard let (events, _) = try? ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider()) else {
                Issue.record("the decoder refused \(numbering) calls")
                return
            }
            let fragments = events.compactMap { if case .toolCall(let fragment) = $0 { fragment } else { nil } }
            var accumulator = ToolCallAccumulator()
            fragments.forEach { accumulator.add($0) }
            let decoded = accumulator.calls.sorted { $0.index < $1.index }
            #expect(decoded.map(\.id) == calls.map(\.id) && decoded.map(\.name) == calls.map(\.name), "\(numbering) \(decoded)")
            #expect(decoded.map(\.arguments) == calls.map(\.arguments), "\(numbering) \(decoded)")
            #expect(Set(decoded.map(\.index)).count == count)
            #expect(fragments.filter { $0.id != nil }.count == count && fragments.filter { $0.name != nil }.count == count)
        }
    }

    /// An id that changes without a name is no new call; an id seen before goes back to its call
    /// (review 20 B4: each made a nameless call, or a second item with the same call_id).
    @Test func changedAndRepeatedIDsStayWithTheirCalls() throws {
        let fragment = { (id: String?, name: String?, arguments: String) -> [UInt8] in
            let idPart = id.map { #""id":"\#($0)","# } ?? ""
            let namePart = name.map { #""name":"\#($0)","# } ?? ""
            return Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,\#(idPart)"function":{\#(namePart)"arguments":"\#(arguments)"}}]}}]}\#n\#n"#.utf8)
        }
        let chunks = [fragment("call_A", "fa", "{"), fragment("call_A2", nil, "}"), fragment("call_B", "fb", "{"), fragment("call_A", nil, ""),
                      fragment(nil, nil, ""), fragment("call_B", nil, "}")]
        let (events, _) = try ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider())
        let fragments = events.compactMap { if case .toolCall(let fragment) = $0 { fragment } else { nil } }
        #expect(fragments.map(\.index) == [0, 0, 1, 0, 0, 1], "\(fragments)")
        #expect(fragments.compactMap(\.id) == ["call_A", "call_B"] && fragments.compactMap(\.name) == ["fa", "fb"])
    }

    /// DeepSeek, GLM and Kimi give parallel calls one id: a known id at another index, or under
    /// another function's name, is another call, passed on with an id of its own; repeated on
    /// every fragment of each, it still stays with its call (review 52A #2: `{"a":1}{"b":2}`
    /// under the first name, or two items with one `call_id`).
    @Test func aRepeatedIDAtAnotherIndexOrUnderAnotherNameIsAnotherCall() throws {
        let fragment = { (index: Int, id: String?, name: String?, arguments: String) -> [UInt8] in
            let idPart = id.map { #""id":"\#($0)","# } ?? ""
            let namePart = name.map { #""name":"\#($0)","# } ?? ""
            return Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":\#(index),\#(idPart)"function":{\#(namePart)"arguments":"\#(arguments)"}}]}}]}\#n\#n"#.utf8)
        }
        let sameID: [(String, [[UInt8]])] = [
            ("another index", [fragment(0, "same", "f", #"{\"a\":1}"#), fragment(1, "same", "g", #"{\"b\":2}"#)]),
            ("another name", [fragment(0, "same", "f", #"{\"a\":1}"#), fragment(0, "same", "g", #"{\"b\":2}"#)]),
            ("repeated on every fragment", [fragment(0, "same", "f", "{"), fragment(1, "same", "g", "{"), fragment(0, "same", "f", #"\"a\":1}"#),
                                            fragment(1, "same", "g", #"\"b\":2}"#)]),
            ("then fragments without it", [fragment(0, "same", "f", "{"), fragment(1, "same", "g", "{"), fragment(1, nil, nil, #"\"b\":2}"#),
                                           fragment(0, nil, nil, #"\"a\":1}"#)]),
        ]
        for (shape, chunks) in sameID {
            let (events, _) = try ProviderFixtures.decode(chunks + [Array("data: [DONE]\n\n".utf8)], with: OpenAICompatibleProvider())
            var calls = ToolCallAccumulator()
            events.forEach { if case .toolCall(let fragment) = $0 { calls.add(fragment) } }
            #expect(calls.calls.map(\.id) == ["same", "same_1"] && calls.calls.map(\.name) == ["f", "g"], "\(shape): \(calls.calls)")
            #expect(calls.calls.map(\.arguments) == [#"{"a":1}"#, #"{"b":2}"#], "\(shape): \(calls.calls)")
        }
    }

    /// A server that leaves `index` out and lists only the calls with new bytes, repeating their
    /// ids: a call's position changes, its id keeps it with its call (review 54 #1: the second
    /// call's arguments went to the first). And an empty name names nothing (review 54 #3).
    @Test func anIDAtAnotherPositionWithoutANameContinuesItsCall() throws {
        let chunk = { (calls: String) -> [UInt8] in Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[\#(calls)]}}]}\#n\#n"#.utf8) }
        let chunks = [
            chunk(#"{"id":"a","function":{"name":"f","arguments":""}},{"id":"b","function":{"name":"g","arguments":""}}"#),
            chunk(#"{"id":"b","function":{"arguments":"{\"y\":2}"}}"#),
            chunk(#"{"id":"a","function":{"arguments":"{\"x\":1}"}}"#),
            chunk(#"{"id":"c","function":{"name":"","arguments":""}}"#),
            chunk(#"{"id":"c","function":{"name":"h","arguments":"{}"}}"#),
            Array("data: [DONE]\n\n".utf8),
        ]
        let (events, _) = try ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider())
        var calls = ToolCallAccumulator()
        events.forEach { if case .toolCall(let fragment) = $0 { calls.add(fragment) } }
        #expect(calls.calls.map(\.id) == ["a", "b", "c"] && calls.calls.map(\.name) == ["f", "g", "h"], "\(calls.calls)")
        #expect(calls.calls.map(\.arguments) == [#"{"x":1}"#, #"{"y":2}"#, "{}"], "\(calls.calls)")
    }

    /// Past the stream's cap on calls (1,024), by new ids at one index: an error, not call 1,025.
    @Test func newIDsBeyondTheCapEndTheStreamWithAnError() throws {
        let chunks = (0...1024).map { call in
            Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c\#(call)","function":{"name":"f","arguments":"{}"}}]}}]}\#n\#n"#.utf8)
        }
        let (events, _) = try ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider())
        #expect(events.filter { if case .toolCall = $0 { true } else { false } }.count == 1024)
        guard case .error(let error) = events.last else {
            Issue.record("no error after call 1,024: \(String(describing: events.last))")
            return
        }
        #expect(error.message.contains("more than 1024 tool calls"))
    }
}
