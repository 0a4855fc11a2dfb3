import EventLoop
import GatewayCore

/// An HTTP/1.1 server on one event loop. Each request goes to `handler` with a writer for its
/// response; requests on one connection are answered in order.
public final class HTTPServer {
    public typealias Handler = (HTTPRequest, HTTPResponseWriter) -> Void

    public let loop: EventLoop
    public let limits: HTTPServerLimits
    private var listener: TCPListener?
    private let handler: Handler
    private var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var shutdownCompletion: (() -> Void)?
    private var shutdownTimer: LoopTimer?
    public private(set) var isShuttingDown = false
    /// Called for each request answered by the server itself (bad framing, timeouts).
    public var onRejection: ((APIError) -> Void)?
    /// Called for each accepted connection.
    public var onAccept: (() -> Void)?

    public init(loop: EventLoop, host: String, port: Int, limits: HTTPServerLimits = HTTPServerLimits(),
                reusePort: Bool = false, handler: @escaping Handler) throws {
        self.loop = loop
        self.limits = limits
        self.handler = handler
        listener = try TCPListener(loop: loop, host: host, port: port, reusePort: reusePort) { [unowned self] tcp in
            guard !isShuttingDown else {
                tcp.close()
                return
            }
            let connection = HTTPServerConnection(tcp: tcp, server: self)
            connections[ObjectIdentifier(connection)] = connection
            onAccept?()
        }
    }

    public var port: Int { listener?.port ?? 0 }

    func dispatch(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        handler(request, writer)
    }

    func connectionDidClose(_ connection: HTTPServerConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if isShuttingDown && connections.isEmpty { finishShutdown() }
    }

    func logRejection(_ error: APIError) { onRejection?(error) }

    /// Stops accepting, closes idle connections, lets responses in progress finish for up to
    /// `graceMilliseconds`, then closes the rest (their handlers see `onClientGone` and cancel
    /// upstream work). `completion` runs once every connection is closed.
    public func shutdown(graceMilliseconds: UInt64, completion: @escaping () -> Void = {}) {
        guard !isShuttingDown else { return }
        isShuttingDown = true
        shutdownCompletion = completion
        listener?.close()
        listener = nil
        for connection in Array(connections.values) {
            if connection.isIdle {
                connection.close()
            } else {
                connection.closeAfterResponse = true
            }
        }
        if connections.isEmpty {
            finishShutdown()
            return
        }
        let timer = LoopTimer(loop: loop) { [weak self] in
            guard let self else { return }
            for connection in Array(connections.values) { connection.close() }
        }
        timer.start(afterMilliseconds: graceMilliseconds)
        shutdownTimer = timer
    }

    private func finishShutdown() {
        shutdownTimer?.close()
        shutdownTimer = nil
        let completion = shutdownCompletion
        shutdownCompletion = nil
        completion?()
    }
}
