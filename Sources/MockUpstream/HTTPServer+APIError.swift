import GatewayCore
import HTTPServer

// The HTTP server knows no API's error shape; the mock answers in OpenAI's, as a provider does.

extension HTTPServer {
    /// Renders the server's own rejections (`HTTPRejection`) as OpenAI errors.
    func rendersRejectionsAsAPIErrors() {
        renderRejection = { rejection, _, _ in
            APIError.httpRejection(status: rejection.status, code: rejection.code, message: rejection.message).httpResponse
        }
    }
}

extension APIError {
    var httpResponse: HTTPResponse { HTTPResponse(status: status, headers: responseHeaders, body: body) }
}

extension HTTPResponseWriter {
    /// Sends an error in OpenAI's shape with its status and headers.
    func respond(error: APIError) { respond(error.httpResponse) }
}
