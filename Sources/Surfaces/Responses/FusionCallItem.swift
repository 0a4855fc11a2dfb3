import Fusion
import GatewayCore

/// The output item of one fusion run, in OpenRouter's shape (`OutputFusionServerToolItem`:
/// `type: "openrouter:fusion"`, snake_case on the wire): `analysis`, `responses`,
/// `failed_models`, `failure_reason`, `error`, `sources`, plus what we add: `panel` (requested,
/// answered, degraded: a one-member panel never looks like a full one) and `analyst_model`.
///
/// `status` is the item's lifecycle (OpenRouter's `ToolCallStatus`: in_progress, completed,
/// incomplete; it has no "failed"): `incomplete` when nothing usable came of the run (every
/// member failed, or the call was capped), `completed` otherwise, a judge failure included (the
/// answers are there; `failure_reason` names the judge's problem).
///
/// `call_id` and `arguments` are the outer model's call of the fusion tool, as on a
/// `function_call` item: a client sends the item back in the next request's `input`, and the
/// gateway restores it as that call and its result (`ResponsesInput`), so a parallel turn (the
/// caller's function calls and fusion) reaches the model with every call answered.
enum FusionCallItem {
    static let type = "openrouter:fusion"

    /// As `output_item.added` shows it.
    static func initial(callID: String, arguments: String) -> JSONValue {
        .object(["type": .string(type), "status": .string("in_progress"), "call_id": .string(callID), "arguments": .string(FusionCallRecord.objectArguments(arguments))])
    }

    static func final(_ result: FusionResult, callID: String, arguments: String) -> JSONValue {
        var item: [String: JSONValue] = [
            "type": .string(type), "call_id": .string(callID), "arguments": .string(FusionCallRecord.objectArguments(arguments)),
            "status": .string(result.isError ? "incomplete" : "completed"),
            "responses": .array(result.answered.map { .object(["model": .string($0.model), "content": .string($0.content)]) }),
            "panel": result.panelJSON,
        ]
        // What the outer model was told of a partial panel, for a program to show too (review 19 F6).
        if let note = result.partialPanelNote, !result.isError { item["note"] = .string(note) }
        if !result.failed.isEmpty {
            item["failed_models"] = .array(result.failed.map { failed in
                // `error` is OpenRouter's name for the message; nested here, it is safe for every SDK.
                var entry: [String: JSONValue] = ["model": .string(failed.model), "error": .string(failed.message),
                                                  "reason": .string(failed.reason.rawValue)]
                if let status = failed.statusCode { entry["status_code"] = .int(Int64(status)) }
                if let partial = failed.partial {
                    entry["partial_content"] = .string(partial)
                    entry["characters"] = .int(Int64(partial.count))
                }
                return .object(entry)
            })
        }
        if let analysis = result.analysis {
            item["analysis"] = analysis
            if let judge = result.judgeModel { item["analyst_model"] = .string(judge) }
        }
        if result.isError {
            item["failure_reason"] = .string(result.noAnswerReason)
            item["error"] = .string(result.noAnswerMessage)
        } else if result.analysis == nil, let failure = result.judgeFailure {
            item["failure_reason"] = .string(failure.reason.rawValue)
            item["error"] = .string(failure.message)
        }
        if !result.sources.isEmpty {
            item["sources"] = .array(result.sources.map { .object(["url": .string($0.url), "title": .string($0.title)]) })
        }
        return .object(item)
    }

    /// A further call of the fusion tool in the same turn: not run (fusion runs once a request).
    static func capped(arguments: String, callID: String) -> JSONValue {
        .object(["type": .string(type), "status": .string("incomplete"), "failure_reason": .string("fusion_invocation_capped"),
                 "error": .string("fusion runs once per request; this call was not run"), "arguments": .string(FusionCallRecord.objectArguments(arguments)),
                 "call_id": .string(callID)])
    }
}
