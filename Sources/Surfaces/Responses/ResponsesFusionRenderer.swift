import Fusion
import GatewayCore
import Providers

/// A Fusion session's output on the Responses API (the counterpart of `FusionChatRenderer`):
/// the outer model's turns through a `ResponsesStreamWriter`, the deliberation as an
/// `openrouter:fusion` output item with OpenRouter's `response.fusion_call.*` events.
///
/// Streamed, in order: the first turn's items (a preamble message, the caller's own function
/// calls), then the fusion item: `output_item.added` (in_progress), `fusion_call.in_progress`,
/// per member `panel.added`, `panel.delta` / `panel.reasoning.delta`, `panel.completed` or
/// `panel.failed`; `analysis.in_progress` (`analyst_model` and its older name `judge_model`),
/// `analysis.completed` (the whole analysis); `fusion_call.completed`, `output_item.done` with
/// the result (`FusionCallItem`); a capped second call as an item of its own; then the final
/// answer as an ordinary message at the next output index, its sources as `url_citation`
/// annotations; `response.completed` with usage summed over every call.
///
/// Events beyond OpenRouter's, named under `response.fusion_call.*` so OpenRouter's SDK files
/// them as unknown and OpenAI's passes them through: `analysis.item` (each element of the
/// analysis as the judge writes it, models mapped back from the neutral labels, provisional
/// until `analysis.completed`), `analysis.item.withdrawn` (an attempt that failed: its items no
/// longer stand), `analysis.failed`, `web.started` / `web.completed` (a member's or the judge's
/// web tool calls), `estimate` (the cost range, first), `phase` (outer, panel, judge: started,
/// completed or skipped, with duration and summary). A member cut for latency is a
/// `panel.failed` with `reason: "cut_for_latency"`, its `cause` and `characters`. Every event
/// about the run carries `item_id` and `output_index` (the fusion item's), and members' events
/// their `index` in the panel too (a model may sit on a panel twice).
///
/// `panel.failed`: OpenRouter's SDK types it with a top-level `error` string, and the official
/// OpenAI SDKs (Python and Node) abort a stream on any event whose JSON has a truthy top-level
/// `error`. By default the message is under `message` (with our `reason`), so every OpenAI
/// client keeps streaming; `openRouterEvents` (`stream_options.openrouter_fusion_events`) sends
/// OpenRouter's exact shape for clients built on its SDK. No other event has a top-level `error`.
///
/// Without `sendsEvents` the run is only its item (`output_item.added`, then `.done` with the
/// whole result) and no `response.fusion_call.*` event is sent: for openai-node's
/// `responses.stream()`, whose accumulator throws on any event type it does not know
/// ("Unhandled response stream event"), ending the stream before the answer (review 44
/// Responses #1). Items of a type it does not know it keeps.
public struct ResponsesFusionRenderer: Sendable {
    public private(set) var writer: ResponsesStreamWriter
    public let openRouterEvents: Bool
    public let sendsEvents: Bool
    private var fusionItem: ResponsesStreamWriter.ItemReference?
    /// The open item's call: its id and arguments, for the item's final form.
    private var fusionCall: (id: String, arguments: String) = ("", "")
    /// Each member's answer so far (for `panel.completed`).
    private var memberTexts: [Int: String] = [:]
    /// Progress before the fusion item opens (the estimate, the outer phase): sent once it does.
    private var early: [FusionProgress] = []
    private var inFinalAnswer = false
    private var annotated = false

    public init(envelope: ResponseEnvelope, stream: Bool, openRouterEvents: Bool, sendsEvents: Bool = true) {
        writer = ResponsesStreamWriter(envelope: envelope, stream: stream)
        self.openRouterEvents = openRouterEvents
        self.sendsEvents = sendsEvents
    }

    /// Whether a client gets the `response.fusion_call.*` events: as it asked
    /// (`stream_options.include_fusion_events`), else yes, unless it is openai-node's stream
    /// helper (`X-Stainless-Helper-Method: stream` from `X-Stainless-Lang: js`), which cannot take them.
    public static func sendsEvents(asked: Bool?, header: (String) -> String?) -> Bool {
        if let asked { return asked }
        return !(header("x-stainless-helper-method")?.lowercased() == "stream" && header("x-stainless-lang")?.lowercased() == "js")
    }

    /// Usage summed over every call, with the per-call breakdown (as on chat) when Fusion ran.
    public static func usage(_ total: Usage, calls: [MemberStats]?) -> JSONValue {
        ResponsesUsage.json(total, extra: calls.map { ["fusion": FusionTotals.breakdown($0)] } ?? [:])
    }

    /// `response.created` and `response.in_progress` now, rather than before the first output (a
    /// shell that sends them at once can no longer answer a failure with an HTTP status).
    public mutating func renderStart(into out: inout [UInt8]) {
        writer.appendStart(to: &out)
    }

    /// Appends what `output` shows the client (a non-streamed response only keeps the state).
    public mutating func render(_ output: FusionSessionMachine.Output, sources: SourceList, into out: inout [UInt8]) {
        switch output {
        case .progress(let progress):
            render(progress, into: &out)
        case .finalAnswerStarts:
            inFinalAnswer = true
        case .answer(let event):
            if case .finish = event { annotate(sources, &out) }
            writer.append(event, to: &out)
        case .serverToolCalls:
            // The openrouter:fusion item already holds the result, and a client sends it back
            // as an input item (see ResponsesInput): a parallel turn needs nothing more here.
            break
        }
    }

    /// The terminal event (`response.completed`, or `.incomplete` after a length finish).
    public mutating func renderEnd(usage: JSONValue, sources: SourceList, completedAt: Int, into out: inout [UInt8]) {
        annotate(sources, &out)
        writer.appendEnd(usage: usage, completedAt: completedAt, to: &out)
    }

    /// A failure after the stream began: `response.failed` (an open fusion item ends incomplete).
    public mutating func renderError(_ error: APIError, usage: JSONValue? = nil, into out: inout [UInt8]) {
        writer.appendFailure(error, usage: usage, to: &out)
    }

    /// The whole non-streamed body: the Response object.
    public mutating func response(usage: JSONValue, sources: SourceList, completedAt: Int, model: String? = nil) -> [UInt8] {
        var discarded: [UInt8] = []
        annotate(sources, &discarded)
        var response = writer.response(usage: usage, completedAt: completedAt)
        if let model, case .object(var fields) = response {
            fields["model"] = .string(model)
            response = .object(fields)
        }
        return response.serialized()
    }

    private mutating func render(_ progress: FusionProgress, into out: inout [UInt8]) {
        if case .toolCalled(let arguments, let callID, _) = progress {
            guard fusionItem == nil else { return }
            let item = writer.openItem(prefix: "fu", initial: FusionCallItem.initial(callID: callID, arguments: arguments), to: &out)
            fusionItem = item
            fusionCall = (callID, arguments)
            if sendsEvents { writer.appendItemEvent("response.fusion_call.in_progress", item, to: &out) { $0.string("arguments", arguments) } }
            let waiting = early
            early.removeAll()
            for progress in waiting { render(progress, into: &out) }
            return
        }
        if case .invocationCapped(let arguments, let callID) = progress {
            let item = writer.openItem(prefix: "fu", initial: FusionCallItem.initial(callID: callID, arguments: arguments), to: &out)
            writer.closeItem(item, final: FusionCallItem.capped(arguments: arguments, callID: callID), to: &out)
            return
        }
        guard let item = fusionItem else {
            // Nothing is shown of a run without its item; what comes before it waits for it.
            switch progress {
            case .estimate: early.append(progress)
            case .phase(let report) where report.phase == .outer: early.append(progress)
            default: break
            }
            return
        }
        switch progress {
        case .memberStarted(let index, let model):
            event("panel.added", item, &out) { Self.member(&$0, index, model) }
        case .memberDelta(let index, let model, let text):
            memberTexts[index, default: ""] += text
            event("panel.delta", item, &out) {
                Self.member(&$0, index, model)
                $0.string("delta", text)
            }
        case .memberReasoningDelta(let index, let model, let text):
            event("panel.reasoning.delta", item, &out) {
                Self.member(&$0, index, model)
                $0.string("delta", text)
            }
        case .memberCompleted(let index, let model, let stats):
            let content = memberTexts[index] ?? ""
            event("panel.completed", item, &out) {
                Self.member(&$0, index, model)
                $0.string("content", content)
                $0.json("stats", stats.json)
            }
        case .memberFailed(let index, let model, let reason, let message, let statusCode):
            let openRouterEvents = openRouterEvents
            event("panel.failed", item, &out) {
                Self.member(&$0, index, model)
                if openRouterEvents { $0.string("error", message) } else { $0.string("message", message) }
                $0.string("reason", reason.rawValue)
                if let statusCode { $0.int("status_code", statusCode) }
            }
        case .judgeStarted(let model, let attempt, _):
            event("analysis.in_progress", item, &out) {
                $0.string("analyst_model", model)
                $0.string("judge_model", model)
                $0.int("attempt", attempt)
            }
        case .judgeDelta, .memberText:
            break  // the items are `judgeItem`s; members' exact deltas are `panel.delta`
        case .judgeItem(let model, let attempt, let found):
            event("analysis.item", item, &out) {
                $0.string("analyst_model", model)
                $0.int("attempt", attempt)
                $0.string("field", found.field)
                $0.int("index", found.index)
                $0.json("item", found.value)
            }
        case .judgeItemWithdrawn(let model, let attempt, let field, let index):
            event("analysis.item.withdrawn", item, &out) {
                $0.string("analyst_model", model)
                $0.int("attempt", attempt)
                $0.string("field", field)
                $0.int("index", index)
            }
        case .memberCut(let index, let model, let characters, let cause):
            let openRouterEvents = openRouterEvents
            event("panel.failed", item, &out) {
                Self.member(&$0, index, model)
                let message = "cut for latency (\(cause == .grace ? "the grace period after the quorum ran out" : "the deadline passed"))"
                if openRouterEvents { $0.string("error", message) } else { $0.string("message", message) }
                $0.string("reason", MemberFailureReason.cutForLatency.rawValue)
                $0.string("cause", cause.rawValue)
                $0.int("characters", characters)
            }
        case .estimate(let estimate):
            let fields = Dictionary(FusionProgressEncoder.estimateFields(estimate), uniquingKeysWith: { first, _ in first })
            event("estimate", item, &out) {
                $0.json("cost_min", fields["cost_min"] ?? .null)
                $0.json("cost_max", fields["cost_max"] ?? .null)
                $0.string("currency", "USD")
                $0.json("calls", fields["calls"] ?? .array([]))
                if let unpriced = fields["unpriced_models"] { $0.json("unpriced_models", unpriced) }
            }
        case .phase(let report):
            event("phase", item, &out) {
                $0.string("phase", report.phase.rawValue)
                $0.string("status", report.status.rawValue)
                if let duration = report.durationMilliseconds { $0.json("duration_ms", .double((duration * 1000).rounded() / 1000)) }
                $0.string("summary", report.summary)
            }
        case .judgeCompleted(let model, let analysis):
            event("analysis.completed", item, &out) {
                $0.json("analysis", analysis)
                $0.string("analyst_model", model)
            }
        case .judgeFailed(let model, let reason, let message, let willRetry):
            event("analysis.failed", item, &out) {
                $0.string("analyst_model", model)
                $0.string("reason", reason.rawValue)
                $0.string("message", message)
                $0.bool("will_retry", willRetry)
            }
        case .webToolStarted(let activity):
            event("web.started", item, &out) { Self.webTool(&$0, activity) }
        case .webToolFinished(let activity):
            event("web.completed", item, &out) {
                Self.webTool(&$0, activity)
                // A failed call's message is under `message`: a top-level `error` would abort OpenAI SDK streams.
                $0.string("status", activity.error == nil ? "completed" : "failed")
                if let error = activity.error { $0.string("message", error) }
                $0.int("result_bytes", activity.resultBytes)
                $0.int("sources", activity.sources)
                $0.json("duration_ms", .double((activity.durationMilliseconds * 1000).rounded() / 1000))
            }
        case .completed(let result):
            event("completed", item, &out)
            writer.closeItem(item, final: FusionCallItem.final(result, callID: fusionCall.id, arguments: fusionCall.arguments), to: &out)
            fusionItem = nil
        case .toolCalled, .invocationCapped:
            break  // handled above
        }
    }

    private mutating func event(_ name: String, _ item: ResponsesStreamWriter.ItemReference, _ out: inout [UInt8],
                                _ build: (inout EventFields) -> Void = { _ in }) {
        guard sendsEvents else { return }
        writer.appendItemEvent("response.fusion_call." + name, item, to: &out, build)
    }

    private static func member(_ fields: inout EventFields, _ index: Int, _ model: String) {
        fields.string("model", model)
        fields.int("index", index)
    }

    private static func webTool(_ fields: inout EventFields, _ activity: WebToolActivity) {
        switch activity.participant {
        case .member(let index, let model):
            fields.string("role", "panel")
            member(&fields, index, model)
        case .judge(let model):
            fields.string("role", "analyst")
            fields.string("model", model)
        }
        fields.string("name", activity.name)
        fields.string("arguments", activity.arguments)
    }

    /// The sources as `url_citation` annotations of the final answer's message, once.
    private mutating func annotate(_ sources: SourceList, _ out: inout [UInt8]) {
        guard inFinalAnswer, !annotated, !sources.isEmpty, let text = writer.openMessageText else { return }
        annotated = true
        writer.annotateOpenMessage(ResponsesCitations.annotations(sources, text: text), to: &out)
    }
}

/// Citations in the Responses shape (openai-python `response_output_text.py`
/// `AnnotationURLCitation`: flat, `start_index` and `end_index` required), from the chat shape
/// `SourceList` gives, with the excerpt kept as `content`. A source the text does not cite gets
/// an empty span at the end of the text, so code that slices the text by it gets "".
enum ResponsesCitations {
    static func annotations(_ sources: SourceList, text: String) -> [JSONValue] {
        let end = JSONValue.int(Int64(text.unicodeScalars.count))
        return sources.annotations(for: text).map { chat in
            let citation = chat["url_citation"]
            return .object([
                "type": .string("url_citation"), "url": citation?["url"] ?? .string(""), "title": citation?["title"] ?? .string(""),
                "content": citation?["content"] ?? .string(""),
                "start_index": citation?["start_index"] ?? end, "end_index": citation?["end_index"] ?? end,
            ])
        }
    }
}
