internal import CCurl
import EventLoop
import Foundation

/// A request to an upstream server.
public struct UpstreamRequest: Sendable {
    public var url: String
    public var method: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var connectTimeoutMilliseconds: Int
    /// curl's receive buffer: the most one `onData` call delivers. Small for streams (events are
    /// small, and it bounds what a paused stream holds), curl's default (16 KiB) otherwise.
    public var receiveBufferBytes: Int?
    /// Called with each address (4 or 16 bytes) and port curl is about to connect to, after DNS
    /// resolution; a non-nil reason refuses it. Such a transfer never reuses a connection (a
    /// pooled one was not checked), never keeps one, and ignores proxy settings.
    public var connectFilter: (@Sendable (_ address: [UInt8], _ port: Int) -> String?)?
    /// The whole transfer's time limit.
    public var totalTimeoutMilliseconds: Int?
    /// Ask for compressed responses (curl decodes them; `onData` sees decoded bytes).
    public var acceptCompression = false
    /// `HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT` entries (curl's `CURLOPT_CONNECT_TO`): the
    /// URL keeps its host (and `Host` header), the connection goes elsewhere.
    public var connectTo: [String] = []

    public init(url: String, method: String = "POST", headers: [(String, String)] = [], body: [UInt8] = [],
                connectTimeoutMilliseconds: Int = 10_000, receiveBufferBytes: Int? = nil) {
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.receiveBufferBytes = receiveBufferBytes
    }
}

/// Why an upstream transfer failed at the transport level (HTTP error statuses are not failures:
/// they arrive through `onHead`).
public enum UpstreamFailure: Error, Equatable, Sendable {
    case couldNotResolve(String)
    case couldNotConnect(String)
    case timedOut(String)
    /// The connection broke or the response was malformed mid-transfer.
    case transfer(String)
    /// The request's `connectFilter` refused every address: why.
    case refused(String)

    public var message: String {
        switch self {
        case .couldNotResolve(let detail), .couldNotConnect(let detail), .timedOut(let detail), .transfer(let detail),
             .refused(let detail):
            detail
        }
    }
}

/// Streaming HTTP client: libcurl's multi_socket interface driven by an `EventLoop` (a
/// `SocketWatcher` per curl socket, one `Timer` for curl's timeout, an `Idle` for "now"), so no
/// call blocks and no thread is added. One client per loop; it shares connections and DNS cache
/// across transfers.
public final class UpstreamClient {
    public let loop: EventLoop
    let multi: UnsafeMutableRawPointer
    private var transfers: [UnsafeMutableRawPointer: UpstreamTransfer] = [:]
    /// Transfers cancelled while curl was on the stack: removed once it returns (curl forbids
    /// `curl_multi_remove_handle` from inside its callbacks).
    private var deferredRemovals: [UpstreamTransfer] = []
    /// Transfers started while curl was on the stack: added once it returns.
    private var deferredAdds: [UpstreamTransfer] = []
    private var insideCurl = 0
    private lazy var timeoutTimer: LoopTimer = LoopTimer(loop: loop) { [unowned self] in socketAction(CURL_SOCKET_TIMEOUT, 0) }
    /// curl asks for timeout 0 ("act now"); a 0 ms uv timer may re-fire within one pass on
    /// libuv 1.44 and curl's own example adds 1 ms, so an idle handle runs it next iteration.
    private lazy var immediate: Idle = Idle(loop: loop) { [unowned self] in
        immediate.stop()
        socketAction(CURL_SOCKET_TIMEOUT, 0)
    }
    /// After `close()`: `start` must not be called (callers check `isClosed` first).
    public private(set) var isClosed = false

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init(loop: EventLoop) {
        _ = Self.globalInit
        self.loop = loop
        multi = curl_multi_init()
        let context = Unmanaged.passUnretained(self).toOpaque()
        CCurl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, context)
        CCurl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, context)
        CCurl_multi_setopt_socket_callback(multi) { _, socket, what, client, socketContext in
            Unmanaged<UpstreamClient>.fromOpaque(client!).takeUnretainedValue()
                .curlWantsSocket(socket, what: what, watcher: socketContext) ? 0 : -1
        }
        CCurl_multi_setopt_timer_callback(multi) { _, timeout, client in
            Unmanaged<UpstreamClient>.fromOpaque(client!).takeUnretainedValue().curlWantsTimeout(timeout)
            return 0
        }
    }

    /// Transfers started on this client so far.
    public private(set) var startedTransferCount = 0

    /// Starts a transfer. Set its callbacks before returning to the loop; none fire before that.
    public func start(_ request: UpstreamRequest) -> UpstreamTransfer {
        let transfer = UpstreamTransfer(client: self, request: request)
        precondition(!isClosed, "UpstreamClient used after close()")
        startedTransferCount += 1
        transfers[transfer.easy] = transfer
        if insideCurl > 0 {
            deferredAdds.append(transfer)
        } else {
            curl_multi_add_handle(multi, transfer.easy)
        }
        return transfer
    }

    /// Cancels every transfer and releases curl. Call on the loop before it stops.
    public func close() {
        guard !isClosed else { return }
        for transfer in Array(transfers.values) { transfer.cancel() }
        isClosed = true
        timeoutTimer.close()
        immediate.close()
        curl_multi_cleanup(multi)
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
        if let index = deferredAdds.firstIndex(where: { $0 === transfer }) {
            deferredAdds.remove(at: index)  // never added to curl
        } else {
            curl_multi_remove_handle(multi, transfer.easy)
        }
        transfer.release()
    }

    // MARK: curl → loop

    /// Returns false when the socket cannot be watched (curl then fails its transfer).
    private func curlWantsSocket(_ socket: curl_socket_t, what: Int32, watcher context: UnsafeMutableRawPointer?) -> Bool {
        if what == CURL_POLL_REMOVE {
            if let context {
                Unmanaged<SocketWatcher>.fromOpaque(context).takeUnretainedValue().close()
                curl_multi_assign(multi, socket, nil)
            }
            return true
        }
        let watcher: SocketWatcher
        if let context {
            watcher = Unmanaged<SocketWatcher>.fromOpaque(context).takeUnretainedValue()
        } else {
            // The watcher keeps itself alive until closed (LoopHandle); curl holds a plain pointer.
            watcher = SocketWatcher(loop: loop, socket: socket) { [unowned self] events in
                var flags: Int32 = 0
                if events.contains(.readable) { flags |= CURL_CSELECT_IN }
                if events.contains(.writable) { flags |= CURL_CSELECT_OUT }
                if events.contains(.error) { flags |= CURL_CSELECT_ERR }
                socketAction(socket, flags)
            }
            guard watcher.isOpen else { return false }  // libuv could not poll it
            curl_multi_assign(multi, socket, Unmanaged.passUnretained(watcher).toOpaque())
        }
        var events: SocketWatcher.Events = []
        if what & CURL_POLL_IN != 0 { events.insert(.readable) }
        if what & CURL_POLL_OUT != 0 { events.insert(.writable) }
        watcher.watch(events)
        return true
    }

    private func curlWantsTimeout(_ milliseconds: Int) {
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

    private func socketAction(_ socket: curl_socket_t, _ flags: Int32) {
        guard !isClosed else { return }
        var running: Int32 = 0
        insideCurl += 1
        curl_multi_socket_action(multi, socket, flags, &running)
        insideCurl -= 1
        // After socket_action a socket's watcher may be gone (CURL_POLL_REMOVE): touch none here.
        processCompletions()
    }

    /// Removes cancelled transfers, then reports finished ones. Runs outside curl's callbacks, so
    /// completion handlers may start or cancel transfers freely.
    private func processCompletions() {
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

/// One upstream request/response in flight. Callbacks run on the client's loop; after
/// `cancel()` none of them fire again.
public final class UpstreamTransfer {
    /// Status and headers of the final (non-1xx) response head.
    public var onHead: ((Int, [(String, String)]) -> Void)?
    /// Response body bytes as they arrive; valid only during the call. Return false to refuse
    /// them: the transfer pauses (curl keeps the bytes) until `resume()`, which delivers them
    /// again. That is the gateway's backpressure: a full fan-in buffer pauses its producer.
    public var onData: ((UnsafeRawBufferPointer) -> Bool)?
    /// The transfer ended: nil on success (whatever the HTTP status), else why it failed.
    public var onComplete: ((UpstreamFailure?) -> Void)?

    let easy: UnsafeMutableRawPointer
    private unowned let client: UpstreamClient
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var connectToList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    private var responseHeaders: [(String, String)] = []
    public private(set) var status = 0
    public private(set) var isFinished = false
    public private(set) var isCancelled = false
    private var detachDeadline: LoopTimer?
    private let connectFilter: (@Sendable ([UInt8], Int) -> String?)?
    /// Why `connectFilter` refused the last address it was asked about.
    private var refusal: String?

    init(client: UpstreamClient, request: UpstreamRequest) {
        self.client = client
        connectFilter = request.connectFilter
        easy = curl_easy_init()
        errorBuffer[0] = 0
        let context = Unmanaged.passUnretained(self).toOpaque()
        CCurl_easy_setopt_string(easy, CURLOPT_URL, request.url)
        CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        CCurl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMilliseconds)
        CCurl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer)
        CCurl_easy_setopt_string(easy, CURLOPT_USERAGENT, "fusion-gateway")
        if let bytes = request.receiveBufferBytes { CCurl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, max(1024, bytes)) }
        // Only http(s), and never follow redirects: an upstream's URL is configuration, not input.
        CCurl_easy_setopt_long(easy, CURLOPT_PROTOCOLS, Int(CURLPROTO_HTTP | CURLPROTO_HTTPS))
        if let milliseconds = request.totalTimeoutMilliseconds { CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, milliseconds) }
        if request.acceptCompression { CCurl_easy_setopt_string(easy, CURLOPT_ACCEPT_ENCODING, "") }
        if !request.connectTo.isEmpty {
            for entry in request.connectTo { connectToList = curl_slist_append(connectToList, entry) }
            CCurl_easy_setopt_slist(easy, CURLOPT_CONNECT_TO, connectToList)
        }
        if connectFilter != nil {
            CCurl_easy_setopt_long(easy, CURLOPT_FRESH_CONNECT, 1)
            CCurl_easy_setopt_long(easy, CURLOPT_FORBID_REUSE, 1)
            CCurl_easy_setopt_string(easy, CURLOPT_PROXY, "")  // a proxy would connect on our behalf, unchecked
            CCurl_easy_setopt_ptr(easy, CURLOPT_OPENSOCKETDATA, context)
            CCurl_easy_setopt_opensocket(easy) { context, _, address in
                let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(context!).takeUnretainedValue()
                return transfer.openSocket(address!)
            }
        }
        if request.method == "POST" {
            CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, request.body.count)
            _ = request.body.withUnsafeBytes { body in
                // COPYPOSTFIELDS copies: the body need not outlive this call.
                CCurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
            }
        } else if request.method != "GET" {
            CCurl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method)
        }
        // "Expect:" off: a 100-continue round trip would add latency to every large body.
        for (name, value) in request.headers + [("Expect", "")] {
            let line = value.isEmpty ? "\(name):" : "\(name): \(value)"
            headerList = curl_slist_append(headerList, line)
        }
        CCurl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList)
        CCurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, context)
        CCurl_easy_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.didReceiveBody(UnsafeRawBufferPointer(start: data, count: size * count))
        }
        CCurl_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, context)
        CCurl_easy_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.didReceiveHeaderLine(UnsafeRawBufferPointer(start: data, count: size * count))
        }
    }

    deinit {
        errorBuffer.deallocate()
    }

    /// curl is about to connect to `address`: open the socket, or refuse.
    private func openSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        var bytes = [UInt8](repeating: 0, count: 16)
        var port: Int32 = 0
        let length = Int(CCurl_sockaddr_ip(address, &bytes, &port))
        guard length > 0 else {
            refusal = "not an IP address"
            return CCurl_socket_bad()
        }
        if let filter = connectFilter, let reason = filter(Array(bytes.prefix(length)), Int(port)) {
            refusal = reason
            return CCurl_socket_bad()
        }
        return CCurl_open_socket(address)
    }

    /// Stops the transfer now (closing its connection); no callback fires afterwards.
    public func cancel() {
        guard !isFinished, !isCancelled else { return }
        isCancelled = true
        dropCallbacks()
        client.cancel(self)
    }

    /// The caller has all it needs (e.g. `[DONE]` arrived) but the response body has not ended:
    /// stop reporting and let curl finish reading it, so the connection can be reused. If it has
    /// not finished within `milliseconds`, it is cancelled.
    public func detach(cancelAfterMilliseconds milliseconds: UInt64) {
        guard !isFinished, !isCancelled else { return }
        dropCallbacks()
        let deadline = LoopTimer(loop: client.loop) { [weak self] in self?.cancel() }
        deadline.start(afterMilliseconds: milliseconds)
        detachDeadline = deadline
    }

    private func dropCallbacks() {
        onHead = nil
        onData = nil
        onComplete = nil
    }

    /// After removal from the multi handle: free curl's resources.
    func release() {
        detachDeadline?.close()
        detachDeadline = nil
        curl_easy_cleanup(easy)
        curl_slist_free_all(headerList)
        headerList = nil
        curl_slist_free_all(connectToList)
        connectToList = nil
    }

    private func didReceiveHeaderLine(_ line: UnsafeRawBufferPointer) -> Int {
        // Returning a count other than line.count aborts the transfer: how a cancel inside a
        // callback stops curl at once.
        guard !isCancelled else { return 0 }
        if line.starts(with: "HTTP/".utf8) {
            responseHeaders.removeAll()
        } else if line.count <= 2 {  // the blank line ending a head
            var code = 0
            CCurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
            if code >= 200 {
                status = code
                onHead?(code, responseHeaders)
            }
        } else if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            // Optional whitespace around the value, and the line's CRLF, are not part of it
            // (RFC 9110 §5.5); trimmed on bytes (Foundation's trimming costs microseconds a line).
            var start = colon + 1
            var end = line.count
            while start < end, Self.isSpace(line[start]) { start += 1 }
            while end > start, Self.isSpace(line[end - 1]) { end -= 1 }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: line[..<colon]), as: UTF8.self)
            let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
            responseHeaders.append((name, value))
        }
        return isCancelled ? 0 : line.count
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }

    public private(set) var isPaused = false

    private func didReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard !isCancelled else { return 0 }
        if let onData, !onData(bytes) {
            isPaused = true
            return isCancelled ? 0 : CCurl_writefunc_pause()
        }
        return isCancelled ? 0 : bytes.count
    }

    /// Resumes a transfer paused by `onData` returning false. Call on the loop, outside curl.
    public func resume() {
        guard isPaused, !isFinished, !isCancelled else { return }
        isPaused = false
        client.resume(self)
    }

    func complete(_ code: CURLcode) {
        guard !isCancelled else { return }
        isFinished = true
        let callback = onComplete
        dropCallbacks()
        guard code != CURLE_OK else {
            callback?(nil)
            return
        }
        let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
        let failure: UpstreamFailure
        if let refusal, code == CURLE_COULDNT_CONNECT {
            callback?(.refused(refusal))
            return
        }
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: failure = .couldNotResolve(detail)
        case CURLE_COULDNT_CONNECT: failure = .couldNotConnect(detail)
        case CURLE_OPERATION_TIMEDOUT: failure = .timedOut(detail)
        default: failure = .transfer(detail)
        }
        callback?(failure)
    }
}
