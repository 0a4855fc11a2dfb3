import GatewayCore
import UpstreamClient

extension UpstreamFailure {
    /// A transfer's failure as the error a client sees (the provider named, never its URL).
    static func apiError(for failure: UpstreamFailure, provider: String, midStream: Bool = false) -> APIError {
        switch failure {
        case .couldNotResolve(let detail):
            .upstreamUnavailable("Could not resolve the host of provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .couldNotConnect(let detail), .refused(let detail):
            .upstreamUnavailable("Could not connect to provider '\(provider)': \(detail)", code: "upstream_unreachable")
        case .outOfDescriptors(let detail):
            // The gateway's own failure, not the provider's: `server_error`, as OpenAI types its own.
            APIError(status: 503, type: "server_error", code: "out_of_descriptors",
                     message: "The gateway has no file descriptor left for a connection to provider '\(provider)' "
                         + "(raise its open-file limit, or lower server.max_connections): \(detail)")
        case .timedOut(let detail):
            .upstreamUnavailable("Provider '\(provider)' timed out: \(detail)", code: "upstream_timeout", status: 504)
        case .transfer(let detail):
            .upstreamUnavailable(
                midStream ? "The stream from provider '\(provider)' broke off: \(detail)"
                          : "The connection to provider '\(provider)' failed: \(detail)",
                code: "upstream_connection_lost")
        }
    }
}
