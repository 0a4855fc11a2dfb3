internal import CCurl
import EventLoop
import Foundation

/// One libcurl multi handle driven by an `EventLoop` through the multi_socket interface (a
/// `SocketWatcher` per curl socket, kept as long as the socket; one `Timer` for curl's timeout;
/// an `Idle` for "now"), so no call blocks and no thread is added. Its transfers share its
/// connections and DNS cache. `UpstreamClient` runs one or more of these on a loop.
final class CurlMulti {
    let loop: EventLoop
    let multi: UnsafeMutableRawPointer
    private var transfers: [UnsafeMutableRawPointer: UpstreamTransfer] = [:]
    /// Transfers cancelled while curl was on the stack: removed once it returns (curl forbids
    /// `curl_multi_remove_handle` from inside its callbacks).
    private var deferredRemovals: [UpstreamTransfer] = []
    /// Transfers started while curl was on the stack: added once it returns.
    private var deferredAdds: [UpstreamTransfer] = []
    private var insideCurl = 0
    /// Transfers waiting to say that their whole request went out (`onRequestSent`), asked after
    /// each of curl's passes until it has (its first pass or two: only a Fusion session's calls
    /// ask). After the pass, not from curl's socket callback: on an HTTP/2 connection shared by
    /// several transfers, one's request going out changes nothing curl says of the socket.
    private var awaitingSent: [UpstreamTransfer] = []
    private var reportingSent = false
    /// A watcher per open curl socket, kept while curl keeps the socket (a kept-alive
    /// connection between transfers): the next transfer on it starts watching again, where a new
    /// watcher would cost an epoll add and delete (libuv tests the descriptor) and an ioctl per
    /// request. Closed just before curl closes its socket (`curlWillCloseSocket`).
    private var watchers: [curl_socket_t: SocketWatcher] = [:]
    var watcherCount: Int { watchers.count }
    private lazy var timeoutTimer: LoopTimer = LoopTimer(loop: loop) { [unowned self] in socketAction(CURL_SOCKET_TIMEOUT, 0) }
    /// curl asks for timeout 0 ("act now"); a 0 ms uv timer may re-fire within one pass on
    /// libuv 1.44 and curl's own example adds 1 ms, so an idle handle runs it next iteration.
    private lazy var immediate: Idle = Idle(loop: loop) { [unowned self] in
        immediate.stop()
        isDueNow = false
        socketAction(CURL_SOCKET_TIMEOUT, 0)
    }
    /// curl asked to act now (`immediate` is running).
    private var isDueNow = false
    /// Completions being reported (`processCompletions` on the stack).
    private var completing = 0
    /// After `close()`: `start` must not be called (callers check `isClosed` first).
    private(set) var isClosed = false

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    init(loop: EventLoop) {
        _ = Self.globalInit
        self.loop = loop
        multi = curl_multi_init()
        let context = Unmanaged.passUnretained(self).toOpaque()
        CCurl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, context)
        CCurl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, context)
        CCurl_multi_setopt_socket_callback(multi) { _, socket, what, client, _ in
            Unmanaged<CurlMulti>.fromOpaque(client!).takeUnretainedValue().curlWantsSocket(socket, what: what) ? 0 : -1
        }
        CCurl_multi_setopt_timer_callback(multi) { _, timeout, client in
            Unmanaged<CurlMulti>.fromOpaque(client!).takeUnretainedValue().curlWantsTimeout(timeout)
            return 0
        }
    }

    /// Transfers in this handle (running, or detached and finishing their read).
    var transferCount: Int { transfers.count }
    /// Loop milliseconds since when it has had no transfers; nil while it has some.
    private(set) var emptySince: UInt64?

    /// Starts a transfer. Set its callbacks before returning to the loop; none fire before that.
    func start(_ request: UpstreamRequest) -> UpstreamTransfer {
        let transfer = UpstreamTransfer(client: self, request: request)
        precondition(!isClosed, "UpstreamClient used after close()")
        transfers[transfer.easy] = transfer
        emptySince = nil
        if insideCurl > 0 {
            deferredAdds.append(transfer)
        } else {
            curl_multi_add_handle(multi, transfer.easy)
        }
        return transfer
    }

    /// Cancels every transfer and releases curl. Call on the loop before it stops.
    func close() {
        guard !isClosed else { return }
        for transfer in Array(transfers.values) { transfer.cancel() }
        awaitingSent.removeAll()  // each holds this handle: a cycle once closed
        isClosed = true
        timeoutTimer.close()
        immediate.close()
        curl_multi_cleanup(multi)  // closes its connections (their watchers first)
        for watcher in watchers.values { watcher.close() }
        watchers.removeAll()
    }

    /// curl may deliver the held bytes from inside `curl_easy_pause`: count that as being inside
    /// curl, so callbacks that cancel or start transfers are deferred as usual.
    func resume(_ transfer: UpstreamTransfer) {
        insideCurl += 1
        curl_easy_pause(transfer.easy, CCurl_pause_continue())
        insideCurl -= 1
        processCompletions()
    }

    func cancel(_ transfer: UpstreamTransfer) {
        if insideCurl > 0 {
            deferredRemovals.append(transfer)
        } else {
            remove(transfer)
        }
    }

    private func remove(_ transfer: UpstreamTransfer) {
        guard transfers.removeValue(forKey: transfer.easy) != nil else { return }
        if transfers.isEmpty { emptySince = loop.nowMilliseconds }
        if let index = deferredAdds.firstIndex(where: { $0 === transfer }) {
            deferredAdds.remove(at: index)  // never added to curl
        } else {
            curl_multi_remove_handle(multi, transfer.easy)
        }
        transfer.release()
    }

    // MARK: curl → loop

    /// Returns false when the socket cannot be watched (curl then fails its transfer).
    private func curlWantsSocket(_ socket: curl_socket_t, what: Int32) -> Bool {
        if what == CURL_POLL_REMOVE {
            if Self.isLocalSocket(socket) {
                // Not a connection: curl 7.88's threaded resolver's socketpair, which curl closes
                // itself, never through `curlWillCloseSocket`. Its watcher goes now: left stopped,
                // closing it later (an idle shard retired) took whatever descriptor had been given
                // its number since out of epoll (review 43 engine F3).
                watchers.removeValue(forKey: socket)?.close()
            } else {
                // No transfer uses the socket now; a kept-alive connection keeps it open. Not
                // left watched for reading while idle (it would save the epoll_ctl calls of
                // putting it down and taking it up): curl 7.88 closes a discarded connect
                // attempt's socket itself, without CURLOPT_CLOSESOCKETFUNCTION, and says
                // REMOVE after, so a watcher left running would be on a closed descriptor, or
                // on whatever took its number (libuv aborts on the failed epoll_ctl).
                watchers[socket]?.watch([])
            }
            return true
        }
        let watcher: SocketWatcher
        if let known = watchers[socket] {
            watcher = known
        } else {
            // The watcher keeps itself alive until closed (LoopHandle); `watchers` finds it.
            watcher = SocketWatcher(loop: loop, socket: socket) { [unowned self] events in
                var flags: Int32 = 0
                if events.contains(.readable) { flags |= CURL_CSELECT_IN }
                if events.contains(.writable) { flags |= CURL_CSELECT_OUT }
                // An error on the socket (a kept-alive connection the server closed, answered
                // with a reset) is curl's to read, as its own poll loop does: told only "error",
                // curl 7.88 fails the transfer ("select/poll returned error") instead of reading
                // the reset and retrying on a fresh connection (review 48 bench #3: 12% of
                // requests to a server closing after each answer failed).
                if events.contains(.error) { flags |= CURL_CSELECT_IN | CURL_CSELECT_OUT | CURL_CSELECT_ERR }
                socketAction(socket, flags)
            }
            guard watcher.isOpen else { return false }  // libuv could not poll it
            watchers[socket] = watcher
        }
        var events: SocketWatcher.Events = []
        if what & CURL_POLL_IN != 0 { events.insert(.readable) }
        if what & CURL_POLL_OUT != 0 { events.insert(.writable) }
        watcher.watch(events)
        return true
    }

    /// A Unix-domain socket (upstream connections are TCP).
    static func isLocalSocket(_ socket: curl_socket_t) -> Bool {
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(socket, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX
    }

    /// curl closes `socket` (its connection is done): the loop must stop polling it first, or a
    /// new socket given the same number could be confused with it.
    func curlWillCloseSocket(_ socket: curl_socket_t) -> Int32 {
        watchers.removeValue(forKey: socket)?.close()
        return CCurl_close_socket(socket)
    }

    private func curlWantsTimeout(_ milliseconds: Int) {
        isDueNow = milliseconds == 0
        if milliseconds < 0 {
            timeoutTimer.stop()
            immediate.stop()
        } else if milliseconds == 0 {
            timeoutTimer.stop()
            immediate.start()
        } else {
            immediate.stop()
            timeoutTimer.start(afterMilliseconds: UInt64(milliseconds))
        }
    }

    /// Runs what curl asked to do now (a new transfer's request, sent) in this call rather than
    /// on the loop's next pass: from a request's arrival to its upstream `sendto`, the rest of
    /// the callback that started it and the loop's pass to the idle handle were on the critical
    /// path. Not from inside curl or while completions are reported (the loop's pass runs it
    /// then, as before). Callbacks of any transfer, this one's included, may run in this call.
    func runDueWork() {
        guard isDueNow, insideCurl == 0, completing == 0, !isClosed else { return }
        immediate.stop()
        isDueNow = false
        socketAction(CURL_SOCKET_TIMEOUT, 0)
    }

    private func socketAction(_ socket: curl_socket_t, _ flags: Int32) {
        guard !isClosed else { return }
        var running: Int32 = 0
        insideCurl += 1
        curl_multi_socket_action(multi, socket, flags, &running)
        insideCurl -= 1
        // Before completions: a transfer that finished in this pass had sent its request first.
        if !awaitingSent.isEmpty { reportRequestsSent() }
        // After socket_action a socket's watcher may be gone (CURL_POLL_REMOVE): touch none here.
        processCompletions()
    }

    func watchRequestSent(_ transfer: UpstreamTransfer) {
        awaitingSent.append(transfer)
    }

    /// Tells each waiting transfer whose request has gone out, and stops asking it (or one that
    /// ended). In place, without a copy: a callback that starts a transfer asking too appends it
    /// past what this pass looks at.
    private func reportRequestsSent() {
        // Not again from a callback's own curl pass (`sendNow`): the list is being compacted.
        guard !reportingSent else { return }
        reportingSent = true
        defer { reportingSent = false }
        let end = awaitingSent.count
        var kept = 0
        var index = 0
        while index < end {
            let transfer = awaitingSent[index]
            if transfer.reportIfRequestSent() {
                awaitingSent[kept] = transfer
                kept += 1
            }
            index += 1
        }
        awaitingSent.removeSubrange(kept..<end)
    }

    /// Removes cancelled transfers, then reports finished ones. Runs outside curl's callbacks, so
    /// completion handlers may start or cancel transfers freely.
    private func processCompletions() {
        completing += 1
        defer { completing -= 1 }
        while !deferredRemovals.isEmpty {
            let pending = deferredRemovals
            deferredRemovals.removeAll()
            for transfer in pending { remove(transfer) }
        }
        if !deferredAdds.isEmpty {
            let pending = deferredAdds
            deferredAdds.removeAll()
            for transfer in pending { curl_multi_add_handle(multi, transfer.easy) }
        }
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                let transfer = transfers[easy]
            else { continue }
            let code = message.pointee.data.result
            remove(transfer)
            transfer.complete(code)
        }
    }
}

