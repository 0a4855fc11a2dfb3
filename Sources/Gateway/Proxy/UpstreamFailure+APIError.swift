import GatewayCore
import UpstreamClient

extension UpstreamFailure {
    /// A transfer's failure as the error a client sees: the provider named, never its URL,
    /// host or address (curl's whole text is the error's `detail`, for the log: review 71B #7).
    static func apiError(for failure: UpstreamFailure, provider: String, midStream: Bool = false) -> APIError {
        var error: APIError
        switch failure {
        case .couldNotResolve:
            error = .upstreamUnavailable("Could not resolve the host of provider '\(provider)'.", code: "upstream_unreachable")
        case .couldNotConnect(let detail), .refused(let detail):
            error = .upstreamUnavailable("Could not connect to provider '\(provider)': \(detail.client)", code: "upstream_unreachable")
        case .outOfDescriptors:
            // The gateway's own failure, not the provider's: `server_error`, as OpenAI types its own.
            error = APIError(status: 503, type: "server_error", code: "out_of_descriptors",
                             message: "The gateway has no file descriptor left for a connection to provider '\(provider)' "
                                 + "(raise its open-file limit, or lower server.max_connections).")
        case .timedOut(let detail):
            error = .upstreamUnavailable("Provider '\(provider)' timed out: \(detail.client)", code: "upstream_timeout", status: 504)
        case .malformedResponse(let detail):
            error = .upstreamProtocol("Provider '\(provider)' sent a response the gateway does not read: \(detail.client)")
        case .transfer(let detail):
            error = .upstreamUnavailable(
                midStream ? "The stream from provider '\(provider)' broke off: \(detail.client)"
                          : "The connection to provider '\(provider)' failed: \(detail.client)",
                code: "upstream_connection_lost")
        }
        error.detail = failure.detail.full
        return error
    }
}
