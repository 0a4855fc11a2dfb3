import GatewayCore
import HTTPServer

// The HTTP server knows no API's error shape; the gateway answers in OpenAI's.

extension HTTPServer {
    /// Renders the server's own rejections (400, 408, 413, 431) as API errors: Anthropic's shape
    /// on `/v1/messages` (its SDKs read only that), OpenAI's everywhere else.
    func rendersRejectionsAsAPIErrors() {
        renderRejection = { rejection, path in
            let error = APIError.httpRejection(status: rejection.status, code: rejection.code, message: rejection.message)
            return (path.flatMap(ClientAPI.init(path:)) ?? .chatCompletions).response(error)
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
