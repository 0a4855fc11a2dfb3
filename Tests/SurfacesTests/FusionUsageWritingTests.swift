import Fusion
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// The usage at the end of a deliberation's stream is written directly (it is on the way to the
/// last byte); the tree it used to be built as, serialized, is the reference: the same bytes for
/// any totals and any calls.
@Suite struct FusionUsageWritingTests {
    static let count = Gen.element(of: [Int64(0), 1, 42, 9_999_999, Usage.maxTokens]).map { $0 ?? 0 }
    static let milliseconds = Gen.element(of: [0, 0.0004, 0.0005, 1.5, 123.4567, 1e-9, 86_400_000.123, 1e15]).map { $0 ?? 0 }
    static let cost = Gen.element(of: [0, 0.000392, 1e-12, 12.5, 1234.56789]).map { $0 ?? 0 }
    static let name = Gen.element(of: ["mock/expert-1:pace_ms=2", "openai/gpt-4o", "a \"quoted\" é🙂 name", ""]).map { $0 ?? "" }

    static let usage = zip(count, count, count, count, count, cost).map { prompt, completion, total, reasoning, cached, cost in
        Usage(promptTokens: prompt, completionTokens: completion, totalTokens: total, reasoningTokens: reasoning, cachedTokens: cached, cost: cost)
    }

    static let call = zip(name, Gen.element(of: ["outer", "panel", "judge", "outer_final"]), zip(usage, Gen.bool), milliseconds,
                          zip(milliseconds, Gen.bool), Gen.int(in: 0...3))
        .map { model, role, usage, duration, ttft, toolCalls -> MemberStats in
            MemberStats(model: model, role: role ?? "panel", status: usage.1 ? "ok" : "timeout", usage: usage.1 ? usage.0 : nil,
                        firstTokenMilliseconds: ttft.1 ? ttft.0 : nil, durationMilliseconds: duration, characters: toolCalls * 417,
                        toolCalls: toolCalls == 3 ? 0 : toolCalls)
        }

    @Test func usageIsTheTreeSerialized() async {
        await propertyCheck(count: 1000, input: Self.usage, Self.call.array(of: 0...7), Gen.bool) { usage, calls, deliberated in
            let totals = FusionTotals(usage: usage, calls: deliberated ? calls : nil, fusion: nil, finishReason: nil, sources: SourceList())
            var written: [UInt8] = []
            totals.appendChatUsage(to: &written)
            let reference = totals.chatUsageJSON.serialized()
            #expect(written == reference, "\(String(decoding: written, as: UTF8.self))\n\(String(decoding: reference, as: UTF8.self))")
            for call in calls {
                var entry: [UInt8] = []
                call.appendJSON(to: &entry)
                #expect(entry == call.json.serialized())
            }
        }
    }
}
