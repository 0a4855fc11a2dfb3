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
        let presented = shared.recordOwner(presentedKey: RequestPolicy.presentedKey(request))
        guard let record = generations.record(id),
              KeyFingerprint.mayRead(owner: record.owner, presented: presented, gatewayHasKeys: !shared.gatewayKeys.isEmpty)
        else {
            let shown = id.count > 64 ? String(id.prefix(64)) + "…" : id
            writer.respond(error: APIError(status: 404, type: "invalid_request_error", code: "generation_not_found",
                                           message: "No generation with id '\(shown)' (records are kept in memory, most recent \(generations.capacity))."))
            return
        }
        writer.respond(status: 200, headers: [("Content-Type", "application/json")], body: record.apiJSON.serialized())
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
