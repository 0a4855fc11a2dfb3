import Fusion
import GatewayCore
import HTTPServer
import Providers
import Surfaces
import UpstreamClient

extension GatewayServer {
    /// `POST /v1/messages/count_tokens` (`?beta=true` as Claude Code sends it): the input tokens of
    /// a Messages body, counted by the model's Anthropic provider (the client's body, its model
    /// the upstream's). For Fusion, what the outer model reads: its model (the alias's configured
    /// one, or the model named beside a fusion tool) and the fusion tool as the function it sees
    /// (review 55A #1: the gateway's own tool went upstream, which Anthropic refuses). The gateway
    /// has no tokenizer and does not estimate: a model on another kind of provider, or a
    /// provider without the endpoint, is a 404 (`token_count_unavailable`), and the client falls
    /// back on its own estimate as it does without the route. Not a completion: no record, and
    /// not charged to a key's limits (Anthropic does not charge it; clients call it dozens of
    /// times a session).
    func countTokens(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let counted: MessagesRequest
        let route: ModelRoute
        let betas: String?
        var fusionTool: JSONValue?
        var model = ""  // the model that reads the conversation
        do throws(APIError) {
            counted = try MessagesRequest(body: request.body, forTokenCount: true)
            betas = try AnthropicProvider.betaNames(request.headerList("anthropic-beta"))
            model = counted.model
            if case .fusion(let fusion) = try FusionPlan.make(request: counted.modelRequest(), settings: config.fusion, depth: 0) {
                model = fusion.outerModel
                fusionTool = AnthropicProvider.toolJSON(FusionPrompts.toolDefinition(panelSize: fusion.parameters.analysisModels.count))
            }
            route = try router.route(model)
            // The simulated Anthropic provider counts too (its simulator speaks the endpoint).
            guard route.provider.wireFormat == .anthropicMessages else {
                throw Self.noTokenCount(model, "it is served by provider '\(route.endpoint.name)', whose API has no token count")
            }
        } catch {
            refuseCount(error, writer)
            return
        }
        var http = AnthropicProvider.tokenCountRequest(body: counted.upstreamBody(model: route.upstreamModel, fusionTool: fusionTool),
                                                       endpoint: route.endpoint)
        http.headers = AnthropicProvider.addingBetas(betas, to: http.headers)
        TokenCountCall(client: client, http: http, timeoutMilliseconds: config.upstream.connectTimeoutMilliseconds + 30_000) {
            [unowned self, redactor = shared.redactor, model] outcome in
            guard writer.state == .pending else { return }  // answered when a shutdown's grace period ended first
            let provider = route.endpoint.name
            switch outcome {
            case .counted(let tokens):
                writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: MessagesTokenCount.body(inputTokens: tokens))
            case .noEndpoint:
                refuseCount(Self.noTokenCount(model, "provider '\(provider)' has no token count endpoint"), writer)
            case .refused(let status, let body, let headers):
                refuseCount(route.provider.error(status: status, body: body, headers: headers, provider: provider, redactor: redactor), writer)
            case .unreadable:
                refuseCount(.upstreamUnavailable("Provider '\(provider)' answered the token count with something other than {\"input_tokens\": N}.",
                                                 code: "upstream_invalid_response"), writer)
            case .failed(let failure):
                refuseCount(UpstreamFailure.apiError(for: failure, provider: provider), writer)
            }
        }
    }

    /// An error in Anthropic's shape (its `code` is not in that shape: the metric has it).
    private func refuseCount(_ error: APIError, _ writer: HTTPResponseWriter) {
        shared.metrics.countError(code: error.code)
        writer.respond(error: error, api: .messages, redactor: shared.redactor)
    }

    private static func noTokenCount(_ model: String, _ reason: String) -> APIError {
        APIError(status: 404, type: "not_found_error", code: "token_count_unavailable",
                 message: "No token count for model '\(model.shortened(toBytes: 256))': \(reason). Only Anthropic's API counts tokens; the gateway does not estimate them.")
    }
}

/// One token count asked of an Anthropic upstream: its answer collected (at most 64 KiB) and
/// read. Lives as long as its transfer (the transfer's callbacks hold it; curl drops them when
/// it ends or is cancelled).
final class TokenCountCall {
    enum Outcome {
        case counted(Int64)
        /// 404, 405 or 501: an Anthropic-compatible server without token counting.
        case noEndpoint
        case refused(status: Int, body: [UInt8], headers: [(String, String)])
        case unreadable
        case failed(UpstreamFailure)
    }

    static let maxBodyBytes = 64 << 10
    private var transfer: UpstreamTransfer?
    private var status = 0
    private var headers: [(String, String)] = []
    private var body: [UInt8] = []

    @discardableResult
    init(client: UpstreamClient, http: ProviderHTTPRequest, timeoutMilliseconds: Int, completion: @escaping (Outcome) -> Void) {
        var upstream = UpstreamRequest(url: http.url, headers: http.headers, body: http.body)
        upstream.totalTimeoutMilliseconds = timeoutMilliseconds
        let transfer = client.start(upstream)
        self.transfer = transfer
        transfer.onHead = { [self] status, headers in
            self.status = status
            self.headers = headers
        }
        transfer.onData = { [self] bytes in
            guard body.count + bytes.count <= Self.maxBodyBytes else {
                self.transfer?.cancel()
                self.transfer = nil
                completion(.unreadable)
                return true
            }
            body.append(contentsOf: bytes)
            return true
        }
        transfer.onComplete = { [self] failure in
            self.transfer = nil
            if let failure { return completion(.failed(failure)) }
            switch status {
            case 200..<300: completion(MessagesTokenCount.upstreamCount(body).map(Outcome.counted) ?? .unreadable)
            case 404 where !Self.namesModel(body), 405, 501: completion(.noEndpoint)
            default: completion(.refused(status: status, body: body, headers: headers))
            }
        }
    }

    /// Whether a 404 is Anthropic's answer about the model (`not_found_error` naming it), not a
    /// server without the endpoint.
    static func namesModel(_ body: [UInt8]) -> Bool {
        guard let error = (try? JSONValue.parse(body))?["error"], error["type"]?.stringValue == "not_found_error" else { return false }
        return error["message"]?.stringValue?.lowercased().contains("model") ?? false
    }
}
