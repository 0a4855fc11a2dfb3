import RedisServerProcess
import Foundation
import GatewayCore
import Testing

/// The deployment docs/deploy.md describes, for real: two `fusion-gateway` processes sharing one
/// redis-server, nginx in front. Records cross replicas, a per-key limit holds for both together,
/// a Redis outage is survived per `on_store_error`, and a replica that gets SIGTERM drains: its
/// `/health` turns 503, its stream in flight finishes, nginx sends everything else to the other.
@Suite(.enabled(if: NginxProcess.available, "FUSION_SKIP_REDIS=1"),
       .timeLimit(.minutes(2)), .serialized)
struct ReplicaDeploymentTests {
    static let key = "sk-deploy-team-a-0123456789"
    /// A key without limits: the one that may read `/metrics` (deploy.md, "Prometheus").
    static let operatorKey = "sk-deploy-operator-0123456789"

    final class Deployment {
        let directory: URL
        let redis: RedisServerProcess
        let replicas: [GatewayProcess]
        let nginx: NginxProcess

        init(requestsPerMinute: Int) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusion-deploy-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            redis = try RedisServerProcess()
            let config = directory.appendingPathComponent("gateway.yaml")
            try """
                simulated_models: true
                server:
                  drain_delay_ms: 1500
                  shutdown_grace_ms: 15000
                store:
                  redis:
                    url: redis://127.0.0.1:\(redis.port)/0
                    key_prefix: "deploy:"
                    timeout_ms: 250
                    reconnect_max_ms: 200
                  on_store_error: allow
                keys:
                  team-a:
                    key_env: TEAM_A_KEY
                    limits:
                      requests_per_minute: \(requestsPerMinute)
                  operator:
                    key_env: OPERATOR_KEY
                """.write(to: config, atomically: true, encoding: .utf8)
            let environment = ["TEAM_A_KEY": ReplicaDeploymentTests.key, "OPERATOR_KEY": ReplicaDeploymentTests.operatorKey]
            let first = try GatewayProcess(config: config, environment: environment, directory: directory, name: "replica-a")
            let second = try GatewayProcess(config: config, environment: environment, directory: directory, name: "replica-b")
            replicas = [first, second]
            nginx = try NginxProcess(upstreams: replicas.map(\.port), directory: directory)
        }

        deinit {
            nginx.stop()
            for replica in replicas { replica.stop() }
            redis.stop()
            try? FileManager.default.removeItem(at: directory)
        }

        func request(_ port: Int, _ text: String) throws -> TestResponse {
            let client = try TestClient(port: port, timeoutSeconds: 10)
            try client.send(text)
            return try client.readResponse()
        }

        func chat(_ port: Int, model: String = "sim/normal", stream: Bool = false) throws -> TestResponse {
            try request(port, TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: model, stream: stream),
                                                   headers: ["Authorization": "Bearer \(ReplicaDeploymentTests.key)"]))
        }

        func get(_ port: Int, _ path: String, key: String = ReplicaDeploymentTests.key) throws -> TestResponse {
            try request(port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\n\r\n")
        }

        /// Completions this replica answered (its own Prometheus counter).
        func answered(_ replica: GatewayProcess) throws -> Int {
            let text = try get(replica.port, "/metrics", key: ReplicaDeploymentTests.operatorKey).text
            return text.split(separator: "\n").filter { $0.hasPrefix("fusion_gateway_requests_total{") }
                .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0) { $0 + Int($1) }
        }
    }

    @Test func recordsCrossReplicasAndALimitHoldsForBothTogether() throws {
        let deployment = try Deployment(requestsPerMinute: 6)
        let (a, b) = (deployment.replicas[0], deployment.replicas[1])
        // Made on A, read on B (and the other way round).
        let onA = try deployment.chat(a.port, stream: true)
        #expect(onA.status == 200)
        let idA = try #require(onA.header("x-generation-id"))
        let onB = try deployment.chat(b.port)
        let idB = try #require(onB.header("x-generation-id"))
        #expect(try eventually { try deployment.get(b.port, "/api/v1/generation?id=\(idA)").status == 200 })
        #expect(try eventually { try deployment.get(a.port, "/api/v1/generation?id=\(idB)").status == 200 })
        // Through nginx (round robin): 4 more make 6, whichever replica answers; the 7th is refused.
        for index in 0..<4 {
            let response = try deployment.chat(deployment.nginx.port)
            #expect(response.status == 200, "request \(index + 3): \(response.text)")
            #expect(response.header("x-ratelimit-remaining-requests") == String(3 - index))
            let id = try #require(response.header("x-generation-id"))
            // Written after the response (off the hot path): readable everywhere moments later.
            #expect(try eventually { try deployment.get(deployment.nginx.port, "/api/v1/generation?id=\(id)").status == 200 }, "any replica finds \(id)")
        }
        for _ in 0..<2 {
            let refused = try deployment.chat(deployment.nginx.port)
            #expect(refused.status == 429)
            #expect(refused.json?["error"]?["code"]?.stringValue == "rate_limit_exceeded")
            #expect(refused.header("retry-after") != nil)
        }
        #expect(try deployment.answered(a) >= 2 && deployment.answered(b) >= 2, "nginx spread the load over both replicas")
    }

    @Test func aRedisOutageIsSurvivedByBothReplicasAndTheyRecover() throws {
        let deployment = try Deployment(requestsPerMinute: 1_000)
        #expect(try deployment.chat(deployment.nginx.port).status == 200)
        deployment.redis.killNow()
        var ids: [String] = []
        for _ in 0..<6 {
            let response = try deployment.chat(deployment.nginx.port)
            #expect(response.status == 200, "on_store_error: allow: \(response.text)")
            if let id = response.header("x-generation-id") { ids.append(id) }
        }
        try deployment.redis.restart()
        // Recovered: limits are decided in Redis again, and what was made during the outage
        // reaches it and is readable from both replicas.
        #expect(try eventually { try deployment.chat(deployment.nginx.port).header("x-ratelimit-limit-requests") == "1000" })
        for id in ids {
            for replica in deployment.replicas {
                #expect(try eventually { try deployment.get(replica.port, "/api/v1/generation?id=\(id)").status == 200 }, "\(id)")
            }
        }
    }

    @Test func aReplicaGivenSIGTERMDrainsWhileTheOtherServes() throws {
        let deployment = try Deployment(requestsPerMinute: 1_000)
        let (a, b) = (deployment.replicas[0], deployment.replicas[1])
        // A 3-second stream in flight on A.
        let streaming = try TestClient(port: a.port, timeoutSeconds: 20)
        try streaming.send(TestEnvironment.post("/v1/chat/completions",
                                                body: TestEnvironment.chatBody(model: "sim/paced:deltas=60:pace_ms=50", stream: true),
                                                headers: ["Authorization": "Bearer \(Self.key)"]))
        let finished = LockedValue<TestResponse?>(nil)
        let handed = HandedOver(streaming)
        let reader = Thread { finished.set(try? handed.value.readResponse()) }
        reader.start()
        usleep(300_000)
        a.terminate()
        // Draining: A says so on /health (503) while still answering, for drain_delay_ms.
        #expect(try eventually(seconds: 1) { try deployment.get(a.port, "/health").status == 503 })
        #expect(try deployment.get(a.port, "/health").text.contains("draining"))
        #expect(try deployment.get(b.port, "/health").status == 200)
        // Meanwhile and after A closes its listener, every request through nginx is answered.
        let started = Date()
        while Date().timeIntervalSince(started) < 2.5 {
            let response = try deployment.chat(deployment.nginx.port)
            #expect(response.status == 200, "\(response.status): \(response.text)\nnginx: \(deployment.nginx.errorLog)\nreplica A: \(a.logText)")
            usleep(100_000)
        }
        // The stream in flight on A finished whole, then A exited cleanly.
        #expect(a.waitForExit(seconds: 15) == 0, "\(a.logText)")
        let stream = try #require(finished.get(), "the stream on the draining replica ended")
        #expect(stream.status == 200)
        #expect(stream.events.last == "[DONE]")
        #expect(stream.events.filter { $0.contains("\"content\"") }.count >= 60)
    }

    /// A test client handed to the one thread that reads it from then on.
    struct HandedOver<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    private func eventually(seconds: Double = 5, _ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }
}
