import EventLoop
import GatewayCore
import HTTPServer
import Providers
import Surfaces
import UpstreamClient

/// A proxy's client side: the stream's head, keep-alives, a client too slow or gone, and the end.
extension CompletionProxy {
    /// The client's stream, its head not sent yet: it goes with the stream's first bytes
    /// (`send`), so a failure before any (an upstream that answered 200 and then only an error)
    /// is still answered with its own status (review 68A #3).
    /// `startingRelay`: false when the relay's start is already in the caller's bytes.
    func openClientStream(startingRelay: Bool = true) {
        guard case .awaitingUpstreamHead = phase else { return }
        phase = .streaming
        makeClientStream()
        if startingRelay { startRelay() }
    }

    /// What the client sees the moment its stream opens (`ClientRelay.start`).
    func startRelay() {
        scratch.withBuffer { out in
            relay.start(into: &out)
            send(out)
        }
    }

    func makeClientStream() {
        // 8 slots (2 KiB): a proxied stream has one producer and drains every iteration.
        let stream = ClientStream(writer: writer, loop: client.loop, capacity: 8, redactor: redactor)
        stream.drainsWhenFull = true  // the transfer is its only producer, on this loop
        stream.onEnded = { [unowned self] in finish() }
        self.stream = stream
    }

    /// The 200 head, once: before the stream's first bytes, a keep-alive's included.
    func commitClientHead() {
        guard writer.state == .pending else { return }
        accounting.sentStatus = 200
        writer.startStream(status: 200, headers: [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),  // tell any proxy in front of us not to buffer
        ] + GenerationHeaders.naming(generationID))
    }

    /// Bytes for the client's stream, its head first if it is not out yet.
    func send(_ bytes: [UInt8]) {
        guard let stream, !bytes.isEmpty else { return }
        commitClientHead()
        stream.emit(bytes)
    }

    /// Nothing reached the client (its head included): the stream is dropped, so `fail` answers
    /// with the error's own status.
    var streamUncommitted: Bool { stream != nil && writer.state == .pending }

    func sendKeepAlive() {
        if case .reading = phase {
            // A whole answer being read off the loop (`WholeAnswer`): a streamed client's head and
            // keep-alives go out meanwhile, as while the upstream thought (review 130 #1: 8.6 s of
            // silence behind busy readers). The relay's start comes with the answer's bytes.
            guard streamed else { return }
            if stream == nil {
                makeClientStream()
                startRelay()
            }
            send(Array(": keep-alive\n\n".utf8))
            return
        }
        openClientStream()
        guard case .streaming = phase else { return }
        send(Array(": keep-alive\n\n".utf8))
    }

    func checkUpstreamIdle() {
        let limit = settings.idleTimeoutMilliseconds
        // Nothing to time (a retry's wait; a paused transfer waits for the client): looked at
        // again a whole limit later. Not yet silent long enough: looked at again when it would be.
        // (The streams' watchdog ticks; a non-streamed request's one-shot check is re-armed.)
        guard let transfer, !transfer.isPaused else {
            idleCheck?.start(afterMilliseconds: limit)
            return
        }
        let idle = client.loop.nowMilliseconds &- lastUpstreamActivity
        guard idle >= limit else {
            idleCheck?.start(afterMilliseconds: limit - idle)
            return
        }
        cutTransfer()
        // Reported as if curl had timed out.
        let what = if case .streaming = phase { "no whole event" } else { "no data" }
        upstreamDidComplete(.timedOut("\(what) from the upstream for \(idle) ms"))
    }

    /// A client that has taken nothing for too long would pin an upstream transfer forever:
    /// drop it (the reason is in the request's log line and record).
    func dropSlowClient() {
        guard !didFinish else { return }
        accounting.failure = .clientTooSlow(afterMilliseconds: slowClientTimeout)
        accounting.cancelled = true
        cutTransfer()
        phase = .finished
        writer.abort()
        finish()
    }

    /// The gateway is stopping and its grace period is over: the client gets the error (in-band
    /// if the stream began) and the record says why it ended.
    func cutOnShutdown() {
        guard !didFinish else { return }
        fail(.cutOnShutdown)
    }

    func clientDidDisconnect() {
        // A response already ending with an error (cut at shutdown, behind a client that stopped
        // reading) is recorded as that error, not as a client that left.
        if accounting.failure == nil { accounting.cancelled = true }
        retryTimer?.close()
        retryTimer = nil
        cutTransfer()
        phase = .finished
        finish()
    }

    /// Stops the upstream call before its end, noting whether its request had gone out whole
    /// and the upstream had not refused it (`ProxyAccounting.promptDelivered`: what a cut call is
    /// charged).
    func cutTransfer() {
        if let transfer, !accounting.upstreamRefused, transfer.requestSent { accounting.promptDelivered = true }
        transfer?.cancel()
        transfer = nil
    }

    /// Queues the end of the response; `finish` runs once it is written.
    func finishClientStream() {
        guard case .streaming = phase else { return }
        phase = .finished
        commitClientHead()
        stream?.emitEnd()
    }

    /// Answers with `error`: as the response if nothing was sent yet, else in-band (an error
    /// chunk and `[DONE]`).
    func fail(_ error: APIError) {
        releaseHeld()  // a collected body is dropped with it (the phase ends below)
        accounting.failure = RecordError(error, redactor: redactor)
        cutTransfer()
        if streamUncommitted {
            stream?.close()
            stream = nil
        }
        if let stream {
            scratch.withBuffer { out in
                relay.fail(error, into: &out)
                send(out)
            }
            phase = .finished
            stream.emitEnd()
        } else {
            accounting.sentStatus = api.status(of: error)
            var error = error
            error.headers += GenerationHeaders.naming(generationID)
            if !clientRetryCanHelp(error) { error.headers.append(("x-should-retry", "false")) }
            writer.respond(error: error, api: api, redactor: redactor)
            phase = .finished
            finish()
        }
    }

    func finish() {
        guard !didFinish else { return }
        didFinish = true
        readTicket?.cancel()
        watchdog?.close()
        idleCheck?.close()
        retryTimer?.close()
        writer.onClientGone = nil
        stream?.close()
        onFinish { [self] in accounting.close(relay: streamed ? relay : nil, estimatedPromptTokens: estimatedPromptTokens, price: pricing) }
    }
}
