import Foundation
import GatewayCore
import MockUpstream
import Testing

/// Numbers a client puts in a simulated model's name or a simulated web URL: a 400 in OpenAI's
/// shape naming them, from the gateway's router up front and from the mock itself, and both keep
/// serving.
@Suite struct SimulatorInputTests {
    func expectRefusal(_ response: TestResponse, param: String, naming option: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == 400, "\(response.text)", sourceLocation: sourceLocation)
        let error = response.json?["error"]
        #expect(error?["type"]?.stringValue == "invalid_request_error", sourceLocation: sourceLocation)
        #expect(error?["param"]?.stringValue == param, sourceLocation: sourceLocation)
        #expect(error?["message"]?.stringValue?.contains("'\(option)'") == true, "\(response.text)", sourceLocation: sourceLocation)
    }

    @Test(arguments: [("paced:deltas=abc", "deltas"), ("normal:pace_ms=-5", "pace_ms"), ("huge:bytes=99999999999", "bytes"),
                      ("error:status=1000", "status"), ("normal:speed=1", "speed"), ("expert-12", "persona")])
    func badOptionsAreRefusedByTheRouterAndByTheMock(model: String, option: String) throws {
        let env = try TestEnvironment()
        // The gateway's simulated provider: refused before any work.
        expectRefusal(try env.chat(TestEnvironment.chatBody(model: "sim/" + model)), param: "model", naming: option)
        // The mock called directly, as a provider.
        let mock = try TestClient(port: env.mockPort)
        try mock.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: model)))
        expectRefusal(try mock.readResponse(), param: "model", naming: option)
        #expect(env.mockStats.counts.streamsStarted == 0)
        // Through a configured (not simulated) provider the mock's 400 reaches the client unchanged.
        let proxied = try env.chat(TestEnvironment.chatBody(model: "mock/" + model))
        #expect(proxied.status == 400)
        #expect(proxied.json?["error"]?["message"]?.stringValue?.contains("'\(option)'") == true, "\(proxied.text)")
        // Both still serve.
        try mock.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "paced:pace_ms=0:deltas=3", stream: false)))
        #expect(try mock.readResponse().status == 200)
        #expect(try env.chat(TestEnvironment.chatBody(model: "sim/paced:pace_ms=0:deltas=3")).streamedContent == "t0 t1 t2 ")
    }

    @Test(arguments: [("/web/page/99999999999999999999", "page"), ("/web/page/0", "page"), ("/web/redirect-chain/101", "redirect-chain"),
                      ("/web/big?bytes=-1", "bytes"), ("/web/big?bytes=1e9", "bytes"), ("/web/status/42", "status"),
                      ("/web/status/600", "status"), ("/web/slow?ms=600000", "ms")])
    func webNumbersOutOfRangeAreRefused(path: String, parameter: String) throws {
        let env = try TestEnvironment()
        let mock = try TestClient(port: env.mockPort)
        try mock.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let response = try mock.readResponse()
        #expect(response.status == 400)
        #expect(response.json?["error"]?["param"]?.stringValue == parameter)
        #expect(response.json?["error"]?["message"]?.stringValue?.contains("'\(parameter)'") == true)
        try mock.send("GET /web/page/3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let page = try mock.readResponse()
        #expect(page.status == 200 && page.text.contains("Simulated source 3"), "still serving")
    }
}
