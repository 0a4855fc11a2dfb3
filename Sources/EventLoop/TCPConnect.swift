internal import CLibUV
import Foundation

/// An outbound TCP connection being made: a host name is resolved on libuv's thread pool
/// (`uv_getaddrinfo`), never on the loop, then connected with `uv_tcp_connect`. `completion`
/// runs once, on the loop, unless `cancel()` came first (a caller's own connect timeout).
public final class TCPConnectAttempt {
    private let loop: EventLoop
    private let port: Int
    private var completion: ((Result<TCPConnection, LoopError>) -> Void)?
    private var resolveRequest: UnsafeMutablePointer<uv_getaddrinfo_t>?
    private var connection: TCPConnection?

    /// Starts connecting to `host` (an IPv4/IPv6 literal or a name) on `port`.
    @discardableResult
    public static func start(loop: EventLoop, host: String, port: Int,
                             completion: @escaping (Result<TCPConnection, LoopError>) -> Void) -> TCPConnectAttempt {
        let attempt = TCPConnectAttempt(loop: loop, port: port, completion: completion)
        attempt.begin(host: host)
        return attempt
    }

    private init(loop: EventLoop, port: Int, completion: @escaping (Result<TCPConnection, LoopError>) -> Void) {
        self.loop = loop
        self.port = port
        self.completion = completion
    }

    /// Gives up: the completion is never called and a half-made connection is closed.
    public func cancel() {
        completion = nil
        if let resolveRequest { uv_cancel(UnsafeMutableRawPointer(resolveRequest).assumingMemoryBound(to: uv_req_t.self)) }
        connection?.close()
        connection = nil
    }

    private func finish(_ result: Result<TCPConnection, LoopError>) {
        guard let completion else {
            if case .success(let connection) = result { connection.close() }
            return
        }
        self.completion = nil
        completion(result)
    }

    private func begin(host: String) {
        guard (1...65535).contains(port) else {
            finish(.failure(LoopError(Int32(UV_EINVAL.rawValue), "connect to \(host):\(port)")))
            return
        }
        var storage = sockaddr_storage()
        let literal = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, Int32(port), $0) } == 0
                || pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) } == 0
        }
        if literal {
            withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(to: $0, host: host) }
            }
            return
        }
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.initialize(to: uv_getaddrinfo_t())
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        resolveRequest = request
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let result = uv_getaddrinfo(loop.uvLoop, request, { request, status, info in
            let attempt = Unmanaged<TCPConnectAttempt>.fromOpaque(request!.pointee.data).takeRetainedValue()
            attempt.resolveRequest = nil
            request!.deinitialize(count: 1)
            request!.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            guard status == 0, let address = info?.pointee.ai_addr else {
                attempt.finish(.failure(LoopError(status == 0 ? Int32(UV_EAI_NONAME.rawValue) : status, "resolve redis host")))
                return
            }
            // The resolver gives no port (no service asked): set ours.
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(info!.pointee.ai_addrlen)))
            }
            withUnsafeMutablePointer(to: &storage) { pointer in
                if pointer.pointee.ss_family == sa_family_t(AF_INET6) {
                    pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = in_port_t(UInt16(attempt.port).bigEndian) }
                } else {
                    pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = in_port_t(UInt16(attempt.port).bigEndian) }
                }
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { attempt.connect(to: $0, host: "resolved") }
            }
        }, host, nil, &hints)
        if result != 0 {
            Unmanaged<TCPConnectAttempt>.fromOpaque(request.pointee.data).release()
            resolveRequest = nil
            request.deinitialize(count: 1)
            request.deallocate()
            finish(.failure(LoopError(result, "resolve \(host)")))
        }
    }

    private func connect(to address: UnsafePointer<sockaddr>, host: String) {
        guard completion != nil else { return }  // cancelled while resolving
        let connection = TCPConnection(loop: loop)
        guard connection.isOpen else {
            finish(.failure(connection.initError ?? LoopError(Int32(UV_EINVAL.rawValue), "uv_tcp_init")))
            return
        }
        self.connection = connection
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        request.initialize(to: uv_connect_t())
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        let result = uv_tcp_connect(request, connection.rawHandle.assumingMemoryBound(to: uv_tcp_t.self), address) { request, status in
            let attempt = Unmanaged<TCPConnectAttempt>.fromOpaque(request!.pointee.data).takeRetainedValue()
            request!.deinitialize(count: 1)
            request!.deallocate()
            attempt.didConnect(status: status)
        }
        if result != 0 {
            Unmanaged<TCPConnectAttempt>.fromOpaque(request.pointee.data).release()
            request.deinitialize(count: 1)
            request.deallocate()
            self.connection = nil
            connection.close()
            finish(.failure(LoopError(result, "connect")))
        }
    }

    private func didConnect(status: Int32) {
        guard let connection else { return }  // cancelled: the close already cancelled the connect
        self.connection = nil
        guard status == 0, connection.isOpen else {
            connection.close()
            finish(.failure(LoopError(status == 0 ? Int32(UV_ECANCELED.rawValue) : status, "connect")))
            return
        }
        uv_tcp_nodelay(connection.rawHandle.assumingMemoryBound(to: uv_tcp_t.self), 1)
        finish(.success(connection))
    }
}
