import GatewayCore
import UpstreamClient

extension ChatCompletionProxy {
    /// A transfer's failure as the error a client sees, naming the provider (never its address
    /// or key). Used by the proxy and by Fusion's inner calls.
    static func apiError(for failure: UpstreamFailure, provider: String, midStream: Bool = false) -> APIError {
        switch failure {
        case .couldNotResolve(let detail):
            .upstreamUnavailable("Could not resolve the host of provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .couldNotConnect(let detail), .refused(let detail):
            .upstreamUnavailable("Could not connect to provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .timedOut(let detail):
            .upstreamUnavailable("Provider '\(provider)' timed out: \(detail)", code: "upstream_timeout", status: 504)
        case .transfer(let detail):
            .upstreamUnavailable(
                midStream ? "The stream from provider '\(provider)' broke off: \(detail)"
                          : "The connection to provider '\(provider)' failed: \(detail)",
                code: "upstream_connection_lost")
        }
    }

    /// Whether the official SDKs' own retries (of 408/409/429/5xx) could help: not once the
    /// gateway has retried and fallen back itself (they would stack: 3 × 3 attempts), nor for
    /// errors about the request. A 429 the gateway did not wait for (its `Retry-After` was too
    /// long) is the client's to retry when it likes.
    static func clientRetryCanHelp(_ error: APIError, attempts: Int, maxRetries: Int) -> Bool {
        guard [408, 409, 429, 500, 502, 503, 504].contains(error.status) else { return false }
        if error.status == 429 && attempts == 1 && error.headers.contains(where: { $0.0.lowercased().hasPrefix("retry-after") }) {
            return true
        }
        return attempts <= 1 && maxRetries == 0
    }
}
