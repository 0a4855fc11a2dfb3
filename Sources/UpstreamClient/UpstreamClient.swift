internal import CCurl
import EventLoop
import Foundation

/// A request to an upstream server.
public struct UpstreamRequest: Sendable {
    public var url: String
    public var method: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var connectTimeoutMilliseconds: Int
    /// curl's receive buffer: the most one `onData` call delivers. Small for streams (events are
    /// small, and it bounds what a paused stream holds), curl's default (16 KiB) otherwise.
    public var receiveBufferBytes: Int?
    /// Called with each address (4 or 16 bytes) and port curl is about to connect to, after DNS
    /// resolution; a non-nil reason refuses it. Such a transfer never reuses a connection (a
    /// pooled one was not checked), never keeps one, and ignores proxy settings.
    public var connectFilter: (@Sendable (_ address: [UInt8], _ port: Int) -> String?)?
    /// The whole transfer's time limit.
    public var totalTimeoutMilliseconds: Int?
    /// Ask for compressed responses (curl decodes them; `onData` sees decoded bytes).
    public var acceptCompression = false
    /// `HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT` entries (curl's `CURLOPT_CONNECT_TO`): the
    /// URL keeps its host (and `Host` header), the connection goes elsewhere.
    public var connectTo: [String] = []

    public init(url: String, method: String = "POST", headers: [(String, String)] = [], body: [UInt8] = [],
                connectTimeoutMilliseconds: Int = 10_000, receiveBufferBytes: Int? = nil) {
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.receiveBufferBytes = receiveBufferBytes
    }
}

/// Why an upstream transfer failed at the transport level (HTTP error statuses are not failures:
/// they arrive through `onHead`).
public enum UpstreamFailure: Error, Equatable, Sendable {
    case couldNotResolve(Detail)
    case couldNotConnect(Detail)
    case timedOut(Detail)
    /// The connection broke or the response was malformed mid-transfer.
    case transfer(Detail)
    /// The response broke a bound of the gateway's own on HTTP's framing (its head without end):
    /// the upstream's fault, said as a protocol error, not a lost connection (review 124 #5).
    case malformedResponse(Detail)
    /// The request's `connectFilter` refused every address: why.
    case refused(Detail)
    /// The gateway had no file descriptor left for the connection (EMFILE/ENFILE): its own
    /// limit, not the provider's fault (review 60B #1: "Couldn't connect to server" blamed it).
    case outOfDescriptors(Detail)

    /// What went wrong, in two forms: `client`, fit for whoever sent the request, and `full`,
    /// the operator's. curl's own text names hosts, addresses, ports and the TLS library
    /// ("Failed to connect to 10.0.0.7 port 8000 after 0 ms: Couldn't connect to server"):
    /// the client gets curl's fixed description of the error code ("Couldn't connect to
    /// server"), the log the whole text (review 71B #7). The gateway's own texts are both.
    public struct Detail: Equatable, Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
        public var client: String
        public var full: String

        public init(client: String, full: String) {
            self.client = client
            self.full = full
        }

        public init(stringLiteral text: String) {
            self.init(client: text, full: text)
        }

        public init(stringInterpolation: DefaultStringInterpolation) {
            self.init(stringLiteral: String(stringInterpolation: stringInterpolation))
        }

        public var description: String { client }
    }

    public var detail: Detail {
        switch self {
        case .couldNotResolve(let detail), .couldNotConnect(let detail), .timedOut(let detail), .transfer(let detail),
             .malformedResponse(let detail), .refused(let detail), .outOfDescriptors(let detail):
            detail
        }
    }

    /// The whole text, for the operator (logs, the benchmark's report).
    public var message: String { detail.full }
}

/// Streaming HTTP client for one `EventLoop`: libcurl's multi interface on the loop, no blocking
/// call and no added thread. One client per loop.
///
/// Transfers run on shards, each its own curl multi handle (`CurlMulti`) with its own connection
/// cache. libcurl 7.88 (Debian 12's) walks every connection in a multi handle's cache when a
/// transfer starts (looking for one to reuse), when one is removed (`close_connect_only`) and,
/// after a burst, when one ends (looking for the oldest idle one to close): each request cost
/// O(open connections). With 5,000 streams on one loop that was ~300 µs per request. A shard
/// takes at most `transfersPerShard` transfers; a new transfer goes to the first shard with room,
/// so under light load every transfer runs on the first shard and reuses its connections as
/// before. A shard other than the first that has had no transfer for `idleShardMilliseconds` is
/// closed, and its idle connections with it.
public final class UpstreamClient {
    public let loop: EventLoop
    /// After `close()`: `start` must not be called (callers check `isClosed` first).
    public private(set) var isClosed = false
    /// Transfers started on this client so far.
    public private(set) var startedTransferCount = 0
    let transfersPerShard: Int
    private let idleShardMilliseconds: UInt64
    private var shards: [CurlMulti]
    private var retireTimer: LoopTimer?

    /// Shards open now (the first is always open).
    public var shardCount: Int { shards.count }
    /// Socket watchers held across the shards: one per socket curl has open, in use or kept alive.
    public var socketWatcherCount: Int { shards.reduce(0) { $0 + $1.watcherCount } }

    public convenience init(loop: EventLoop) {
        self.init(loop: loop, transfersPerShard: 256, idleShardMilliseconds: 30_000)
    }

    /// Tests make shards small and short-lived.
    public init(loop: EventLoop, transfersPerShard: Int, idleShardMilliseconds: UInt64) {
        precondition(transfersPerShard > 0)
        self.loop = loop
        self.transfersPerShard = transfersPerShard
        self.idleShardMilliseconds = idleShardMilliseconds
        shards = [CurlMulti(loop: loop)]
    }

    /// Starts a transfer. Set its callbacks before returning to the loop; none fire before that.
    public func start(_ request: UpstreamRequest) -> UpstreamTransfer {
        precondition(!isClosed, "UpstreamClient used after close()")
        startedTransferCount += 1
        let index = shards.firstIndex { $0.transferCount < transfersPerShard } ?? openShard()
        return shards[index].start(request)
    }

    private func openShard() -> Int {
        shards.append(CurlMulti(loop: loop))
        if retireTimer == nil {
            let tick = max(idleShardMilliseconds / 2, 1)
            let timer = LoopTimer(loop: loop) { [unowned self] in retireIdleShards() }
            timer.start(afterMilliseconds: tick, repeatMilliseconds: tick)
            retireTimer = timer
        }
        return shards.count - 1
    }

    /// Closes the shards past the first that have been empty for `idleShardMilliseconds`, from
    /// the last one back (earlier shards are the ones new transfers fill first).
    private func retireIdleShards() {
        let now = loop.nowMilliseconds
        while shards.count > 1, let since = shards[shards.count - 1].emptySince, now &- since >= idleShardMilliseconds {
            shards.removeLast().close()
        }
        if shards.count == 1 {
            retireTimer?.close()
            retireTimer = nil
        }
    }

    /// Cancels every transfer and releases curl. Call on the loop before it stops.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        retireTimer?.close()
        retireTimer = nil
        for shard in shards { shard.close() }
    }
}
