import EventLoop
import Foundation
import Gateway
import GatewayCore
import Logging
import Testing

/// A record is readable only with the key that made it, when the gateway has keys.
@Suite struct RecordOwnershipTests {
    @Test func onlyTheKeyThatMadeARecordReadsItAndOthersCannotProbeIds() throws {
        let env = try TestEnvironment { $0.server.apiKeys = ["gw-key-one-0123456789", "gw-key-two-0123456789"] }
        func get(_ path: String, key: String?) throws -> TestResponse {
            let client = try env.client()
            try client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n" + (key.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n")
            return try client.readResponse()
        }
        let made = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false),
                                headers: ["Authorization": "Bearer gw-key-one-0123456789"])
        let id = try #require(made.header("x-generation-id"))
        let mine = try get("/api/v1/generation?id=\(id)", key: "gw-key-one-0123456789")
        #expect(mine.status == 200 && mine.json?["data"]?["id"] == .string(id))
        #expect(mine.json?["data"]?["owner"] == nil && !mine.text.contains("gw-key-one"), "neither the key nor its fingerprint is shown")
        // Another valid key: the very answer an unknown id gets.
        let theirs = try get("/api/v1/generation?id=\(id)", key: "gw-key-two-0123456789")
        let unknownID = "gen-" + String(repeating: "0", count: 24)
        let unknown = try get("/api/v1/generation?id=\(unknownID)", key: "gw-key-two-0123456789")
        #expect(theirs.status == 404 && unknown.status == 404)
        #expect(theirs.text.replacingOccurrences(of: id, with: "ID") == unknown.text.replacingOccurrences(of: unknownID, with: "ID"))
        #expect(try get("/api/v1/generation?id=\(id)", key: nil).status == 401)
        // Rejected requests are owned too.
        let refused = try env.chat(TestEnvironment.chatBody(model: "nobody/x"), headers: ["Authorization": "Bearer gw-key-two-0123456789"])
        let refusedID = try #require(refused.header("x-generation-id"))
        #expect(try get("/api/v1/generation?id=\(refusedID)", key: "gw-key-two-0123456789").status == 200)
        #expect(try get("/api/v1/generation?id=\(refusedID)", key: "gw-key-one-0123456789").status == 404)
    }
}

/// `--log-format json`: every line one JSON object, the figures of the record, nothing secret.
@Suite struct JSONLogTests {
    final class Lines: @unchecked Sendable {
        private let lines = Lock([[UInt8]]())
        func append(_ line: [UInt8]) { lines.withLock { $0.append(line) } }
        var all: [[UInt8]] { lines.withLock { $0 } }
    }

    static let prompt = "What is the confidential launch codename?"
    static let gatewayKey = "gw-key-json-logs-0123456789"

    static func run(logPrompts: Bool) throws -> (env: TestEnvironment, lines: [JSONValue], raw: String, ids: [String: String]) {
        let lines = Lines()
        let handler = GatewayLogHandler(label: "gateway-under-test", format: .json) { lines.append($0) }
        let env = try TestEnvironment(logs: handler) {
            $0.server.apiKeys = [gatewayKey]
            $0.server.logPrompts = logPrompts
        }
        let auth = ["Authorization": "Bearer \(gatewayKey)"]
        var ids: [String: String] = [:]
        let ok = try env.chat(TestEnvironment.chatBody(model: "keyed/normal:pace_ms=1", prompt: prompt,
                                                       extra: #","stream_options":{"include_usage":true}"#), headers: auth)
        ids["ok"] = ok.header("x-generation-id")
        // The upstream echoes our provider key in its error: redacted everywhere.
        let echoed = try env.chat(TestEnvironment.chatBody(model: "keyed/error:status=400:echo_auth=1", stream: false, prompt: prompt), headers: auth)
        #expect(echoed.status == 400)
        ids["error"] = echoed.header("x-generation-id")
        ids["rejected"] = try env.chat(TestEnvironment.chatBody(model: "nobody/x", prompt: prompt), headers: auth).header("x-generation-id")
        let fusion = try env.chat(#"{"model":"mock/outer:pace_ms=1","stream":true,"messages":[{"role":"user","content":"Should cities ban cars from their centres? \#(prompt)"}],"tools":[{"type":"fusion"}]}"#,
                                  headers: auth)
        ids["fusion"] = fusion.header("x-generation-id")
        // Records (and their log lines) are filed just after each response's last bytes: wait for
        // the four requests' lines and the deliberation's six inner calls'.
        #expect(env.eventually {
            let all = lines.all.map { String(decoding: $0, as: UTF8.self) }
            return all.count { $0.contains(#""msg":"request finished""#) } == 4 && all.count { $0.contains(#""msg":"inner call finished""#) } == 6
        })
        let raw = lines.all.map { String(decoding: $0, as: UTF8.self) }.joined()
        var parsed: [JSONValue] = []
        for line in lines.all {
            #expect(line.last == UInt8(ascii: "\n") && line.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") }, "one line per entry")
            let json = try JSONValue.parse(Array(line.dropLast()))
            guard case .object = json else { Issue.record("not an object: \(String(decoding: line, as: UTF8.self))"); continue }
            #expect(json["ts"]?.stringValue != nil && json["level"]?.stringValue != nil && json["msg"]?.stringValue != nil)
            parsed.append(json)
        }
        return (env, parsed, raw, ids)
    }

    @Test func everyLineParsesAndStatesTheRecordsFigures() throws {
        let (env, lines, raw, ids) = try Self.run(logPrompts: false)
        #expect(!raw.contains(TestEnvironment.secretKey), "no provider key")
        #expect(!raw.contains(Self.gatewayKey), "no gateway key")
        #expect(!raw.contains("confidential launch codename"), "no prompt text without log_prompts")
        let finished = lines.filter { $0["msg"] == .string("request finished") }
        #expect(finished.count == 4)
        for (name, id) in ids {
            let line = try #require(finished.first { $0["generation_id"] == .string(id) }, "\(name)")
            let record = try #require(try env.get("/api/v1/generation?id=\(id)", key: Self.gatewayKey).json?["data"])
            // A field the line leaves out is one the record states as null.
            func same(_ field: String, _ recordValue: JSONValue?) -> Bool { (line[field] ?? .null) == (recordValue ?? .null) }
            #expect(same("status", record["status"]) && same("model", record["model"]) && same("route", record["route"]), "\(name)")
            #expect(same("kind", record["kind"]) && same("cancelled", record["cancelled"]) && same("finish_reason", record["finish_reason"]))
            #expect(same("duration_ms", record["generation_time"]) && same("ttft_ms", record["latency"]), "\(name)")
            #expect(same("cost_usd", record["total_cost"]) && same("total_tokens", record["usage"]?["total_tokens"]))
            #expect(same("error_type", record["error"]?["type"]) && same("error_code", record["error"]?["code"]))
            #expect(same("provider", record["provider_name"]) && same("overhead_ms", record["overhead_ms"]), "\(name)")
            #expect(same("spend_usd", record["spend_usd"]), "\(name)")
            // The key it came with, by its fingerprint's prefix (an unnamed key), never the key.
            #expect(line["key"]?.stringValue?.hasPrefix("sha256:") == true && line["key"]?.stringValue?.count == 23, "\(name): \(line)")
        }
        let okLine = try #require(finished.first { $0["generation_id"] == .string(ids["ok"] ?? "") })
        #expect(okLine["status"] == .int(200) && okLine["provider"] == .string("keyed") && okLine["error_type"] == nil)
        #expect((okLine["ttft_ms"]?.doubleValue ?? 0) > 0 && (okLine["prompt_tokens"]?.intValue ?? 0) > 0)
        let errorLine = try #require(finished.first { $0["generation_id"] == .string(ids["error"] ?? "") })
        #expect(errorLine["status"] == .int(400) && errorLine["error_type"]?.stringValue != nil)
        #expect(errorLine["error"]?.stringValue?.contains("[redacted]") == true, "the echoed key, redacted")
        // One line per inner call of the deliberation, each with its role and the request's id.
        let inner = lines.filter { $0["msg"] == .string("inner call finished") && $0["generation_id"] == .string(ids["fusion"] ?? "") }
        #expect(inner.compactMap { $0["role"]?.stringValue } == ["outer", "panel", "panel", "panel", "judge", "outer_final"])
        #expect(inner.allSatisfy { $0["status"] == .int(200) && $0["provider"] == .string("mock") && $0["ttft_ms"] != nil && $0["cost_usd"] != nil })
    }

    @Test func logPromptsAddsTheClientsLastMessage() throws {
        let (_, lines, _, ids) = try Self.run(logPrompts: true)
        let okLine = try #require(lines.first { $0["msg"] == .string("request finished") && $0["generation_id"] == .string(ids["ok"] ?? "") })
        #expect(okLine["prompt"] == .string(Self.prompt))
    }
}

extension TestEnvironment {
    func get(_ path: String, key: String) throws -> TestResponse {
        let client = try client()
        try client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(key)\r\n\r\n")
        return try client.readResponse()
    }
}
