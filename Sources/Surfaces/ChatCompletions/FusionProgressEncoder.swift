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
        case .comments: appendComment(progress, at: milliseconds, to: &out)
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

    /// One line per update, for people: members' text in readable pieces (`memberText`), the
    /// analysis item by item (`judgeItem`), status lines with their time; the exact deltas are
    /// not shown here (they are the named events').
    private func appendComment(_ progress: FusionProgress, at now: Double, to out: inout [UInt8]) {
        let line: String
        switch progress {
        case .toolCalled(let arguments, _, let forced):
            let shown = arguments.isEmpty ? "{}" : oneLine(arguments)
            line = forced ? "fusion: the panel is asked (fusion is forced; the outer model was not called) \(shown)"
                : "fusion: the outer model called the fusion tool \(shown)"
        case .memberStarted(let index, let model):
            line = "fusion panel[\(index)] \(model): started at \(milliseconds(now))"
        case .memberDelta, .memberReasoningDelta, .judgeDelta:
            return  // shown as readable pieces and analysis items instead
        case .memberText(let index, let model, let text, let reasoning):
            line = "fusion panel[\(index)] \(model)\(reasoning ? " (thinking)" : "") | \(oneLine(text))"
        case .memberCompleted(let index, let model, let stats):
            let first = stats.firstTokenMilliseconds.map { ", first token after \(milliseconds($0))" } ?? ""
            line = "fusion panel[\(index)] \(model): completed at \(milliseconds(now)) (\(stats.characters) chars in "
                + "\(milliseconds(stats.durationMilliseconds))\(first))"
        case .memberFailed(let index, let model, let reason, let message, let statusCode):
            let status = statusCode.map { ", HTTP \($0)" } ?? ""
            line = "fusion panel[\(index)] \(model): failed at \(milliseconds(now)) (\(reason.rawValue)\(status)): \(oneLine(message))"
        case .memberCut(let index, let model, let characters, let cause):
            line = "fusion panel[\(index)] \(model): cut for latency at \(milliseconds(now)) ("
                + (cause == .grace ? "the grace period after the quorum ran out" : "the deliberation's deadline passed")
                + "; \(characters) chars written, not given to the judge)"
        case .judgeStarted(let model, let attempt, _):
            line = "fusion judge \(model): comparing the answers at \(milliseconds(now))" + (attempt > 1 ? " (attempt \(attempt))" : "")
        case .judgeItem(_, _, let item):
            line = "fusion judge: " + Self.readable(item)
        case .judgeItemWithdrawn(_, let attempt, let field, let index):
            line = "fusion judge: withdrawn: \(field.replacingUnderscores) #\(index + 1) (attempt \(attempt) did not hold)"
        case .estimate(let estimate):
            line = "fusion: " + Self.readable(estimate)
        case .phase(let report):
            line = Self.readable(report, at: now)
        case .judgeCompleted(let model, let analysis):
            line = "fusion judge \(model): analysis ready: " + JudgeAnalysis.countsSummary(analysis)
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
                line = "fusion: " + (result.cutCount == 0 ? "all \(result.panelSize) panel models failed" : result.noAnswerMessage)
            } else {
                line = "fusion: \(result.answered.count)/\(result.panelSize) panel models answered"
                    + (result.cutCount > 0 ? " (\(result.cutCount) cut for latency)" : "")
                    + (result.analysis == nil ? ", no analysis (\(result.judgeFailure?.reason.rawValue ?? "judge failed"))" : ", analysis ready")
            }
        case .invocationCapped(let arguments, _):
            line = "fusion: a further fusion call was not run (fusion_invocation_capped) \(arguments.isEmpty ? "{}" : oneLine(arguments))"
        }
        SSEEncoder.appendComment(line, to: &out)
    }

    private func appendEvent(_ progress: FusionProgress, at milliseconds: Double, to out: inout [UInt8]) {
        var data: [UInt8] = []
        let name: String
        switch progress {
        case .memberText:
            return  // for people only: programs get the exact deltas
        case .memberCut(let index, let model, let characters, let cause):
            name = "fusion.member.cut"
            member(name, index, model, milliseconds, &data)
            field("reason", MemberFailureReason.cutForLatency.rawValue, &data)
            field("cause", cause.rawValue, &data)
            data.append(contentsOf: #","characters":\#(characters)"#.utf8)
        case .judgeItem(let model, let attempt, let item):
            name = "fusion.judge.item"
            open(name, milliseconds, &data)
            field("model", model, &data)
            data.append(contentsOf: #","attempt":\#(attempt),"index":\#(item.index)"#.utf8)
            field("field", item.field, &data)
            raw("item", item.value, &data)
        case .judgeItemWithdrawn(let model, let attempt, let itemField, let index):
            name = "fusion.judge.item.withdrawn"
            open(name, milliseconds, &data)
            field("model", model, &data)
            data.append(contentsOf: #","attempt":\#(attempt),"index":\#(index)"#.utf8)
            field("field", itemField, &data)
        case .estimate(let estimate):
            name = "fusion.estimate"
            open(name, milliseconds, &data)
            for (key, value) in Self.estimateFields(estimate) { raw(key, value, &data) }
        case .phase(let report):
            name = "fusion.phase"
            open(name, milliseconds, &data)
            field("phase", report.phase.rawValue, &data)
            field("status", report.status.rawValue, &data)
            if let duration = report.durationMilliseconds { raw("duration_ms", .double((duration * 1000).rounded() / 1000), &data) }
            field("summary", report.summary, &data)
        case .toolCalled(let arguments, let callID, let forced):
            name = "fusion.tool.called"
            open(name, milliseconds, &data)
            field("name", FusionPlan.toolName, &data)
            field("arguments", arguments, &data)
            if !callID.isEmpty { field("call_id", callID, &data) }
            if forced { raw("forced", .bool(true), &data) }
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
        case .memberFailed(let index, let model, let reason, let message, let statusCode):
            name = "fusion.member.failed"
            member(name, index, model, milliseconds, &data)
            field("reason", reason.rawValue, &data)
            field("message", message, &data)
            if let statusCode { data.append(contentsOf: #","status_code":\#(statusCode)"#.utf8) }
        case .judgeStarted(let model, let attempt, let labels):
            name = "fusion.judge.started"
            open(name, milliseconds, &data)
            field("model", model, &data)
            data.append(contentsOf: #","attempt":\#(attempt)"#.utf8)
            // The judge's raw deltas (`fusion.judge.progress`) cite these labels: the map back.
            if !labels.isEmpty { raw("labels", .object(labels.mapValues(JSONValue.string)), &data) }
        case .judgeDelta(let model, let attempt, let text):
            name = "fusion.judge.progress"
            open(name, milliseconds, &data)
            field("model", model, &data)
            data.append(contentsOf: #","attempt":\#(attempt)"#.utf8)
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
        case .invocationCapped(let arguments, let callID):
            name = "fusion.tool.capped"
            open(name, milliseconds, &data)
            field("name", FusionPlan.toolName, &data)
            field("arguments", arguments, &data)
            if !callID.isEmpty { field("call_id", callID, &data) }
            field("failure_reason", "fusion_invocation_capped", &data)
        }
        data.append(UInt8(ascii: "}"))
        SSEEncoder.appendEvent(name: name, data: data, to: &out)
    }

    /// One analysis item as a sentence ("contradiction on <topic>: <model> says …").
    static func readable(_ item: AnalysisItem) -> String {
        let value = item.value
        func text(_ json: JSONValue?) -> String { SSEEncoder.lineSafe(json?.stringValue ?? json.map { String(decoding: $0.serialized(), as: UTF8.self) } ?? "") }
        switch item.field {
        case "consensus":
            return "consensus: " + text(value)
        case "blind_spots":
            return "blind spot: " + text(value)
        case "contradictions":
            // A stance's own full stop would read "….; …" between stances.
            func stance(_ json: JSONValue) -> String {
                var words = text(json["stance"])
                while words.hasSuffix(".") { words.removeLast() }
                return "\(text(json["model"])) says \(words)"
            }
            let stances = (value["stances"]?.arrayValue ?? []).map(stance)
            return "contradiction on \(text(value["topic"])): " + stances.joined(separator: "; ")
        case "partial_coverage":
            let models = (value["models"]?.arrayValue ?? []).map { text($0) }.joined(separator: ", ")
            return "partial coverage (\(models)): \(text(value["point"]))"
        case "unique_insights":
            return "unique insight from \(text(value["model"])): \(text(value["insight"]))"
        default:
            return "\(item.field.replacingUnderscores): \(text(value))"
        }
    }

    static func readable(_ estimate: CostEstimate) -> String {
        let panel = estimate.calls.filter { $0.role == "panel" }.count
        let judge = estimate.calls.contains { $0.role == "judge" }
        var line = "estimated cost \(dollars(estimate.minimum)) to " + (estimate.maximum.map(dollars) ?? "(no upper bound: no output limit)")
            + " for \(panel) panel call\(panel == 1 ? "" : "s")\(judge ? " and the judge" : "") (config prices"
        if !estimate.unpriced.isEmpty { line += "; not priced: " + estimate.unpriced.joined(separator: ", ") }
        return line + ")"
    }

    static func estimateFields(_ estimate: CostEstimate) -> [(String, JSONValue)] {
        func money(_ value: Double) -> JSONValue { .double((value * 1_000_000).rounded() / 1_000_000) }
        var fields: [(String, JSONValue)] = [
            ("cost_min", money(estimate.minimum)), ("cost_max", estimate.maximum.map(money) ?? .null), ("currency", .string("USD")),
            ("calls", .array(estimate.calls.map { call in
                .object(["role": .string(call.role), "model": .string(call.model), "input_tokens": .int(call.inputTokens),
                         "max_output_tokens": call.maxOutputTokens.map(JSONValue.int) ?? .null,
                         "cost_min": money(call.minimum), "cost_max": call.maximum.map(money) ?? .null])
            })),
        ]
        if !estimate.unpriced.isEmpty { fields.append(("unpriced_models", .array(estimate.unpriced.map(JSONValue.string)))) }
        return fields
    }

    static func readable(_ report: PhaseReport, at now: Double) -> String {
        let name = "fusion phase \(report.phase.rawValue)"
        let summary = report.summary.isEmpty ? "" : ": " + SSEEncoder.lineSafe(report.summary)
        switch report.status {
        case .started:
            return "\(name): started at \(Int(now.rounded())) ms\(summary)"
        case .completed:
            return "\(name): done in \(Int((report.durationMilliseconds ?? 0).rounded())) ms (at \(Int(now.rounded())) ms)\(summary)"
        case .skipped:
            return "\(name): skipped\(summary)"
        }
    }

    /// Dollars with enough digits to show a small cost (a deliberation may cost a tenth of a cent).
    static func dollars(_ value: Double) -> String {
        let micro = Int64((min(max(value, 0), 1e12) * 1_000_000).rounded())  // bounded: no trap on any Double
        let whole = micro / 1_000_000
        var fraction = String(micro % 1_000_000)
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return "$\(whole).\(fraction)"
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
