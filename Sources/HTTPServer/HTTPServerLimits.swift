/// Limits a server enforces on every connection.
public struct HTTPServerLimits: Sendable, Equatable {
    /// Request line plus headers, at most `maxHeaderBytesCeiling`.
    public var maxHeaderBytes: Int = 32 * 1024
    public static let maxHeaderBytesCeiling = 1 << 20
    /// Header fields per request: many tiny fields cost work and memory out of proportion to
    /// their bytes. More is answered 431.
    public var maxHeaderCount: Int = 100
    public var maxBodyBytes: Int = 16 * 1024 * 1024
    /// Open connections per server. At the cap a new connection takes the place of the one idle
    /// longest (idle a second or more: no request begun, nothing to send, no byte waiting);
    /// with none idle it is closed at once, unread, and the ones open keep being served.
    public var maxConnections: Int = 4096
    /// Descriptors kept for what is not a client connection (listeners, the loops' own, Redis,
    /// log files) when `maxConnections` is fitted to the process's limit.
    public static let reservedDescriptors = 256

    /// The most connections each of `loops` servers may hold within `descriptors` open files:
    /// two each (the client's and an upstream's) beside `reservedDescriptors`, at least one.
    /// Beyond it the kernel, not `maxConnections`, would refuse connections: silently (libuv
    /// accepts and closes what waits when the process is out of descriptors, and says nothing),
    /// and not only new ones (upstream connections and web fetches fail too).
    public static func connectionsFitting(descriptors: Int, loops: Int) -> Int {
        max(1, (descriptors - min(descriptors, reservedDescriptors)) / (2 * max(1, loops)))
    }
    /// From a request's first byte until its headers are complete (slowloris bound), and from a
    /// new connection's accept to its first byte.
    public var headerTimeoutMilliseconds: UInt64 = 10_000
    /// A keep-alive connection with no request, or a request body making no progress.
    public var idleTimeoutMilliseconds: UInt64 = 60_000
    /// A request body, from the end of its headers: it must arrive whole within this long plus one
    /// second for every `minBodyBytesPerSecond` bytes received (a slow-POST bound: a body sent a
    /// byte a minute would otherwise hold its connection for ever, as the idle timeout only
    /// bounds each pause). More time is 408.
    public var bodyTimeoutMilliseconds: UInt64 = 30_000
    public var minBodyBytesPerSecond: Int = 4_096
    /// A finished response still being written to a client that takes no bytes: how long it
    /// may make no progress before the connection is closed (the idle timeout waits for it).
    public var stalledWriteTimeoutMilliseconds: UInt64 = 30_000
    /// And the pace it must keep meanwhile: over each `stalledWriteTimeoutMilliseconds`, what was
    /// queued at its start or this many bytes a second, whichever is less. A reader taking a few
    /// bytes at a time would otherwise hold a queued answer and its connection for hours.
    public var minDrainBytesPerSecond: Int = 4_096
    /// Unparsed pipelined bytes held while a response is in progress.
    public var maxPipelinedBytes: Int = 256 * 1024
    /// Response bytes waiting for a client beyond which its next pipelined request is not read
    /// until they are taken: a client that pipelines thousands of requests and reads nothing
    /// would otherwise have every answer queued (review 21 F8: 2 MB of `GET /` held 400 MB).
    public var maxQueuedResponseBytes: Int = 256 * 1024
    /// After the server refuses a request it half-closes and, for at most this long, reads and
    /// drops what the client still sends: closing with unread bytes makes the kernel send a
    /// reset, which can destroy the refusal before the client reads it.
    public var lingerMilliseconds: UInt64 = 2_000

    public init() {}
}
