import EventLoop

/// One client connection: reads and decodes requests, answers them strictly in order (pipelined
/// requests wait, unparsed, until the response before them is finished), and enforces the
/// header, body and idle limits and the server's head guard. Its deadlines are
/// `HTTPServerConnection+Deadlines.swift`; the state they read is internal, not private.
final class HTTPServerConnection {
    enum State {
        /// Waiting for (more of) a request.
        case reading
        /// A handler owns the current request.
        case responding(HTTPResponseWriter)
        /// The server refused a request: its answer is going out, what the client still sends
        /// is dropped, and the connection closes at EOF or after `lingerMilliseconds`.
        case lingering
        case closed
    }

    let tcp: TCPConnection
    let limits: HTTPServerLimits
    unowned let server: HTTPServer
    let decoder: HTTPRequestDecoder
    var state = State.reading
    var inbound: [UInt8] = []
    /// Capacity of `inbound` kept between requests: a request head and a small body.
    static let keptInboundCapacity = 16 * 1024
    private var processing = false
    /// The head of the request being read, once complete.
    var currentHead: HTTPRequest?
    /// Header deadline or idle timeout, whichever applies to the current state.
    lazy var timer = LoopTimer(loop: tcp.loop) { [weak self] in self?.timerDidFire() }
    var headerDeadlineArmed = false
    /// The idle (or first byte's) timeout found bytes not yet read and waited for the read, once
    /// (`timerDidFire`); a request begun or a new idle period resets it.
    var reprieved = false
    /// When the current request's body began (loop milliseconds; nil: not reading a body).
    var bodyStartedAt: UInt64?
    /// Set at shutdown: finish the current response, then close.
    var closeAfterResponse = false
    /// Requests handed to the server so far: none means the connection was just accepted.
    private var requestsDispatched = 0
    /// When it last had no request in progress (accepted, or its last response handed over),
    /// and its place in the order connections became idle in (the loop's clock has
    /// milliseconds: two connections idle since the same one were chosen between at random).
    private(set) var idleSince: UInt64
    private(set) var idleOrder: UInt64
    /// The bytes of the body being received held against the server's `heldBodies`, kept here:
    /// `abandon` runs in the server's deinit, when its unowned reference may not be read (CI
    /// run 86: a crash under ThreadSanitizer).
    private var heldBody = 0
    private let heldBodies: HeldBytes?
    /// What a body of known length still owes must have come by then (`armBodyTimer`: it only
    /// comes closer).
    var bodyDeadline: UInt64?
    /// A chunked body's current pace window: when it began and the bytes received by then.
    var paceMark: (at: UInt64, bytes: Int)?

    /// While a finished response's bytes are still on their way to the client: the check of its
    /// reader's pace (nil: nothing queued, truly idle).
    var drainCheck: DrainPace?
    /// The last response's `HTTPServer.stalledWriteLabelHeader` value, for `onStalledWrite`.
    private(set) var responseLabel: String?

    init(tcp: TCPConnection, server: HTTPServer) {
        self.tcp = tcp
        self.server = server
        limits = server.limits
        decoder = HTTPRequestDecoder(limits: server.limits)
        heldBodies = server.heldBodies
        idleSince = tcp.loop.nowMilliseconds
        idleOrder = server.nextIdleOrder()
        tcp.onRead = { [unowned self] bytes in didRead(bytes) }
        tcp.onDisconnect = { [unowned self] _ in close() }
        tcp.onDrain = { [unowned self] in
            switch state {
            case .responding(let writer): writer.onWritable?()
            case .reading where drainCheck != nil:
                armIdleTimer()  // the last response is out: idle from now
                resumeAfterBacklog()
            case .closed where tcp.isOpen:
                // The last response is out (`finishAndClose`): the client has the linger time to
                // close its side, not the stalled-write timeout's.
                timer.start(afterMilliseconds: limits.lingerMilliseconds)
            default: break
            }
        }
        tcp.notifiesDrain = false
        tcp.startReading()
        // A new connection has the header timeout for its first byte, not the keep-alive idle
        // timeout: one that connects and says nothing holds its descriptor 10 s, not 60 (review
        // 21 F4). Fires as idle: closed without a word, as it said none.
        timer.start(afterMilliseconds: min(limits.headerTimeoutMilliseconds, limits.idleTimeoutMilliseconds))
    }

    var loop: EventLoop { tcp.loop }

    /// No request begun and nothing left to send, for `minimumMilliseconds` at least, and no
    /// byte of a next request waiting in the kernel (review 67 #2: closing such a connection
    /// reset a request its client had sent; a proxy never resends a POST): what may be closed
    /// to make room for a new connection (its client reconnects when it has something to ask).
    func isIdle(forAtLeast minimumMilliseconds: UInt64) -> Bool {
        guard case .reading = state, !processing, !decoder.isMidRequest, inbound.isEmpty, tcp.bufferedBytes == 0,
              loop.nowMilliseconds &- idleSince >= minimumMilliseconds else { return false }
        return !tcp.hasUnreadBytes
    }

    /// The writer of the request a handler owns, while its response has not begun.
    var unansweredWriter: HTTPResponseWriter? {
        if case .responding(let writer) = state, writer.state == .pending { return writer }
        return nil
    }

    var bufferedBytes: Int { tcp.bufferedBytes }

    /// Notes the label of a response whose head is going out (`stalledWriteLabelHeader`).
    func label(_ headers: [(String, String)]) {
        guard let name = server.stalledWriteLabelHeader else { return }
        responseLabel = nil
        // A plain loop: `first(where:)` cost four allocations a response in the debug build the
        // perf gate counts.
        for index in headers.indices where headers[index].0.asciiCaseInsensitiveEquals(name) {
            responseLabel = headers[index].1
            return
        }
    }
    var backlog: WriteBacklog { tcp.backlog }
    func keepsAlive(after request: HTTPRequest) -> Bool {
        request.keepAlive && !closeAfterResponse && !server.isShuttingDown
    }

    func write(_ bytes: [UInt8]) { tcp.write(bytes) }
    func whenWritten(_ action: @escaping () -> Void) { tcp.whenWritten(action) }
    func write(_ bytes: UnsafeRawBufferPointer) { tcp.write(bytes) }

    /// Shutdown, for this connection: an idle keep-alive connection closes once what it has
    /// queued is sent; one responding, or being refused, finishes, then closes. One that has
    /// not sent its first request yet gets `firstRequestMilliseconds` for it: its client (a proxy
    /// writes its request the moment it connects) has most likely sent it already, and closing
    /// would reset a request that a proxy never retries (nginx does not resend a POST it has
    /// written).
    func beginShutdown(firstRequestMilliseconds: UInt64) {
        closeAfterResponse = true
        switch state {
        case .reading where !decoder.isMidRequest && inbound.isEmpty:
            if requestsDispatched > 0 {
                // Idle between keep-alive requests, but the last response may have finished in
                // this very loop turn and still be queued: it goes out, then the connection closes
                // (a plain close would drop it, and nginx answers that request with 502).
                finishAndClose()
            } else {
                timer.start(afterMilliseconds: firstRequestMilliseconds)  // fires as idle: closes
            }
        case .reading, .responding, .lingering, .closed:
            break  // a refusal going out closes at its own deadline (`lingerMilliseconds`)
        }
    }

    /// Closes now; a handler still responding learns it through `onClientGone`.
    func close() {
        let previous = state
        guard !isClosed else {
            // Still sending its last bytes (`finishAndClose`): cut short (the shutdown's deadline),
            // said as a stall is (review 60B #3: 5 MB of a finished answer were lost without a word).
            if tcp.bufferedBytes > 0 { server.onStalledWrite?(tcp.bufferedBytes, responseLabel) }
            tcp.close()
            return
        }
        state = .closed
        timer.close()
        tcp.close()
        releaseHeldBody()
        if case .responding(let writer) = previous { writer.clientDidDisconnect() }
        server.connectionDidClose(self)
    }

    /// Its server is gone (see `HTTPServer.deinit`): closes the socket without a word to the
    /// server or the handler (the writer sees its connection gone, weakly).
    func abandon() {
        state = .closed
        timer.close()
        tcp.close()
        releaseHeldBody()
    }

    /// The body received so far of the request in progress, held against `heldBodies`: false
    /// when it would pass the bound.
    private func holdReceivedBody() -> Bool {
        guard let held = heldBodies else { return true }
        let received = decoder.bodyBytesReceived
        guard received > heldBody else { return true }
        guard held.reserve(received - heldBody) else { return false }
        heldBody = received
        return true
    }

    private func releaseHeldBody() {
        heldBodies?.release(heldBody)
        heldBody = 0
    }

    private var isClosed: Bool { if case .closed = state { return true } else { return false } }

    /// Whether anyone waits for the write buffer to drain: a handler paused on `bufferedBytes`
    /// (its writer's `onWritable`), or the idle timer while a finished response is still queued.
    /// Called whenever either changes.
    func updateDrainInterest() {
        switch state {
        case .responding(let writer): tcp.notifiesDrain = writer.onWritable != nil
        case .reading: tcp.notifiesDrain = drainCheck != nil
        case .lingering: tcp.notifiesDrain = false
        case .closed: tcp.notifiesDrain = tcp.isOpen && tcp.bufferedBytes > 0
        }
    }

    private func didRead(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .reading:
            inbound.append(contentsOf: bytes)
            processInbound()
        case .responding:
            // Pipelined bytes wait for the current response; bound what we hold.
            inbound.append(contentsOf: bytes)
            if inbound.count > limits.maxPipelinedBytes {
                tcp.stopReading()
                // Unread, the client's close would go unnoticed until the response ends: a
                // deliberation would run on for nobody (review 60B #2). Ask the kernel now and then:
                // it sees a reset at once, and a close once the bytes before its FIN are in our
                // receive buffer (a FIN behind more than that waits for reading, as in nginx).
                timer.start(afterMilliseconds: Self.peerProbeMilliseconds)
            }
        case .lingering, .closed:
            break  // dropped unread
        }
    }

    func responseDidFinish(_ writer: HTTPResponseWriter) {
        guard case .responding(let current) = state, current === writer else { return }
        state = .reading
        idleSince = loop.nowMilliseconds
        idleOrder = server.nextIdleOrder()
        if writer.saidClose || !keepsAlive(after: writer.request) {
            finishAndClose()
            return
        }
        armIdleTimer()
        guard !writesBacklogged else {
            tcp.stopReading()  // until the client takes what waits (`onDrain`)
            return
        }
        tcp.startReading()
        scheduleInbound()
    }

    /// More response bytes wait for the client than `maxQueuedResponseBytes`: its next request
    /// waits too (backpressure on pipelining).
    private var writesBacklogged: Bool { tcp.bufferedBytes > limits.maxQueuedResponseBytes }

    /// The client took what waited: read and answer its pipelined requests again.
    private func resumeAfterBacklog() {
        guard case .reading = state, !writesBacklogged else { return }
        tcp.startReading()
        scheduleInbound()
    }

    /// A pipelined request waiting behind a response starts on the next loop iteration, never
    /// nested inside whatever callback finished that response (curl's, for a proxy).
    private func scheduleInbound() {
        guard !inbound.isEmpty else { return }
        loop.deferToNextIteration { [weak self] in
            guard let self, case .reading = state, !processing else { return }
            processInbound()
        }
    }

    /// Decodes buffered bytes: runs the head guard on each complete head, dispatches each
    /// complete request, and stops once one is in progress or the bytes run out.
    private func processInbound() {
        processing = true
        defer { processing = false }
        decoding: while case .reading = state {
            // Answers the server writes at once (a page, a refusal) would otherwise pile up for a
            // client that pipelines and never reads.
            if writesBacklogged && !decoder.isMidRequest {
                tcp.stopReading()
                return
            }
            let step: (consumed: Int, event: HTTPRequestDecoder.Event)
            do {
                step = try decoder.decode(inbound)
            } catch {
                refuse(server.render(error, path: decoder.requestPath, head: currentHead ?? decoder.rejectedHead))
                return
            }
            inbound.removeFirst(step.consumed)
            // A large request's buffer is not kept for the connection's life (keep-alive).
            if inbound.isEmpty && inbound.capacity > Self.keptInboundCapacity { inbound = [] }
            switch step.event {
            case .head(let head):
                currentHead = head
                if let refusal = server.headGuard?(head) {
                    refuse(refusal)
                    return
                }
            case .request(let request):
                releaseHeldBody()  // the body is the handler's now
                currentHead = nil
                headerDeadlineArmed = false
                bodyStartedAt = nil
                bodyDeadline = nil
                paceMark = nil
                timer.stop()
                // The writer keeps the head only: the body is the handler's, and a stream can
                // outlast its use by far.
                var head = request
                head.body = []
                let writer = HTTPResponseWriter(request: head, connection: self)
                state = .responding(writer)
                requestsDispatched += 1
                updateDrainInterest()
                server.dispatch(request, writer)
            case .none:
                break decoding
            }
        }
        guard case .reading = state else { return }
        if decoder.wantsContinue {
            // Only now: the head guard and the body limit have had their say.
            decoder.didSendContinue()
            tcp.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        // Partial request: the header deadline runs from its first byte, not per read.
        if decoder.isMidRequest && !decoder.headersComplete {
            if !headerDeadlineArmed {
                headerDeadlineArmed = true
                reprieved = false
                timer.start(afterMilliseconds: limits.headerTimeoutMilliseconds)
            }
        } else if decoder.isMidRequest {
            guard holdReceivedBody() else {
                refuse(server.render(.bodiesAtCapacity, path: decoder.requestPath, head: currentHead))
                return
            }
            armBodyTimer()
        }
        // Else nothing has started (the bytes were empty lines, which a request may follow and
        // the parser skips, RFC 9112 §2.2): they are no activity, and whatever deadline runs
        // (a new connection's header timeout, the idle timeout since the last response) keeps
        // running. Re-armed here, `\r\n` every 55 s held a connection for weeks.
    }


    /// How often a connection whose reading is paused mid-response asks whether its client left.
    static let peerProbeMilliseconds: UInt64 = 1_000

    /// Answers a request the server will not handle (unreadable, or refused by the head guard)
    /// and closes: after a framing error the byte stream cannot be trusted (request smuggling),
    /// so the connection is never reused. What the client still sends is read and dropped until
    /// it closes or `lingerMilliseconds` pass (see `TCPConnection.shutdownAfterWriting`).
    func refuse(_ response: HTTPResponse) {
        releaseHeldBody()  // what it still sends is dropped
        var bytes = HTTPResponseWriter.head(status: response.status, headers: response.headers, keepAlive: false)
        bytes.append(contentsOf: "Content-Length: \(response.body.count)\r\n\r\n".utf8)
        let isHead = currentHead.map { $0.method == "HEAD" } ?? decoder.requestLineIsHead
        if !isHead { bytes.append(contentsOf: response.body) }
        tcp.write(bytes)
        state = .lingering
        updateDrainInterest()
        inbound.removeAll()
        tcp.startReading()
        tcp.shutdownAfterWriting()
        timer.start(afterMilliseconds: limits.lingerMilliseconds)
    }

    /// Closes once the last response has gone out. Until then the connection still counts as
    /// open: a shutdown waits for those bytes (within its grace period, whose deadline cuts them
    /// short like any response) rather than exiting with a slow reader's answer unsent.
    ///
    /// A lingering close, as refusals have: the FIN follows the last bytes, and what the client
    /// still sends (a pipelined request, an HTTP/1.0 client's trailing CRLF) is read and dropped
    /// until it closes. Closed with those bytes unread, the kernel answered with a reset that
    /// destroyed the response's unsent tail (review 68B #3: 4,003 of 22,654 bytes arrived).
    private func finishAndClose() {
        state = .closed
        tcp.onClosed = { [weak self] in
            guard let self else { return }  // the server is gone already (the loop's teardown)
            timer.close()
            server.connectionDidClose(self)
        }
        tcp.startReading()
        tcp.shutdownAfterWriting()
        updateDrainInterest()
        if tcp.bufferedBytes > 0 {
            // The same drain check as a keep-alive connection's last response, from now.
            startDrainCheck()
            timer.start(afterMilliseconds: limits.stalledWriteTimeoutMilliseconds)
        } else {
            timer.start(afterMilliseconds: limits.lingerMilliseconds)
        }
    }
}
