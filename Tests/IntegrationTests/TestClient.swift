import Foundation
import GatewayCore

/// A blocking HTTP/1.1 client on a raw loopback socket, so tests control every byte: malformed
/// requests, pipelining, slow sends, abrupt disconnects. Every read is bounded by a timeout.
final class TestClient {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let fd: Int32
    private var buffer: [UInt8] = []
    /// Headers of the response being (or last) read, available while its body streams in.
    private(set) var lastResponseHeaders: [(String, String)] = []

    /// `receiveBufferBytes`: a small kernel receive buffer (set before connecting, so the window
    /// stays small), for a client that falls behind after a few kilobytes, not megabytes.
    init(port: Int, timeoutSeconds: Int = 5, receiveBufferBytes: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        if var bytes = receiveBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            // Not closed here: `deinit` runs for an instance whose properties were all set, even
            // when its init throws, and a second close took whatever descriptor had been given the
            // number since: another test's connection, in this one test process (the intermittent
            // EBADF and early EOFs of CI runs 63 and 66).
            throw Failure(description: "connect to \(port) failed: errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "send failed: errno \(errno)") }
            offset += sent
        }
    }

    /// Sends what the kernel takes of `bytes` before a send would wait past the socket's timeout
    /// (its buffers full: the peer stopped reading); returns how many bytes went.
    func sendWhatFits(_ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { break }
            offset += sent
        }
        return offset
    }

    /// Makes the close (`deinit`) a reset, as a process killed with unsent bytes, or a browser
    /// tab closed, resets: the peer hears it at once, whatever waits unread.
    func resetOnClose() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    /// Closes the socket now, as a client that goes away mid-response does.
    func disconnect() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Bytes received on this connection so far, and the last few of them: what a failed read
    /// says, so a timeout tells how far the response had come (CI run 127's one failure said
    /// only "errno 11").
    private var bytesReceived = 0
    private var lastReceived: [UInt8] = []

    /// More bytes; nil at EOF.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            let error = errno
            throw Failure(description: "recv failed or timed out: errno \(error), after \(bytesReceived) bytes, the last: "
                          + String(decoding: lastReceived, as: UTF8.self).debugDescription)
        }
        if count == 0 { return false }
        buffer += chunk[..<count]
        bytesReceived += count
        lastReceived = Array((lastReceived + chunk[..<count]).suffix(200))
        return true
    }

    /// Takes `bytes` into the buffer, at most `chunk` at a time with a pause after each: a slow
    /// but steady reader (`readResponse` then reads from what was taken).
    func readSlowly(_ bytes: Int, chunk: Int, pauseMicroseconds: UInt32) throws {
        var taken = 0
        while taken < bytes {
            var piece = [UInt8](repeating: 0, count: chunk)
            let count = piece.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            let error = errno
            guard count > 0 else {
                // What came before, so a short answer (an error, then a close) says what it was.
                throw Failure(description: "recv \(count == 0 ? "reached EOF" : "failed or timed out: errno \(error)") after \(taken) bytes: "
                              + String(decoding: buffer.prefix(600), as: UTF8.self))
            }
            buffer += piece[..<count]
            taken += count
            usleep(pauseMicroseconds)
        }
    }

    private func readLine() throws -> String {
        while true {
            if let index = buffer.firstIndex(of: 0x0A) {
                let line = buffer[..<index]
                buffer.removeFirst(index + 1)
                return String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
            }
            guard try fill() else { throw Failure(description: "EOF while reading a line") }
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill() else { throw Failure(description: "EOF while reading \(count) bytes") }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// True if the server closed the connection (EOF) before `timeout`.
    func peerClosed() -> Bool {
        if !buffer.isEmpty { return false }
        return (try? fill()) == false
    }

    /// Reads a status line and headers only (for a response to HEAD, which has no body whatever
    /// its Content-Length says).
    func readHead() throws -> TestResponse {
        let statusLine = try readLine()
        var headers: [(String, String)] = []
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            let parts = line.split(separator: ":", maxSplits: 1)
            headers.append((String(parts[0]), parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""))
        }
        return TestResponse(status: Int(statusLine.split(separator: " ")[1])!, headers: headers, body: [])
    }

    /// Reads one response (skipping 1xx). `onChunk` sees each body chunk as it arrives.
    func readResponse(onChunk: ([UInt8]) -> Void = { _ in }) throws -> TestResponse {
        var statusLine = try readLine()
        var headers: [(String, String)] = []
        while true {
            headers = []
            while true {
                let line = try readLine()
                if line.isEmpty { break }
                let parts = line.split(separator: ":", maxSplits: 1)
                headers.append((String(parts[0]), parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""))
            }
            if !statusLine.hasPrefix("HTTP/1.1 1") { break }
            statusLine = try readLine()
        }
        let status = Int(statusLine.split(separator: " ")[1])!
        lastResponseHeaders = headers
        var response = TestResponse(status: status, headers: headers, body: [])
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                let sizeLine = try readLine()
                let size = Int(sizeLine.split(separator: ";")[0], radix: 16)!
                if size == 0 {
                    while try !readLine().isEmpty {}
                    break
                }
                let chunk = try readExactly(size)
                response.chunks.append(chunk)
                response.body += chunk
                onChunk(chunk)
                _ = try readExactly(2)
            }
        } else if let length = response.header("content-length").flatMap({ Int($0) }) {
            response.body = try readExactly(length)
        } else {
            while try fill() {}
            response.body = buffer
            buffer.removeAll()
        }
        return response
    }
}

struct TestResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    var chunks: [[UInt8]] = []

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    var json: JSONValue? { try? JSONValue.parse(body) }

    /// SSE events of the body (data only; comments skipped), as a client decodes them.
    var events: [String] {
        var decoder = SSEDecoder()
        var events: [String] = []
        try? decoder.feed(body) { events.append($0.dataString) }
        return events
    }

    /// Named events (`event:` set), as (name, data JSON).
    var namedEvents: [(name: String, data: JSONValue)] {
        var decoder = SSEDecoder()
        var events: [(String, JSONValue)] = []
        try? decoder.feed(body) { event in
            if !event.name.isEmpty, let json = try? JSONValue.parse(Array(event.data)) { events.append((event.nameString, json)) }
        }
        return events
    }

    /// SSE comment lines (without the leading ": ").
    var comments: [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(": ") }.map { String($0.dropFirst(2)) }
    }

    /// Unnamed events only: what an OpenAI client reads.
    var plainChunksJSON: [JSONValue] {
        var decoder = SSEDecoder()
        var chunks: [JSONValue] = []
        try? decoder.feed(body) { event in
            if event.name.isEmpty, !event.isDone, let json = try? JSONValue.parse(Array(event.data)) { chunks.append(json) }
        }
        return chunks
    }

    /// Event payloads parsed as JSON (excluding `[DONE]`).
    var chunksJSON: [JSONValue] {
        events.filter { $0 != "[DONE]" }.compactMap { try? JSONValue.parse(Array($0.utf8)) }
    }

    /// Concatenated `choices[0].delta.content`.
    var streamedContent: String {
        chunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
    }

    /// A Prometheus sample of a `/metrics` body: the value of the line for `name` (with labels).
    func metric(_ name: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// The `error` object of the last chunk that carries one.
    var streamError: JSONValue? {
        chunksJSON.last { $0["error"] != nil }?["error"]
    }
}
