internal import CHTTPParser
import GatewayCore

/// Why a request could not be decoded; each maps to the status the server answers with.
public enum HTTPDecodeError: Error, Equatable, Sendable {
    case malformed(String)
    case headersTooLarge
    case bodyTooLarge

    public var apiError: APIError {
        switch self {
        case .malformed(let detail):
            APIError(status: 400, type: "invalid_request_error", code: "bad_request", message: "Malformed HTTP request: \(detail)")
        case .headersTooLarge:
            APIError(status: 431, type: "invalid_request_error", code: "headers_too_large",
                     message: "Request header fields too large")
        case .bodyTooLarge:
            APIError(status: 413, type: "invalid_request_error", code: "body_too_large", message: "Request body too large")
        }
    }
}

/// Incremental HTTP/1.x request decoder over Debian's http_parser.
///
/// `decode` consumes bytes up to the end of one request and stops there (http_parser is paused
/// in `on_message_complete`), so pipelined requests come out one at a time, in order, while the
/// caller keeps the unconsumed bytes. Socket-free: tests feed it bytes split anywhere.
public final class HTTPRequestDecoder {
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
    private var body: [UInt8] = []
    private var headerBytes = 0
    private var failure: HTTPDecodeError?
    private var completed: HTTPRequest?

    /// Some bytes of a request have been seen and the request is not complete yet.
    public private(set) var isMidRequest = false
    /// The current request's headers are complete (its body may still be arriving).
    public private(set) var headersComplete = false
    /// The current request asked for `100 Continue` before sending its body; reset by reading.
    public private(set) var wantsContinue = false

    public init(limits: HTTPServerLimits = HTTPServerLimits()) {
        self.limits = limits
        http_parser_init(parser, HTTP_REQUEST)
        http_parser_settings_init(settings)
        settings.pointee.on_message_begin = { parser in
            decoder(parser).beginMessage()
            return 0
        }
        settings.pointee.on_url = { parser, at, length in
            decoder(parser).append(to: \.url, at, length)
        }
        settings.pointee.on_header_field = { parser, at, length in
            let decoder = decoder(parser)
            if decoder.inValue { decoder.finishHeader() }
            return decoder.append(to: \.field, at, length)
        }
        settings.pointee.on_header_value = { parser, at, length in
            let decoder = decoder(parser)
            decoder.inValue = true
            return decoder.append(to: \.value, at, length)
        }
        settings.pointee.on_headers_complete = { parser in
            decoder(parser).didCompleteHeaders()
        }
        settings.pointee.on_body = { parser, at, length in
            let decoder = decoder(parser)
            guard decoder.body.count + length <= decoder.limits.maxBodyBytes else {
                decoder.failure = .bodyTooLarge
                return -1
            }
            decoder.body.append(contentsOf: UnsafeRawBufferPointer(start: at, count: length))
            return 0
        }
        settings.pointee.on_message_complete = { parser in
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

    /// Decodes from `bytes`; returns how many were consumed and the request they completed, if
    /// any. Bytes after a completed request are not consumed: pass them again next time.
    public func decode(_ bytes: UnsafeRawBufferPointer) throws(HTTPDecodeError) -> (consumed: Int, request: HTTPRequest?) {
        if let failure { throw failure }
        guard bytes.count > 0 else { return (0, nil) }
        // The data pointer is only needed during execute; unretained is enough.
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        http_parser_pause(parser, 0)
        let consumed = http_parser_execute(parser, settings, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        let errno = CHTTPParser_errno(parser)
        if let request = completed {
            completed = nil
            return (consumed, request)
        }
        if errno != HPE_OK && errno != HPE_PAUSED {
            let error = failure ?? Self.error(for: errno)
            failure = error
            throw error
        }
        return (consumed, nil)
    }

    public func decode(_ bytes: [UInt8]) throws(HTTPDecodeError) -> (consumed: Int, request: HTTPRequest?) {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(HTTPDecodeError) in try decode(buffer) } }
        return try result.get()
    }

    /// Marks the pending `100 Continue` as sent.
    public func didSendContinue() { wantsContinue = false }

    private static func error(for errno: http_errno) -> HTTPDecodeError {
        switch errno {
        case HPE_HEADER_OVERFLOW: return .headersTooLarge
        default: return .malformed(String(cString: http_errno_description(errno)))
        }
    }

    private func beginMessage() {
        url.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        body.removeAll(keepingCapacity: true)
        inValue = false
        headerBytes = 0
        isMidRequest = true
        headersComplete = false
        wantsContinue = false
    }

    private func append(to buffer: ReferenceWritableKeyPath<HTTPRequestDecoder, [UInt8]>, _ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        headerBytes += length
        guard headerBytes <= limits.maxHeaderBytes else {
            failure = .headersTooLarge
            return -1
        }
        self[keyPath: buffer].append(contentsOf: UnsafeRawBufferPointer(start: at, count: length))
        return 0
    }

    private func finishHeader() {
        headers.append((String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        headerBytes += 4  // ": " and CRLF
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
    }

    private func didCompleteHeaders() -> Int32 {
        if inValue || !field.isEmpty { finishHeader() }
        guard headerBytes <= limits.maxHeaderBytes else {
            failure = .headersTooLarge
            return -1
        }
        // http_parser reports "no Content-Length" as ULLONG_MAX.
        if parser.pointee.content_length != UInt64.max && parser.pointee.content_length > UInt64(limits.maxBodyBytes) {
            failure = .bodyTooLarge
            return -1
        }
        guard parser.pointee.http_major == 1 else {
            failure = .malformed("unsupported HTTP version \(parser.pointee.http_major).\(parser.pointee.http_minor)")
            return -1
        }
        headersComplete = true
        if parser.pointee.http_major == 1 && parser.pointee.http_minor >= 1,
            headers.contains(where: { $0.name.caseInsensitiveEquals("expect") && $0.value.caseInsensitiveEquals("100-continue") })
        {
            wantsContinue = true
        }
        return 0
    }

    private func completeMessage() {
        let method = String(cString: http_method_str(http_method(rawValue: CHTTPParser_method(parser))))
        completed = HTTPRequest(
            method: method,
            target: String(decoding: url, as: UTF8.self),
            versionMajor: Int(parser.pointee.http_major),
            versionMinor: Int(parser.pointee.http_minor),
            headers: headers,
            body: body,
            // Upgrade requests are answered as plain HTTP (RFC 9110 lets a server ignore
            // Upgrade), but http_parser stops at them, so the connection is not reused.
            keepAlive: http_should_keep_alive(parser) != 0 && CHTTPParser_upgrade(parser) == 0
        )
        isMidRequest = false
        headersComplete = false
        wantsContinue = false
    }
}

/// Takes the decoder of a parser callback back from `parser->data`.
private func decoder(_ parser: UnsafeMutablePointer<http_parser>?) -> HTTPRequestDecoder {
    Unmanaged<HTTPRequestDecoder>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
}
