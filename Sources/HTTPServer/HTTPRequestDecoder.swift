internal import CHTTPParser

/// Incremental HTTP/1.x request decoder over Debian's http_parser.
///
/// `decode` stops twice in every request, with http_parser paused: when the head is complete
/// (before any body byte, so the caller can refuse the request or send `100 Continue`) and when
/// the request is complete. Pipelined requests come out one at a time, in order, while the
/// caller keeps the unconsumed bytes. Socket-free: tests feed it bytes split anywhere.
///
/// Debian builds http_parser lenient (`HTTP_PARSER_STRICT` 0). What that lets through is
/// checked here: header names must be tokens (lenient mode takes spaces in them), NUL is refused
/// in values, HTTP/1.1 needs exactly one Host, and where lenient mode takes any byte in place of
/// a CR or LF (after chunk data, ending a chunk-size line, ending the head or the trailers) the
/// byte is checked once http_parser has passed it.
public final class HTTPRequestDecoder {
    public enum Event {
        /// More bytes are needed.
        case none
        /// The head is complete; `body` is empty and no body byte has been read.
        case head(HTTPRequest)
        case request(HTTPRequest)
    }

    private enum Pause { case none, head, chunkHeader, message }

    public let limits: HTTPServerLimits
    // Heap-allocated: http_parser keeps pointers to both during execute, and callbacks read the
    // parser while it runs (an inout `&parser` would be an exclusivity violation).
    private let parser = UnsafeMutablePointer<http_parser>.allocate(capacity: 1)
    private let settings = UnsafeMutablePointer<http_parser_settings>.allocate(capacity: 1)

    private var url: [UInt8] = []
    private var headers: [(name: String, value: String)] = []
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var inValue = false
    /// Stream offset just after the current header value's last piece.
    private var valueEnd = 0
    private var body: [UInt8] = []
    private var headerBytes = 0
    private var failure: HTTPRejection?
    /// Found at the head but reported only if the caller goes on past it (a head guard's answer
    /// comes first): a declared body larger than the limit.
    private var deferredFailure: HTTPRejection?
    private var pause = Pause.none
    private var head: HTTPRequest?
    private var completed: HTTPRequest?
    private var completedChunked = false

    /// Stream offset of the first byte of the buffer being decoded, and of the buffer http_parser
    /// is executing (for turning callback pointers into offsets).
    private var streamOffset = 0
    private var executeOffset = 0
    private var executeBase: UnsafeRawPointer?
    /// The bytes lenient http_parser passes without looking.
    private var checks = LenientByteChecks()
    /// The current message's bytes consumed in earlier reads while its method was being read
    /// (at most `RequestLine.maxMethodBytes` and a little): with the rest of the line, what an
    /// invalid method is told apart by, however the line was split (review 60 #3).
    private var lineStart: [UInt8] = []
    /// A line whose method http_parser refused, gathered until its LF to be told apart
    /// (`RequestLine`): a 501 or a 400.
    private var refusedLine: [UInt8]?

    /// Past the last chunk of a chunked body: in the trailer section.
    private var inTrailers = false
    /// Trailer fields read (checked and counted like header fields, then dropped).
    private var trailerFields = 0

    /// Some bytes of a request have been seen and the request is not complete yet.
    public private(set) var isMidRequest = false
    /// The current request's headers are complete (its body may still be arriving).
    public private(set) var headersComplete = false
    /// The path of the request in progress once its request line has been read whole (its
    /// headers have begun), for a rejection to answer in the shape that path's API uses.
    public var requestPath: String? {
        guard isMidRequest, headersComplete || !headers.isEmpty || !field.isEmpty else { return nil }
        let end = url.firstIndex(of: UInt8(ascii: "?")) ?? url.endIndex
        return String(decoding: url[..<end], as: UTF8.self)
    }

    /// Body bytes of the request in progress received so far.
    public var bodyBytesReceived: Int { body.count }
    /// Body bytes its `Content-Length` says are still to come (http_parser counts it down); nil
    /// for a chunked body or before the headers are complete.
    public var bodyBytesRemaining: Int? {
        guard headersComplete, CHTTPParser_isChunked(parser) == 0, parser.pointee.content_length != UInt64.max else { return nil }
        return Int(clamping: parser.pointee.content_length)
    }
    /// The head of a request refused once its header section was read (a second Authorization,
    /// an `Expect` or `Content-Encoding` the server does not do, …): the refusal is answered
    /// with the CORS headers and error shape its head calls for, as one refused after the head
    /// is (review 68B #1: a browser saw "Failed to fetch" for a 415). Nil otherwise.
    public var rejectedHead: HTTPRequest? { failure != nil ? head : nil }
    /// The request being read is a `HEAD`, as far as its request line was read: a refusal sent
    /// before its head is whole still goes without a body (review 68B #5). The method is known
    /// once the target began (`url` holds its first bytes).
    public var requestLineIsHead: Bool {
        // Only of the message being read: after a HEAD, a request that fails before its first
        // byte is read as a message still sees the HEAD's method and target (review 72A #11).
        isMidRequest && !url.isEmpty && http_method(rawValue: CHTTPParser_method(parser)) == HTTP_HEAD
    }
    /// The current request asked for `100 Continue` before sending its body; reset by reading.
    public private(set) var wantsContinue = false

    /// http_parser's own header limit (process-wide; Debian builds it at 80 KiB) set far above
    /// any `maxHeaderBytes`, which the decoder enforces itself: a configured 200 KB was cut to
    /// 80 KiB without a word (review 68B #2).
    private static let parserHeaderLimit: Void = http_parser_set_max_header_size(UInt32(HTTPServerLimits.maxHeaderBytesCeiling * 2))

    public init(limits: HTTPServerLimits = HTTPServerLimits()) {
        self.limits = limits
        _ = Self.parserHeaderLimit
        http_parser_init(parser, HTTP_REQUEST)
        http_parser_settings_init(settings)
        settings.pointee.on_message_begin = { parser in
            decoder(parser).beginMessage()
            return 0
        }
        settings.pointee.on_url = { parser, at, length in
            decoder(parser).append(.url, at, length)
        }
        settings.pointee.on_header_field = { parser, at, length in
            let decoder = decoder(parser)
            if decoder.inValue && !decoder.finishHeader() { return -1 }
            return decoder.append(.field, at, length)
        }
        settings.pointee.on_header_value = { parser, at, length in
            decoder(parser).didReadHeaderValue(at, length)
        }
        settings.pointee.on_headers_complete = { parser in
            decoder(parser).didCompleteHeaders()
        }
        settings.pointee.on_body = { parser, at, length in
            decoder(parser).didReadBody(at, length)
        }
        settings.pointee.on_chunk_header = { parser in
            // A chunk that cannot fit the body limit is refused now (413), not after its bytes
            // (or a client's 30 s of silence) arrive.
            guard decoder(parser).chunkFits(parser!.pointee.content_length) else { return -1 }
            // Paused so `decode` can check the byte lenient mode took as the line's LF.
            decoder(parser).pause = .chunkHeader
            // The last chunk (size 0): what follows is the trailer section, a head of its own.
            if parser!.pointee.content_length == 0 { decoder(parser).inTrailers = true }
            http_parser_pause(parser, 1)
            return 0
        }
        settings.pointee.on_message_complete = { parser in
            // The trailer section's last field (no `on_headers_complete` follows trailers).
            guard decoder(parser).finishTrailers() else { return -1 }
            decoder(parser).completeMessage()
            // Stop after one request: the caller answers it before the next is parsed.
            http_parser_pause(parser, 1)
            return 0
        }
    }

    deinit {
        parser.deallocate()
        settings.deallocate()
    }

    /// Decodes from `bytes` up to the next event; returns how many bytes were consumed. Bytes
    /// after an event are not consumed: pass them again next time.
    public func decode(_ bytes: UnsafeRawBufferPointer) throws(HTTPRejection) -> (consumed: Int, event: Event) {
        if let failure { throw failure }
        if let deferredFailure { try fail(deferredFailure) }
        if refusedLine != nil {
            refusedLine!.append(contentsOf: bytes)
            try refuseLineWhenWhole()
            streamOffset += bytes.count
            return (bytes.count, .none)
        }
        var consumed = 0
        // The data pointer is only needed during execute; unretained is enough.
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        while consumed < bytes.count {
            let messageStart = consumed
            pause = .none
            http_parser_pause(parser, 0)
            executeBase = UnsafeRawPointer(bytes.baseAddress! + consumed)
            executeOffset = streamOffset + consumed
            let inHead = !headersComplete || inTrailers
            let trailers = inTrailers  // (the message may end, and this reset, in this pass)
            let count = http_parser_execute(parser, settings, executeBase!.assumingMemoryBound(to: CChar.self), bytes.count - consumed)
            executeBase = nil
            if inHead { checks.expectLFAfterEachCR(bytes, in: consumed..<(consumed + count), base: streamOffset) }
            if trailers { try checked { () throws(HTTPRejection) in try checks.refuseBareLF(bytes, in: consumed..<(consumed + count)) } }
            if count > 0 { checks.lastByte = bytes[consumed + count - 1] }
            consumed += count
            let errno = CHTTPParser_errno(parser)
            if errno != HPE_OK && errno != HPE_PAUSED {
                // http_parser reports a chunk size too large for 64 bits as a bad Content-Length.
                let chunkSize = errno == HPE_INVALID_CONTENT_LENGTH && headersComplete && CHTTPParser_isChunked(parser) != 0
                if failure == nil && errno == HPE_INVALID_METHOD {
                    // A method it does not know, or garbage: told apart on the whole line.
                    refusedLine = lineStart + bytes[messageStart...]
                    try refuseLineWhenWhole()
                    streamOffset += bytes.count
                    return (bytes.count, .none)
                }
                try fail(failure ?? (chunkSize ? .malformed("invalid chunk size") : Self.error(for: errno)))
            }
            if url.isEmpty && !headersComplete && lineStart.count <= RequestLine.maxMethodBytes + 8 {
                lineStart.append(contentsOf: bytes[messageStart..<min(consumed, messageStart + RequestLine.maxMethodBytes + 16)])
            } else if !url.isEmpty || headersComplete {
                lineStart.removeAll(keepingCapacity: true)
            }
            switch pause {
            case .head:
                // Paused on the head's last byte, not yet consumed.
                checks.expect(0x0A, at: streamOffset + consumed, "the header section does not end with CRLF")
                if CHTTPParser_isChunked(parser) != 0 { checks.startChunkLine(at: streamOffset + consumed + 1) }
            case .chunkHeader:
                checks.expect(0x0A, at: streamOffset + consumed - 1, "a chunk-size line does not end with CRLF")
                try checked { () throws(HTTPRejection) in try checks.checkChunkLine(bytes, upTo: consumed, base: streamOffset) }
            case .message where completedChunked:
                checks.expect(0x0A, at: streamOffset + consumed - 1, "the trailer section does not end with CRLF")
            case .message, .none:
                break
            }
            try checked { () throws(HTTPRejection) in try checks.check(bytes, base: streamOffset) }
            switch pause {
            case .head:
                streamOffset += consumed
                return (consumed, .head(head!))
            case .message:
                streamOffset += consumed
                let request = completed!
                completed = nil
                return (consumed, .request(request))
            case .chunkHeader:
                continue
            case .none:
                if count == 0 { break }  // nothing more http_parser will take from these bytes
                continue
            }
            break
        }
        try checked { () throws(HTTPRejection) in try checks.keepChunkLine(bytes, upTo: consumed, base: streamOffset) }
        streamOffset += consumed
        return (consumed, .none)
    }

    public func decode(_ bytes: [UInt8]) throws(HTTPRejection) -> (consumed: Int, event: Event) {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(HTTPRejection) in try decode(buffer) } }
        return try result.get()
    }

    /// Marks the pending `100 Continue` as sent.
    public func didSendContinue() { wantsContinue = false }

    /// The refused line once it is decided (`RequestLine.verdict`: garbage at its first wrong
    /// byte, a well-formed line at its LF; past the head's limit, a 400): a 501 naming a method
    /// the server does not know, else a 400.
    private func refuseLineWhenWhole() throws(HTTPRejection) {
        guard let line = refusedLine else { return }
        switch line.withUnsafeBytes({ RequestLine.verdict($0) }) {
        case .unknownMethod(let method): try fail(.methodNotImplemented(method))
        case .incomplete where line.count <= limits.maxHeaderBytes: return
        case .malformed, .incomplete: try fail(Self.error(for: HPE_INVALID_METHOD))
        }
    }

    private func fail(_ rejection: HTTPRejection) throws(HTTPRejection) -> Never {
        failure = rejection
        throw rejection
    }

    /// Runs one of the byte checks; what it refuses fails the decoder for good.
    private func checked(_ check: () throws(HTTPRejection) -> Void) throws(HTTPRejection) {
        do { try check() } catch { try fail(error) }
    }

    private static func error(for errno: http_errno) -> HTTPRejection {
        switch errno {
        case HPE_HEADER_OVERFLOW: return .headersTooLarge
        default: return .malformed(String(cString: http_errno_description(errno)))
        }
    }

    private func beginMessage() {
        checks.beginMessage()
        url.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        body.removeAll(keepingCapacity: true)
        inValue = false
        headerBytes = 0
        isMidRequest = true
        inTrailers = false
        trailerFields = 0
        headersComplete = false
        wantsContinue = false
        head = nil
    }

    /// Which buffer a head callback's bytes go to (a switch, not a key path: applying a key path
    /// goes through the runtime's generic code, a cold path on every request).
    private enum HeadPart { case url, field, value }

    private func append(_ part: HeadPart, _ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        headerBytes += length
        guard headerBytes <= limits.maxHeaderBytes else {
            failure = .headersTooLarge
            return -1
        }
        let bytes = UnsafeRawBufferPointer(start: at, count: length)
        switch part {
        case .url: url.append(contentsOf: bytes)
        case .field: field.append(contentsOf: bytes)
        case .value: value.append(contentsOf: bytes)
        }
        return 0
    }

    /// A value arrives in pieces only when a read ends inside it: each piece then starts where
    /// the last one ended. A piece that starts further on follows a line break and whitespace:
    /// an obsolete line folding, which RFC 9112 §5.2 lets a server refuse, and which lenient
    /// http_parser would glue onto the previous value (a header hidden inside another).
    private func didReadHeaderValue(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        let start = executeOffset + (executeBase.map { $0.distance(to: UnsafeRawPointer(at!)) } ?? 0)
        if inValue && start != valueEnd {
            failure = .malformed("a header value is folded over several lines (obs-fold)")
            return -1
        }
        inValue = true
        valueEnd = start + length
        return append(.value, at, length)
    }

    /// Files the field just read; false (with `failure` set) when it is not acceptable.
    private func finishHeader() -> Bool {
        defer {
            field.removeAll(keepingCapacity: true)
            value.removeAll(keepingCapacity: true)
            inValue = false
        }
        // Index loops over the bytes (here and for NUL): once per header of every request, where
        // the generic algorithms allocated in the debug build the perf gate counts.
        var index = 0
        while index < field.count, HTTPToken.isTokenByte(field[index]) { index += 1 }
        guard !field.isEmpty, index == field.count else {
            failure = .malformed("the header name \(String(decoding: field, as: UTF8.self).debugDescription) is not a token (no spaces or separators)")
            return false
        }
        // RFC 9110 §5.5: a recipient must reject (or replace) NUL in a field value.
        index = 0
        while index < value.count, value[index] != 0 { index += 1 }
        guard index == value.count else {
            failure = .malformed("a header value contains NUL")
            return false
        }
        guard headers.count + trailerFields < limits.maxHeaderCount else {
            failure = .tooManyHeaders(limit: limits.maxHeaderCount)
            return false
        }
        headerBytes += 4  // ": " and CRLF
        if inTrailers {
            // RFC 9110 §6.5.1: a trailer field is not merged into the header section; it is
            // discarded. Merged, it would bypass the head's checks: a trailer `x-api-key` would
            // be the key charged for a request the head's key authenticated.
            trailerFields += 1
            return true
        }
        // RFC 9110 §5.5: a field value has no trailing white space (http_parser keeps it; the
        // leading is already gone). Else `x-api-key: KEY ` was not the key (review 53 #8).
        while let last = value.last, last == 0x20 || last == 0x09 { value.removeLast() }
        headers.append((String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        return true
    }

    /// Checks the trailer section's last field; false (with `failure` set) when it is not
    /// acceptable.
    private func finishTrailers() -> Bool {
        guard inTrailers, inValue || !field.isEmpty else { return true }
        return finishHeader()
    }

    private func didCompleteHeaders() -> Int32 {
        if inValue || !field.isEmpty, !finishHeader() { return -1 }
        guard headerBytes <= limits.maxHeaderBytes else {
            failure = .headersTooLarge
            return -1
        }
        let major = Int(parser.pointee.http_major), minor = Int(parser.pointee.http_minor)
        guard major == 1 else {
            failure = major > 1 ? .versionNotSupported(major: major, minor: minor) : .malformed("unsupported HTTP version \(major).\(minor)")
            return -1
        }
        // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host, and to
        // any request with more than one.
        let hosts = headers.count(where: { $0.name.asciiCaseInsensitiveEquals("host") })
        if hosts > 1 || (hosts == 0 && minor >= 1) {
            failure = .malformed(hosts == 0 ? "an HTTP/1.1 request needs a Host header" : "more than one Host header")
            return -1
        }
        // From here a refusal has a head to answer with (`rejectedHead`: its CORS headers, its
        // API's error shape).
        head = makeRequest(body: [])
        if let refusal = HeaderSectionRules.refusal(headers, minor: minor) {
            failure = refusal
            return -1
        }
        // http_parser reports "no Content-Length" as ULLONG_MAX.
        let declared = parser.pointee.content_length
        if declared != UInt64.max && declared > UInt64(max(limits.maxBodyBytes, 0)) {
            deferredFailure = .bodyTooLarge
        }
        headersComplete = true
        wantsContinue = minor >= 1 && headers.contains {
            $0.name.asciiCaseInsensitiveEquals("expect") && $0.value.asciiCaseInsensitiveEquals("100-continue")
        }
        pause = .head
        http_parser_pause(parser, 1)
        return 0
    }

    /// Whether a chunk of `size` bytes fits what is left of `maxBodyBytes` (else `failure` is set).
    private func chunkFits(_ size: UInt64) -> Bool {
        guard size <= UInt64(max(limits.maxBodyBytes - body.count, 0)) else {
            failure = .bodyTooLarge
            return false
        }
        return true
    }

    private func didReadBody(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard body.count + length <= limits.maxBodyBytes else {
            failure = .bodyTooLarge
            return -1
        }
        body.append(contentsOf: UnsafeRawBufferPointer(start: at, count: length))
        // The end of a chunk's data (http_parser counts down the chunk in content_length): lenient
        // mode skips the next two bytes whatever they are; they must be CRLF.
        if CHTTPParser_isChunked(parser) != 0 && parser.pointee.content_length == 0, let executeBase, let at {
            let end = executeOffset + executeBase.distance(to: UnsafeRawPointer(at)) + length
            checks.expect(0x0D, at: end, "chunk data is not followed by CRLF")
            checks.expect(0x0A, at: end + 1, "chunk data is not followed by CRLF")
            checks.startChunkLine(at: end + 2)
        }
        return 0
    }

    private func completeMessage() {
        completed = makeRequest(body: body, reusing: head)
        body = []  // handed over: the decoder must not keep a large body alive while it is used
        head = nil
        completedChunked = CHTTPParser_isChunked(parser) != 0
        pause = .message
        inTrailers = false
        isMidRequest = false
        headersComplete = false
        wantsContinue = false
    }

    /// `head`: the same request's head event, whose method and target strings are reused.
    private func makeRequest(body: [UInt8], reusing head: HTTPRequest? = nil) -> HTTPRequest {
        var target = head?.target ?? String(decoding: url, as: UTF8.self)
        var headers = head?.headers ?? self.headers
        if head == nil, let absolute = HTTPRequest.originForm(of: target) {
            // RFC 9112 §3.2.2: a server must accept the absolute form, and its authority is the
            // request's host, whatever `Host` says (review 68B #4: a 404 for every route).
            target = absolute.target
            headers.removeAll { $0.name.asciiCaseInsensitiveEquals("host") }
            headers.append(("Host", absolute.authority))
        }
        return HTTPRequest(
            method: head?.method ?? String(cString: http_method_str(http_method(rawValue: CHTTPParser_method(parser)))),
            target: target,
            versionMajor: Int(parser.pointee.http_major),
            versionMinor: Int(parser.pointee.http_minor),
            headers: headers,
            body: body,
            // Upgrade requests are answered as plain HTTP (RFC 9110 lets a server ignore
            // Upgrade), but http_parser stops at them, so the connection is not reused.
            keepAlive: http_should_keep_alive(parser) != 0 && CHTTPParser_upgrade(parser) == 0 && !HTTPToken.asksToClose(headers)
        )
    }

}

/// Takes the decoder of a parser callback back from `parser->data`.
private func decoder(_ parser: UnsafeMutablePointer<http_parser>?) -> HTTPRequestDecoder {
    Unmanaged<HTTPRequestDecoder>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
}
