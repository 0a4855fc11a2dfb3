/// Why the server answered a request itself instead of handing it to its handler, in HTTP's terms
/// only. How a rejection looks on the wire is the owner's choice (`HTTPServer.renderRejection`):
/// this target knows nothing of any API's error shape.
public enum HTTPRejection: Error, Equatable, Sendable {
    /// Not a request we accept (bad syntax, ambiguous framing, a missing or repeated Host): 400.
    case malformed(String)
    /// The request line and headers exceed `maxHeaderBytes`: 431.
    case headersTooLarge
    /// More header fields than `maxHeaderCount`: 431.
    case tooManyHeaders(limit: Int)
    /// The body exceeds `maxBodyBytes`: 413.
    case bodyTooLarge
    /// The request did not arrive within `headerTimeoutMilliseconds` (or its body stalled or
    /// came too slowly): 408.
    case timeout
    /// A transfer coding other than chunked (`gzip, chunked`): RFC 9112 §6.1's 501, not a body
    /// read as if the coding were not there.
    case unsupportedTransferCoding(String)
    /// An `Expect` other than `100-continue`: RFC 9110 §10.1.1's 417.
    case expectationFailed(String)
    /// A well-formed request line whose method the server does not know (`BREW / HTTP/1.1`):
    /// RFC 9110 §9.1's 501. A line that is not well-formed is `malformed`.
    case methodNotImplemented(String)
    /// A well-formed request line naming an HTTP version other than 1.x (`HTTP/2.0`): RFC 9110
    /// §15.6.6's 505, as nginx answers it. HTTP/0.9 and garbage are `malformed`.
    case versionNotSupported(major: Int, minor: Int)
    /// A request body with a `Content-Encoding` (gzip…) the server does not decode: 415 (RFC 9110
    /// §8.4.1), not a body read as JSON and refused as "not valid JSON".
    case unsupportedContentEncoding(String)
    /// The request bodies being received across the server's connections hold all the bytes it
    /// allows (`HTTPServer.heldBodies`): 503, for a moment.
    case bodiesAtCapacity

    public var status: Int {
        switch self {
        case .malformed: 400
        case .headersTooLarge, .tooManyHeaders: 431
        case .bodyTooLarge: 413
        case .timeout: 408
        case .unsupportedTransferCoding, .methodNotImplemented: 501
        case .versionNotSupported: 505
        case .expectationFailed: 417
        case .unsupportedContentEncoding: 415
        case .bodiesAtCapacity: 503
        }
    }

    /// A stable identifier for logs, metrics and machine-readable error bodies.
    public var code: String {
        switch self {
        case .malformed: "bad_request"
        case .headersTooLarge: "headers_too_large"
        case .tooManyHeaders: "too_many_headers"
        case .bodyTooLarge: "body_too_large"
        case .timeout: "request_timeout"
        case .unsupportedTransferCoding: "unsupported_transfer_coding"
        case .expectationFailed: "expectation_failed"
        case .methodNotImplemented: "method_not_implemented"
        case .versionNotSupported: "http_version_not_supported"
        case .unsupportedContentEncoding: "unsupported_content_encoding"
        case .bodiesAtCapacity: "server_busy"
        }
    }

    /// One sentence for the client.
    public var message: String {
        switch self {
        case .malformed(let detail): "Malformed HTTP request: \(detail)"
        case .headersTooLarge: "Request header fields too large"
        case .tooManyHeaders(let limit): "Too many request header fields (at most \(limit))"
        case .bodyTooLarge: "Request body too large"
        case .timeout: "The request was not received in time"
        case .unsupportedTransferCoding(let coding): "Transfer-Encoding '\(coding)' is not supported (only chunked)"
        case .expectationFailed(let expectation): "Expect '\(expectation)' cannot be met (only 100-continue)"
        case .methodNotImplemented(let method): "Method '\(method)' is not implemented"
        case .versionNotSupported(let major, let minor): "HTTP/\(major).\(minor) is not supported on this port (HTTP/1.1 is)"
        case .unsupportedContentEncoding(let coding): "Content-Encoding '\(coding)' is not supported: send the body uncompressed"
        case .bodiesAtCapacity: "The server is receiving as many request bytes as it holds at once; retry shortly"
        }
    }
}

/// A whole response the server sends on its owner's behalf outside a handler: a rendered
/// rejection, or a head guard's refusal.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The rendering a server uses until its owner sets one: the message as plain text.
    public static func plainText(_ rejection: HTTPRejection) -> HTTPResponse {
        HTTPResponse(status: rejection.status, headers: [("Content-Type", "text/plain; charset=utf-8")],
                     body: Array((rejection.message + "\n").utf8))
    }
}
