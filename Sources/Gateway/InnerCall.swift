import EventLoop
import Fusion
import GatewayCore
import UpstreamClient

/// One streamed chat completion the gateway makes on its own behalf (a panel member, the judge,
/// the outer model): SSE decoded, each chunk parsed, bounded by a timeout, failures typed.
final class InnerCall {
    enum Outcome {
        case completed
        /// `error` is what a client would be told; `reason` types it for `failed_models`.
        case failed(APIError, MemberFailureReason)
    }

    /// The upstream answered 2xx; events follow.
    var onOpen: (() -> Void)?
    /// One event: its raw `data` bytes (valid during the call) and the parsed chunk.
    var onChunk: ((UnsafeRawBufferPointer, JSONValue) -> Void)?
    var onFinish: ((Outcome) -> Void)?

    let route: ModelRoute
    private let client: UpstreamClient
    private var transfer: UpstreamTransfer?
    private var decoder = SSEDecoder()
    private var timer: LoopTimer?
    private var status = 0
    private var errorBody: [UInt8] = []
    private var headers: [(String, String)] = []
    private let secrets: [String]
    private var finished = false

    init(client: UpstreamClient, route: ModelRoute, body: JSONValue, depth: Int, timeoutMilliseconds: UInt64,
         connectTimeoutMilliseconds: Int, secrets: [String]) {
        self.client = client
        self.route = route
        self.secrets = secrets
        var requestHeaders: [(String, String)] = [
            ("Content-Type", "application/json"), ("Accept", "text/event-stream"),
            // Recursion protection: whoever serves this call must not offer fusion again.
            ("x-fusion-depth", String(depth + 1)),
        ]
        if let key = route.apiKey { requestHeaders.append(("Authorization", "Bearer \(key)")) }
        for (name, value) in route.provider.headers.sorted(by: { $0.key < $1.key }) { requestHeaders.append((name, value)) }
        let transfer = client.start(UpstreamRequest(url: route.provider.baseURL + "/chat/completions", headers: requestHeaders,
                                                    body: body.serialized(), connectTimeoutMilliseconds: connectTimeoutMilliseconds))
        self.transfer = transfer
        transfer.onHead = { [unowned self] status, headers in
            self.status = status
            self.headers = headers
            if (200..<300).contains(status) { onOpen?() }
        }
        transfer.onData = { [unowned self] bytes in
            didReceive(bytes)
            return true
        }
        transfer.onComplete = { [unowned self] failure in didComplete(failure) }
        let timer = LoopTimer(loop: client.loop) { [unowned self] in
            fail(.upstreamUnavailable("\(route.provider.name)/\(route.upstreamModel) gave no complete answer within \(timeoutMilliseconds) ms",
                                      code: "upstream_timeout", status: 504), .timeout)
        }
        timer.start(afterMilliseconds: timeoutMilliseconds)
        self.timer = timer
    }

    /// Stops the call; no callback fires afterwards.
    func cancel() {
        guard !finished else { return }
        finished = true
        transfer?.cancel()
        transfer = nil
        timer?.close()
        onOpen = nil
        onChunk = nil
        onFinish = nil
    }

    private func didReceive(_ bytes: UnsafeRawBufferPointer) {
        guard (200..<300).contains(status) else {
            if errorBody.count < 64 * 1024 { errorBody.append(contentsOf: bytes.prefix(64 * 1024 - errorBody.count)) }
            return
        }
        var sawDone = false
        var invalid = false
        do {
            try decoder.feed(bytes) { event in
                guard !sawDone, !invalid, !finished, !event.data.isEmpty else { return }
                if event.isDone {
                    sawDone = true
                    return
                }
                guard let chunk = try? JSONValue.parse(Array(event.data)) else {
                    invalid = true
                    return
                }
                if let error = chunk["error"], error != .null {
                    let message = error["message"]?.stringValue ?? "error chunk"
                    invalid = true
                    fail(.upstreamUnavailable("\(route.provider.name) failed mid-stream: \(message)", code: "upstream_error"), .upstreamError)
                    return
                }
                onChunk?(event.data, chunk)
            }
        } catch {
            invalid = true
        }
        if invalid {
            fail(.upstreamProtocol("\(route.provider.name) sent an invalid event"), .invalidResponse)
        } else if sawDone {
            // Everything is in: finish now; the transfer completes on its own (connection reuse).
            transfer?.detach(cancelAfterMilliseconds: 2_000)
            transfer = nil
            succeed()
        }
    }

    private func didComplete(_ failure: UpstreamFailure?) {
        transfer = nil
        guard !finished else { return }
        if let failure {
            let error = ChatCompletionProxy.apiError(for: failure, provider: route.provider.name, midStream: status != 0)
            switch failure {
            case .couldNotConnect, .couldNotResolve: fail(error, .unreachable)
            case .timedOut: fail(error, .timeout)
            case .transfer: fail(error, .upstreamError)
            }
        } else if !(200..<300).contains(status) {
            let error = UpstreamErrorMapping.map(status: status, body: errorBody, headers: headers,
                                                 provider: route.provider.name, secrets: secrets)
            fail(error, status == 429 ? .rateLimited : .upstreamError)
        } else {
            succeed()  // ended without [DONE]: some servers do
        }
    }

    private func succeed() {
        guard !finished else { return }
        let callback = onFinish
        cancel()
        callback?(.completed)
    }

    private func fail(_ error: APIError, _ reason: MemberFailureReason) {
        guard !finished else { return }
        let callback = onFinish
        cancel()
        callback?(.failed(error, reason))
    }
}
