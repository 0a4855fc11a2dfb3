import GatewayCore
import HTTPServer
import Testing

@Suite struct HTTPRequestDecoderTests {
    /// Feeds `chunks` in order, carrying unconsumed bytes like the server does; returns every
    /// request decoded, or the error.
    func decode(_ chunks: [[UInt8]], limits: HTTPServerLimits = HTTPServerLimits()) -> Result<[HTTPRequest], HTTPDecodeError> {
        let decoder = HTTPRequestDecoder(limits: limits)
        var pending: [UInt8] = []
        var requests: [HTTPRequest] = []
        for chunk in chunks {
            pending += chunk
            while !pending.isEmpty {
                do {
                    let (consumed, request) = try decoder.decode(pending)
                    pending.removeFirst(consumed)
                    guard let request else { break }
                    requests.append(request)
                } catch {
                    return .failure(error)
                }
            }
        }
        return .success(requests)
    }

    func failure(_ chunks: [[UInt8]], limits: HTTPServerLimits = HTTPServerLimits()) -> HTTPDecodeError? {
        if case .failure(let error) = decode(chunks, limits: limits) { return error }
        return nil
    }

    func splits(_ bytes: [UInt8]) -> [[[UInt8]]] {
        var result: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
        for cut in 1..<bytes.count { result.append([Array(bytes[..<cut]), Array(bytes[cut...])]) }
        return result
    }

    let post = Array("POST /v1/chat/completions?x=1&name=a%20b HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Multi: a\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}".utf8)
    let chunked = Array("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n".utf8)

    @Test func contentLengthRequestHoweverSplit() throws {
        for chunks in splits(post) {
            let requests = try decode(chunks).get()
            try #require(requests.count == 1, "split \(chunks.map(\.count))")
            let request = requests[0]
            #expect(request.method == "POST")
            #expect(request.path == "/v1/chat/completions")
            #expect(request.queryItem("name") == "a b")
            #expect(request.header("content-type") == "application/json")
            #expect(request.header("X-MULTI") == "a")
            #expect(String(decoding: request.body, as: UTF8.self) == "{\"model\":\"m\"}")
            #expect(request.keepAlive)
        }
    }

    @Test func chunkedRequestHoweverSplit() throws {
        for chunks in splits(chunked) {
            let requests = try decode(chunks).get()
            try #require(requests.count == 1)
            #expect(String(decoding: requests[0].body, as: UTF8.self) == "hello, world")
        }
    }

    @Test func pipelinedRequestsComeOutOneAtATimeInOrder() throws {
        let get = Array("GET /health HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        let all = post + get + chunked + get
        let decoder = HTTPRequestDecoder()
        // One call yields only the first request and leaves the rest unconsumed.
        let (consumed, first) = try decoder.decode(all)
        #expect(first?.method == "POST")
        #expect(consumed == post.count)
        for chunks in [[all], all.map { [$0] }] {
            let requests = try decode(chunks).get()
            #expect(requests.map(\.path) == ["/v1/chat/completions", "/health", "/c", "/health"])
        }
    }

    @Test func keepAliveFollowsVersionAndConnectionHeader() throws {
        let http10 = try decode([Array("GET / HTTP/1.0\r\n\r\n".utf8)]).get()
        #expect(http10.first?.keepAlive == false)
        let http10KeepAlive = try decode([Array("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8)]).get()
        #expect(http10KeepAlive.first?.keepAlive == true)
        let close = try decode([Array("GET / HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)]).get()
        #expect(close.first?.keepAlive == false)
    }

    @Test func upgradeRequestsAreAnsweredButNotKeptAlive() throws {
        let requests = try decode([Array("GET /health HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".utf8)]).get()
        #expect(requests.count == 1)
        #expect(requests.first?.keepAlive == false)
    }

    @Test func expectContinueIsSignalled() throws {
        let decoder = HTTPRequestDecoder()
        let head = Array("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8)
        let (consumed, request) = try decoder.decode(head)
        #expect(consumed == head.count && request == nil)
        #expect(decoder.wantsContinue)
        decoder.didSendContinue()
        let (_, complete) = try decoder.decode(Array("ok".utf8))
        #expect(complete.map { String(decoding: $0.body, as: UTF8.self) } == "ok")
    }

    @Test func headerLimit() {
        var limits = HTTPServerLimits()
        limits.maxHeaderBytes = 1024
        let big = Array("GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n".utf8)
        #expect(failure([big], limits: limits) == .headersTooLarge)
        #expect(failure(big.map { [$0] }, limits: limits) == .headersTooLarge)
        let manyHeaders = Array(("GET / HTTP/1.1\r\n" + String(repeating: "X-A: b\r\n", count: 200) + "\r\n").utf8)
        #expect(failure([manyHeaders], limits: limits) == .headersTooLarge)
        let longURL = Array("GET /\(String(repeating: "u", count: 2000)) HTTP/1.1\r\n\r\n".utf8)
        #expect(failure([longURL], limits: limits) == .headersTooLarge)
    }

    @Test func bodyLimit() {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 10
        #expect(failure([Array("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".utf8)], limits: limits) == .bodyTooLarge)
        let chunkedBody = Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n".utf8)
        #expect(failure([chunkedBody], limits: limits) == .bodyTooLarge)
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        // Request smuggling: conflicting or repeated framing.
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ])
    func malformedRequestsAreRejected(text: String) {
        guard case .failure(let error) = decode([Array(text.utf8)]) else {
            Issue.record("accepted: \(text.debugDescription)")
            return
        }
        guard case .malformed = error else {
            Issue.record("wrong error \(error)")
            return
        }
        #expect(error.apiError.status == 400)
    }

    @Test func errorsMapToTheirStatuses() {
        #expect(HTTPDecodeError.headersTooLarge.apiError.status == 431)
        #expect(HTTPDecodeError.bodyTooLarge.apiError.status == 413)
        #expect(HTTPDecodeError.malformed("x").apiError.status == 400)
    }
}
