import GatewayCore
import HTTPServer
import Surfaces

/// The API a client speaks, by its route: decides the shape of the errors it is sent before its
/// response began (after that, each surface's writer reports errors in-band).
enum ClientAPI {
    case chatCompletions, responses, messages

    init?(path: String) {
        switch path {
        case "/v1/chat/completions", "/chat/completions": self = .chatCompletions
        case "/v1/responses", "/responses": self = .responses
        // Anthropic's SDKs also ask for paths under it (`/v1/messages/count_tokens`, batches):
        // their errors too come in Anthropic's shape.
        case "/v1/messages": self = .messages
        case _ where path.hasPrefix("/v1/messages/"): self = .messages
        default: return nil
        }
    }

    /// The API of a completion route: `path` exactly (a path under `/v1/messages/` speaks its
    /// API, `init(path:)`, but is no completion: review 68D #3 counted `count_tokens` and 404s as
    /// rejected completions).
    init?(completionPath path: String) {
        guard !path.hasPrefix("/v1/messages/"), let api = ClientAPI(path: path) else { return nil }
        self = api
    }

    /// The shape of the errors for `request`: its route's API, else Anthropic's for a client that
    /// sends `anthropic-version` (Anthropic's SDKs listing models), else OpenAI's.
    static func errorShape(for request: HTTPRequest) -> ClientAPI {
        ClientAPI(path: request.path) ?? (request.header("anthropic-version") != nil ? .messages : .chatCompletions)
    }

    /// A parameter named in the neutral (chat's) terms, as this API's clients name it. Messages:
    /// Anthropic's syntax, `tools.1`, not chat's `tools[1]` (messages' paths are the client's
    /// already, `MessageOrigin`), structured output is `output_config.format`; Responses: its
    /// `text.format` and `max_output_tokens`.
    func clientParam(_ param: String) -> String {
        switch self {
        case .chatCompletions:
            return param
        case .responses:
            switch param {
            case "response_format": return "text.format"
            case "max_tokens", "max_completion_tokens": return "max_output_tokens"
            default: return param
            }
        case .messages:
            if param == "response_format" { return "output_config.format" }
            var path = ""
            for character in param {
                switch character {
                case "[": path.append(".")
                case "]": continue
                default: path.append(character)
                }
            }
            return path
        }
    }

    /// `error` as this API's error response: OpenAI's shape, or Anthropic's on `/v1/messages`.
    /// Its message and param redacted: the gateway's own errors quote what the client sent (a
    /// model's name, a path, a header, a JSON key), and a key there went back whole where the
    /// record and the log redacted it (reviews 112 #1, 113 #1).
    func response(_ error: APIError, redactor: Redactor) -> HTTPResponse {
        var error = error
        error.message = redactor(error.message)
        error.param = error.param.map { redactor($0) }
        return switch self {
        case .chatCompletions, .responses:
            error.httpResponse
        case .messages:
            HTTPResponse(status: status(of: error), headers: MessagesErrors.responseHeaders(error), body: MessagesErrors.body(error))
        }
    }

    /// The status `error` is sent with: an upstream's "overloaded" is Anthropic's 529 to its own
    /// clients (their SDKs raise `OverloadedError` for it alone); OpenAI's clients know it as a
    /// 503. The record states it too (review 119 #5: 503 for a 529 sent).
    func status(of error: APIError) -> Int {
        self == .messages && error.code == "overloaded" && error.status == 503 ? 529 : error.status
    }
}

extension HTTPResponseWriter {
    /// Sends `error` in `api`'s shape with its status and headers, redacted (`ClientAPI.response`).
    func respond(error: APIError, api: ClientAPI, redactor: Redactor) {
        respond(api.response(error, redactor: redactor))
    }
}

/// The headers naming a completion by its generation id: the gateway's own, and the request id
/// headers the official SDKs read (OpenAI's `x-request-id` becomes `_request_id`, Anthropic's
/// `request-id` an error's `request_id`), so users' logs and bug reports carry the id the
/// generation record is filed under.
enum GenerationHeaders {
    static func naming(_ id: String) -> [(String, String)] {
        [("X-Generation-Id", id), ("x-request-id", id), ("request-id", id)]
    }
}

/// A response in progress that a stopping gateway can end once its grace period is over: with
/// an error in the client's API (in-band when its stream began), recorded as the reason.
protocol CutOnShutdown: AnyObject {
    func cutOnShutdown()
}

extension CompletionProxy: CutOnShutdown {}
extension FusionSession: CutOnShutdown {}
