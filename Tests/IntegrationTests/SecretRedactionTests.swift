import Foundation
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// A provider key must never reach a client or an operator, whatever the upstream echoes back.
/// One key with a recognisable value, every failure path, and a grep of everything visible:
/// responses, streams, records, logs, metrics.
@Suite struct SecretRedactionTests {
    @Test(.timeLimit(.minutes(1)))
    func aProviderKeyEchoedByAnUpstreamIsRedactedEverywhere() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            let keyed = config.providers["keyed"]!
            // TLS spoken to a plain-HTTP port: a handshake failure, with the key configured.
            config.providers["tls"] = .init(name: "tls", baseURL: keyed.baseURL.replacingOccurrences(of: "http://", with: "https://"),
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let secret = TestEnvironment.secretKey
        var seen: [String] = []
        var ids: [String] = []
        func run(_ body: String, path: String = "/v1/chat/completions") throws {
            let client = try env.client()
            try client.send(TestEnvironment.post(path, body: body))
            let response = try client.readResponse()
            seen.append(response.text)
            seen.append(response.headers.map { "\($0.0): \($0.1)" }.joined(separator: "\n"))
            if let id = response.header("x-generation-id") { ids.append(id) }
        }
        /// Request bodies the gateway sent upstream after a Fusion run (the last is the outer
        /// model's final turn, carrying the tool result: text that goes to another provider).
        var sentUpstream: [String] = []
        for status in [401, 403, 500, 503] {
            try run(TestEnvironment.chatBody(model: "keyed/error:status=\(status):echo_auth=1", stream: false))
            try run(TestEnvironment.chatBody(model: "keyed/error:status=\(status):echo_auth=1", stream: true))
        }
        try run(TestEnvironment.chatBody(model: "keyed/error-mid-stream:pace_ms=1:echo_auth=1"))
        try run(TestEnvironment.chatBody(model: "tls/normal"))
        try run(TestEnvironment.chatBody(model: "dead/normal", stream: false))
        try run(TestEnvironment.chatBody(model: "nowhere/normal", stream: false))
        // The gateway's own errors quoting what the client sent: a model, a path, a header
        // (review 112 #1: the response echoed the key whole where the record redacted it).
        try run(TestEnvironment.chatBody(model: "nosuch/\(secret)", stream: false))
        try run(TestEnvironment.chatBody(model: "mock/\(secret)", stream: false))
        try run(#"{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"q"}]}"#, path: "/nope/\(secret)")
        // A key as a JSON key's name comes back in `param` (review 113 #1), and one in a panel
        // member's name in the record's Fusion calls and cost (#2).
        try run(#"{"model":"mock/normal","messages":[{"role":"user","content":"q"}],"\#(secret)":1,"\#(secret)":2}"#)
        try run(#"{"model":"mock/normal","max_tokens":5,"messages":[{"role":"user","content":"q"}],"\#(secret)":1,"\#(secret)":2}"#, path: "/v1/messages")
        try run(#"{"model":"mock/outer:pace_ms=1","stream":false,"messages":[{"role":"user","content":"Q?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/\#(secret)"]}}],"tool_choice":"required"}"#)
        let expecting = try env.client()
        try expecting.send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nExpect: \(secret)\r\nContent-Length: 2\r\n\r\n{}")
        let refused = try expecting.readResponse()
        #expect(refused.status == 417, "\(refused.text)")
        seen.append(refused.text)
        // Fusion: a member, the judge and the outer model echoing the key.
        let panel = #"["keyed/error:status=500:echo_auth=1","keyed/error-mid-stream:pace_ms=1:echo_auth=1","mock/expert-1:pace_ms=1"]"#
        for stream in [true, false] {
            try run(#"{"model":"mock/outer:pace_ms=1","stream":\#(stream),"stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":\#(panel),"model":"keyed/error:status=401:echo_auth=1"}}],"tool_choice":"required"}"#)
            sentUpstream.append(String(decoding: env.mockStats.lastRequestBody, as: UTF8.self))
            try run(#"{"model":"keyed/error-mid-stream:pace_ms=1:echo_auth=1","stream":\#(stream),"messages":[{"role":"user","content":"Q?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}],"tool_choice":"required"}"#)
            // The other client APIs, on the same pipeline: their own error shapes.
            try run(#"{"model":"keyed/error:status=401:echo_auth=1","stream":\#(stream),"input":"Q?"}"#, path: "/v1/responses")
            try run(#"{"model":"keyed/error-mid-stream:pace_ms=1:echo_auth=1","stream":\#(stream),"input":"Q?"}"#, path: "/v1/responses")
            try run(#"{"model":"keyed/error:status=403:echo_auth=1","stream":\#(stream),"max_tokens":16,"messages":[{"role":"user","content":"Q?"}]}"#, path: "/v1/messages")
            try run(#"{"model":"keyed/error-mid-stream:pace_ms=1:echo_auth=1","stream":\#(stream),"max_tokens":16,"messages":[{"role":"user","content":"Q?"}]}"#, path: "/v1/messages")
        }
        // The tool result the outer model got names the failed members and the judge's failure,
        // each message redacted before it went to another provider.
        #expect(sentUpstream.allSatisfy { $0.contains("failed_models") && $0.contains("analysis_failure") && $0.contains("[redacted]") },
                "\(sentUpstream.map { $0.suffix(600) })")
        seen += sentUpstream
        // The upstream really saw (and echoed) the key: the test would pass vacuously otherwise.
        #expect(env.mockStats.lastRequestHeader("authorization") == "Bearer \(secret)")
        #expect(seen.contains { $0.contains("[redacted]") }, "the echoes were redacted, not absent")
        for id in ids { seen.append(try env.get("/api/v1/generation?id=\(id)").text) }
        seen.append(try env.get("/metrics").text)
        seen += log.entries.map(\.text)
        let leaks = seen.filter { $0.contains(secret) || $0.contains(String(secret.dropFirst(3))) }
        #expect(leaks.isEmpty, "leaked in: \(leaks.map { String($0.prefix(300)) })")
    }

    /// A model that writes the key (here: the mock's `echo`, whose answer is the request it got)
    /// is answered with "[redacted]" in its place, on every API, streamed and whole, and in
    /// Fusion's events (review 16 #2: model output reached clients as it came).
    @Test(.timeLimit(.minutes(1)))
    func aKeyInModelOutputNeverReachesTheClient() throws {
        let env = try MessagesRouteTests.environment()
        let secret = TestEnvironment.secretKey
        let question = "Repeat after me: \(secret)"
        for stream in [true, false] {
            let bodies = [
                ("/v1/chat/completions", #"{"model":"keyed/echo","stream":\#(stream),"messages":[{"role":"user","content":"\#(question)"}]}"#),
                ("/v1/responses", #"{"model":"keyed/echo","stream":\#(stream),"input":"\#(question)"}"#),
                ("/v1/messages", #"{"model":"keyed/echo","stream":\#(stream),"max_tokens":64,"messages":[{"role":"user","content":"\#(question)"}]}"#),
                ("/v1/chat/completions", #"{"model":"mock/outer:pace_ms=1","stream":\#(stream),"stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"\#(question)"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["keyed/echo","mock/expert-1:pace_ms=1"]}}],"tool_choice":"required"}"#),
            ]
            for (path, body) in bodies {
                let client = try env.client()
                try client.send(TestEnvironment.post(path, body: body))
                let response = try client.readResponse()
                #expect(response.status == 200, "\(path): \(response.text.prefix(300))")
                #expect(!response.text.contains(secret) && response.text.contains("[redacted]"), "\(path) stream=\(stream): \(response.text.prefix(600))")
                if !stream { #expect(response.json != nil, "\(path): still JSON") }
            }
        }
    }
}
