import EventLoop
#if canImport(Glibc)
import Glibc
#endif

/// Writes the response to one request: either whole (`respond`) or as a stream
/// (`startStream`, `writeStreamChunk`…, `endStream`). Used on the connection's loop only.
///
/// If the client goes away first, `onClientGone` fires once and every later write is ignored,
/// so producers need no checks beyond stopping their own work there. A response to `HEAD` gets
/// the head a `GET` would (with its `Content-Length` or chunked framing) and no body bytes
/// (RFC 9110 §9.3.2), whatever the handler writes; so does a 304 (§15.4.5).
public final class HTTPResponseWriter {
    public enum State: Equatable { case pending, streaming, finished, clientGone }

    /// The request's head (its body is empty: the handler has it).
    public let request: HTTPRequest
    public private(set) var state = State.pending
    /// The head said `Connection: close` (a body the close delimits, as a stream to HTTP/1.0):
    /// the connection must close once it is out, whatever the request asked (RFC 9112 §9.6).
    private(set) var saidClose = false
    /// The client disconnected (or the server forced it closed) before the response finished.
    public var onClientGone: (() -> Void)?
    /// The connection's write buffer drained (for producers that paused on `bufferedBytes`).
    /// Set it only while waiting (and clear it once resumed): the connection then watches for
    /// drains; the rest of the time its flushes notify no one.
    public var onWritable: (() -> Void)? {
        didSet {
            if (onWritable == nil) != (oldValue == nil) { connection?.updateDrainInterest() }
        }
    }

    private weak var connection: HTTPServerConnection?
    private let chunked: Bool
    private let headOnly: Bool

    init(request: HTTPRequest, connection: HTTPServerConnection) {
        self.request = request
        self.connection = connection
        chunked = request.versionMajor == 1 && request.versionMinor >= 1
        headOnly = request.method == "HEAD"
    }

    public var loop: EventLoop? { connection?.loop }

    /// Bytes written but not yet accepted by the kernel.
    public var bufferedBytes: Int { connection?.bufferedBytes ?? 0 }

    /// What is still on its way to the client, here and in the kernel.
    public var backlog: WriteBacklog { connection?.backlog ?? WriteBacklog(buffered: 0, kernel: 0) }
    /// The pace a client must keep taking what is queued for it (`DrainPace`).
    public var minDrainBytesPerSecond: Int { connection?.limits.minDrainBytesPerSecond ?? HTTPServerLimits().minDrainBytesPerSecond }

    /// Headers added to whatever head this writer sends (the owner's per-request headers, such
    /// as CORS), after the caller's own.
    public var defaultHeaders: [(String, String)] = []

    /// Sends a complete response with `Content-Length`. To HEAD, and as a 304, only the head goes
    /// out, its `Content-Length` still that of `body` (what a 200 to GET would carry).
    /// `whenSent`: run once the response's bytes have left the process or the connection
    /// closed (at once if there is no connection): a body held against a memory bound stays
    /// counted while it waits for a slow reader (review 52C #1).
    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8], whenSent: (() -> Void)? = nil) {
        guard state == .pending, let connection else {
            whenSent?()
            return
        }
        let keepAlive = connection.keepsAlive(after: request)
        saidClose = !keepAlive
        var head = Self.head(status: status, headers: headers + defaultHeaders, keepAlive: keepAlive, announce: !chunked)
        connection.label(headers)
        head.append(contentsOf: "Content-Length: \(body.count)\r\n\r\n".utf8)
        if !headOnly && status != 304 { head.append(contentsOf: body) }
        state = .finished
        connection.write(head)
        if let whenSent { connection.whenWritten(whenSent) }
        connection.responseDidFinish(self)
    }

    /// Runs `action` once what was written so far has left the process or the connection
    /// closed (at once without a connection): for a streamed response, after its end.
    public func whenWritten(_ action: @escaping () -> Void) {
        guard let connection else { return action() }
        connection.whenWritten(action)
    }

    public func respond(_ response: HTTPResponse) {
        respond(status: response.status, headers: response.headers, body: response.body)
    }

    /// Sends the head of a streamed (chunked) response.
    public func startStream(status: Int = 200, headers: [(String, String)]) {
        guard state == .pending, let connection else { return }
        let keepAlive = chunked && connection.keepsAlive(after: request)
        saidClose = !keepAlive
        var head = Self.head(status: status, headers: headers + defaultHeaders, keepAlive: keepAlive)
        connection.label(headers)
        if chunked { head.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8) }
        head.append(contentsOf: "\r\n".utf8)
        state = .streaming
        connection.write(head)
    }

    public func writeStreamChunk(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { writeStreamChunk($0) }
    }

    /// Sends `bytes` as one chunk (framed for HTTP/1.1, raw for HTTP/1.0).
    public func writeStreamChunk(_ bytes: UnsafeRawBufferPointer) {
        writeStreamChunk(byteCount: bytes.count) { write in write(bytes) }
    }

    /// Sends one chunk of `byteCount` bytes, which `pieces` hands over in order to the function
    /// it is given. The pieces are copied once, into the connection's write buffer (no frame is
    /// assembled first); everything written in one loop iteration leaves in one syscall.
    public func writeStreamChunk(byteCount: Int, _ pieces: (_ write: (UnsafeRawBufferPointer) -> Void) -> Void) {
        guard state == .streaming, let connection, byteCount > 0, !headOnly else { return }
        if !chunked {
            pieces { connection.write($0) }
            return
        }
        // The chunk-size line: at most 16 hex digits and CRLF.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 18) { line in
            var length = 0
            var shift = (Int.bitWidth - byteCount.leadingZeroBitCount + 3) / 4 * 4 - 4
            if shift < 0 { shift = 0 }
            while shift >= 0 {
                line[length] = Self.hexDigits.utf8Start[(byteCount >> shift) & 0xF]
                length += 1
                shift -= 4
            }
            line[length] = 0x0D
            line[length + 1] = 0x0A
            connection.write(UnsafeRawBufferPointer(start: line.baseAddress, count: length + 2))
        }
        var written = 0
        pieces { piece in
            written += piece.count
            connection.write(piece)
        }
        precondition(written == byteCount, "a chunk's pieces must add up to its announced size")
        connection.write(UnsafeRawBufferPointer(start: Self.crlf.utf8Start, count: Self.crlf.utf8CodeUnitCount))
    }

    private static let hexDigits: StaticString = "0123456789abcdef"
    private static let crlf: StaticString = "\r\n"

    /// Ends a streamed response (the terminating chunk, or closing the connection on HTTP/1.0).
    public func endStream() {
        guard state == .streaming, let connection else { return }
        state = .finished
        if chunked && !headOnly { connection.write(Array("0\r\n\r\n".utf8)) }
        connection.responseDidFinish(self)
    }

    /// Drops the connection without finishing the response (no terminating chunk): for test
    /// servers simulating a peer that dies mid-stream.
    public func abort() {
        guard state == .pending || state == .streaming, let connection else { return }
        state = .finished
        connection.close()
    }

    /// Called by the connection when the client is gone.
    func clientDidDisconnect() {
        guard state == .pending || state == .streaming else { return }
        state = .clientGone
        let callback = onClientGone
        onClientGone = nil
        onWritable = nil
        callback?()
    }

    /// The status line and headers, without the blank line that ends them. `announce`: an
    /// HTTP/1.0 request's connection kept alive is said to be (RFC 9112 §9.3: a 1.0 client keeps
    /// it only when told; ApacheBench `-k` waited for the idle close: review 60B #4).
    static func head(status: Int, headers: [(String, String)], keepAlive: Bool, announce: Bool = false) -> [UInt8] {
        var head: [UInt8] = []
        head.reserveCapacity(320)
        head.append(contentsOf: "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n".utf8)
        appendDate(to: &head)
        for (name, value) in headers {
            head.append(contentsOf: name.utf8)
            head.append(contentsOf: ": ".utf8)
            // Header values never carry CR/LF: no response splitting whatever a caller passes.
            // (Byte by byte, not `filter`: that built an array per header, per response.)
            for byte in value.utf8 where byte != 0x0D && byte != 0x0A { head.append(byte) }
            head.append(contentsOf: "\r\n".utf8)
        }
        if !keepAlive {
            head.append(contentsOf: "Connection: close\r\n".utf8)
        } else if announce {
            head.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        return head
    }
}

extension HTTPResponseWriter {
    /// `Date: Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §6.6.1: an origin server with a clock
    /// sends it; review 68B #8). Formatted into a stack buffer: no allocation per response.
    static func appendDate(to head: inout [UInt8], now: time_t = time(nil)) {
        var clock = now
        var parts = tm()
        guard gmtime_r(&clock, &parts) != nil, (0...6).contains(parts.tm_wday), (0...11).contains(parts.tm_mon),
              (0...9999).contains(parts.tm_year + 1900) else { return }
        // By hand, not `strftime`: its day and month names follow the process's locale. Byte by
        // byte from two static tables: once per response, no allocation.
        let year = Int(parts.tm_year) + 1900
        let day = Int(parts.tm_wday) * 3, month = Int(parts.tm_mon) * 3
        head.append(contentsOf: "Date: ".utf8)
        head.append(dayNames[day]); head.append(dayNames[day + 1]); head.append(dayNames[day + 2])
        head.append(UInt8(ascii: ",")); head.append(0x20)
        appendTwoDigits(Int(parts.tm_mday), to: &head)
        head.append(0x20)
        head.append(monthNames[month]); head.append(monthNames[month + 1]); head.append(monthNames[month + 2])
        head.append(0x20)
        appendTwoDigits(year / 100, to: &head)
        appendTwoDigits(year % 100, to: &head)
        head.append(0x20)
        appendTwoDigits(Int(parts.tm_hour), to: &head)
        head.append(UInt8(ascii: ":"))
        appendTwoDigits(Int(parts.tm_min), to: &head)
        head.append(UInt8(ascii: ":"))
        appendTwoDigits(Int(parts.tm_sec), to: &head)
        head.append(contentsOf: " GMT\r\n".utf8)
    }

    private static func appendTwoDigits(_ value: Int, to head: inout [UInt8]) {
        head.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value / 10 % 10))
        head.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10))
    }

    private static let dayNames = Array("SunMonTueWedThuFriSat".utf8)
    private static let monthNames = Array("JanFebMarAprMayJunJulAugSepOctNovDec".utf8)
}

public enum HTTPStatus {
    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 204: "No Content"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 402: "Payment Required"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 421: "Misdirected Request"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        case 508: "Loop Detected"
        case 529: "Overloaded"  // Anthropic's, to its own clients
        default: ""  // RFC 9112 §4: the reason phrase may be empty (an upstream's own status, e.g. 529)
        }
    }
}
