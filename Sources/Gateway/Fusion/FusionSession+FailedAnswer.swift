import GatewayCore

/// How a deliberation that failed before its answer began is answered (decisions only, no I/O).
extension FusionSession {
    /// An error body (a JSON object) with `"fusion": <result>` as its last member.
    static func addingFusion(_ fusion: [UInt8], to body: [UInt8]) -> [UInt8] {
        guard body.last == UInt8(ascii: "}") else { return body }
        return body.dropLast() + Array(#","fusion":"#.utf8) + fusion + [UInt8(ascii: "}")]
    }

    /// Whether the official SDKs' own retries (of 408/409/429/5xx, twice by default) could help a
    /// deliberation that failed: not once any of its calls ran (they were paid for, and a retry
    /// runs the whole deliberation again, each call already retried by the gateway), nor for an
    /// error about the request. A 429 before any call ran (the first refused) is the client's to
    /// retry, after the upstream's `Retry-After`, which the error carries.
    static func clientRetryCanHelp(_ error: APIError, callsRan: Int) -> Bool {
        callsRan == 0 && [408, 409, 429].contains(error.status)
    }
}
