import Application
import Fusion
import FuzzSupport
import Gateway
import GatewayCore
import HTTPServer
import MockUpstream
import Providers
import Surfaces

/// Whole requests through the gateway's request path, as far as it goes without sockets: raw
/// HTTP bytes → http_parser decoding (heads and requests, pipelined) → the route's request
/// validation (chat completions, Anthropic Messages on `/v1/messages`, Responses on
/// `/v1/responses`) → fusion planning → each provider's validation and request encoding (the
/// body must be JSON) → model routing (including the simulated models' options) → the
/// simulator's own option parsing. Must never crash or hang; every refusal is a typed error
/// with a client-error or gateway status; whatever routes to a simulated model parses in the
/// simulator too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestPath(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = HTTPServerLimits()
    limits.maxHeaderBytes = 4096
    limits.maxBodyBytes = 64 * 1024
    limits.maxHeaderCount = 32
    let decoder = HTTPRequestDecoder(limits: limits)
    var pending = bytes
    for _ in 0..<64 {  // bounded: each round consumes bytes or stops
        let step: (consumed: Int, event: HTTPRequestDecoder.Event)
        do {
            step = try decoder.decode(pending)
        } catch {
            // 501: a transfer coding other than chunked (`gzip, chunked`), RFC 9112 §6.1; 415: a
            // Content-Encoding body; 417: an Expect other than 100-continue; 505: a version past 1.x.
            precondition([400, 408, 413, 415, 417, 431, 501, 505].contains(error.status), "rejection status \(error.status)")
            return 0
        }
        precondition(step.consumed <= pending.count, "consumed more than given")
        pending.removeFirst(step.consumed)
        switch step.event {
        case .none:
            return 0
        case .head(let head):
            precondition(head.body.isEmpty, "a head carries a body")
            _ = head.header("authorization")
        case .request(let request):
            handle(request)
        }
    }
    return 0
}

private let config: GatewayConfig = {
    var config = GatewayConfig.embeddedDefault
    config.providers[GatewayConfig.simulatedProviderName] = GatewayConfig.Provider(
        name: GatewayConfig.simulatedProviderName, baseURL: "http://127.0.0.1:9/v1", catalog: SimulatedModelCatalog())
    return config
}()
private let router = ModelRouter(config: config, environment: [:])

private let providers: [any Provider] = [OpenAICompatibleProvider(), AnthropicProvider(), GeminiProvider()]
private let endpoint = ProviderEndpoint(name: "fuzz", baseURL: "http://127.0.0.1:9/v1", apiKey: "k")

/// The route's request in neutral form, its models, and its plan (nil: refused with a 400).
private func parse(_ request: HTTPRequest, depth: Int) -> (ModelRequest, [String], Bool)? {
    do {
        switch request.path {
        case "/v1/messages":
            let messages = try MessagesRequest(body: request.body)
            precondition(JSONScanner.isValid(messages.upstreamBody(model: "upstream/model")), "forwarded body is not JSON")
            return (messages.modelRequest(), [messages.model], false)
        case "/v1/responses":
            let responses = try ResponsesRequest(body: request.body)
            _ = responses.echoedFields
            return (responses.modelRequest(), [responses.model] + responses.fallbackModels, false)
        default:
            let chat = try ChatRequest(body: request.body)
            precondition(JSONScanner.isValid(chat.upstreamBody(model: "upstream/model")), "forwarded body is not JSON")
            return (chat.modelRequest(), [chat.model] + chat.fallbackModels, try chat.includeFusionEvents())
        }
    } catch {
        precondition(error.status == 400, "validation status \(error.status)")
        return nil
    }
}

private func handle(_ request: HTTPRequest) {
    _ = request.queryItem("id")
    let depth = request.header("x-fusion-depth").flatMap { Int($0) } ?? 0
    guard var (neutral, models, events) = parse(request, depth: depth) else { return }
    do {
        switch try FusionPlan.make(request: neutral, settings: config.fusion, depth: depth, structuredEvents: events) {
        case .passthrough:
            break
        case .withoutFusion(_, let request):
            precondition((try? ChatRequest(body: OpenAIRequestEncoder.body(request))) != nil, "a plan without fusion is not a valid request")
            neutral = request
        case .fusion(let fusion):
            models += [fusion.outerModel, fusion.judgeModel] + fusion.parameters.analysisModels
            neutral = fusion.base
        }
    } catch {
        precondition(error.status == 400 || error.status == 404, "planning status \(error.status)")
    }
    events = false
    // Every provider either refuses what its API cannot express (a 400) or encodes JSON.
    for provider in providers {
        do {
            try provider.validate(neutral)
            let http = provider.httpRequest(for: neutral, endpoint: endpoint, extraHeaders: [])
            precondition(JSONScanner.isValid(http.body), "\(provider.wireFormat) encoded a body that is not JSON")
        } catch {
            precondition(error.status == 400, "provider validation status \(error.status)")
        }
    }
    for model in models {
        do {
            let route = try router.route(model)
            if route.simulated {
                precondition((try? MockScenario.parse(model: route.upstreamModel)) != nil, "routed a name the simulator refuses: \(model)")
            }
        } catch {
            precondition([400, 404, 502].contains(error.status), "routing status \(error.status)")
            if error.status == 400 { precondition(error.param == "model", "a bad option names the model") }
        }
    }
}

@_cdecl("FuzzRequestPath_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzRequestPath(data, size) }
}
