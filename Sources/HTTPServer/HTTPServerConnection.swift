import EventLoop
import GatewayCore

/// One client connection: reads and decodes requests, answers them strictly in order (pipelined
/// requests wait, unparsed, until the response before them is finished), and enforces the
/// header, body and idle limits.
final class HTTPServerConnection {
    private enum State {
        /// Waiting for (more of) a request.
        case reading
        /// A handler owns the current request.
        case responding(HTTPResponseWriter)
        case closed
    }

    let tcp: TCPConnection
    let limits: HTTPServerLimits
    private unowned let server: HTTPServer
    private let decoder: HTTPRequestDecoder
    private var state = State.reading
    private var inbound: [UInt8] = []
    private var processing = false
    /// Header deadline or idle timeout, whichever applies to the current state.
    private lazy var timer = LoopTimer(loop: tcp.loop) { [weak self] in self?.timerDidFire() }
    private var headerDeadlineArmed = false
    /// Set at shutdown: finish the current response, then close.
    var closeAfterResponse = false

    init(tcp: TCPConnection, server: HTTPServer) {
        self.tcp = tcp
        self.server = server
        limits = server.limits
        decoder = HTTPRequestDecoder(limits: server.limits)
        tcp.onRead = { [unowned self] bytes in didRead(bytes) }
        tcp.onDisconnect = { [unowned self] _ in didDisconnect() }
        tcp.onDrain = { [unowned self] in
            switch state {
            case .responding(let writer): writer.onWritable?()
            case .reading where queuedAtTimer > 0: armIdleTimer()  // the last response is out: idle from now
            default: break
            }
        }
        tcp.startReading()
        armIdleTimer()
    }

    var loop: EventLoop { tcp.loop }
    var bufferedBytes: Int { tcp.bufferedBytes }
    var isIdle: Bool {
        if case .reading = state { return !decoder.isMidRequest && inbound.isEmpty }
        return false
    }

    func keepsAlive(after request: HTTPRequest) -> Bool {
        request.keepAlive && !closeAfterResponse && !server.isShuttingDown
    }

    func write(_ bytes: [UInt8]) { tcp.write(bytes) }
    func write(_ bytes: UnsafeRawBufferPointer) { tcp.write(bytes) }

    /// Closes now; a handler still responding learns it through `onClientGone`.
    func close() {
        let previous = state
        guard !isClosed else { return }
        state = .closed
        timer.close()
        tcp.close()
        if case .responding(let writer) = previous { writer.clientDidDisconnect() }
        server.connectionDidClose(self)
    }

    private var isClosed: Bool { if case .closed = state { return true } else { return false } }

    private func didRead(_ bytes: UnsafeRawBufferPointer) {
        inbound.append(contentsOf: bytes)
        if case .responding = state {
            // Pipelined bytes wait for the current response; bound what we hold.
            if inbound.count > limits.maxPipelinedBytes { tcp.stopReading() }
            return
        }
        processInbound()
    }

    private func didDisconnect() {
        close()
    }

    func responseDidFinish(_ writer: HTTPResponseWriter) {
        guard case .responding(let current) = state, current === writer else { return }
        state = .reading
        if !keepsAlive(after: writer.request) {
            finishAndClose()
            return
        }
        tcp.startReading()
        armIdleTimer()
        // A pipelined request waiting behind this response starts on the next loop iteration,
        // never nested inside whatever callback finished this one (curl's, for a proxy).
        if !inbound.isEmpty {
            loop.deferToNextIteration { [weak self] in
                guard let self, case .reading = state, !processing else { return }
                processInbound()
            }
        }
    }

    /// Decodes and dispatches buffered requests until one is in progress or the bytes run out.
    private func processInbound() {
        processing = true
        defer { processing = false }
        while case .reading = state, !inbound.isEmpty {
            let result: (consumed: Int, request: HTTPRequest?)
            do {
                result = try decoder.decode(inbound)
            } catch {
                reject(error.apiError)
                return
            }
            inbound.removeFirst(result.consumed)
            if decoder.wantsContinue {
                decoder.didSendContinue()
                tcp.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            }
            guard let request = result.request else {
                // Partial request: the header deadline runs from its first byte, not per read.
                if decoder.isMidRequest && !decoder.headersComplete {
                    if !headerDeadlineArmed {
                        headerDeadlineArmed = true
                        timer.start(afterMilliseconds: limits.headerTimeoutMilliseconds)
                    }
                } else {
                    armIdleTimer()
                }
                return
            }
            headerDeadlineArmed = false
            timer.stop()
            let writer = HTTPResponseWriter(request: request, connection: self)
            state = .responding(writer)
            server.dispatch(request, writer)
        }
    }

    /// Bytes of the last response still queued when the timer was armed (0: truly idle).
    private var queuedAtTimer = 0

    /// Idle means nothing left to write: while a finished response is still queued for a slow
    /// reader, the connection is not idle but writing, and is closed only if that stalls.
    private func armIdleTimer() {
        headerDeadlineArmed = false
        queuedAtTimer = tcp.bufferedBytes
        timer.start(afterMilliseconds: queuedAtTimer > 0 ? limits.stalledWriteTimeoutMilliseconds : limits.idleTimeoutMilliseconds)
    }

    private func timerDidFire() {
        guard case .reading = state else { return }
        if decoder.isMidRequest || !inbound.isEmpty {
            reject(APIError(status: 408, type: "invalid_request_error", code: "request_timeout",
                            message: "The request was not received in time"))
        } else if tcp.bufferedBytes > 0 && tcp.bufferedBytes < queuedAtTimer {
            armIdleTimer()  // still writing the last response, and it is moving
        } else {
            close()  // an idle keep-alive connection, or a reader that stopped: close
        }
    }

    /// Answers a request that could not be read, then closes: after a framing error the byte
    /// stream cannot be trusted (request smuggling), so the connection is never reused.
    private func reject(_ error: APIError) {
        var head = "HTTP/1.1 \(error.status) \(HTTPStatus.reason(error.status))\r\nContent-Type: application/json\r\n"
        head += "Connection: close\r\nContent-Length: \(error.body.count)\r\n\r\n"
        tcp.write(Array(head.utf8) + error.body)
        server.logRejection(error)
        finishAndClose()
    }

    private func finishAndClose() {
        state = .closed
        timer.close()
        tcp.closeAfterWriting()
        server.connectionDidClose(self)
    }
}
