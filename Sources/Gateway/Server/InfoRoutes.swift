import EventLoop
import Foundation
import Fusion
import GatewayCore
import HTTPServer
import Providers

extension GatewayServer {
    /// `GET /api/v1/generation?id=`: a completion's record in OpenRouter's shape, from this
    /// replica or (with Redis) any other. With gateway keys, only the key that made a record
    /// reads it (others get the same 404 as for an unknown id, so ids cannot be probed).
    func generation(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        guard let id = request.queryItem("id"), !id.isEmpty else {
            respondCounted(.invalidRequest("Missing or malformed query parameter 'id' (a generation id, percent-encoded UTF-8).", param: "id",
                                           code: "missing_required_parameter"), writer)
            return
        }
        // The presented key's fingerprint is made before the lookup: someone else's record and a
        // missing one take the same work.
        let presented = shared.recordOwner(presentedKey: policy.presentedKey(request))
        let hasKeys = !shared.gatewayKeys.isEmpty
        let sharedStore = store.redis != nil
        // A hostile id is echoed in the 404: cut short.
        let shown = id.shortened(toBytes: 64)
        // A Responses API id (`resp_<hex>`) names the same generation (`gen-<hex>`).
        let key = id.hasPrefix("resp_") ? "gen-" + id.dropFirst("resp_".count) : id
        // Another replica files its record in Redis just after its response's last bytes: a
        // client reading the cost at once, through a load balancer, lands here first about half
        // the time (review 62A #2). An id of the gateway's own form is looked up again for
        // ~100 ms before it is called unknown; a hit costs nothing more.
        let retries = sharedStore && GenerationStore.isGatewayID(key) ? Self.sharedLookupRetries : 0
        // A record the presented key may not read is looked for as one that is not there, retries
        // included: answered at once, the time told another key's ids from unknown ones (review
        // 71D #2: 0.5 ms against 107).
        let mayRead = { (owner: String?) in KeyFingerprint.mayRead(owner: owner, presented: presented, gatewayHasKeys: hasKeys) }
        lookUp(key, retriesLeft: retries, mayRead: mayRead) { [weak self, weak writer] lookup in
            // Answered meanwhile when a shutdown's grace period ended first.
            guard let self, let writer, writer.state == .pending else { return }
            switch lookup {
            case .found(let stored) where mayRead(stored.owner):
                writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: stored.json)
            case .found, .notFound:
                let kept = sharedStore ? "records are shared through Redis for store.redis.record_ttl_s" : "records are kept in memory, the most recent 10000"
                respondCounted(APIError(status: 404, type: "invalid_request_error", code: "generation_not_found",
                                        message: "No generation with id '\(shown)' (\(kept))."), writer)
            case .unavailable:
                respondCounted(APIError(status: 503, type: "server_error", code: "store_unavailable",
                                        message: "The record store is unreachable right now; the record may exist. Please retry shortly.",
                                        headers: [("Retry-After", "1")]), writer)
            case .unreadable:
                respondCounted(APIError(status: 500, type: "server_error", code: "record_unreadable",
                                        message: "The record store holds something under this id that is not a generation record this gateway wrote; asking again will not help (the operator's log names it)."), writer)
            }
        }
    }

    static let sharedLookupRetries = 3
    static let sharedLookupRetryMilliseconds: UInt64 = 35


    /// The record `id`, asked again `retriesLeft` times a few milliseconds apart while it is not
    /// found, or found but not its to read (`mayRead`: a record on its way from another replica).
    private func lookUp(_ id: String, retriesLeft: Int, mayRead: @escaping (_ owner: String?) -> Bool,
                        completion: @escaping (GenerationLookup) -> Void) {
        store.records.get(id: id, mayRead: mayRead) { [weak self] lookup in
            let missing = switch lookup {
            case .notFound: true
            case .found(let stored): !mayRead(stored.owner)
            case .unavailable, .unreadable: false
            }
            guard let self, missing, retriesLeft > 0, !shared.isDraining else { return completion(lookup) }
            var timer: LoopTimer?
            timer = LoopTimer(loop: loop) { [weak self] in
                timer?.close()
                timer = nil
                guard let self else { return completion(lookup) }
                lookUp(id, retriesLeft: retriesLeft - 1, mayRead: mayRead, completion: completion)
            }
            timer?.start(afterMilliseconds: Self.sharedLookupRetryMilliseconds)
        }
    }

    /// An error answered by these routes, counted as every error returned to a client is.
    private func respondCounted(_ error: APIError, api: ClientAPI = .chatCompletions, _ writer: HTTPResponseWriter) {
        shared.metrics.countError(code: error.code)
        writer.respond(error: error, api: api, redactor: shared.redactor)
    }

    /// `GET /v1/models`: every model the gateway can name. The Fusion aliases first (`fusion`,
    /// `openrouter/fusion`), each describing the deliberation it runs (its outer model, presets
    /// and default preset); then every model of a provider that lists them (the simulated models,
    /// and a provider's `models:` allow-list), as `provider/model`. A provider without a list
    /// routes any model name; it cannot be enumerated here and is named under `providers`
    /// (`"models": "any"`).
    ///
    /// Asked by Anthropic's SDKs (`anthropic-version`), the same models in Anthropic's shape.
    /// In Anthropic's shape the list is paged as Anthropic pages it (`limit`, `after_id`,
    /// `before_id`; `ModelsPage`), which the SDKs' iterators follow.
    func modelsList(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        let (data, unlisted) = modelEntries()
        let body: [UInt8]
        if ModelsShape(request) == .anthropic {
            let ids = data.compactMap { $0["id"]?.stringValue }
            for name in ["limit", "after_id", "before_id"] where request.hasQueryItem(name) && request.queryItem(name) == nil {
                respondCounted(.invalidRequest("'\(name)' is not valid percent-encoded UTF-8.", param: name), api: .messages, writer)
                return
            }
            switch ModelsPage.make(ids, limit: request.queryItem("limit"), afterID: request.queryItem("after_id"),
                                   beforeID: request.queryItem("before_id")) {
            case .success(let page):
                body = JSONValue.object([
                    "data": .array(page.ids.map(ModelsShape.anthropicEntry)), "has_more": .bool(page.hasMore),
                    "first_id": page.ids.first.map { .string($0) } ?? .null, "last_id": page.ids.last.map { .string($0) } ?? .null,
                ]).serialized()
            case .failure(let error):
                respondCounted(error, api: .messages, writer)
                return
            }
        } else {
            var list: [String: JSONValue] = ["object": .string("list"), "data": .array(data)]
            if !unlisted.isEmpty { list["providers"] = .array(unlisted) }
            body = JSONValue.object(list).serialized()
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }

    /// `GET /v1/models/{id}` (the SDKs' `models.retrieve`): its entry in the list, or, for a
    /// provider that routes any name, a plain entry for a name it routes; else a 404 naming it.
    /// The id may hold slashes, written as they are (curl) or percent-encoded (`sim%2Fnormal`:
    /// the SDKs encode every `/` in a path parameter).
    func model(encoded: Substring, _ writer: HTTPResponseWriter, shape: ModelsShape) {
        let api: ClientAPI = shape == .anthropic ? .messages : .chatCompletions
        guard let id = encoded.removingPercentEncoding, !id.isEmpty else {
            respondCounted(.invalidRequest("The model id in the path is not valid percent-encoded UTF-8.", param: "model",
                                           code: "invalid_model"), api: api, writer)
            return
        }
        let found: JSONValue
        if let entry = modelEntries().listed.first(where: { $0["id"]?.stringValue == id }) {
            found = entry
        } else {
            do {
                let route = try router.route(id)
                found = .object(["id": .string(id), "object": .string("model"), "created": .int(0), "owned_by": .string(route.endpoint.name)])
            } catch {
                respondCounted(error, api: api, writer)
                return
            }
        }
        let body = shape == .anthropic ? ModelsShape.anthropicEntry(id) : found
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: body.serialized())
    }

    /// The listed models, and the providers that route any name (not enumerable).
    private func modelEntries() -> (listed: [JSONValue], unlisted: [JSONValue]) {
        var data: [JSONValue] = []
        if let fusion = config.fusion {
            var presets: [String: JSONValue] = [:]
            var judges: [String: JSONValue] = [:]
            for (name, preset) in fusion.presets {
                presets[name] = .array(preset.analysisModels.map { .string($0) })
                if let judge = preset.judge { judges[name] = .string(judge) }
            }
            let description: [String: JSONValue] = [
                "outer_model": .string(fusion.outerModel), "presets": .object(presets), "judges": .object(judges),
                "default_preset": .string(fusion.defaultPreset),
            ]
            for alias in FusionPlan.aliases.sorted() {
                data.append(.object([
                    "id": .string(alias), "object": .string("model"), "created": .int(0), "owned_by": .string("fusion-gateway"),
                    "description": .string("Fusion: a panel of models answers in parallel, a judge compares their answers, \(fusion.outerModel) writes the final answer."),
                    "fusion": .object(description),
                ]))
            }
        }
        var unlisted: [JSONValue] = []
        for name in router.providers.keys.sorted() {
            let provider = router.providers[name]!
            guard let models = provider.catalog?.models ?? provider.models else {
                unlisted.append(.object(["name": .string(name), "kind": .string(provider.kind.rawValue), "models": .string("any")]))
                continue
            }
            for model in models {
                var entry: [String: JSONValue] = [
                    "id": .string("\(name)/\(model)"), "object": .string("model"), "created": .int(0),
                    "owned_by": .string(provider.simulated ? "fusion-gateway (simulated)" : name),
                ]
                if provider.simulated {
                    entry["simulated"] = .bool(true)
                    entry["description"] = .string("Simulated model served by the built-in mock upstream over the \(provider.kind.rawValue) API (scenario '\(model)'); no API key needed.")
                }
                data.append(.object(entry))
            }
        }
        return (data, unlisted)
    }
}

/// Which API's shape a models request wants: Anthropic's SDKs send `anthropic-version` and read
/// `{type, id, display_name, created_at}` entries in a `{data, has_more, first_id, last_id}`
/// page; everyone else gets OpenAI's `{object: "list", data}`.
enum ModelsShape: Equatable {
    case openAI, anthropic

    init(_ request: HTTPRequest) {
        self = request.header("anthropic-version") == nil ? .openAI : .anthropic
    }

    static func anthropicEntry(_ id: String) -> JSONValue {
        .object(["type": .string("model"), "id": .string(id), "display_name": .string(id), "created_at": .string("1970-01-01T00:00:00Z")])
    }
}

/// One page of Anthropic's model list (`GET /v1/models?limit&after_id&before_id`): `limit`
/// entries (1–1000, 20 when absent, as Anthropic's API), those right after `after_id` or right
/// before `before_id`, and whether more lie beyond the page in that direction.
struct ModelsPage: Equatable {
    var ids: [String]
    var hasMore: Bool

    static let defaultLimit = 20

    static func make(_ all: [String], limit: String?, afterID: String?, beforeID: String?) -> Result<ModelsPage, APIError> {
        var count = defaultLimit
        if let limit {
            guard let value = Int(limit), (1...1000).contains(value) else {
                return .failure(.invalidRequest("'limit' must be an integer from 1 to 1000.", param: "limit"))
            }
            count = value
        }
        if afterID != nil && beforeID != nil {
            return .failure(.invalidRequest("Send 'after_id' or 'before_id', not both.", param: "before_id"))
        }
        func position(_ id: String, _ name: String) -> Result<Int, APIError> {
            guard let found = all.firstIndex(of: id) else {
                return .failure(.invalidRequest("'\(name)' names no model in the list.", param: name))
            }
            return .success(found)
        }
        if let beforeID {
            return position(beforeID, "before_id").map { end in
                ModelsPage(ids: Array(all[max(0, end - count)..<end]), hasMore: end - count > 0)
            }
        }
        let start: Result<Int, APIError> = afterID.map { position($0, "after_id").map { $0 + 1 } } ?? .success(0)
        return start.map { start in
            ModelsPage(ids: Array(all[start..<min(all.count, start + count)]), hasMore: start + count < all.count)
        }
    }
}
