import GatewayCore
import HTTPServer
import Providers

extension GatewayServer {
    /// `GET /api/v1/generation?id=`: a completion's record in OpenRouter's shape, from this
    /// replica or (with Redis) any other. With gateway keys, only the key that made a record
    /// reads it (others get the same 404 as for an unknown id, so ids cannot be probed).
    func generation(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        guard let id = request.queryItem("id"), !id.isEmpty else {
            writer.respond(error: .invalidRequest("Missing query parameter 'id'.", param: "id", code: "missing_required_parameter"))
            return
        }
        let keyRing = shared.keyRing
        let requester = keyRing.identify(request)?.fingerprint
        let shared = store.redis != nil
        // A hostile id is echoed in the 404: cut short.
        let shown = id.count > 64 ? String(id.prefix(64)) + "…" : id
        store.records.get(id: id) { [weak writer] lookup in
            guard let writer else { return }
            switch lookup {
            case .found(let stored) where keyRing.mayRead(owner: stored.owner, fingerprint: requester):
                writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: stored.json)
            case .found, .notFound:
                let kept = shared ? "records are shared through Redis for store.redis.record_ttl_s" : "records are kept in memory, the most recent 10000"
                writer.respond(error: APIError(status: 404, type: "invalid_request_error", code: "generation_not_found",
                                               message: "No generation with id '\(shown)' (\(kept))."))
            case .unavailable:
                writer.respond(error: APIError(status: 503, type: "server_error", code: "store_unavailable",
                                               message: "The record store is unreachable right now; the record may exist. Please retry shortly.",
                                               headers: [("Retry-After", "1")]))
            }
        }
    }

    /// `GET /v1/models`: every model of a provider that lists them.
    func modelsList() -> [UInt8] {
        var out = Array(#"{"object":"list","data":["#.utf8)
        var first = true
        for name in router.providers.keys.sorted() {
            let provider = router.providers[name]!
            for model in provider.catalog?.models ?? provider.models ?? [] {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(contentsOf: #"{"id":"#.utf8)
                JSONWriting.appendString("\(name)/\(model)", to: &out)
                out.append(contentsOf: #","object":"model","created":0,"owned_by":"#.utf8)
                JSONWriting.appendString(provider.simulated ? "fusion-gateway (simulated)" : name, to: &out)
                if provider.simulated {
                    out.append(contentsOf: #","simulated":true,"description":"#.utf8)
                    JSONWriting.appendString("Simulated model served by the built-in mock upstream (scenario '\(model)'); no API key needed.", to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}
