import Fusion
import GatewayCore
import Providers

/// Writes deliberation progress into the client's SSE stream, in one of two forms:
///
/// - `.comments` (default): SSE comment lines. Every OpenAI client ignores them; `curl -N` shows
///   them, so a person watches the panel and the judge live.
/// - `.namedEvents` (`stream_options.include_fusion_events: true`): `event: fusion.…` with a JSON
///   object carrying `type`, the member's `model` and `index` where relevant, and `t_ms`, the
///   milliseconds since the request arrived (monotonic). Only for clients that asked: an OpenAI
///   SDK would try to parse them as chunks.
public struct FusionProgressEncoder: Sendable {
    public enum Form: Sendable { case comments, namedEvents }
    public let form: Form

    public init(form: Form) { self.form = form }

    public func append(_ progress: FusionProgress, at milliseconds: Double, to out: inout [UInt8]) {
        switch form {
        case .comments: appendComment(progress, to: &out)
        case .namedEvents: appendEvent(progress, at: milliseconds, to: &out)
        }
    }

    /// Marks where the final answer begins.
    public func appendFinalAnswerStarts(model: String, at milliseconds: Double, to out: inout [UInt8]) {
        switch form {
        case .comments:
            SSEEncoder.appendComment("fusion: \(model) is writing the final answer", to: &out)
        case .namedEvents:
            var data: [UInt8] = []
            open("fusion.final", milliseconds, &data)
            field("model", model, &data)
            data.append(UInt8(ascii: "}"))
            SSEEncoder.appendEvent(name: "fusion.final", data: data, to: &out)
        }
    }

    private func appendComment(_ progress: FusionProgress, to out: inout [UInt8]) {
        let line: String
        switch progress {
        case .toolCalled(let arguments):
            line = "fusion: the outer model called the fusion tool \(arguments.isEmpty ? "{}" : oneLine(arguments))"
        case .memberStarted(let index, let model):
            line = "fusion panel[\(index)] \(model): started"
        case .memberDelta(let index, let model, let text):
            line = "fusion panel[\(index)] \(model): \(oneLine(text))"
        case .memberReasoningDelta(let index, let model, let text):
            line = "fusion panel[\(index)] \(model) (thinking): \(oneLine(text))"
        case .memberCompleted(let index, let model, let stats):
            line = "fusion panel[\(index)] \(model): completed (\(stats.characters) chars in \(milliseconds(stats.durationMilliseconds)))"
        case .memberFailed(let index, let model, let reason, let message):
            line = "fusion panel[\(index)] \(model): failed (\(reason.rawValue)): \(oneLine(message))"
        case .judgeStarted(let model, let attempt):
            line = "fusion judge \(model): comparing the answers" + (attempt > 1 ? " (attempt \(attempt))" : "")
        case .judgeDelta(let model, let text):
            line = "fusion judge \(model): \(oneLine(text))"
        case .judgeCompleted(let model, let analysis):
            let counts = JudgeAnalysis.fields.map { "\(analysis[$0]?.arrayValue?.count ?? 0) \($0.replacingUnderscores)" }
            line = "fusion judge \(model): analysis ready: " + counts.joined(separator: ", ")
        case .judgeFailed(let model, let reason, let message, let willRetry):
            line = "fusion judge \(model): failed (\(reason.rawValue)): \(oneLine(message))" + (willRetry ? "; retrying" : "")
        case .webToolStarted(let activity):
            line = "\(label(activity.participant)): \(activity.name) \(oneLine(activity.arguments))"
        case .webToolFinished(let activity):
            let took = milliseconds(activity.durationMilliseconds)
            if let error = activity.error {
                line = "\(label(activity.participant)): \(activity.name) failed (\(took)): \(oneLine(error))"
            } else {
                let what = activity.name == WebToolNames.search ? "\(activity.sources) results" : "page read"
                line = "\(label(activity.participant)): \(activity.name) done: \(what), \(activity.resultBytes) bytes in \(took)"
            }
        case .completed(let result):
            if result.isError {
                line = "fusion: all \(result.panelSize) panel models failed"
            } else {
                line = "fusion: \(result.answered.count)/\(result.panelSize) panel models answered"
                    + (result.analysis == nil ? ", no analysis (\(result.judgeFailure?.reason.rawValue ?? "judge failed"))" : ", analysis ready")
            }
        case .invocationCapped(let arguments):
            line = "fusion: a further fusion call was not run (fusion_invocation_capped) \(arguments.isEmpty ? "{}" : oneLine(arguments))"
        }
        SSEEncoder.appendComment(line, to: &out)
    }

    private func appendEvent(_ progress: FusionProgress, at milliseconds: Double, to out: inout [UInt8]) {
        var data: [UInt8] = []
        let name: String
        switch progress {
        case .toolCalled(let arguments):
            name = "fusion.tool.called"
            open(name, milliseconds, &data)
            field("name", FusionPlan.toolName, &data)
            field("arguments", arguments, &data)
        case .memberStarted(let index, let model):
            name = "fusion.member.started"
            member(name, index, model, milliseconds, &data)
        case .memberDelta(let index, let model, let text):
            name = "fusion.member.delta"
            member(name, index, model, milliseconds, &data)
            field("delta", text, &data)
        case .memberReasoningDelta(let index, let model, let text):
            name = "fusion.member.reasoning"
            member(name, index, model, milliseconds, &data)
            field("delta", text, &data)
        case .memberCompleted(let index, let model, let stats):
            name = "fusion.member.completed"
            member(name, index, model, milliseconds, &data)
            raw("stats", stats.json, &data)
        case .memberFailed(let index, let model, let reason, let message):
            name = "fusion.member.failed"
            member(name, index, model, milliseconds, &data)
            field("reason", reason.rawValue, &data)
            field("message", message, &data)
        case .judgeStarted(let model, let attempt):
            name = "fusion.judge.started"
            open(name, milliseconds, &data)
            field("model", model, &data)
            data.append(contentsOf: #","attempt":\#(attempt)"#.utf8)
        case .judgeDelta(let model, let text):
            name = "fusion.judge.progress"
            open(name, milliseconds, &data)
            field("model", model, &data)
            field("delta", text, &data)
        case .judgeCompleted(let model, let analysis):
            name = "fusion.judge.completed"
            open(name, milliseconds, &data)
            field("model", model, &data)
            raw("analysis", analysis, &data)
        case .judgeFailed(let model, let reason, let message, let willRetry):
            name = "fusion.judge.failed"
            open(name, milliseconds, &data)
            field("model", model, &data)
            field("reason", reason.rawValue, &data)
            field("message", message, &data)
            data.append(contentsOf: #","will_retry":\#(willRetry)"#.utf8)
        case .webToolStarted(let activity):
            name = "fusion.web.started"
            webTool(name, activity, milliseconds, &data)
        case .webToolFinished(let activity):
            name = "fusion.web.completed"
            webTool(name, activity, milliseconds, &data)
            data.append(contentsOf: #","result_bytes":\#(activity.resultBytes),"sources":\#(activity.sources),"duration_ms":"#.utf8)
            data.append(contentsOf: String((activity.durationMilliseconds * 1000).rounded() / 1000).utf8)
            if let error = activity.error { field("error", error, &data) }
        case .completed(let result):
            name = "fusion.completed"
            open(name, milliseconds, &data)
            raw("result", result.json, &data)
        case .invocationCapped(let arguments):
            name = "fusion.tool.capped"
            open(name, milliseconds, &data)
            field("name", FusionPlan.toolName, &data)
            field("arguments", arguments, &data)
            field("failure_reason", "fusion_invocation_capped", &data)
        }
        data.append(UInt8(ascii: "}"))
        SSEEncoder.appendEvent(name: name, data: data, to: &out)
    }

    private func open(_ type: String, _ milliseconds: Double, _ data: inout [UInt8]) {
        data.append(contentsOf: #"{"type":"#.utf8)
        JSONWriting.appendString(type, to: &data)
        data.append(contentsOf: #","t_ms":"#.utf8)
        data.append(contentsOf: String((milliseconds * 1000).rounded() / 1000).utf8)
    }

    private func member(_ type: String, _ index: Int, _ model: String, _ milliseconds: Double, _ data: inout [UInt8]) {
        open(type, milliseconds, &data)
        data.append(contentsOf: #","index":\#(index)"#.utf8)
        field("model", model, &data)
    }

    private func webTool(_ type: String, _ activity: WebToolActivity, _ milliseconds: Double, _ data: inout [UInt8]) {
        switch activity.participant {
        case .member(let index, let model):
            member(type, index, model, milliseconds, &data)
            field("role", "panel", &data)
        case .judge(let model):
            open(type, milliseconds, &data)
            field("model", model, &data)
            field("role", "judge", &data)
        }
        field("name", activity.name, &data)
        field("arguments", activity.arguments, &data)
    }

    private func label(_ participant: Participant) -> String {
        switch participant {
        case .member(let index, let model): "fusion panel[\(index)] \(model)"
        case .judge(let model): "fusion judge \(model)"
        }
    }

    private func field(_ name: String, _ value: String, _ data: inout [UInt8]) {
        data.append(contentsOf: #",""#.utf8)
        data.append(contentsOf: name.utf8)
        data.append(contentsOf: #"":"#.utf8)
        JSONWriting.appendString(value, to: &data)
    }

    private func raw(_ name: String, _ value: JSONValue, _ data: inout [UInt8]) {
        data.append(contentsOf: #",""#.utf8)
        data.append(contentsOf: name.utf8)
        data.append(contentsOf: #"":"#.utf8)
        data.append(contentsOf: value.serialized())
    }

    /// SSEEncoder's escaping: every line break any reader knows, "\r\n" (one Character) included.
    private func oneLine(_ text: String) -> String {
        SSEEncoder.lineSafe(text)
    }

    private func milliseconds(_ value: Double) -> String {
        "\(Int(value.rounded())) ms"
    }
}

extension String {
    var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}
