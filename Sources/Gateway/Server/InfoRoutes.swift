import Fusion
import GatewayCore
import HTTPServer
import Providers

extension GatewayServer {
    /// `GET /api/v1/generation?id=`: a completion's record in OpenRouter's shape. With gateway
    /// keys, only for the key that made it: any other key gets the very 404 an unknown id gets,
    /// so a key holder cannot learn which ids exist.
    func generation(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        guard let id = request.queryItem("id"), !id.isEmpty else {
            writer.respond(error: .invalidRequest("Missing query parameter 'id'.", param: "id", code: "missing_required_parameter"))
            return
        }
        // A Responses API id (`resp_<hex>`) names the same generation (`gen-<hex>`).
        let key = id.hasPrefix("resp_") ? "gen-" + id.dropFirst("resp_".count) : id
        let presented = shared.recordOwner(presentedKey: policy.presentedKey(request))
        guard let record = generations.record(key),
              KeyFingerprint.mayRead(owner: record.owner, presented: presented, gatewayHasKeys: !shared.gatewayKeys.isEmpty)
        else {
            let shown = id.count > 64 ? String(id.prefix(64)) + "…" : id
            writer.respond(error: APIError(status: 404, type: "invalid_request_error", code: "generation_not_found",
                                           message: "No generation with id '\(shown)' (records are kept in memory, most recent \(generations.capacity))."))
            return
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: record.apiJSON.serialized())
    }

    /// `GET /v1/models`: every model the gateway can name. The Fusion aliases first (`fusion`,
    /// `openrouter/fusion`), each describing the deliberation it runs (its outer model, presets
    /// and default preset); then every model of a provider that lists them (the simulated models,
    /// and a provider's `models:` allow-list), as `provider/model`. A provider without a list
    /// routes any model name; it cannot be enumerated here and is named under `providers`
    /// (`"models": "any"`).
    func modelsList() -> [UInt8] {
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
        var list: [String: JSONValue] = ["object": .string("list"), "data": .array(data)]
        if !unlisted.isEmpty { list["providers"] = .array(unlisted) }
        return JSONValue.object(list).serialized()
    }
}
