import GatewayCore
import Logging
import Providers

extension GatewayShared {
    /// Where every finished completion goes, whatever its route: its figures into the metrics and
    /// its log lines (one for the request, one per inner call with its role); the record itself
    /// goes to the loop's record store (`GatewayServer.file`: in process or Redis). All are made
    /// from the one record, so they cannot disagree. `prompt`: the client's last message, logged
    /// only when `server.log_prompts` is on (the caller passes nil otherwise).
    func file(_ record: GenerationRecord, prompt: String?, log: Logger) {
        count(record)
        logLines(record, prompt: prompt, log: log)
    }

    private func count(_ record: GenerationRecord) {
        metrics.countRequest(route: record.route, kind: record.kind, status: record.status)
        if let error = record.error {
            metrics.countError(code: error.code, origin: error.origin)
            // A proxied completion's error came from its upstream, unless the client was the problem.
            if record.kind == .proxy, error.type != "client_error" {
                metrics.countUpstreamError(provider: record.provider ?? MetricLabels.other, code: error.code)
            }
        }
        for call in record.innerCalls {
            if let error = call.error { metrics.countUpstreamError(provider: call.provider, code: error.code) }
        }
        if let ttft = record.firstTokenMilliseconds { metrics.observeTimeToFirstToken(kind: record.kind, milliseconds: ttft) }
        if !record.cancelled {
            if record.kind == .proxy, let overhead = record.overheadMilliseconds {
                metrics.observeOverhead(.proxy, milliseconds: overhead)
            }
            for phase in record.phases { metrics.observeOverhead(phase.phase, milliseconds: phase.overheadMilliseconds) }
        }
        metrics.addCost(record.usage.cost, kind: record.kind)
        metrics.addSpend(micros: record.spendMicros, kind: record.kind)
    }

    private func logLines(_ record: GenerationRecord, prompt: String?, log: Logger) {
        // The lines are built only when they will be written.
        guard log.logLevel <= .info else { return }
        var fields = LogFields(capacity: 32)
        fields.add("route", record.route.rawValue)
        fields.add("kind", record.kind.rawValue)
        fields.add("model", record.model)
        fields.add("requested_model", record.requestedModel)
        fields.add("stream", record.streamed)
        fields.add("status", record.status)
        fields.add("cancelled", record.cancelled)
        fields.add("duration_ms", record.durationMilliseconds)
        Self.addUsage(record.usage, to: &fields)
        if record.usageEstimated { fields.add("usage_estimated", true) }
        fields.add("spend_usd", Double(record.spendMicros) / 1_000_000)
        if let provider = record.provider { fields.add("provider", provider) }
        if let router = record.router { fields.add("router", router) }
        if let entry = record.entryPoint { fields.add("entry_point", entry) }
        if let id = record.upstreamID { fields.add("upstream_id", id) }
        if let id = record.upstreamRequestID { fields.add("upstream_request_id", id) }
        if let reason = record.finishReason { fields.add("finish_reason", reason) }
        if let ttft = record.firstTokenMilliseconds { fields.add("ttft_ms", ttft) }
        if let ttft = record.upstreamFirstTokenMilliseconds { fields.add("upstream_ttft_ms", ttft) }
        if let overhead = record.overheadMilliseconds { fields.add("overhead_ms", overhead) }
        Self.addError(record.error, to: &fields)
        if record.retries > 0 { fields.add("retries", record.retries) }
        if record.fallbacks > 0 { fields.add("fallbacks", record.fallbacks) }
        if record.webToolCalls > 0 {
            fields.add("web_tool_calls", record.webToolCalls)
            fields.add("search_results", record.numSearchResults)
        }
        if let prompt { fields.add("prompt", prompt) }
        log.info("request finished", fields: consume fields)
        for call in record.innerCalls {
            var line = LogFields(capacity: 24)
            line.add("role", call.role)
            line.add("model", call.model)
            line.add("provider", call.provider)
            line.add("attempts", call.attempts)
            line.add("cancelled", call.cancelled)
            line.add("start_ms", call.startMilliseconds)
            line.add("duration_ms", call.durationMilliseconds)
            if let status = call.httpStatus { line.add("status", status) }
            if let reason = call.finishReason { line.add("finish_reason", reason) }
            if let ttft = call.firstTokenMilliseconds { line.add("ttft_ms", ttft) }
            if let upstream = call.upstreamMilliseconds { line.add("upstream_ms", upstream) }
            if call.fallbacks > 0 { line.add("fallbacks", call.fallbacks) }
            if let id = call.upstreamID { line.add("upstream_id", id) }
            if let id = call.upstreamRequestID { line.add("upstream_request_id", id) }
            if let usage = call.usage { Self.addUsage(usage, to: &line) }
            if call.usageEstimated { line.add("usage_estimated", true) }
            Self.addError(call.error, to: &line)
            log.info("inner call finished", fields: consume line)
        }
    }

    private static func addUsage(_ usage: Usage, to fields: inout LogFields) {
        fields.add("prompt_tokens", usage.promptTokens)
        fields.add("completion_tokens", usage.completionTokens)
        fields.add("total_tokens", usage.totalTokens)
        fields.add("cost_usd", usage.cost)
    }

    private static func addError(_ error: RecordError?, to fields: inout LogFields) {
        guard let error else { return }
        fields.add("error_type", error.type)
        fields.add("error_code", error.code)
        fields.add("error_origin", error.origin.rawValue)
        fields.add("error", error.message)
        if let detail = error.detail { fields.add("error_detail", detail) }
    }

    /// The client's last message for the log, when `server.log_prompts` allows it: at most 2000
    /// characters.
    static func loggedPrompt(_ messages: [ModelMessage], enabled: Bool) -> String? {
        guard enabled, let text = messages.last(where: { $0.role == .user })?.text else { return nil }
        let cut = text.count > 2000 ? String(text.prefix(2000)) + "…" : text
        return cut.shortened(toBytes: 8_000)  // in bytes too: a Character may be any number of them
    }
}
