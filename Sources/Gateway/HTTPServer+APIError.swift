import GatewayCore
import HTTPServer

// The HTTP server knows no API's error shape; the gateway answers in its client's API's.

extension HTTPServer {
    /// Renders the server's own rejections (`HTTPRejection`: 400, 408, 413, 415, 417, 431, 501,
    /// 503) as API errors: Anthropic's shape
    /// on `/v1/messages` (its SDKs read only that) or for a client sending `anthropic-version`,
    /// OpenAI's everywhere else. Once the head was read, with the CORS headers `cors` gives it:
    /// without them a browser hides a 413 or 408 from the page as "Failed to fetch", and the
    /// SDKs retry the upload as a connection error (review 52C #2).
    /// `redactor`: a rejection may quote the request (an `Expect` header's value).
    func rendersRejectionsAsAPIErrors(redactor: Redactor, cors: @escaping (HTTPRequest) -> [(String, String)] = { _ in [] }) {
        renderRejection = { rejection, path, head in
            var error = APIError.httpRejection(status: rejection.status, code: rejection.code, message: rejection.message)
            if rejection == .bodiesAtCapacity {
                // The gateway's own state, for a moment: what the SDKs retry.
                error.type = "server_error"
                error.headers = [("Retry-After", "1")]
            }
            guard let head else { return (path.flatMap(ClientAPI.init(path:)) ?? .chatCompletions).response(error, redactor: redactor) }
            var response = ClientAPI.errorShape(for: head).response(error, redactor: redactor)
            response.headers += cors(head)
            return response
        }
    }
}

extension APIError {
    var httpResponse: HTTPResponse { HTTPResponse(status: status, headers: responseHeaders, body: body) }
}
