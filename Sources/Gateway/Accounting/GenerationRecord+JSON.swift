import Foundation
import GatewayCore
import Providers

/// A record's JSON: what `GET /api/v1/generation` shows (`apiJSON`), and what a store keeps
/// (`storedJSON`: the same fields and the owner's key fingerprint), read back by `init(stored:)`.
/// Field names follow OpenRouter's generation object where it has one. Times are milliseconds to
/// the microsecond; costs US dollars to 10 decimal places (`Usage.roundedCost`).
extension GenerationRecord {
    /// `{"data":{…}}`, without the owner.
    var apiJSON: JSONValue { .object(["data": .object(fields)]) }

    /// The fields and `owner`, for a store to keep (`init(stored:)` reads it back).
    var storedJSON: JSONValue {
        var object = fields
        if let owner { object["owner"] = .string(owner) }
        return .object(object)
    }

    private var fields: [String: JSONValue] {
        var data: [String: JSONValue] = [
            "id": .string(id), "route": .string(route.rawValue), "kind": .string(kind.rawValue),
            "model": .string(model), "requested_model": .string(requestedModel),
            "provider_name": provider.map(JSONValue.string) ?? .null, "router": router.map(JSONValue.string) ?? .null,
            "entry_point": entryPoint.map(JSONValue.string) ?? .null,
            "upstream_id": upstreamID.map(JSONValue.string) ?? .null, "upstream_request_id": upstreamRequestID.map(JSONValue.string) ?? .null,
            "created": .int(Int64(created)), "created_at": .string(Self.iso8601(created)),
            "streamed": .bool(streamed), "status": .int(Int64(status)), "finish_reason": finishReason.map(JSONValue.string) ?? .null,
            "cancelled": .bool(cancelled), "error": error.map(\.json) ?? .null,
            "tokens_prompt": .int(usage.promptTokens), "tokens_completion": .int(usage.completionTokens),
            "native_tokens_reasoning": .int(usage.reasoningTokens), "native_tokens_cached": .int(usage.cachedTokens),
            "total_cost": .double(usage.cost), "spend_usd": .double(Double(spendMicros) / 1_000_000), "usage": usage.json, "usage_estimated": .bool(usageEstimated),
            "usage_unknown": .bool(usageUnknown),
            "latency": Self.number(firstTokenMilliseconds), "generation_time": .double(durationMilliseconds),
            "upstream_latency": Self.number(upstreamFirstTokenMilliseconds), "overhead_ms": Self.number(overheadMilliseconds),
            "upstream_attempts": .int(Int64(upstreamAttempts)), "retries": .int(Int64(retries)), "fallbacks": .int(Int64(fallbacks)),
            "num_search_results": .int(Int64(numSearchResults)), "num_web_tool_calls": .int(Int64(webToolCalls)),
        ]
        data["inner_calls"] = .array(innerCalls.map(\.json))
        if kind == .fusion || !fusionCalls.isEmpty || !phases.isEmpty {
            var fusion: [String: JSONValue] = ["calls": .array(fusionCalls)]
            fusion["phases"] = .array(phases.map {
                .object(["phase": .string($0.phase.rawValue), "duration_ms": .double($0.durationMilliseconds),
                         "overhead_ms": .double($0.overheadMilliseconds)])
            })
            data["fusion"] = .object(fusion)
        }
        if let fusionCost { data["fusion_cost"] = fusionCost }
        return data
    }

    /// A record from `storedJSON`; nil when `json` is not one (a store's corrupt entry is a miss).
    init?(stored json: JSONValue) {
        guard let id = json["id"]?.stringValue, let route = json["route"]?.stringValue.flatMap(RecordRoute.init(rawValue:)),
              let kind = json["kind"]?.stringValue.flatMap(RecordKind.init(rawValue:)),
              let requested = json["requested_model"]?.stringValue, let model = json["model"]?.stringValue,
              let streamed = json["streamed"]?.boolValue, let created = json["created"]?.intValue
        else { return nil }
        self.init(id: id, route: route, kind: kind, requestedModel: requested, streamed: streamed,
                  created: Int(clamping: created), owner: json["owner"]?.stringValue)
        self.model = model
        provider = json["provider_name"]?.stringValue
        router = json["router"]?.stringValue
        entryPoint = json["entry_point"]?.stringValue
        upstreamID = json["upstream_id"]?.stringValue
        upstreamRequestID = json["upstream_request_id"]?.stringValue
        status = Self.int(json["status"])
        finishReason = json["finish_reason"]?.stringValue
        cancelled = json["cancelled"]?.boolValue ?? false
        error = RecordError(json: json["error"])
        usage = Usage(openAI: json["usage"]) ?? Usage()
        usageEstimated = json["usage_estimated"]?.boolValue ?? false
        spendMicros = Self.micros(dollars: json["spend_usd"]?.doubleValue)
        usageUnknown = json["usage_unknown"]?.boolValue ?? false
        firstTokenMilliseconds = json["latency"]?.doubleValue
        durationMilliseconds = json["generation_time"]?.doubleValue ?? 0
        upstreamFirstTokenMilliseconds = json["upstream_latency"]?.doubleValue
        overheadMilliseconds = json["overhead_ms"]?.doubleValue
        upstreamAttempts = Self.int(json["upstream_attempts"])
        retries = Self.int(json["retries"])
        fallbacks = Self.int(json["fallbacks"])
        numSearchResults = Self.int(json["num_search_results"])
        webToolCalls = Self.int(json["num_web_tool_calls"])
        fusionCalls = json["fusion"]?["calls"]?.arrayValue ?? []
        phases = (json["fusion"]?["phases"]?.arrayValue ?? []).compactMap { phase in
            guard let name = phase["phase"]?.stringValue.flatMap(OverheadMeter.Phase.init(rawValue:)) else { return nil }
            return PhaseTiming(phase: name, durationMilliseconds: phase["duration_ms"]?.doubleValue ?? 0,
                               overheadMilliseconds: phase["overhead_ms"]?.doubleValue ?? 0)
        }
        innerCalls = (json["inner_calls"]?.arrayValue ?? []).compactMap(CallRecord.init(json:))
        fusionCost = json["fusion_cost"]
    }

    static func number(_ value: Double?) -> JSONValue { value.map(JSONValue.double) ?? .null }

    /// Dollars read back from a store (untrusted: any number) as millionths, without trapping.
    static func micros(dollars: Double?) -> Int64 {
        guard let dollars, dollars.isFinite, dollars > 0 else { return 0 }
        let micros = (dollars * 1_000_000).rounded()
        return micros >= 9.0e18 ? 9_000_000_000_000_000_000 : Int64(micros)
    }

    static func int(_ value: JSONValue?) -> Int { value?.intValue.map { Int(clamping: $0) } ?? 0 }

    static func iso8601(_ seconds: Int) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}

extension RecordError {
    var json: JSONValue {
        .object(["type": .string(type), "code": .string(code), "message": .string(message), "origin": .string(origin.rawValue)])
    }

    init?(json: JSONValue?) {
        guard let type = json?["type"]?.stringValue, let code = json?["code"]?.stringValue else { return nil }
        self.init(type: type, code: code, message: json?["message"]?.stringValue ?? "",
                  origin: json?["origin"]?.stringValue.flatMap(APIError.Origin.init(rawValue:)) ?? .gateway)
    }
}

extension CallRecord {
    var json: JSONValue {
        var object: [String: JSONValue] = [
            "role": .string(role), "model": .string(model), "provider_name": .string(provider),
            "start_ms": .double(startMilliseconds),
            "status": httpStatus.map { .int(Int64($0)) } ?? .null, "attempts": .int(Int64(attempts)), "fallbacks": .int(Int64(fallbacks)),
            "finish_reason": finishReason.map(JSONValue.string) ?? .null, "cancelled": .bool(cancelled),
            "error": error.map(\.json) ?? .null, "latency": GenerationRecord.number(firstTokenMilliseconds),
            "generation_time": .double(durationMilliseconds),
            "upstream_time": GenerationRecord.number(upstreamMilliseconds),
            "upstream_id": upstreamID.map(JSONValue.string) ?? .null, "upstream_request_id": upstreamRequestID.map(JSONValue.string) ?? .null,
        ]
        // Unknown, not zero: the upstream reported no usage (or the call ended before it could).
        object["usage"] = usage?.json ?? .null
        if usageEstimated { object["usage_estimated"] = .bool(true) }
        return .object(object)
    }

    init?(json: JSONValue) {
        guard let role = json["role"]?.stringValue, let model = json["model"]?.stringValue,
              let provider = json["provider_name"]?.stringValue else { return nil }
        self.init(role: role, model: model, provider: provider)
        startMilliseconds = json["start_ms"]?.doubleValue ?? 0
        httpStatus = json["status"]?.intValue.map { Int(clamping: $0) }
        attempts = GenerationRecord.int(json["attempts"])
        fallbacks = GenerationRecord.int(json["fallbacks"])
        finishReason = json["finish_reason"]?.stringValue
        cancelled = json["cancelled"]?.boolValue ?? false
        error = RecordError(json: json["error"])
        usage = Usage(openAI: json["usage"])
        usageEstimated = json["usage_estimated"]?.boolValue ?? false
        firstTokenMilliseconds = json["latency"]?.doubleValue
        durationMilliseconds = json["generation_time"]?.doubleValue ?? 0
        upstreamMilliseconds = json["upstream_time"]?.doubleValue
        upstreamID = json["upstream_id"]?.stringValue
        upstreamRequestID = json["upstream_request_id"]?.stringValue
    }
}
