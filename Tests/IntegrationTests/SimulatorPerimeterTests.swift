import Application
import Foundation
import Gateway
import GatewayCore
import Logging
import MockUpstream
import Testing

/// The built-in simulator is not an attack surface: only the gateway can use it, its port never
/// shows, and a client that never reads cannot grow its memory.
@Suite struct SimulatorPerimeterTests {
    @Test(.timeLimit(.minutes(1)))
    func onlyTheGatewayCanUseTheSimulatorAndItsPortNeverShows() throws {
        var config = GatewayConfig.embeddedDefault
        config.server.port = 0
        var logger = Logger(label: "sim-perimeter")
        logger.logLevel = .critical
        let app = try GatewayApplication(config: config, environment: [:], logger: logger, loops: 2)
        defer {
            app.shutdown()
            app.waitUntilStopped()
        }
        let port = try #require(app.simulatorPort)
        // The simulator's port, without the gateway's key: refused, for the models and the web.
        for request in ["POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                        "GET /web/page/1 HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET /search?q=x&format=json HTTP/1.1\r\nHost: localhost\r\n\r\n",
                        "GET /web/big?bytes=16000000 HTTP/1.1\r\nHost: localhost\r\n\r\n"] {
            let client = try TestClient(port: port)
            try client.send(request)
            #expect(try client.readResponse().status == 401, "\(request.prefix(30))")
        }
        // Through the gateway everything works, and sources are cited without the port.
        let client = try TestClient(port: app.port, timeoutSeconds: 40)  // the simulated models pace themselves like real ones
        let body = #"{"model":"fusion","stream":false,"messages":[{"role":"user","content":"What do studies say about congestion pricing?"}],"tools":[{"type":"fusion","parameters":{"preset":"research"}}]}"#
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
        let response = try client.readResponse()
        #expect(response.status == 200)
        let annotations = response.json?["choices"]?.arrayValue?.first?["message"]?["annotations"]?.arrayValue ?? []
        let urls = annotations.compactMap { $0["url_citation"]?["url"]?.stringValue }
        #expect(!urls.isEmpty && urls.allSatisfy { $0.hasPrefix("http://simulated-web.invalid/") }, "\(urls)")
        #expect(!response.text.contains(":\(port)"), "the simulator's port never appears")
    }

    /// Addressed to the simulated web's host, the simulator serves pages and search only: a
    /// model reading `http://simulated-web.invalid/v1/models` through the web tools got the
    /// simulator's own model list (review 21).
    @Test func theSimulatedWebsHostServesOnlyTheWeb() throws {
        let env = try TestEnvironment()
        func get(_ path: String, host: String) throws -> Int {
            let client = try TestClient(port: env.mockPort)
            try client.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\nAuthorization: Bearer \(TestEnvironment.secretKey)\r\n\r\n")
            return try client.readResponse().status
        }
        #expect(try get("/web/page/1", host: "simulated-web.invalid") == 200)
        #expect(try get("/v1/models", host: "simulated-web.invalid") == 404)
        #expect(try get("/v1/models", host: "Simulated-Web.INVALID:80") == 404)
        #expect(try get("/v1/models", host: "127.0.0.1") == 200, "the model list, asked of the simulator itself")
    }

    @Test(.timeLimit(.minutes(1)))
    func aStreamWaitsForAClientThatDoesNotRead() throws {
        let env = try TestEnvironment()
        // The mock directly, as the gateway's upstream would: a client that reads nothing.
        let client = try TestClient(port: env.mockPort)
        let body = #"{"model":"paced:pace_ms=0:deltas=100000","stream":true,"messages":[{"role":"user","content":"x"}]}"#
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
        #expect(env.eventually(timeoutSeconds: 10) { env.mockStats.counts.waitsForClient > 0 }, "the stream paused for its reader")
        client.disconnect()
        #expect(env.eventually { env.mockStats.counts.active == 0 })
    }
}
