internal import CCurl
import EventLoop
import Foundation

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
    /// Once, when the whole request has gone out (`requestSent`), noticed after the curl pass
    /// that sent its last byte: for a caller that must know its upstream has the prompt before
    /// any answer, where the transfer lives on another loop than the one that may cut it (a
    /// Fusion session's calls). Nil: not watched (the proxy asks `requestSent` as it cuts).
    public var onRequestSent: (() -> Void)? {
        didSet { if onRequestSent != nil && oldValue == nil && !isFinished && !isCancelled { client.watchRequestSent(self) } }
    }

    let easy: UnsafeMutableRawPointer
    /// The multi handle it runs on (strong: a retired shard stays valid for finished transfers).
    private let client: CurlMulti
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// The request body curl sends (CURLOPT_POSTFIELDS points here), until `releasePostBodyIfSent`.
    private var postBody: UnsafeMutableRawBufferPointer?
    /// Whether the transfer still holds its request body (freed once the response has begun,
    /// from its second body piece, and the body has gone out).
    public var holdsRequestBody: Bool { postBody != nil }
    private let postBodyCount: Int
    /// The body went out whole and was freed (`releasePostBodyIfSent`).
    private var bodySent = false
    /// Body pieces delivered (the response has begun once there is one).
    private var bodyPieces = 0
    private var connectToList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    private var responseHeaders: [(String, String)] = []
    public private(set) var status = 0
    public private(set) var isFinished = false
    public private(set) var isCancelled = false
    /// Bytes of the response's heads so far, interim 1xx heads included, and whether they passed
    /// `maxHeadBytes`: the gateway's own bound, whatever the libcurl build caps (review 123 #3:
    /// headers or `100 Continue` heads without end were bounded only by Debian's patch).
    private var headBytes = 0
    private var headTooLarge = false
    static let maxHeadBytes = 256 << 10
    private var detachDeadline: LoopTimer?
    private let connectFilter: (@Sendable ([UInt8], Int) -> String?)?
    /// Why `connectFilter` refused the last address it was asked about.
    private var refusal: String?

    init(client: CurlMulti, request: UpstreamRequest) {
        self.client = client
        connectFilter = request.connectFilter
        postBodyCount = request.body.count
        easy = curl_easy_init()
        errorBuffer[0] = 0
        let context = Unmanaged.passUnretained(self).toOpaque()
        CCurl_easy_setopt_string(easy, CURLOPT_URL, request.url)
        CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        CCurl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMilliseconds)
        CCurl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer)
        CCurl_easy_setopt_string(easy, CURLOPT_USERAGENT, "fusion-gateway")
        // A connection keeps the multi handle it was made on as its closer (it outlives this
        // transfer; the multi handle outlives its connections).
        CCurl_easy_setopt_ptr(easy, CURLOPT_CLOSESOCKETDATA, Unmanaged.passUnretained(client).toOpaque())
        CCurl_easy_setopt_closesocket(easy) { client, socket in
            Unmanaged<CurlMulti>.fromOpaque(client!).takeUnretainedValue().curlWillCloseSocket(socket)
        }
        if let bytes = request.receiveBufferBytes { CCurl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, max(1024, bytes)) }
        // Only http(s), and never follow redirects: an upstream's URL is configuration, not input.
        CCurl_easy_setopt_long(easy, CURLOPT_PROTOCOLS, Int(CURLPROTO_HTTP | CURLPROTO_HTTPS))
        if let milliseconds = request.totalTimeoutMilliseconds { CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, milliseconds) }
        if request.acceptCompression { CCurl_easy_setopt_string(easy, CURLOPT_ACCEPT_ENCODING, "") }
        if !request.connectTo.isEmpty {
            for entry in request.connectTo { connectToList = curl_slist_append(connectToList, entry) }
            CCurl_easy_setopt_slist(easy, CURLOPT_CONNECT_TO, connectToList)
        }
        if connectFilter == nil, let noProxy = Self.noProxy { CCurl_easy_setopt_string(easy, CURLOPT_NOPROXY, noProxy) }
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
            // A body too large to go out with the head is sent from an upload buffer that lives as
            // long as the transfer: the smallest curl allows (its default is 64 KiB), as a long
            // conversation's stream would hold it for as long as the answer streams.
            CCurl_easy_setopt_long(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16 * 1024)
            CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, request.body.count)
            // Our own copy, not curl's (COPYPOSTFIELDS would keep it until the transfer ends): it
            // is freed once the response has begun and the whole body has gone out, so a stream
            // answering a long conversation does not hold the conversation while it streams.
            let body = UnsafeMutableRawBufferPointer.allocate(byteCount: max(request.body.count, 1), alignment: 1)
            request.body.withUnsafeBytes { body.copyMemory(from: $0) }
            postBody = body
            CCurl_easy_setopt_ptr(easy, CURLOPT_POSTFIELDS, body.baseAddress)
        } else if request.method != "GET" {
            CCurl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method)
        }
        // "Expect:" off: a 100-continue round trip would add latency to every large body.
        // One buffer reused for every line (curl copies each): no String per header per request.
        var line: [CChar] = []
        line.reserveCapacity(256)
        func add(_ name: String, _ value: String) {
            Self.headerLine(name, value, into: &line)
            headerList = line.withUnsafeBufferPointer { curl_slist_append(headerList, $0.baseAddress) }
        }
        for (name, value) in request.headers { add(name, value) }
        add("Expect", "")
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

    /// `Name: value` for curl's header list, NUL-terminated, in `line` (reused). curl sends a
    /// custom header as given, so CR, LF and NUL are dropped here, whatever the source (a
    /// configured header, a key read from the environment with a stray line break): no header
    /// injected upstream, no line cut short at a NUL. An empty value gives `Name:`, which tells
    /// curl to send no such header.
    /// Hosts reached without the proxy curl's environment names (`http_proxy`, `https_proxy`,
    /// `all_proxy`), when one is set: loopback always (the built-in simulator, a local llama.cpp
    /// or vLLM; a leftover `http_proxy` broke the quick start: review 68D #1), then `no_proxy`'s
    /// own. Nil without a proxy variable: curl's default, and no per-request option.
    static let noProxy: String? = noProxy(environment: ProcessInfo.processInfo.environment)

    static func noProxy(environment: [String: String]) -> String? {
        let proxies = ["http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        guard proxies.contains(where: { environment[$0]?.isEmpty == false }) else { return nil }
        let own = (environment["no_proxy"] ?? environment["NO_PROXY"] ?? "").trimmingCharacters(in: .whitespaces)
        if own == "*" { return own }
        return "localhost,127.0.0.0/8,::1" + (own.isEmpty ? "" : "," + own)
    }

    static func headerLine(_ name: String, _ value: String, into line: inout [CChar]) {
        line.removeAll(keepingCapacity: true)
        func append(_ text: String) {
            for byte in text.utf8 where byte != 0x0D && byte != 0x0A && byte != 0 { line.append(CChar(bitPattern: byte)) }
        }
        append(name)
        line.append(CChar(UInt8(ascii: ":")))
        if !value.isEmpty {
            line.append(CChar(UInt8(ascii: " ")))
            append(value)
        }
        line.append(0)
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

    /// Whether the process has no descriptor left, asked after a connect failed (curl says only
    /// "Couldn't connect to server" when it could not open a socket): a socket opened and closed.
    static func outOfDescriptors() -> Bool {
        let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard probe < 0 else {
            close(probe)
            return false
        }
        return errno == EMFILE || errno == ENFILE
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
        onRequestSent = nil
    }

    /// After removal from the multi handle: free curl's resources.
    func release() {
        detachDeadline?.close()
        detachDeadline = nil
        curl_easy_cleanup(easy)
        postBody?.deallocate()  // curl is done with it
        postBody = nil
        curl_slist_free_all(headerList)
        headerList = nil
        curl_slist_free_all(connectToList)
        connectToList = nil
    }

    private func didReceiveHeaderLine(_ line: UnsafeRawBufferPointer) -> Int {
        // Returning a count other than line.count aborts the transfer: how a cancel inside a
        // callback stops curl at once.
        guard !isCancelled else { return 0 }
        headBytes += line.count
        guard headBytes <= Self.maxHeadBytes else {
            headTooLarge = true
            return 0
        }
        // Byte loops, not `starts(with:)` or `firstIndex(of:)`: every line of every response, where
        // the generic algorithms allocated in the debug build the perf gate counts.
        var colonIndex = 0
        while colonIndex < line.count, line[colonIndex] != UInt8(ascii: ":") { colonIndex += 1 }
        if line.count >= 5, line[0] == 0x48, line[1] == 0x54, line[2] == 0x54, line[3] == 0x50, line[4] == 0x2F {  // "HTTP/"
            responseHeaders.removeAll()
        } else if line.count <= 2 {  // the blank line ending a head
            var code = 0
            CCurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
            if code >= 200 {
                status = code
                onHead?(code, responseHeaders)
                responseHeaders = []  // delivered: not kept for as long as the body streams
            }
        } else if colonIndex < line.count {
            let colon = colonIndex
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

    /// Whether the whole request has gone out to the upstream, its body's last byte sent: from
    /// then on the upstream has the prompt, whether or not it has answered yet (a whole answer's
    /// head comes only with the answer).
    public var requestSent: Bool {
        // A finished or cancelled transfer's handle may be freed: what it knew is all there is.
        guard !bodySent, !isFinished, !isCancelled else { return bodySent }
        var uploaded = 0
        return postBodyCount > 0 && CCurl_easy_getinfo_off(easy, CURLINFO_SIZE_UPLOAD_T, &uploaded) == CURLE_OK
            && uploaded == postBodyCount
    }

    /// After a curl pass, while `onRequestSent` waits: calls it if the request has gone out
    /// whole. Returns whether it still waits (false once called, or the transfer ended).
    func reportIfRequestSent() -> Bool {
        guard let callback = onRequestSent, !isFinished, !isCancelled else { return false }
        guard requestSent else { return true }
        onRequestSent = nil
        callback()
        return false
    }

    /// Frees the request body once curl can no longer read it: a response has begun (curl
    /// resends a request only when its reused connection died before answering; redirects are
    /// not followed) and every byte has been sent (a server may answer before reading a body).
    private func releasePostBodyIfSent() {
        guard postBody != nil else { return }
        var uploaded = 0
        guard CCurl_easy_getinfo_off(easy, CURLINFO_SIZE_UPLOAD_T, &uploaded) == CURLE_OK, uploaded == postBodyCount else { return }
        CCurl_easy_setopt_ptr(easy, CURLOPT_POSTFIELDS, nil)
        postBody?.deallocate()
        postBody = nil
        bodySent = true
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }

    public private(set) var isPaused = false

    private func didReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard !isCancelled else { return 0 }
        // From the second piece on: freeing it on the first would delay the first bytes' relay.
        if postBody != nil, bodyPieces > 0 { releasePostBodyIfSent() }
        bodyPieces += 1
        if let onData, !onData(bytes) {
            isPaused = true
            return isCancelled ? 0 : CCurl_writefunc_pause()
        }
        return isCancelled ? 0 : bytes.count
    }

    /// Sends the request now, not on the loop's next pass (which does it otherwise): call once
    /// the callbacks are set and whatever they touch is ready, outside curl's callbacks (from
    /// inside them this does nothing). Any callback may run before this returns, `onComplete`
    /// included (a connection refused at once).
    public func sendNow() {
        guard !isFinished, !isCancelled else { return }
        client.runDueWork()
    }

    /// Resumes a transfer paused by `onData` returning false. Call on the loop, outside curl.
    public func resume() {
        guard isPaused, !isFinished, !isCancelled else { return }
        isPaused = false
        client.resume(self)
    }

    /// What a client reads for the codes a broken connection gives, where curl's fixed text
    /// speaks of files ("Transferred a partial file": review 109 #4). The log keeps curl's.
    static func plainWords(_ code: CURLcode) -> String? {
        switch code {
        case CURLE_PARTIAL_FILE: "the connection closed before the response ended"
        case CURLE_GOT_NOTHING: "the server closed the connection without a response"
        case CURLE_RECV_ERROR: "the connection failed while the response was read"
        case CURLE_SEND_ERROR: "the connection failed while the request was sent"
        default: nil
        }
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
        let description = Self.plainWords(code) ?? String(cString: curl_easy_strerror(code))
        let detail = UpstreamFailure.Detail(client: description, full: errorBuffer[0] != 0 ? String(cString: errorBuffer) : description)
        let failure: UpstreamFailure
        if headTooLarge {
            callback?(.malformedResponse("the upstream's response head passed \(Self.maxHeadBytes >> 10) KiB (headers, or interim 1xx heads, without end)"))
            return
        }
        if let refusal, code == CURLE_COULDNT_CONNECT {
            callback?(.refused(UpstreamFailure.Detail(stringLiteral: refusal)))  // the policy's own words, naming no address
            return
        }
        switch code {
        // curl's threaded resolver needs descriptors too ("getaddrinfo() thread failed to start").
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: failure = Self.outOfDescriptors() ? .outOfDescriptors(detail) : .couldNotResolve(detail)
        case CURLE_COULDNT_CONNECT: failure = Self.outOfDescriptors() ? .outOfDescriptors(detail) : .couldNotConnect(detail)
        case CURLE_OPERATION_TIMEDOUT: failure = .timedOut(detail)
        // curl's answer to a header line over CURL_MAX_HTTP_HEADER, with no message of its own:
        // the upstream's doing, not the gateway's memory (review 74B #4).
        case CURLE_OUT_OF_MEMORY where errorBuffer[0] == 0:
            // A malformed response, as the head bound's (the bench counted it as cut short: review 127 #3).
            failure = .malformedResponse("the upstream sent a header line longer than 100 KiB (or libcurl ran out of memory)")
        default: failure = .transfer(detail)
        }
        callback?(failure)
    }
}
