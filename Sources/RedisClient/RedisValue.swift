/// One reply from Redis (RESP2), converted from hiredis' reply tree and already bounded in size
/// (see `RedisReplyReader`). Every reply is hostile until its consumer has checked its type and
/// range: the accessors below return nil for anything else rather than guessing.
public enum RedisValue: Equatable, Sendable {
    /// A bulk string: arbitrary bytes.
    case bulk([UInt8])
    /// A status reply (`+OK`).
    case status(String)
    /// An error reply (`-ERR …`).
    case error(String)
    case integer(Int64)
    case array([RedisValue])
    /// A nil bulk string or nil array.
    case null

    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
    public var bytes: [UInt8]? { if case .bulk(let value) = self { value } else { nil } }
    public var array: [RedisValue]? { if case .array(let value) = self { value } else { nil } }
    public var isNull: Bool { self == .null }
}

/// Why a command got no usable reply.
public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not connected (Redis down, or reconnecting after a failure): the command was not sent.
    case unavailable(String)
    /// No reply within the command timeout (the connection is dropped and re-made).
    case timeout
    /// The connection broke with the command in flight.
    case connectionLost(String)
    /// Too many commands already waiting on this loop's connection.
    case overloaded
    /// Redis answered with an error reply.
    case server(String)
    /// The reply broke the protocol or our bounds (size, element count, type): the connection
    /// is dropped, since nothing after it can be trusted.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .unavailable(let why): "redis unavailable: \(why)"
        case .timeout: "redis command timed out"
        case .connectionLost(let why): "redis connection lost: \(why)"
        case .overloaded: "too many redis commands pending"
        case .server(let message): "redis error: \(message)"
        case .protocolViolation(let why): "redis protocol violation: \(why)"
        }
    }

    /// The command was certainly not applied, and sending it again later may succeed: not sent
    /// (down, too many waiting), or refused for a passing state (`OOM` while Redis is full,
    /// `LOADING`, `BUSY`, `READONLY` and `MASTERDOWN` around a failover, `TRYAGAIN`). A timeout
    /// or a lost connection may have been applied: not this.
    public var wasNotAppliedButMayBeRetried: Bool {
        switch self {
        case .unavailable, .overloaded: true
        case .server(let message):
            // A script's write refused inside it comes back wrapped ("ERR Error running script …
            // -OOM command not allowed …" on Redis 6).
            ["OOM", "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN"].contains { message.hasPrefix($0) }
                || message.contains("OOM command not allowed")
        case .timeout, .connectionLost, .protocolViolation: false
        }
    }

    /// The command may have been applied: it was sent and its reply never came (a timeout, a
    /// connection lost with it in flight).
    public var mayHaveBeenApplied: Bool {
        switch self {
        case .timeout, .connectionLost: true
        case .unavailable, .overloaded, .server, .protocolViolation: false
        }
    }

    /// A short fixed label for metrics (never text from Redis).
    public var label: String {
        switch self {
        case .unavailable: "unavailable"
        case .timeout: "timeout"
        case .connectionLost: "connection_lost"
        case .overloaded: "overloaded"
        case .server: "server_error"
        case .protocolViolation: "protocol_violation"
        }
    }
}
