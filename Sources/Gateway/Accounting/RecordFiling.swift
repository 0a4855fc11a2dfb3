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
        // The lines are built only when they will be written (their metadata costs microseconds).
        guard log.logLevel <= .info else { return }
        var metadata: Logger.Metadata = [
            "route": "\(record.route.rawValue)", "kind": "\(record.kind.rawValue)", "model": "\(record.model)",
            "requested_model": "\(record.requestedModel)", "stream": .stringConvertible(record.streamed),
            "status": .stringConvertible(record.status), "cancelled": .stringConvertible(record.cancelled),
            "duration_ms": .stringConvertible(record.durationMilliseconds),
        ]
        Self.addUsage(record.usage, to: &metadata)
        metadata["spend_usd"] = .stringConvertible(Double(record.spendMicros) / 1_000_000)
        if let provider = record.provider { metadata["provider"] = "\(provider)" }
        if let router = record.router { metadata["router"] = "\(router)" }
        if let entry = record.entryPoint { metadata["entry_point"] = "\(entry)" }
        if let id = record.upstreamID { metadata["upstream_id"] = "\(id)" }
        if let id = record.upstreamRequestID { metadata["upstream_request_id"] = "\(id)" }
        if let reason = record.finishReason { metadata["finish_reason"] = "\(reason)" }
        if let ttft = record.firstTokenMilliseconds { metadata["ttft_ms"] = .stringConvertible(ttft) }
        if let ttft = record.upstreamFirstTokenMilliseconds { metadata["upstream_ttft_ms"] = .stringConvertible(ttft) }
        if let overhead = record.overheadMilliseconds { metadata["overhead_ms"] = .stringConvertible(overhead) }
        Self.addError(record.error, to: &metadata)
        if record.retries > 0 { metadata["retries"] = .stringConvertible(record.retries) }
        if record.fallbacks > 0 { metadata["fallbacks"] = .stringConvertible(record.fallbacks) }
        if record.webToolCalls > 0 {
            metadata["web_tool_calls"] = .stringConvertible(record.webToolCalls)
            metadata["search_results"] = .stringConvertible(record.numSearchResults)
        }
        if let prompt { metadata["prompt"] = "\(prompt)" }
        log.info("request finished", metadata: metadata)
        for call in record.innerCalls {
            var line: Logger.Metadata = [
                "role": "\(call.role)", "model": "\(call.model)", "provider": "\(call.provider)",
                "attempts": .stringConvertible(call.attempts), "cancelled": .stringConvertible(call.cancelled),
                "start_ms": .stringConvertible(call.startMilliseconds), "duration_ms": .stringConvertible(call.durationMilliseconds),
            ]
            if let status = call.httpStatus { line["status"] = .stringConvertible(status) }
            if let reason = call.finishReason { line["finish_reason"] = "\(reason)" }
            if let ttft = call.firstTokenMilliseconds { line["ttft_ms"] = .stringConvertible(ttft) }
            if let upstream = call.upstreamMilliseconds { line["upstream_ms"] = .stringConvertible(upstream) }
            if call.fallbacks > 0 { line["fallbacks"] = .stringConvertible(call.fallbacks) }
            if let id = call.upstreamID { line["upstream_id"] = "\(id)" }
            if let id = call.upstreamRequestID { line["upstream_request_id"] = "\(id)" }
            if let usage = call.usage { Self.addUsage(usage, to: &line) }
            Self.addError(call.error, to: &line)
            log.info("inner call finished", metadata: line)
        }
    }

    private static func addUsage(_ usage: Usage, to metadata: inout Logger.Metadata) {
        metadata["prompt_tokens"] = .stringConvertible(usage.promptTokens)
        metadata["completion_tokens"] = .stringConvertible(usage.completionTokens)
        metadata["total_tokens"] = .stringConvertible(usage.totalTokens)
        metadata["cost_usd"] = .stringConvertible(usage.cost)
    }

    private static func addError(_ error: RecordError?, to metadata: inout Logger.Metadata) {
        guard let error else { return }
        metadata["error_type"] = "\(error.type)"
        metadata["error_code"] = "\(error.code)"
        metadata["error_origin"] = "\(error.origin.rawValue)"
        metadata["error"] = "\(error.message)"
        if let detail = error.detail { metadata["error_detail"] = "\(detail)" }
    }

    /// The client's last message for the log, when `server.log_prompts` allows it: at most 2000
    /// characters.
    static func loggedPrompt(_ messages: [ModelMessage], enabled: Bool) -> String? {
        guard enabled, let text = messages.last(where: { $0.role == .user })?.text else { return nil }
        let cut = text.count > 2000 ? String(text.prefix(2000)) + "…" : text
        return cut.shortened(toBytes: 8_000)  // in bytes too: a Character may be any number of them
    }
}
