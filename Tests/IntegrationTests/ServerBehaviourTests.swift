import Foundation
import Fusion
import EventLoop
import Gateway
import GatewayCore
import HTTPServer
import Logging
import MockUpstream
import Synchronization
import Testing

/// HTTP-level behaviour of the gateway over real sockets: bad input, limits, keep-alive,
/// pipelining, disconnects (shutdown: `ShutdownTests`).
@Suite struct ServerBehaviourTests {
    func expectStillServing(_ env: TestEnvironment, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let health = try env.get("/health")
        #expect(health.status == 200, "server still serving", sourceLocation: sourceLocation)
        #expect(health.json?["status"]?.stringValue == "ok", sourceLocation: sourceLocation)
    }

    func expectErrorShape(_ response: TestResponse, status: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == status, sourceLocation: sourceLocation)
        #expect(response.header("content-type") == "application/json", sourceLocation: sourceLocation)
        let error = response.json?["error"]
        #expect(error?["message"]?.stringValue?.isEmpty == false, "has a message: \(response.text)", sourceLocation: sourceLocation)
        #expect(error?["type"]?.stringValue != nil, sourceLocation: sourceLocation)
        #expect(error?["code"]?.stringValue != nil, sourceLocation: sourceLocation)
    }

    @Test(arguments: [
        // (raw request, status, connection closed afterwards)
        ("GARBAGE / NONSENSE\r\n\r\n", 400, true),
        ("BREW /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n", 501, true),
        ("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: \(String(repeating: "a", count: 9000))\r\n\r\n", 431, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n", 413, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", 400, true),
        // A coding the gateway cannot undo is not read as if it were not there (RFC 9112 §6.1).
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501, true),
        // Strictness Debian's lenient http_parser leaves to us.
        ("GET /health HTTP/1.1\r\n\r\n", 400, true),
        ("GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n", 400, true),
        ("GET /health HTTP/1.1\r\nHost: localhost\r\nX Bad: 1\r\n\r\n", 400, true),
        ("GET /health HTTP/1.1\r\nHost : localhost\r\n\r\n", 400, true),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XY0\r\n\r\n", 400, true),
        ("GET /health HTTP/1.1\r\nHost: localhost\r\n" + (1...100).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431, true),
        (TestEnvironment.post("/v1/chat/completions", body: "{not json"), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"mock/normal","messages":[{"role":"user","content":"x"}],"temperature":"warm"}"#), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"mock/normal","messages":"x"}"#), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"mock/normal"}"#), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"mock/normal","messages":[{"role":"user","content":"x"}],"model":"nobody/x"}"#), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"mock/normal","messages":[{"role":"user","content":"x"}],"temperature":1e999}"#), 400, false),
        (TestEnvironment.post("/v1/chat/completions", body: #"{"model":"nobody/model","messages":[{"role":"user","content":"x"}]}"#), 404, false),
        ("GET /v2/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n", 404, false),
        ("DELETE /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\r\n", 405, false),
    ])
    func badInputGetsItsStatusAndTheServerKeepsServing(raw: String, status: Int, closes: Bool) throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(raw)
        let response = try client.readResponse()
        expectErrorShape(response, status: status)
        // The server's own rejections, in OpenAI's shape as before the HTTP server stopped knowing it.
        let codes = [400: "bad_request", 413: "body_too_large", 431: "headers_too_large"]
        if closes, let code = codes[status] {
            let error = response.json?["error"]
            #expect(error?["type"]?.stringValue == "invalid_request_error")
            #expect(error?["code"]?.stringValue == code || (status == 431 && error?["code"]?.stringValue == "too_many_headers"))
            #expect(error?["param"] == .null)
            #expect(error?["message"]?.stringValue?.hasPrefix(status == 400 ? "Malformed HTTP request: " : "") == true)
        }
        if closes {
            #expect(response.header("connection") == "close")
            #expect(client.peerClosed(), "a framing error closes the connection")
        } else {
            // The connection itself stays usable after an application-level error.
            try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
        // Every refusal is counted, the HTTP server's own and the head guard's included; on a
        // completion route it is also a rejected request.
        let code = response.json?["error"]?["code"]?.stringValue ?? "?"
        #expect(env.eventually { (try? env.get("/metrics"))?.metric(#"fusion_gateway_errors_total{code="\#(code)",origin="gateway"}"#) == 1 },
                "errors_total{code=\(code)}")
        if raw.hasPrefix("POST /v1/chat/completions ") || raw.hasPrefix("DELETE /v1/chat/completions ") {
            #expect((try? env.get("/metrics"))?.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="rejected",status="\#(status)"}"#) == 1)
        }
        try expectStillServing(env)
    }

    /// Anthropic's SDKs read only Anthropic's error shape: the server's own rejections of a request
    /// to `/v1/messages` (and paths under it) come in it too.
    @Test(arguments: [
        ("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n", 413),
        ("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nX-Big: \(String(repeating: "a", count: 9000))\r\n\r\n", 431),
        ("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("POST /v1/messages/batches HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 404),
        ("POST /v1/messages/count_tokens HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400),
    ])
    func rejectionsOnTheMessagesAPIComeInAnthropicsShape(raw: String, status: Int) throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(raw)
        let response = try client.readResponse()
        #expect(response.status == status)
        #expect(response.json?["type"] == .string("error"), "\(response.text)")
        #expect(response.json?["error"]?["type"]?.stringValue != nil && response.json?["error"]?["message"]?.stringValue?.isEmpty == false)
        try expectStillServing(env)
    }

    /// HEAD gets what GET would, without the body, wherever GET is served.
    /// A model name of 200 KB is refused without being echoed, and its record (what the store
    /// holds and the log line writes) keeps 256 bytes of it: a client cannot make the gateway hold
    /// or log three copies of its body per request.
    @Test func aHugeModelNameIsRefusedAndNeverKeptWhole() throws {
        let env = try TestEnvironment()
        let huge = "mock/" + String(repeating: "x", count: 200_000)
        for body in [TestEnvironment.chatBody(model: huge),
                     TestEnvironment.chatBody(model: "mock/normal", extra: #","models":["\#(huge)"]"#),
                     TestEnvironment.chatBody(model: "fusion", extra: #","tools":[{"type":"fusion","parameters":{"analysis_models":["\#(huge)"]}}]"#)] {
            let response = try env.chat(body)
            let param = response.json?["error"]?["param"]?.stringValue ?? ""
            #expect(response.status == 400 && param.contains("model"), "\(param): \(response.text.prefix(300))")
            #expect(response.text.utf8.count < 2_000)
            let record = try #require(try env.generation(response.header("x-generation-id")))
            #expect(record.serialized().count < 4_000)
            #expect(record["requested_model"]?.stringValue?.hasSuffix("…") == true || body.contains(#""model":"mock/normal""#)
                    || body.contains(#""model":"fusion""#))
        }
        try expectStillServing(env)
    }

    @Test func headIsAnsweredWhereverGetIs() throws {
        let env = try TestEnvironment()
        for path in ["/v1/models", "/metrics", "/health"] {
            let client = try env.client()
            try client.send("HEAD \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
            let head = try client.readHead()
            #expect(head.status == 200, "\(path)")
            #expect(Int(head.header("content-length") ?? "") ?? 0 > 0, "\(path): the length GET's body would have")
            // The next request on the connection is read right after the head: no body came.
            try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(try client.readResponse().json?["status"] == .string("ok"), "\(path)")
        }
        let delete = try env.client()
        try delete.send("DELETE /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let refused = try delete.readResponse()
        #expect(refused.status == 405 && refused.header("allow") == "GET, HEAD")
    }

    /// The SDKs' `models.retrieve`: `GET /v1/models/{id}`, the id slashes and all.
    @Test func aModelIsRetrievedByItsID() throws {
        let env = try TestEnvironment()
        let ids = try #require(env.get("/v1/models").json?["data"]?.arrayValue).compactMap { $0["id"]?.stringValue }
        #expect(ids.count > 1)
        for id in ids {
            let model = try env.get("/v1/models/\(id)")
            #expect(model.status == 200 && model.json?["id"] == .string(id) && model.json?["object"] == .string("model"), "\(id)")
        }
        let missing = try env.get("/v1/models/nobody/x")
        expectErrorShape(missing, status: 404)
        #expect(missing.json?["error"]?["code"] == .string("model_not_found"))
        // The SDKs percent-encode the id's slash (and any other reserved byte).
        for (path, id) in [("mock%2Fnormal", "mock/normal"), ("mock%2fnormal%3Apace_ms%3D5", "mock/normal:pace_ms=5"), ("fusion", "fusion")] {
            let model = try env.get("/v1/models/\(path)")
            #expect(model.status == 200 && model.json?["id"] == .string(id), "\(path): \(model.text)")
        }
        let broken = try env.get("/v1/models/mock%2")
        expectErrorShape(broken, status: 400)
        // Each is an error returned to a client, counted by its code (review 17 #5), as are the
        // record lookups' and the Responses API's stored-response 404s.
        expectErrorShape(try env.get("/api/v1/generation?id=gen-000"), status: 404)
        expectErrorShape(try env.get("/api/v1/generation"), status: 400)
        expectErrorShape(try env.get("/v1/responses/resp_123"), status: 404)
        let metrics = try env.get("/metrics")
        for code in ["model_not_found", "invalid_model", "generation_not_found", "missing_required_parameter", "response_not_found"] {
            #expect(metrics.metric(#"fusion_gateway_errors_total{code="\#(code)",origin="gateway"}"#) == 1, "\(code)")
        }
    }

    /// Anthropic's SDKs (`anthropic-version`) read models in Anthropic's shape, errors too.
    @Test func anthropicClientsGetModelsInTheirShape() throws {
        let env = try TestEnvironment()
        let get = { (path: String) throws -> TestResponse in
            let client = try env.client()
            try client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\nanthropic-version: 2023-06-01\r\n\r\n")
            return try client.readResponse()
        }
        let list = try get("/v1/models?limit=1000")
        let data = try #require(list.json?["data"]?.arrayValue)
        #expect(data.count > 3 && data.allSatisfy { $0["type"] == .string("model") && $0["display_name"] != nil && $0["created_at"] != nil })
        #expect(list.json?["has_more"] == .bool(false) && list.json?["first_id"] == data.first?["id"] && list.json?["last_id"] == data.last?["id"])
        // Paged as Anthropic pages it: two at a time from the first, following `after_id`.
        let first = try get("/v1/models?limit=2")
        #expect(first.json?["data"]?.arrayValue == Array(data.prefix(2)) && first.json?["has_more"] == .bool(true))
        let next = try get("/v1/models?limit=2&after_id=\(data[1]["id"]?.stringValue?.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")")
        #expect(next.json?["data"]?.arrayValue == Array(data[2..<4]), "\(next.text)")
        for bad in ["limit=0", "after_id=%FF", "before_id=sim%2"] {
            let refused = try get("/v1/models?\(bad)")
            #expect(refused.status == 400 && refused.json?["error"]?["type"] == .string("invalid_request_error"), "\(bad): \(refused.text)")
        }
        let one = try get("/v1/models/mock%2Fnormal")
        #expect(one.json?["type"] == .string("model") && one.json?["id"] == .string("mock/normal"), "\(one.text)")
        let missing = try get("/v1/models/nobody%2Fx")
        #expect(missing.status == 404 && missing.json?["type"] == .string("error") && missing.json?["error"]?["type"] == .string("not_found_error"),
                "\(missing.text)")
    }

    @Test func methodNotAllowedNamesTheAllowedMethod() throws {
        let env = try TestEnvironment()
        let response = try env.get("/v1/chat/completions")
        expectErrorShape(response, status: 405)
        #expect(response.header("allow") == "POST")
    }

    @Test func slowHeadersTimeOutWith408() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow:")
        let started = Date()
        let response = try client.readResponse()
        expectErrorShape(response, status: 408)
        #expect(response.json?["error"]?["code"]?.stringValue == "request_timeout")
        #expect(response.json?["error"]?["message"]?.stringValue == "The request was not received in time")
        #expect(Date().timeIntervalSince(started) >= 0.4)
        #expect(client.peerClosed())
        try expectStillServing(env)
    }

    /// Slow POST: a body trickled a byte at a time, each pause well within the idle timeout, is
    /// cut at its deadline (`body_timeout_ms` plus a second per `min_body_bytes_per_second`).
    @Test func aTrickledBodyTimesOutWith408() throws {
        let env = try TestEnvironment {
            $0.server.limits.bodyTimeoutMilliseconds = 400
            $0.server.limits.minBodyBytesPerSecond = 1_000
        }
        let client = try env.client()
        try client.send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
        let started = Date()
        // A byte every 50 ms (the idle timeout is 2 s here) until the gateway answers.
        var answer = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
        while Date().timeIntervalSince(started) < 10, poll(&answer, 1, 50) == 0 { try client.send("x") }
        let elapsed = Date().timeIntervalSince(started)
        let response = try client.readResponse()
        expectErrorShape(response, status: 408)
        #expect(response.json?["error"]?["code"]?.stringValue == "request_timeout")
        #expect(elapsed >= 0.35 && elapsed < 3, "cut at its deadline: \(elapsed) s")
        #expect(client.peerClosed())
        try expectStillServing(env)
    }

    /// A body that keeps up the minimum rate is read whole, however long past the base timeout.
    @Test func aBodyAtTheMinimumRateIsRead() throws {
        let env = try TestEnvironment {
            $0.server.limits.bodyTimeoutMilliseconds = 400
            $0.server.limits.minBodyBytesPerSecond = 1_000
        }
        let body = Array(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false, prompt: String(repeating: "long ", count: 800)).utf8)
        let client = try env.client()
        try client.send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n")
        let started = Date()
        // 1,000 bytes every 150 ms: 600 ms and more in all, each piece earning a second.
        for start in stride(from: 0, to: body.count, by: 1_000) {
            try client.send(Array(body[start..<min(body.count, start + 1_000)]))
            usleep(150_000)
        }
        #expect(Date().timeIntervalSince(started) > 0.5)
        #expect(try client.readResponse().status == 200)
    }

    @Test func idleKeepAliveConnectionsCloseQuietly() throws {
        let env = try TestEnvironment { $0.server.limits.idleTimeoutMilliseconds = 300 }
        let client = try env.client()
        try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        #expect(client.peerClosed(), "closed after the idle timeout, with no response bytes")
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        for _ in 0..<3 {
            try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")))
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.events.last == "[DONE]")
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(
            TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=5:deltas=5"))
                + "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/normal", stream: false))
                + "GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let first = try client.readResponse()
        #expect(first.streamedContent == "t0 t1 t2 t3 t4 ")
        #expect(try client.readResponse().json?["status"]?.stringValue == "ok")
        #expect(try client.readResponse().json?["object"]?.stringValue == "chat.completion")
        #expect(try client.readResponse().status == 404)
    }

    @Test func expectContinueIsHonoured() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        let body = TestEnvironment.chatBody(model: "mock/normal", stream: false)
        try client.send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        // The interim response arrives before we send the body (readResponse skips it, so read raw).
        var interim = [UInt8](repeating: 0, count: 25)
        let count = recv(client.fd, &interim, 25, 0)
        #expect(String(decoding: interim[..<max(count, 0)], as: UTF8.self) == "HTTP/1.1 100 Continue\r\n\r\n")
        try client.send(body)
        #expect(try client.readResponse().status == 200)
    }

    @Test func http10ClientsGetAStreamThenClose() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        let body = TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")
        try client.send("POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("transfer-encoding") == nil)
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    /// An HTTP/1.0 client asking to keep its connection alive is told it is (RFC 9112 §9.3), and
    /// its next request is answered on it (review 60B #4: kept but not said, so ApacheBench `-k`
    /// waited for the idle close).
    @Test func http10KeepAliveIsAnnounced() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        for _ in 0..<2 {
            try client.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200 && response.header("connection") == "keep-alive", "\(response.text)")
        }
    }

    /// An HTTP/1.0 client asking to keep the connection alive still gets a stream whose end is
    /// the close (it cannot be chunked, and the head says `Connection: close`), and the close
    /// comes as the stream ends, not a minute later (review 44 perimeter #2: the connection was
    /// kept, so the client waited out the idle timeout for every answer's end).
    @Test func http10KeepAliveClientsGetTheirStreamsEndAtOnce() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        let body = TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")
        try client.send("POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        let started = ContinuousClock.now
        let response = try client.readResponse()  // to the close: the client's read timeout is 5 s
        #expect(response.status == 200 && response.header("connection") == "close")
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
        #expect(ContinuousClock.now - started < .seconds(4), "closed as the stream ended")
    }

    @Test func clientDisconnectCancelsTheUpstreamTransfer() throws {
        let env = try TestEnvironment()
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=50:deltas=200")))
        // Read until the first delta arrived, then hang up.
        var sawDelta = false
        _ = try? client.readResponse { chunk in
            if !sawDelta, String(decoding: chunk, as: UTF8.self).contains("\"t0 \"") {
                sawDelta = true
                client.disconnect()
            }
        }
        #expect(sawDelta)
        #expect(env.eventually { env.mockStats.counts.streamsCancelled == 1 }, "the mock saw its stream cancelled")
        #expect(env.mockStats.counts.streamsFinished == 0)
        let active = try env.activeStreams()
        #expect(active == 0)
    }

    @Test func aClientThatStopsReadingPausesTheUpstreamAndLosesNothing() throws {
        let env = try TestEnvironment { $0.upstream.idleTimeoutMilliseconds = 20_000 }
        let client = try env.client()
        let deltas = 6_000  // ~1.5 MB of events, far more than the socket buffers hold
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=0:deltas=\(deltas)")))
        #expect(env.eventually(timeoutSeconds: 5) { env.gatewayStats.backpressurePauses.load(ordering: .relaxed) > 0 },
                "the upstream transfer was paused")
        // Now read everything: complete, in order, nothing lost or duplicated.
        let response = try client.readResponse()
        #expect(response.streamedContent == (0..<deltas).map { "t\($0) " }.joined())
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    /// A burst the client keeps up with never pauses the upstream. curl hands a burst over in
    /// reads back to back, and each read found the fan-in ring still holding the one before (the
    /// ring drains later in the loop's iteration): a pause and a resume per read, ~4 allocations
    /// in curl and 2 `epoll_ctl` each, on a busy machine for any stream whose events coalesce.
    /// A read's relayed output a little larger than the ring (the relay lengthens each event's id
    /// and model) waited in the stream's overflow and paused the transfer at its next read. This
    /// whole answer fits the client's write queue, so it needs no pause at all.
    @Test func aBurstTheClientKeepsUpWithNeverPausesTheUpstream() throws {
        let env = try TestEnvironment()
        let deltas = 250
        // Many short events; and one event of 3,000 bytes, whose relayed form takes the whole
        // ring (8 slots of 248 bytes) and more, every time.
        let answers = [("paced:pace_ms=0:deltas=\(deltas)", (0..<deltas).map { "t\($0) " }.joined()),
                       ("huge:bytes=3000", "start " + String(repeating: "x", count: 3_000))]
        for _ in 0..<5 {
            for (model, content) in answers {
                let client = try env.client()
                try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/\(model)")))
                let response = try client.readResponse()
                #expect(response.streamedContent == content)
                #expect(response.body.count < 64 * 1024, "within the client's write queue even if the kernel took none of it")
            }
        }
        #expect(env.gatewayStats.backpressurePauses.load(ordering: .relaxed) == 0)
    }

    /// A deliberation's members are held back by a slow client too, and counted as the proxy's
    /// pauses are (the metric stayed at 0 for Fusion).
    @Test func aClientThatStopsReadingPausesAFusionMemberAndTheMetricSaysSo() throws {
        // A member's time limit covers its pauses too: long enough for a slow (sanitizer) build.
        let env = try TestEnvironment { config in
            config.upstream.idleTimeoutMilliseconds = 20_000
            config.fusion?.memberTimeoutMilliseconds = 60_000
            config.fusion?.judgeTimeoutMilliseconds = 60_000
        }
        let client = try env.client()
        let body = #"{"model":"fusion","stream":true,"stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"Should cities ban cars?"}],"plugins":[{"id":"fusion","analysis_models":["mock/paced:pace_ms=0:deltas=6000"],"model":"mock/judge:pace_ms=0","max_completion_tokens":10000}]}"#
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body))
        #expect(env.eventually(timeoutSeconds: 5) { ((try? env.get("/metrics"))?.metric("fusion_gateway_backpressure_pauses_total") ?? 0) > 0 },
                "the member's transfer was paused, and counted")
        let response = try client.readResponse()
        let deltas = response.namedEvents.filter { $0.name == "fusion.member.delta" }.compactMap { $0.data["delta"]?.stringValue }.joined()
        #expect(deltas == (0..<6_000).map { "t\($0) " }.joined(), "nothing lost while paused")
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    /// A paused read is delivered again on resume; counting it each time made a slow reader's
    /// stream hit `upstream.max_response_bytes` with a fraction of it sent. With the bound just
    /// above the upstream's real size, a client reading slowly (many pauses) still gets it all.
    @Test func aSlowReaderIsNotChargedForTheBytesItsPausesRedeliver() throws {
        let deltas = 6_000
        let model = "paced:pace_ms=0:deltas=\(deltas)"
        // The upstream's size for this request: the mock's own answer, asked directly the way the
        // gateway asks (with usage).
        let sizing = try TestEnvironment()
        let direct = try TestClient(port: sizing.mockPort)
        try direct.send(TestEnvironment.post("/v1/chat/completions", body: #"{"model":"\#(model)","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#))
        let upstreamBytes = try direct.readResponse().body.count
        #expect(upstreamBytes > 1_000_000)

        let env = try TestEnvironment { config in
            config.upstream.idleTimeoutMilliseconds = 20_000
            config.upstream.maxResponseBytes = upstreamBytes + upstreamBytes / 50
        }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "mock/\(model)")))
        var chunks = 0
        let response = try client.readResponse { _ in
            chunks += 1
            if chunks % 4 == 0 { usleep(1_000) }  // slower than the mock: the transfer pauses again and again
        }
        #expect(env.gatewayStats.backpressurePauses.load(ordering: .relaxed) > 10)
        #expect(response.streamError == nil, "\(response.text.suffix(300))")
        #expect(response.streamedContent == (0..<deltas).map { "t\($0) " }.joined())
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    /// Waits until the gateway has answered `count` proxied requests with 200.
    func answered(_ env: TestEnvironment, _ count: Double) -> Bool {
        env.eventually(timeoutSeconds: 20) {
            (try? env.get("/metrics"))?.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="proxy",status="200"}"#) == count
        }
    }

    @Test func aFinishedResponseIsNotCutOffWhileASlowClientStillReadsIt() throws {
        // The response is complete at the gateway long before the client reads it (12 MB is more
        // than loopback's socket buffers hold); the idle timeout (100 ms here) must not close the
        // connection on the bytes still queued.
        let env = try TestEnvironment { config in
            config.server.limits.idleTimeoutMilliseconds = 100
            config.upstream.idleTimeoutMilliseconds = 20_000  // the mock builds 12 MB slowly in debug builds
        }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/huge:bytes=12000000", stream: false)))
        #expect(answered(env, 1))
        usleep(500_000)
        let response = try client.readResponse()
        #expect(response.status == 200)
        let content = response.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue
        #expect(content?.utf8.count == 12_000_000 + "start ".utf8.count)
    }

    @Test func aClientThatNeverTakesAFinishedResponseIsDroppedAfterTheSlowClientTimeout() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            config.server.limits.idleTimeoutMilliseconds = 100
            config.server.slowClientTimeoutMilliseconds = 300
            config.upstream.idleTimeoutMilliseconds = 20_000
        }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/huge:bytes=12000000", stream: false)))
        #expect(answered(env, 1))
        usleep(1_000_000)  // reads nothing: the write stalls past 300 ms and the connection is closed
        let read = Result { try client.readResponse() }
        #expect(throws: (any Error).self, "the response was cut off") { _ = try read.get() }
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")).status == 200)
        // Its record was filed as the response was handed over: the cut is logged and counted.
        #expect(env.eventually { (try? env.get("/metrics"))?.metric(#"fusion_gateway_errors_total{code="client_too_slow",origin="gateway"}"#) == 1 })
        // The warning names the response's generation (review 125 #2: it could not be matched with its record).
        let warning = log.entries.first { $0.message.contains("stopped reading the end of a response") }
        #expect(warning?.metadata["generation_id"].map { "\($0)" }?.hasPrefix("gen-") == true, "\(String(describing: warning?.text))")
    }

    /// A finished response's last bytes, on a connection closing after it (`Connection: close`)
    /// or kept alive, go to a client that keeps taking them however slowly: the stalled-write
    /// deadline counts what the kernel hands on, whichever path armed it (found by review 12:
    /// a closing connection's deadline started from no record of the backlog and cut a steady
    /// reader at `slow_client_timeout_ms`; and with 12 MB, a response written as one buffer
    /// showed no progress while that write was in flight, whatever the reader took, and both
    /// paths cut it at 8.5 MB: the backlog now counts libuv's partial writes).
    @Test(arguments: [true, false]) func aSteadySlowReaderGetsAllOfAFinishedResponse(closing: Bool) throws {
        let env = try TestEnvironment { config in
            config.server.slowClientTimeoutMilliseconds = 3_000
            config.upstream.idleTimeoutMilliseconds = 30_000
        }
        // The first byte waits for the whole 12 MB answer to be collected: under a sanitizer, with
        // the other case's 12 MB beside it, longer than 5 s (CI run 111), and as long on a machine
        // whose other core is busy (a debug build beside a CPU hog: 0 bytes by 5 s).
        let client = try env.client(timeoutSeconds: 30 * Int(TestEnvironment.sanitizerSlowdown))
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/huge:bytes=12000000:pace_ms=0", stream: false),
                                             headers: closing ? ["Connection": "close"] : [:]))
        // ~1.3 MB/s, far slower than loopback: each pause is well within the 3 s, the whole read
        // (~9 s) well beyond it, and beyond what the kernel's buffers hold when a connection is
        // cut at 3 s (~4 MB read by then, a few MB buffered: short of the 12 MB). A test process
        // starved for 3 s (a loaded machine, a sanitizer) would read as a client that stopped.
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var taken = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            taken += count
            if taken > 12_000_000 && !closing { break }  // all of it arrived on a kept-alive connection
            usleep(50_000)
        }
        #expect(taken > 12_000_000, "the whole answer arrived: \(taken) bytes")
    }
}

extension ServerBehaviourTests {
    /// A live stream's reader crawling a few bytes at a time, progress at every look, is dropped
    /// once it falls below the drain pace (`server.min_drain_bytes_per_second`): before, any
    /// progress kept the stream, and the upstream transfer it pauses, for as long as it liked.
    @Test(.timeLimit(.minutes(1))) func aReaderCrawlingThroughALiveStreamIsDropped() throws {
        let slowdown = TestEnvironment.sanitizerSlowdown
        let env = try TestEnvironment { config in
            config.server.slowClientTimeoutMilliseconds = 500 * slowdown
            config.server.limits.minDrainBytesPerSecond = 256 << 10
            config.upstream.idleTimeoutMilliseconds = 30_000
        }
        let client = try env.client(timeoutSeconds: 10, receiveBufferBytes: 2048)
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: TestEnvironment.chatBody(model: "mock/paced:pace_ms=0:deltas=100000")))
        // 512 bytes every 20 ms: about 25 KiB/s, a tenth of the pace asked.
        var taken = 0
        var dropped = false
        let started = Date()
        while Date().timeIntervalSince(started) < 6 * Double(slowdown) {
            if (try? env.get("/metrics"))?.metric(#"fusion_gateway_errors_total{code="client_too_slow",origin="gateway"}"#) == 1 {
                dropped = true
                break
            }
            for _ in 0..<5 {
                var piece = [UInt8](repeating: 0, count: 512)
                let count = piece.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
                if count > 0 { taken += count }
                usleep(20_000)
            }
        }
        #expect(dropped, "still streaming after the client took \(taken) bytes")
        #expect(env.eventually { (try? env.cluster.openConnections()) == 0 }, "and let go of its connection")
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")).status == 200)
    }
}

@Suite struct LifetimeTests {
    /// Everything hanging off a loop (servers, connections, transfers, timers) is released when
    /// the loop stops: no retain cycles through libuv handles.
    @Test func aStoppedEnvironmentFreesItsLoop() throws {
        weak var loop: EventLoop?
        weak var gatewayLoop: EventLoop?
        do {
            let env = try TestEnvironment()
            _ = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1"))
            _ = try env.chat(#"{"model":"fusion","stream":false,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}"#)
            let client = try env.client()  // left open: shutdown must still release it
            try client.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            _ = try client.readResponse()
            loop = env.thread.loop
            gatewayLoop = env.cluster.threads.last?.loop
            env.stop()
        }
        // Foundation's Thread drops its closure (which holds the loop) just after the thread ends.
        let deadline = Date().addingTimeInterval(2)
        while (loop != nil || gatewayLoop != nil) && Date() < deadline { usleep(1_000) }
        #expect(loop == nil, "the mock's loop was freed")
        #expect(gatewayLoop == nil, "the gateway's loops were freed")
    }
}

@Suite struct GatewayKeyTests {
    @Test func keysAreRequiredWhenConfigured() throws {
        let env = try TestEnvironment {
            $0.server.apiKeys = ["gw-key-one"]
            $0.server.apiKeysEnvironmentVariable = "TEST_PROVIDER_KEY"  // the test environment sets it
        }
        let body = TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false)
        for headers in [[:], ["Authorization": "Bearer wrong"], ["Authorization": "gw-key-one"], ["Authorization": "Basic gw-key-one"]] {
            let response = try env.chat(body, headers: headers)
            #expect(response.status == 401)
            #expect(response.json?["error"]?["type"] == .string("authentication_error"))
            #expect(response.json?["error"]?["code"] == .string("invalid_api_key"))
            #expect(response.header("www-authenticate") == "Bearer")
        }
        #expect(env.mockStats.counts.requests == 0, "nothing reaches a provider without a key")
        #expect(try env.chat(body, headers: ["Authorization": "Bearer gw-key-one"]).status == 200)
        #expect(try env.chat(body, headers: ["Authorization": "bearer \(TestEnvironment.secretKey)"]).status == 200)
        // Spaces around the key are the field's, not the key's (RFC 9110); two different keys are
        // refused rather than one picked (review 22 F6); the same key twice is one key.
        #expect(try env.chat(body, headers: ["Authorization": "Bearer  gw-key-one "]).status == 200)
        let two = try env.chat(body, headers: ["Authorization": "Bearer gw-key-one", "x-api-key": TestEnvironment.secretKey])
        #expect(two.status == 401 && two.json?["error"]?["message"]?.stringValue?.contains("Two different keys") == true, "\(two.text)")
        #expect(try env.chat(body, headers: ["Authorization": "Bearer wrong", "x-api-key": "gw-key-one"]).status == 401)
        #expect(try env.chat(body, headers: ["Authorization": "Bearer gw-key-one", "x-api-key": "gw-key-one"]).status == 200)
        // x-api-key as Bearer: its value's white space is not the key's; empty, it is no key
        // (review 53 #8, #10).
        #expect(try env.chat(body, headers: ["x-api-key": "gw-key-one \t"]).status == 200)
        #expect(try env.chat(body, headers: ["Authorization": "Bearer gw-key-one", "x-api-key": ""]).status == 200)
        #expect(try env.chat(body, headers: ["x-api-key": " "]).status == 401)
        #expect(try env.get("/v1/models").status == 401)
        #expect(try env.get("/health").status == 200, "health stays open for load balancers")
    }

    /// `/metrics` is every key's traffic and spend: a key with limits (a customer's) gets 403, a
    /// key without limits the metrics (review 22 F5).
    @Test func metricsAreForKeysWithoutLimits() throws {
        let env = try TestEnvironment(environment: ["CUST_KEY": "sk-customer-0123456789", "OPS_KEY": "sk-operator-0123456789"]) {
            $0.keys = ["cust": NamedKey(name: "cust", keyEnvironmentVariable: "CUST_KEY", limits: KeyLimits(requestsPerMinute: 100)),
                       "ops": NamedKey(name: "ops", keyEnvironmentVariable: "OPS_KEY")]
        }
        func metrics(_ key: String) throws -> TestResponse {
            let client = try env.client()
            try client.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(key)\r\n\r\n")
            return try client.readResponse()
        }
        let refused = try metrics("sk-customer-0123456789")
        #expect(refused.status == 403 && refused.json?["error"]?["code"] == .string("permission_denied"), "\(refused.text)")
        #expect(try metrics("sk-operator-0123456789").text.contains("fusion_gateway_"))
        #expect(try env.get("/metrics").status == 401)
    }

    /// Keys are checked on the head: before `100 Continue`, before the body limit, before any
    /// body byte is read. The refusal closes the connection; the key is never logged.
    @Test func keysAreCheckedBeforeTheBodyIsRead() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) {
            $0.server.apiKeys = ["gw-key-one"]
        }
        let client = try env.client()
        try client.send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-wrong-key-42\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
        var first = [UInt8](repeating: 0, count: 12)
        let count = recv(client.fd, &first, 12, Int32(MSG_PEEK | MSG_WAITALL))
        #expect(String(decoding: first[..<max(count, 0)], as: UTF8.self) == "HTTP/1.1 401", "no 100 Continue for a bad key")
        let refused = try client.readResponse()
        #expect(refused.json?["error"]?["code"] == .string("invalid_api_key"))
        #expect(refused.json?["error"]?["type"] == .string("authentication_error"))
        #expect(refused.header("www-authenticate") == "Bearer")
        #expect(refused.header("connection") == "close")
        #expect(client.peerClosed())

        // A body far over max_body_bytes (256 KiB here) still gets the 401, not a 413.
        let body = String(repeating: "x", count: 1 << 20)
        let request = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let big = try env.client()  // after the megabyte is built: a connection's first byte is due in 500 ms here
        try big.send(request)
        let response = try big.readResponse()
        #expect(response.status == 401)
        #expect(response.json?["error"]?["code"] == .string("invalid_api_key"))
        #expect(env.mockStats.counts.requests == 0)
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1", stream: false),
                             headers: ["Authorization": "Bearer gw-key-one"]).status == 200, "still serving")

        // A long path is logged by its first 256 bytes and its length (review 121 #3).
        let long = try env.client()
        try long.send("GET /" + String(repeating: "A", count: 6_000) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(try long.readResponse().status == 401)
        let refusals = log.entries.filter { $0.message.hasPrefix("request refused") }
        #expect(refusals.count == 3)
        #expect(refusals.allSatisfy { $0.text.utf8.count < 1_000 } && refusals.contains { $0.text.contains("path_bytes=6001") },
                "\(refusals.map(\.text))")
        #expect(refusals.allSatisfy { $0.level == .info })
        #expect(!log.entries.contains { $0.text.contains("sk-wrong-key-42") }, "the presented key is never logged")
    }
}

@Suite struct MetricsTests {
    @Test func prometheusMetricsCountWhatHappened() throws {
        let env = try TestEnvironment()
        let answers = [
            try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")),
            try env.chat(TestEnvironment.chatBody(model: "mock/error:status=503")),
            try env.chat(TestEnvironment.chatBody(model: "nobody/x")),
            try env.chat(#"{"model":"mock/outer:pace_ms=1","stream":false,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}],"tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/empty"]}}]}"#),
        ]
        // A request is counted as its record is filed, just after its response: a lookup waits
        // for the record, and the metrics count it by then.
        for answer in answers { #expect(try env.generation(answer.header("x-generation-id")) != nil) }
        let response = try env.get("/metrics")
        #expect(response.status == 200)
        #expect(response.header("content-type")?.hasPrefix("text/plain") == true)
        #expect(response.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="proxy",status="200"}"#) == 1)
        #expect(response.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="proxy",status="503"}"#) == 1)
        #expect(response.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="rejected",status="404"}"#) == 1)
        #expect(response.metric(#"fusion_gateway_requests_total{route="chat_completions",kind="fusion",status="200"}"#) == 1)
        #expect(response.metric(#"fusion_gateway_errors_total{code="model_not_found",origin="gateway"}"#) == 1)
        // The mock's own code is no label value (an upstream does not choose the gateway's series).
        #expect(response.metric(#"fusion_gateway_upstream_errors_total{provider="mock",code="other"}"#) == 1)
        #expect(response.metric(#"fusion_gateway_fusion_member_failures_total{reason="empty_completion"}"#) == 1)
        #expect(response.metric("fusion_gateway_active_streams") == 0)
        #expect(response.metric("fusion_gateway_active_deliberations") == 0)
        #expect((response.metric(#"fusion_gateway_time_to_first_token_seconds_count{kind="proxy"}"#) ?? 0) >= 1)
        #expect((response.metric(#"fusion_gateway_time_to_first_token_seconds_count{kind="fusion"}"#) ?? 0) >= 1)
        #expect((response.metric(#"fusion_gateway_upstream_inter_token_seconds_count{provider="mock"}"#) ?? 0) > 10)
    }
}
