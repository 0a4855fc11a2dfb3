import EventLoop
import FanIn
import Fusion
import GatewayCore
import UpstreamClient

/// One streamed chat completion the gateway makes on its own behalf (a panel member, the judge,
/// the outer model). It runs on whichever loop it was created on and reports only through the
/// requesting session's fan-in channel, as records tagged with its producer id, so a panel can
/// be spread over every loop while the session's state stays on one.
///
/// Records: `open` (2xx head), `chunk` (one event's JSON), `finished`, `failed` (see
/// `InnerCallRecord`). When the channel is full the call keeps its records in order and pauses
/// its transfer until the consumer frees space.
final class InnerCall {
    let route: ModelRoute
    let producer: UInt16
    private let channel: FanInChannel
    private let client: UpstreamClient
    private var transfer: UpstreamTransfer?
    private var decoder = SSEDecoder()
    private var timer: LoopTimer?
    private var status = 0
    private var errorBody: [UInt8] = []
    private var headers: [(String, String)] = []
    private let secrets: [String]
    private var finished = false
    /// Records not yet accepted by the channel, oldest first.
    private var spill: [(UInt8, [UInt8])] = []
    private var waitingForSpace = false

    /// On `client`'s loop.
    init(client: UpstreamClient, route: ModelRoute, body: [UInt8], depth: Int, timeoutMilliseconds: UInt64,
         connectTimeoutMilliseconds: Int, secrets: [String], channel: FanInChannel, producer: UInt16) {
        self.client = client
        self.route = route
        self.secrets = secrets
        self.channel = channel
        self.producer = producer
        var requestHeaders: [(String, String)] = [
            ("Content-Type", "application/json"), ("Accept", "text/event-stream"),
            // Recursion protection: whoever serves this call must not offer fusion again.
            ("x-fusion-depth", String(depth + 1)),
        ]
        if let key = route.apiKey { requestHeaders.append(("Authorization", "Bearer \(key)")) }
        for (name, value) in route.provider.headers.sorted(by: { $0.key < $1.key }) { requestHeaders.append((name, value)) }
        guard !client.isClosed else {
            // This loop is shutting down: the session learns it like any unreachable upstream.
            fail(.upstreamUnavailable("the gateway is shutting down", code: "shutting_down", status: 503), .unreachable)
            return
        }
        let transfer = client.start(UpstreamRequest(url: route.provider.baseURL + "/chat/completions", headers: requestHeaders,
                                                    body: body, connectTimeoutMilliseconds: connectTimeoutMilliseconds,
                                                    receiveBufferBytes: 4096))
        self.transfer = transfer
        transfer.onHead = { [unowned self] status, headers in
            self.status = status
            self.headers = headers
            if (200..<300).contains(status) { emit(InnerCallRecord.open, []) }
        }
        transfer.onData = { [unowned self] bytes in didReceive(bytes) }
        transfer.onComplete = { [unowned self] failure in didComplete(failure) }
        let timer = LoopTimer(loop: client.loop) { [unowned self] in
            fail(.upstreamUnavailable("\(route.provider.name)/\(route.upstreamModel) gave no complete answer within \(timeoutMilliseconds) ms",
                                      code: "upstream_timeout", status: 504), .timeout)
        }
        timer.start(afterMilliseconds: timeoutMilliseconds)
        self.timer = timer
    }

    /// On the call's loop. Stops the call; nothing more is pushed.
    func cancel() {
        guard !finished else { return }
        stop()
        spill.removeAll()
    }

    private func stop() {
        finished = true
        transfer?.cancel()
        transfer = nil
        timer?.close()
    }

    /// Returns false to pause the transfer.
    private func didReceive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !finished else { return true }
        guard (200..<300).contains(status) else {
            if errorBody.count < 64 * 1024 { errorBody.append(contentsOf: bytes.prefix(64 * 1024 - errorBody.count)) }
            return true
        }
        guard spill.isEmpty else {
            waitForSpace()
            return false
        }
        var sawDone = false
        var invalid = false
        var failedMidStream: String?
        do {
            try decoder.feed(bytes) { event in
                guard !sawDone, !invalid, failedMidStream == nil, !event.data.isEmpty else { return }
                if event.isDone {
                    sawDone = true
                } else if !JSONScanner.isValid(event.data) {
                    invalid = true
                } else if let range = JSONScanner.rangeOfTopLevelValue(forKey: "error", in: event.data),
                          !UnsafeRawBufferPointer(rebasing: event.data[range]).elementsEqual("null".utf8) {
                    // An error chunk: the call failed mid-stream (what it said before is discarded).
                    let error = try? JSONValue.parse(Array(event.data))
                    let message = error?["error"]?["message"]?.stringValue ?? "error chunk"
                    failedMidStream = message
                } else {
                    emit(InnerCallRecord.chunk, event.data)
                }
            }
        } catch {
            invalid = true
        }
        if let message = failedMidStream {
            fail(.upstreamUnavailable("\(route.provider.name) failed mid-stream: \(message)", code: "upstream_error"), .upstreamError)
        } else if invalid {
            fail(.upstreamProtocol("\(route.provider.name) sent an invalid event"), .invalidResponse)
        } else if sawDone {
            // Everything is in: finish now; the transfer completes on its own (connection reuse).
            transfer?.detach(cancelAfterMilliseconds: 2_000)
            transfer = nil
            succeed()
        }
        return true
    }

    private func didComplete(_ failure: UpstreamFailure?) {
        transfer = nil
        guard !finished else { return }
        if let failure {
            let error = ChatCompletionProxy.apiError(for: failure, provider: route.provider.name, midStream: status != 0)
            switch failure {
            case .couldNotConnect, .couldNotResolve, .refused: fail(error, .unreachable)
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
        stop()
        emit(InnerCallRecord.finished, [])
    }

    private func fail(_ error: APIError, _ reason: MemberFailureReason) {
        guard !finished else { return }
        stop()
        emit(InnerCallRecord.failed, InnerCallRecord.encodeFailure(error, reason))
    }

    private func emit(_ kind: UInt8, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { emit(kind, $0) }
    }

    /// Pushes in order; once one record waits, every later one waits behind it.
    private func emit(_ kind: UInt8, _ bytes: UnsafeRawBufferPointer) {
        if spill.isEmpty, channel.push(producer: producer, kind: kind, bytes: bytes) == .pushed { return }
        spill.append((kind, Array(bytes)))
        waitForSpace()
    }

    private func waitForSpace() {
        guard !waitingForSpace else { return }
        waitingForSpace = true
        channel.resumeWhenSpace(on: client.loop) { [weak self] in self?.retrySpill() }
    }

    /// On the call's loop, once the consumer freed space.
    private func retrySpill() {
        waitingForSpace = false
        while let (kind, bytes) = spill.first {
            let result = bytes.withUnsafeBytes { channel.push(producer: producer, kind: kind, bytes: $0) }
            if result == .pushed {
                spill.removeFirst()
            } else if result == .tooLarge {
                spill.removeFirst()  // an event larger than the whole ring: report it as a failure
                fail(.upstreamProtocol("\(route.provider.name) sent an event larger than the fan-in buffer"), .invalidResponse)
            } else {
                waitForSpace()
                return
            }
        }
        transfer?.resume()
    }
}

/// The records an `InnerCall` pushes, and their encoding.
enum InnerCallRecord {
    static let open: UInt8 = 2
    static let chunk: UInt8 = 3
    static let finished: UInt8 = 4
    static let failed: UInt8 = 5

    static func encodeFailure(_ error: APIError, _ reason: MemberFailureReason) -> [UInt8] {
        Array("\(reason.rawValue)\n\(error.status)\n\(error.code)\n\(error.message)".utf8)
    }

    static func decodeFailure(_ bytes: UnsafeRawBufferPointer) -> (APIError, MemberFailureReason) {
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: "\n", maxSplits: 3, omittingEmptySubsequences: false)
        let reason = MemberFailureReason(rawValue: parts.first.map(String.init) ?? "") ?? .upstreamError
        let status = parts.count > 1 ? Int(parts[1]) ?? 502 : 502
        let code = parts.count > 2 ? String(parts[2]) : "upstream_error"
        let message = parts.count > 3 ? String(parts[3]) : "upstream failure"
        return (APIError(status: status, type: "upstream_error", code: code, message: message), reason)
    }
}
