import Fusion

/// Every metric label value comes from a fixed set, whatever a client, an upstream or a model
/// sends: a label value is a time series, so one taken from outside (an upstream's error code, a
/// model's tool name) would let it grow the gateway's memory and the operator's Prometheus
/// without bound. Values outside a set become `other`. The sets are listed in the README
/// ("Metrics").
enum MetricLabels {
    static let other = "other"

    /// HTTP statuses the gateway sends, and 499 (the client left before any response).
    static let statuses: Set<Int> = [200, 400, 401, 402, 403, 404, 405, 408, 409, 413, 415, 417, 421, 422, 429, 431, 499,
                                     500, 501, 502, 503, 504, 505, 508]

    /// `status`: one of `statuses`, else its class (`4xx`, `5xx`), else `other`.
    static func status(_ status: Int) -> String {
        if statuses.contains(status) { return String(status) }
        switch status {
        case 400..<500: return "4xx"
        case 500..<600: return "5xx"
        default: return other
        }
    }

    /// Error codes the gateway itself gives (every `code: "…"` in the sources, a test checks),
    /// and a few upstream ones worth telling apart.
    static let errorCodes: Set<String> = [
        // the client's request
        "invalid_request", "invalid_json", "invalid_type", "invalid_value", "missing_required_parameter", "unsupported_parameter",
        "duplicate_key", "number_out_of_range", "invalid_model_option", "invalid_tool_arguments", "model_not_found", "not_found",
        "method_not_allowed", "unauthorized", "invalid_api_key", "permission_denied", "misdirected_request", "unsupported_media_type", "loop_detected",
        "body_too_large", "headers_too_large", "too_many_headers", "request_timeout", "request_too_large",
        "generation_not_found", "response_not_found", "invalid_model", "client_too_slow", "bad_request", "unsupported_transfer_coding", "too_many_elements",
        "expectation_failed", "method_not_implemented", "http_version_not_supported", "unsupported_content_encoding", "token_count_unavailable", "server_busy",
        "empty_array",
        // the gateway
        "shutting_down", "server_error", "internal_error", "inner_call_limit", "provider_key_missing", "connection_limit", "connection_evicted", "accept_failed", "out_of_descriptors",
        // a key's limits and the shared store
        "rate_limit_exceeded", "limits_unavailable", "store_unavailable", "record_unreadable",
        // upstreams
        "upstream_error", "upstream_unreachable", "upstream_timeout", "upstream_truncated", "upstream_protocol_error",
        "upstream_connection_lost", "upstream_auth_failed", "upstream_invalid_response", "upstream_too_large", "collected_bytes_limit", "upstream_rejected", "upstream_bad_status", "upstream_unavailable",
        "rate_limited", "overloaded", "context_length_exceeded", "insufficient_quota", "content_flagged",
    ]

    static func errorCode(_ code: String) -> String { errorCodes.contains(code) ? code : other }

    /// Why a panel member produced no answer: the state machine's reasons, and `cancelled` (cut:
    /// still running when the request ended).
    static let memberReasons: Set<String> = Set(MemberFailureReason.allCases.map(\.rawValue) + ["cancelled"])

    static func memberReason(_ reason: String) -> String { memberReasons.contains(reason) ? reason : other }

    /// Web tools by name (a model may call any name; only these run).
    static let webTools: Set<String> = [WebToolNames.search, WebToolNames.fetch]

    static func webTool(_ name: String) -> String { webTools.contains(name) ? name : other }

    /// Request kinds: a relayed completion, a Fusion session, or a request refused before either.
    static let kinds: Set<String> = Set(RecordKind.allCases.map(\.rawValue))

    static let routes: Set<String> = Set(RecordRoute.allCases.map(\.rawValue))

    static let phases: Set<String> = Set(OverheadMeter.Phase.allCases.map(\.rawValue))
}
