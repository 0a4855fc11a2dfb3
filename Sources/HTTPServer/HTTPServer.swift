import EventLoop

/// An HTTP/1.1 server on one event loop. Each request goes to `handler` with a writer for its
/// response; requests on one connection are answered in order.
///
/// The server answers some requests itself: those it cannot read (`HTTPRejection`, rendered by
/// `renderRejection`) and those its `headGuard` refuses. It knows no API's error shape; its
/// owner supplies both.
public final class HTTPServer {
    public typealias Handler = (HTTPRequest, HTTPResponseWriter) -> Void
    /// Sees a request's head (its `body` is empty) before any body byte is read and before
    /// `100 Continue` is sent. A response refuses the request: it is sent with
    /// `Connection: close` and the connection is closed without reading the body.
    public typealias HeadGuard = (HTTPRequest) -> HTTPResponse?

    public let loop: EventLoop
    public let limits: HTTPServerLimits
    private var listener: TCPListener?
    private let handler: Handler
    private var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var shutdownCompletion: (() -> Void)?
    private var shutdownTimer: LoopTimer?
    public private(set) var isShuttingDown = false
    /// `shutdown` is taking what the kernel queued (`stopAccepting`): those connections are read
    /// on the loop's next pass, once the server is shutting down, so their answers say
    /// `Connection: close` (review 86 #1: one read at once was answered keep-alive, then closed).
    private var takingQueue = false
    /// How the server's own rejections look on the wire (status, headers, body), given the
    /// request's path when its request line was read whole (an API answers in its own shape).
    /// `head`: the request's head when it was read whole before the rejection (a body too large
    /// or too slow), for headers that depend on it (CORS, the error shape a client asked for).
    public var renderRejection: (HTTPRejection, _ path: String?, _ head: HTTPRequest?) -> HTTPResponse = { rejection, _, _ in
        HTTPResponse.plainText(rejection)
    }
    /// See `HeadGuard`; nil lets every request through.
    public var headGuard: HeadGuard?
    /// Called for each request the server rejected itself (bad framing, limits, timeouts).
    public var onRejection: ((HTTPRejection, _ path: String?) -> Void)?
    /// Called for each accepted connection that is served (not for those over `maxConnections`).
    public var onAccept: (() -> Void)?
    /// Called when a connection is closed because its client stopped taking the end of a response
    /// already handed over (its record filed, so nobody else can tell): the bytes left unsent.
    public var onStalledWrite: ((_ unsentBytes: Int, _ label: String?) -> Void)?
    /// A response header whose value names the response in `onStalledWrite` (the gateway's
    /// generation id: a warning that said only "a client stopped reading" could not be matched
    /// with its record, review 125 #2); the last response head sent on the connection.
    public var stalledWriteLabelHeader: String?
    /// Connections closed at once because `maxConnections` were open, none of them idle.
    public private(set) var refusedConnections = 0
    /// Idle connections (no request begun) closed to make room for a new one at
    /// `maxConnections`, the longest idle first.
    public private(set) var evictedConnections = 0
    /// The bytes of request bodies still being received, across every server sharing it (each
    /// loop's): a body that would pass it is refused with a 503 (`bodiesAtCapacity`). Nil: only
    /// each body's `maxBodyBytes` bounds them (review 66 #2: 100 connections trickling the last
    /// bytes of 16 MiB bodies held 2.3 GB for an hour).
    public var heldBodies: HeldBytes?
    /// Called for each of those.
    public var onConnectionRefused: (() -> Void)?
    /// Called for each idle connection closed to make room (`evictedConnections`).
    public var onConnectionEvicted: (() -> Void)?
    /// A connection could not be accepted (the process is out of descriptors).
    public var onAcceptError: ((LoopError) -> Void)? {
        get { listener?.onAcceptError }
        set { listener?.onAcceptError = newValue }
    }

    public init(loop: EventLoop, host: String, port: Int, limits: HTTPServerLimits = HTTPServerLimits(),
                reusePort: Bool = false, handler: @escaping Handler) throws {
        self.loop = loop
        self.limits = limits
        self.handler = handler
        listener = try TCPListener(loop: loop, host: host, port: port, reusePort: reusePort) { [unowned self] tcp in
            if !isShuttingDown && connections.count >= limits.maxConnections, let idle = longestIdleConnection() {
                // A connection that has not begun a request makes room (nginx reuses such ones
                // too): connections that never send a byte filled every slot and kept every
                // client out, a health check included (review 66 #1).
                evictedConnections += 1
                onConnectionEvicted?()
                idle.close()
            }
            guard !isShuttingDown, connections.count < limits.maxConnections else {
                if !isShuttingDown {
                    refusedConnections += 1
                    onConnectionRefused?()
                }
                tcp.close()
                return
            }
            let connection = HTTPServerConnection(tcp: tcp, server: self)
            connections[ObjectIdentifier(connection)] = connection
            onAccept?()
            if !takingQueue { tcp.readAvailable() }  // the request is usually there already: answered without a poll
        }
    }

    /// A server dropped without `shutdown` (a test's, or a start that failed half way) closes its
    /// listener and connections: their callbacks reach it, and each connection, unowned, and a
    /// client's next byte must not find them gone. On the loop thread, or once the loop stopped.
    deinit {
        listener?.close()
        for connection in connections.values { connection.abandon() }
    }

    /// The connection idle longest with no request begun and nothing left to send, idle for
    /// `firstRequestWindowMilliseconds` at least (as a shutdown gives a new connection's first
    /// request); scanned only when every slot is taken.
    private func longestIdleConnection() -> HTTPServerConnection? {
        var oldest: HTTPServerConnection?
        for connection in connections.values where oldest.map({ connection.idleOrder < $0.idleOrder }) ?? true {
            if connection.isIdle(forAtLeast: Self.firstRequestWindowMilliseconds) { oldest = connection }
        }
        return oldest
    }

    private var idleSequence: UInt64 = 0

    /// The next place in the order connections become idle in.
    func nextIdleOrder() -> UInt64 {
        idleSequence &+= 1
        return idleSequence
    }

    public var port: Int { listener?.port ?? 0 }
    /// Connections open now (including ones lingering after a refusal).
    public var openConnections: Int { connections.count }

    /// The requests a handler owns that have no response yet (waiting on a store, an upstream,
    /// a timer): what a shutdown whose grace period ended still has to answer.
    public var unansweredRequests: [HTTPResponseWriter] {
        connections.values.compactMap(\.unansweredWriter)
    }

    func dispatch(_ request: HTTPRequest, _ writer: HTTPResponseWriter) {
        handler(request, writer)
    }

    func connectionDidClose(_ connection: HTTPServerConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if isShuttingDown && connections.isEmpty { finishShutdown() }
    }

    func render(_ rejection: HTTPRejection, path: String?, head: HTTPRequest?) -> HTTPResponse {
        onRejection?(rejection, path)
        return renderRejection(rejection, path, head)
    }

    /// What a connection accepted just before shutdown gets to send its first request.
    static let firstRequestWindowMilliseconds: UInt64 = 1_000
    /// After `onGraceExpired` ended the responses still running: time for those ends to be
    /// written before the connections left are closed.
    static let endWritingMilliseconds: UInt64 = 250

    /// Stops accepting (after taking what the kernel has queued), closes idle connections (a
    /// just-accepted one gets `firstRequestWindowMilliseconds` for its first request), lets
    /// responses in progress finish for up to `graceMilliseconds`, then `onGraceExpired` ends
    /// the ones still running (in their API's error form, so their clients see an error, not a
    /// broken transfer) and, `endWritingMilliseconds` later, the connections left are closed
    /// (their handlers see `onClientGone` and cancel upstream work). `completion` runs once every
    /// connection is closed.
    public func shutdown(graceMilliseconds: UInt64, completion: @escaping () -> Void = {}, onGraceExpired: (() -> Void)? = nil) {
        guard !isShuttingDown else { return }
        takingQueue = true
        listener?.stopAccepting()  // what the kernel queued is served like any connection accepted just before
        takingQueue = false
        isShuttingDown = true
        shutdownCompletion = completion
        listener?.close()
        listener = nil
        for connection in Array(connections.values) {
            connection.beginShutdown(firstRequestMilliseconds: min(Self.firstRequestWindowMilliseconds, graceMilliseconds))
        }
        if connections.isEmpty {
            finishShutdown()
            return
        }
        let timer = LoopTimer(loop: loop) { [weak self] in
            guard let self else { return }
            if let onGraceExpired, !connections.isEmpty {
                onGraceExpired()
                let closing = LoopTimer(loop: loop) { [weak self] in self?.closeConnections() }
                closing.start(afterMilliseconds: Self.endWritingMilliseconds)
                shutdownTimer?.close()
                shutdownTimer = closing
            } else {
                closeConnections()
            }
        }
        timer.start(afterMilliseconds: graceMilliseconds)
        shutdownTimer = timer
    }

    private func closeConnections() {
        for connection in Array(connections.values) { connection.close() }
    }

    private func finishShutdown() {
        shutdownTimer?.close()
        shutdownTimer = nil
        let completion = shutdownCompletion
        shutdownCompletion = nil
        completion?()
    }
}
