import Foundation
import Synchronization

/// A hostile endpoint for the bench: answers every request with `response(head)` (the
/// request's head as text) and then holds the connection open until `stop()`, as a server that
/// never closes a stream would. Blocking sockets on a thread of its own, loopback, port 0.
final class HoldingServer: @unchecked Sendable {  // `listener` is used by its thread and `stop`
    let port: Int
    private let listener: Int32
    private let response: @Sendable (String) -> String
    private let held = Mutex<[Int32]>([])

    struct SetupError: Error {}

    init(response: @escaping @Sendable (String) -> String) throws {
        self.response = response
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw SetupError() }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in serve() }.start()
    }

    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            held.withLock { $0.append(connection) }
            Thread { [self] in answer(connection) }.start()
        }
    }

    /// Reads the head (and a body up to its Content-Length), answers, then holds.
    private func answer(_ connection: Int32) {
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(connection, &buffer, buffer.count)
            guard count > 0 else { return }
            request += buffer[..<count]
            let text = String(decoding: request, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            let head = String(text[..<end.lowerBound])
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            guard text.utf8.count - text[..<end.upperBound].utf8.count >= length else { continue }
            let bytes = Array(response(head).utf8)
            _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            return  // and hold: the connection stays open until `stop`
        }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for connection in held.withLock({ $0 }) {
            shutdown(connection, Int32(SHUT_RDWR))
            close(connection)
        }
    }

    /// One SSE chunk body, chunked-encoded.
    static func chunked(_ text: String) -> String {
        String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n"
    }
}
