import GatewayCore
import PropertyBased
import Providers
import Testing

/// The OpenAI stream decoder reads each chunk's few members through a `JSONView` (no tree per
/// token). The reference is the tree: every chunk is also parsed whole into a `JSONValue` and
/// read the way the decoder used to, and both must give the same events, over chunks with
/// duplicate and escaped keys, nulls, wrong types, numbers out of range and errors.
@Suite struct OpenAIChunkPropertyTests {
    static let deltaMembers = [
        #""content":"Hi""#, #""content":"""#, #""content":null"#, #""content":7"#, #""cont\u0065nt":"escaped""#,
        #""content":"a\"b\\n\u00e9""#, #""reasoning":"think""#, #""reasoning":null"#, #""reasoning_content":"rc""#,
        #""reasoning":"""#, #""role":"assistant""#,
        #""tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]"#,
        #""tool_calls":[{"index":99999999999,"function":{"arguments":"x"}},{"id":"c2"}]"#, #""tool_calls":{}"#,
        #""tool_calls":[{"index":0,"id":"c1","function":{"name":"f"}},{"index":0,"id":"c1","function":{"name":"f"}}]"#,
    ]
    static let choiceMembers = [#""index":0"#, #""index":1"#, #""finish_reason":null"#, #""finish_reason":"stop""#, #""finish_reason":"tool_calls""#,
                                #""finish_reason":1"#, #""delta":null"#, #""delta":[]"#, #""logprobs":{"content":[{"token":"x"}]}"#]
    static let topMembers = [
        #""id":"gen-1""#, #""object":"chat.completion.chunk""#, #""model":"m""#, #""created":1e999"#, #""usage":null"#,
        #""usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"cost":0.001}"#,
        #""usage":{"prompt_tokens":1e999,"completion_tokens":-1}"#, #""error":null"#, #""error":1e999"#,
        #""error":{"message":"boom secret-key","code":500}"#, #""choices":[]"#, #""choices":null"#, #""choices":["x"]"#,
        #""\u0063hoices":[{"delta":{"content":"via escaped key"}}]"#,
    ]

    static let delta = Gen.element(of: deltaMembers).array(of: 0...4).map { "{" + $0.compactMap { $0 }.joined(separator: ",") + "}" }
    static let choice = zip(delta, Gen.element(of: choiceMembers).array(of: 0...3), Gen.bool)
        .map { delta, members, deltaFirst -> String in
            let rest = members.compactMap { $0 }
            return "{" + (deltaFirst ? [#""delta":"# + delta] + rest : rest + [#""delta":"# + delta]).joined(separator: ",") + "}"
        }
    static let chunk = zip(choice.array(of: 0...2), Gen.element(of: topMembers).array(of: 0...4), Gen.int(in: 0...2))
        .map { choices, members, position -> String in
            var all = members.compactMap { $0 }
            if !choices.isEmpty { all.insert(#""choices":["# + choices.joined(separator: ",") + "]", at: min(position, all.count)) }
            return "{" + all.joined(separator: ",") + "}"
        }

    @Test func chunksDecodeAsTheirWholeTreeReads() async {
        await propertyCheck(count: 1500, input: Self.chunk.array(of: 1...3)) { chunks in
            let redactor = Redactor(secrets: ["secret-key"])
            var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 16, redactor: redactor)
            var decoded: [ModelEvent] = []
            var expected: [ModelEvent] = []
            var ids: Set<Int> = []
            var names: Set<Int> = []
            var sawChoiceZero = false
            for chunk in chunks {
                guard let tree = try? JSONValue.parse(Array(chunk.utf8)) else {
                    Issue.record("the generator made invalid JSON: \(chunk)")
                    return
                }
                Self.reference(tree, redactor: redactor, sawChoiceZero: &sawChoiceZero) { event in
                    if case .toolCall(var fragment) = event {
                        if fragment.id != nil && !ids.insert(fragment.index).inserted { fragment.id = nil }
                        if fragment.name != nil && !names.insert(fragment.index).inserted { fragment.name = nil }
                        expected.append(.toolCall(fragment))
                    } else {
                        expected.append(event)
                    }
                }
                let bytes = Array("data: \(chunk)\n\n".utf8)
                let ended = (try? bytes.withUnsafeBytes { try decoder.decode($0) { decoded.append($0) } }) ?? true
                if ended || expected.contains(where: { if case .error = $0 { true } else { false } }) { break }
            }
            #expect(decoded == expected, "\(chunks)")
        }
    }

    /// How a chunk was read before `JSONView`: the whole tree, then subscripts.
    static func reference(_ chunk: JSONValue, redactor: Redactor, sawChoiceZero: inout Bool, emit: (ModelEvent) -> Void) {
        if let error = chunk["error"], error != .null {
            emit(.error(OpenAICompatibleProvider.streamError(error, redactor: redactor)))
            return
        }
        // Choice 0 wherever it stands, else the first; another only until choice 0 came (review 52A #8).
        let choices = chunk["choices"]?.arrayValue ?? []
        var picked = choices.first(where: { $0["index"]?.intValue == 0 }) ?? choices.first
        if let number = picked?["index"]?.intValue { if number == 0 { sawChoiceZero = true } else if sawChoiceZero { picked = nil } }
        if let choice = picked {
            if let delta = choice["delta"] {
                if let reasoning = (delta["reasoning"] ?? delta["reasoning_content"])?.stringValue, !reasoning.isEmpty {
                    emit(.reasoning(reasoning))
                }
                if let text = delta["content"]?.stringValue, !text.isEmpty { emit(.text(text)) }
                for (position, call) in (delta["tool_calls"]?.arrayValue ?? []).enumerated() {
                    // An index beyond the 1,024 calls read ends the stream with an error.
                    if let index = call["index"]?.intValue, !(0...1023).contains(index) {
                        emit(.error(.upstreamProtocol("The upstream sent a tool call with index \(index): at most 1024 calls are read.")))
                        return
                    }
                    if let raw = call["index"], raw != .null, raw.intValue == nil {
                        emit(.error(.upstreamProtocol("The upstream sent a tool call whose index is not an integer (\(JSONWriting.compact(raw).shortened(toBytes: 40))).")))
                        return
                    }
                    let index = call["index"]?.intValue.map { Int($0) } ?? position
                    let arguments = call["function"]?["arguments"].flatMap { $0 == .null ? nil : $0.stringValue ?? JSONWriting.compact($0) }
                    emit(.toolCall(ToolCallFragment(index: index, id: call["id"]?.stringValue, name: call["function"]?["name"]?.stringValue,
                                                    arguments: arguments)))
                }
            }
            if let reason = choice["finish_reason"]?.stringValue { emit(.finish(FinishReason(rawValue: reason))) }
        }
        if let usage = Usage(openAI: chunk["usage"]) { emit(.usage(usage)) }
    }
}
