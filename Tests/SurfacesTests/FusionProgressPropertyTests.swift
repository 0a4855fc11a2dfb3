import Foundation
import Fusion
import GatewayCore
import PropertyBased
import Providers
import SSEReference
import Surfaces
import Testing

/// Whatever text a model, a web page or an upstream puts into Fusion's progress (a member's
/// tokens, a failure message, tool arguments, a model name), each progress update is exactly
/// one comment, or exactly one event of its own name whose JSON gives the text back intact, for
/// a reader written from the spec (`WHATWGEventStream`) and for one that also ends lines where
/// Python's `str.splitlines` does.
@Suite struct FusionProgressPropertyTests {
    /// Line breaks of every kind (CR, LF, CRLF as one Character, NEL, U+2028/9, NUL, VT, FF…),
    /// SSE field syntax, escapes, mixed with random scalars.
    static let text = zip(
        Gen.int(in: 0...3),
        Gen.element(of: ["\r\n", "\r", "\n", "\n\n", "\0", "\u{0B}", "\u{0C}", "\u{1C}", "\u{85}", "\u{2028}", "\u{2029}",
                         "\u{7F}", "\u{9B}", "\u{FEFF}", "data: ", "data: [DONE]", "event: fusion.final", "id: 1", "retry: 1",
                         ":", " ", "\\", "\\n", "\"", "}", "e\u{301}", "🙂"]),
        Gen.unicodeScalar(in: "\u{0}"..."\u{2FF}"),
        Gen.unicodeScalar(in: "\u{E000}"..."\u{10FFFF}")
    ).map { choice, piece, low, high -> String in
        switch choice {
        case 0, 1: piece ?? ""
        case 2: String(Character(low))
        default: String(Character(high))
        }
    }.array(of: 0...16).map { $0.joined() }

    /// Every update that carries outside text, with the event name and the JSON field it lands in.
    static func updates(_ text: String, model: String) -> [(FusionProgress, name: String, field: String)] {
        var activity = WebToolActivity(participant: .member(index: 0, model: model), name: "web_fetch", arguments: text)
        activity.error = text
        return [
            (.toolCalled(arguments: text), "fusion.tool.called", "arguments"),
            (.memberStarted(index: 1, model: model), "fusion.member.started", "model"),
            (.memberDelta(index: 1, model: model, text: text), "fusion.member.delta", "delta"),
            (.memberReasoningDelta(index: 1, model: model, text: text), "fusion.member.reasoning", "delta"),
            (.memberFailed(index: 1, model: model, reason: .upstreamError, message: text, statusCode: 503), "fusion.member.failed", "message"),
            (.judgeStarted(model: model, attempt: 1), "fusion.judge.started", "model"),
            (.judgeDelta(model: model, attempt: 1, text: text), "fusion.judge.progress", "delta"),
            (.judgeFailed(model: model, reason: .notValidJSON, message: text, willRetry: true), "fusion.judge.failed", "message"),
            (.judgeCompleted(model: model, analysis: .object(["consensus": .array([.string(text)])])), "fusion.judge.completed", "model"),
            (.webToolStarted(activity), "fusion.web.started", "arguments"),
            (.webToolFinished(activity), "fusion.web.completed", "error"),
            (.invocationCapped(arguments: text), "fusion.tool.capped", "arguments"),
        ]
    }

    @Test func eachUpdateIsOneCommentWhateverItCarries() async {
        await propertyCheck(count: 150, input: Self.text, Self.text) { text, model in
            // Raw deltas are the named events'; comments show them as readable pieces and
            // analysis items (below), so a raw delta writes no comment at all.
            let readable: [(FusionProgress, name: String, field: String)] = [
                (.memberText(index: 1, model: model, text: text, reasoning: false), "memberText", ""),
                (.memberText(index: 1, model: model, text: text, reasoning: true), "memberText (thinking)", ""),
                (.judgeItem(model: model, attempt: 1, item: AnalysisItem(field: "consensus", index: 0, value: .string(text))), "judgeItem", ""),
                (.judgeItem(model: model, attempt: 1, item: AnalysisItem(field: "contradictions", index: 0,
                                                                          value: .object(["topic": .string(text), "stances": .array([.object(["model": .string(model), "position": .string(text)])])]))), "judgeItem (object)", ""),
            ]
            for (update, name, _) in Self.updates(text, model: model) + readable {
                var out: [UInt8] = []
                FusionProgressEncoder(form: .comments).append(update, at: 1.5, to: &out)
                switch update {
                case .memberDelta, .memberReasoningDelta, .judgeDelta:
                    #expect(out.isEmpty, "\(name) writes no comment")
                    continue
                default: break
                }
                let items = WHATWGEventStream.parse(out)
                #expect(items.count == 1 && { if case .comment = items[0] { true } else { false } }(),
                        "\(name) with \(text.debugDescription): \(items)")
                #expect(PythonLines.split(out).count == 2, "\(name): one line and the blank one: \(String(decoding: out, as: UTF8.self).debugDescription)")
                #expect(!out.contains(0), "no NUL for C-string readers")
            }
        }
    }

    @Test func eachUpdateIsOneEventOfItsNameWithTheTextIntact() async {
        await propertyCheck(count: 150, input: Self.text, Self.text) { text, model in
            for (update, name, field) in Self.updates(text, model: model) {
                var out: [UInt8] = []
                FusionProgressEncoder(form: .namedEvents).append(update, at: 1.5, to: &out)
                let items = WHATWGEventStream.parse(out)
                guard items.count == 1, case .event(let type, let data) = items[0] else {
                    Issue.record("\(name) with \(text.debugDescription): \(items)")
                    continue
                }
                #expect(type == name)
                #expect(PythonLines.split(out).count == 3, "\(name): event, data, blank line")
                // Foundation's decoder as the independent JSON reader.
                let decoded = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any]
                let expected = field == "model" ? model : text
                #expect(decoded?[field] as? String == expected || (try? JSONValue.parse(Array(data.utf8)))?[field]?.stringValue == expected,
                        "\(name).\(field): \(data.debugDescription)")
                #expect(decoded?["type"] as? String == name)
                if case .memberFailed = update { #expect(decoded?["status_code"] as? Int == 503, "the upstream's status: \(data)") }
            }
        }
    }

    @Test func theFinalAnswerMarkerCarriesAnyModelName() async {
        await propertyCheck(count: 200, input: Self.text) { model in
            for form in [FusionProgressEncoder.Form.comments, .namedEvents] {
                var out: [UInt8] = []
                FusionProgressEncoder(form: form).appendFinalAnswerStarts(model: model, at: 3, to: &out)
                let items = WHATWGEventStream.parse(out)
                #expect(items.count == 1, "\(model.debugDescription): \(items)")
                if form == .namedEvents, case .event(let type, let data)? = items.first {
                    #expect(type == "fusion.final" && (try? JSONValue.parse(Array(data.utf8)))?["model"]?.stringValue == model)
                }
            }
        }
    }
}
