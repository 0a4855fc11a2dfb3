import EventLoop

/// A Redis connection on one event loop, made again whenever it breaks: commands are pipelined
/// (everything sent in one loop iteration leaves in one write) and answered in order, each with
/// a deadline. Nothing here ever blocks the loop, and a Redis that is down or slow costs callers
/// at most `commandTimeoutMilliseconds`:
///
/// - while a connection is being made, commands wait (bounded, with their deadline running);
/// - while waiting to reconnect (after a failure, with `RedisBackoff`), commands fail at once
///   with `.unavailable`: callers apply their own policy rather than queue behind an outage;
/// - a command past its deadline drops the connection (replies come in order, so everything
///   behind it is stuck too): every pending command fails with `.timeout`, then reconnect. The
///   connection given up is half-closed, not reset, and left to finish (`Settings.lingerMilliseconds`):
///   closed with commands unread, a stalled Redis ran only the first ~16 KB it read once it woke
///   and the kernel discarded the rest (review 62A #1), so "may have been applied" was mostly
///   "was not"; half-closed, what Redis received runs once.
///
/// Why not hiredis' libuv adapter (`hiredis/adapters/libuv.h`): its async connect resolves a
/// host name with a blocking `getaddrinfo` on the calling (loop) thread and has no connect
/// timeout, and Debian's hiredis 0.14 reader allocates whatever array length a reply announces.
/// So hiredis parses (`RedisReplyReader`, with our bounds) and formats, and the connection is
/// EventLoop's own TCP (resolution off the loop, our timeouts), on the same libuv loop.
///
/// Loop-confined: create, use and close it on `loop`'s thread only.
public final class RedisClient {
    public struct Settings: Sendable, Equatable {
        public var commandTimeoutMilliseconds: UInt64 = 250
        public var connectTimeoutMilliseconds: UInt64 = 1_000
        public var backoff = RedisBackoff()
        /// Commands sent or queued and not yet answered, beyond which new ones fail (`.overloaded`).
        public var maxPendingCommands = 10_000
        /// The largest reply accepted (see `RedisReplyReader`).
        public var maxReplyBytes = 1 << 20
        /// How long a connection given up on a timeout is left to run what it was sent (its
        /// replies read and dropped) before it is closed; and how many such connections at most.
        public var lingerMilliseconds: UInt64 = 10_000
        public var maxLingeringConnections = 4
        /// With nothing sent for this long, a `PING`: a Redis that stopped answering is noticed
        /// (`isReady` false, the gateway's `/health` degraded) within this and the command
        /// timeout, not only by the next command (review 128 #3). 0: never.
        public var idleCheckMilliseconds: UInt64 = 1_000
        public init() {}
    }

    public enum State: Equatable, Sendable {
        /// `start()` not called yet, or closed.
        case idle
        /// Connecting, or connected with the handshake (AUTH, SELECT, PING) unanswered.
        case connecting
        case ready
        /// After a failure, until the next attempt.
        case waiting
        case closed
    }

    private struct Pending {
        var deadline: UInt64
        /// Its deadline was moved once past a stall of the loop (`timerFired`).
        var extended = false
        /// Replaced by a no-op once the command has failed alone (its reply, when it comes, is
        /// read and dropped: replies come in order).
        var completion: (Result<RedisValue, RedisError>) -> Void
        /// The command, while it waits for a connection whose handshake succeeded (nil once
        /// written, or once it failed alone while waiting: then it is never written).
        var unsent: [UInt8]? = nil
    }

    public let loop: EventLoop
    public let endpoint: RedisEndpoint
    public let settings: Settings
    private let password: String?
    public private(set) var state = State.idle
    /// Called each time a connection has answered its handshake (the first time and after every
    /// reconnect).
    public var onReady: (() -> Void)?
    /// Called when a ready connection is lost, or an attempt fails, with why.
    public var onFailure: ((RedisError) -> Void)?

    private var connection: TCPConnection?
    private var attempt: TCPConnectAttempt?
    private var reader: RedisReplyReader?
    /// Unanswered commands, oldest first (`head` indexes the oldest).
    private var pending: [Pending] = []
    private var head = 0
    /// When the connection being made is given up (loop milliseconds).
    private var connectDeadline: UInt64 = 0
    /// Handshake replies still expected at the head of `pending`.
    private var handshakeReplies = 0
    /// While the handshake is unanswered: the first command behind it that has not failed alone
    /// (an index into `pending`, which does not move until the handshake is answered).
    private var firstLive = 0
    private(set) var failures = 0
    /// When the connection last became ready: one that stayed up longer than the backoff's
    /// ceiling worked, even with no command to prove it (an idle gateway).
    private var readyAt: UInt64 = 0
    private var timer: LoopTimer?
    /// Connections given up on a timeout, left to finish (see the type's comment), each with the
    /// timer that closes it.
    private var lingering: [ObjectIdentifier: (connection: TCPConnection, timer: LoopTimer)] = [:]
    private var generator = SystemRandomNumberGenerator()
    /// Counters for tests and metrics.
    public private(set) var connectionsMade = 0

    public init(loop: EventLoop, endpoint: RedisEndpoint, password: String?, settings: Settings = Settings()) {
        self.loop = loop
        self.endpoint = endpoint
        self.password = password
        self.settings = settings
    }

    public var pendingCount: Int { pending.count - head }
    public var isReady: Bool { state == .ready }

    /// Connects (and keeps reconnecting until `close()`).
    public func start() {
        guard state == .idle else { return }
        // Weak: a client dropped without `close()` must not be called back (its handles close with the loop).
        // Reads first when late: it judges Redis's silence, and a loop busy past a deadline (a
        // large request parsed on it) failed a connection whose replies waited in the socket
        // (review 128 #1: other keys' admissions then went to `on_store_error`).
        timer = LoopTimer(loop: loop, readsFirstWhenLate: true) { [weak self] in self?.timerFired() }
        connect()
    }

    /// Sends one command; `completion` runs once, on the loop (possibly before `send` returns,
    /// when the command cannot be sent).
    public func send(_ arguments: [[UInt8]], completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        switch state {
        case .idle, .closed:
            completion(.failure(.unavailable("client not started")))
            return
        case .waiting:
            completion(.failure(.unavailable("reconnecting")))
            return
        case .connecting, .ready:
            break
        }
        guard pendingCount < settings.maxPendingCommands else {
            completion(.failure(.overloaded))
            return
        }
        let bytes = RedisCommandEncoder.encode(arguments)
        let deadline = loop.nowMilliseconds &+ settings.commandTimeoutMilliseconds
        if let connection, state == .ready {
            enqueue(Pending(deadline: deadline, completion: completion))
            connection.write(bytes)
        } else {
            // Waits for a connection whose handshake succeeded (or fails at its deadline, not sent).
            enqueue(Pending(deadline: deadline, completion: completion, unsent: bytes))
        }
    }

    /// Convenience for text arguments.
    public func send(_ arguments: [String], completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        send(arguments.map { Array($0.utf8) }, completion: completion)
    }

    /// Drops the connection; pending commands fail: `.connectionLost` for one already written
    /// (Redis may have applied it: review 71D #1 counted applied settlements as never got),
    /// `.unavailable` for one never sent. Final.
    public func close() {
        guard state != .closed else { return }
        state = .closed
        attempt?.cancel()
        attempt = nil
        dropConnection()
        timer?.close()
        timer = nil
        for id in Array(lingering.keys) { endLingering(id) }
        failAll(.connectionLost("client closed"))
    }

    // MARK: - Connecting

    private func connect() {
        state = .connecting
        connectDeadline = loop.nowMilliseconds &+ settings.connectTimeoutMilliseconds
        armTimer(after: settings.connectTimeoutMilliseconds)
        attempt = TCPConnectAttempt.start(loop: loop, host: endpoint.host, port: endpoint.port) { [weak self] result in
            guard let self, state == .connecting else {
                if case .success(let connection) = result { connection.close() }
                return
            }
            attempt = nil
            switch result {
            case .success(let connection): didConnect(connection)
            case .failure(let error): fail(.unavailable("\(error)"))
            }
        }
    }

    private func didConnect(_ connection: TCPConnection) {
        self.connection = connection
        connectionsMade += 1
        reader = RedisReplyReader(maxBufferedBytes: settings.maxReplyBytes)
        connection.onRead = { [weak self] bytes in self?.didRead(bytes) }
        connection.onDisconnect = { [weak self] error in
            guard let self else { return }
            self.connection = nil
            fail(.connectionLost(error.map { "\($0)" } ?? "closed by redis"))
        }
        connection.startReading()
        // The handshake alone: what was queued meanwhile goes once it has succeeded. Pipelined
        // behind it, commands ran after a refused SELECT (in database 0) and were reported as
        // maybe applied after a refused AUTH (review 45 Redis #4); one round trip per connect.
        var handshake: [[String]] = []
        if let password {
            handshake.append(endpoint.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if endpoint.database != 0 { handshake.append(["SELECT", String(endpoint.database)]) }
        if handshake.isEmpty { handshake.append(["PING"]) }
        let deadline = loop.nowMilliseconds &+ settings.connectTimeoutMilliseconds
        let checks = handshake.map { _ in
            Pending(deadline: deadline) { [weak self] result in self?.didAnswerHandshake(result) }
        }
        pending.replaceSubrange(head..<head, with: checks)
        handshakeReplies = checks.count
        firstLive = head + checks.count
        var bytes: [UInt8] = []
        for command in handshake { bytes += RedisCommandEncoder.encode(command.map { Array($0.utf8) }) }
        connection.write(bytes)
        armForHead()
    }

    /// The handshake succeeded: the commands that waited for it go, in one write; those that
    /// failed alone meanwhile are dropped, and those already past their deadline fail as not
    /// sent (written, they would time the fresh connection out at once; review 46 #4).
    private func writeQueued() {
        guard let connection else { return }
        let now = loop.nowMilliseconds
        let waiting = pending[head...].filter { $0.unsent != nil }
        let late = waiting.filter { $0.deadline <= now }
        pending = waiting.filter { $0.deadline > now }
        head = 0
        var bytes: [UInt8] = []
        for index in pending.indices {
            bytes += pending[index].unsent ?? []
            pending[index].unsent = nil
        }
        if !bytes.isEmpty { connection.write(bytes) }
        armForHead()
        // Last: a completion may send (after what was queued, in order) or close the client.
        for command in late { command.completion(.failure(Self.notSent("its deadline passed while connecting"))) }
    }

    private func didAnswerHandshake(_ result: Result<RedisValue, RedisError>) {
        guard state == .connecting else { return }
        switch result {
        case .success(.status), .success(.bulk):
            handshakeReplies -= 1
            if handshakeReplies == 0 {
                // `failures` is reset by the first command answered, not here: a Redis that
                // answers the handshake but not commands in time would be retried at the base
                // delay forever (review 52B #3).
                state = .ready
                readyAt = loop.nowMilliseconds
                writeQueued()
                onReady?()
            }
        case .failure(.server(let message)), .success(.error(let message)):
            // A refused AUTH or SELECT: drop the connection and retry with backoff (the error is
            // reported through `onFailure`; retrying lets a corrected password take effect).
            fail(.server(message))
        case .success:
            fail(.protocolViolation("unexpected reply to the handshake"))
        case .failure:
            break  // the connection failure itself is being handled
        }
    }

    // MARK: - Replies

    private func didRead(_ bytes: UnsafeRawBufferPointer) {
        guard let reader else { return }
        do throws(RedisReplyReader.Failure) {
            try reader.feed(bytes)
            while let reply = try reader.next() {
                guard head < pending.count else {
                    fail(.protocolViolation("a reply nobody asked for"))
                    return
                }
                let answered = pending[head]
                dequeue()
                if state == .ready { failures = 0 }  // a command answered: the connection works
                if case .error(let message) = reply {
                    answered.completion(.failure(.server(message)))
                } else {
                    answered.completion(.success(reply))
                }
                // A completion may have dropped or closed the connection.
                guard self.reader === reader else { return }
            }
        } catch {
            fail(.protocolViolation(error.reason))
        }
    }

    // MARK: - Pending commands and deadlines

    private func enqueue(_ command: Pending) {
        pending.append(command)
        // The timer follows the oldest command, or the first one behind an unanswered handshake.
        if pendingCount == 1 || (handshakeReplies > 0 && firstLive == pending.count - 1) { armForHead() }
    }

    private func dequeue() {
        head += 1
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= pending.count {
            pending.removeFirst(head)
            head = 0
        }
        armForHead()
    }

    /// The timer tracks the oldest command's deadline (replies come in order: if it is late,
    /// so is everything behind it) and, while connecting, the connect deadline.
    /// While a handshake is unanswered, also the first command behind it: a Redis that accepts
    /// connections but does not answer (stopped, overloaded) must not hold commands for the
    /// handshake's longer deadline.
    private func armForHead() {
        guard state == .connecting || state == .ready else { return }
        var wake = state == .connecting && connection == nil ? connectDeadline : UInt64.max
        if head < pending.count { wake = min(wake, pending[head].deadline) }
        if handshakeReplies > 0, firstLive < pending.count { wake = min(wake, pending[firstLive].deadline) }
        guard wake != .max else {
            // Nothing to wait for: the idle check, on a ready connection.
            if state == .ready && settings.idleCheckMilliseconds > 0 { armTimer(after: settings.idleCheckMilliseconds) } else { timer?.stop() }
            return
        }
        let now = loop.nowMilliseconds
        armTimer(after: wake > now ? wake - now : 0)
    }

    private func armTimer(after milliseconds: UInt64) {
        timer?.stop()
        timerDue = loop.nowMilliseconds &+ max(milliseconds, 1)
        timer?.start(afterMilliseconds: max(milliseconds, 1))
    }

    /// When the timer was armed to fire: one firing much later says the loop itself was busy.
    private var timerDue: UInt64 = 0

    /// The loop was busy past the head's deadline (the timer fired 2 ms or more late): Redis's
    /// replies waited unread, and commands queued before the stall were written only after it
    /// (a connection's writes leave at the end of the loop's turn). Each command not yet given
    /// one gets a whole timeout from now, once; true if the head did (review 128 #1, CI run 144:
    /// reading first was not enough when the write itself left after the stall).
    private func extendDeadlinesAfterStall(now: UInt64) -> Bool {
        guard head < pending.count, !pending[head].extended, now &- timerDue >= 2 else { return false }
        let deadline = now &+ settings.commandTimeoutMilliseconds
        for index in head..<pending.count where !pending[index].extended && pending[index].deadline < deadline {
            pending[index].deadline = deadline
            pending[index].extended = true
        }
        return true
    }

    private func timerFired() {
        let now = loop.nowMilliseconds
        switch state {
        case .waiting:
            connect()
        case .connecting where connection == nil:
            if now >= connectDeadline {
                attempt?.cancel()
                attempt = nil
                fail(.timeout)
                return
            }
            // Commands that waited for the connection longer than their timeout fail alone: the
            // attempt goes on until its own deadline (a distant Redis may take longer to reach).
            var expired: [Pending] = []
            while head < pending.count, pending[head].deadline <= now {
                expired.append(pending[head])
                dequeue()
            }
            armForHead()
            // Never written: certainly not applied, so a settlement may be queued and sent later
            // (a timeout would say it may have been; review 43 state #2).
            for command in expired { command.completion(.failure(Self.notSent("still connecting"))) }
        case .ready where head == pending.count && handshakeReplies == 0:
            // Armed by `armForHead` with nothing pending: idle long enough for a check.
            send(["PING"]) { _ in }
        case .connecting, .ready:
            if head < pending.count, pending[head].deadline <= now {
                if extendDeadlinesAfterStall(now: now) {
                    armForHead()
                    return
                }
                fail(.timeout)
                return
            }
            // Behind an unanswered handshake (whose deadline is the connect timeout), commands
            // past their own deadline fail alone, never written (so certainly not applied); the
            // connection attempt goes on.
            var expired: [(Result<RedisValue, RedisError>) -> Void] = []
            while handshakeReplies > 0, firstLive < pending.count, pending[firstLive].deadline <= now {
                expired.append(pending[firstLive].completion)
                pending[firstLive].completion = { _ in }
                pending[firstLive].unsent = nil
                firstLive += 1
            }
            armForHead()
            for completion in expired { completion(.failure(Self.notSent("still connecting"))) }
        case .idle, .closed:
            break
        }
    }

    // MARK: - Failure

    /// Drops the connection, fails what is pending, and schedules the next attempt.
    private func fail(_ error: RedisError) {
        guard state == .connecting || state == .ready else { return }
        // Up past the backoff's ceiling: this is a new outage, retried from the base delay
        // (review 53 #7: an idle gateway waited out the last outage's backoff, 2.5–5 s).
        if state == .ready && loop.nowMilliseconds &- readyAt >= settings.backoff.maxMilliseconds { failures = 0 }
        state = .waiting
        if case .timeout = error, let connection { linger(connection) }
        dropConnection()
        failures += 1
        let delay = settings.backoff.delay(failures: failures, using: &generator)
        armTimer(after: delay)
        failAll(error)
        onFailure?(error)
    }

    private func dropConnection() {
        reader = nil
        handshakeReplies = 0
        if let connection {
            connection.onRead = nil
            connection.onDisconnect = nil
            connection.close()
        }
        connection = nil
    }

    /// Half-closes `connection` (what is queued is sent first) and reads until Redis closes its
    /// side or the linger time ends, dropping the replies: their commands have failed already.
    private func linger(_ connection: TCPConnection) {
        guard lingering.count < settings.maxLingeringConnections else { return }
        self.connection = nil
        let id = ObjectIdentifier(connection)
        connection.onRead = { _ in }
        connection.onDisconnect = { [weak self] _ in self?.endLingering(id) }
        let timer = LoopTimer(loop: loop) { [weak self] in self?.endLingering(id) }
        timer.start(afterMilliseconds: settings.lingerMilliseconds)
        lingering[id] = (connection, timer)
        connection.shutdownAfterWriting()
    }

    private func endLingering(_ id: ObjectIdentifier) {
        guard let ended = lingering.removeValue(forKey: id) else { return }
        ended.timer.close()
        ended.connection.onDisconnect = nil
        ended.connection.close()
    }

    /// Connections given up on a timeout still finishing (tests).
    var lingeringCount: Int { lingering.count }

    private func failAll(_ error: RedisError) {
        let failed = pending[head...]
        pending.removeAll()
        head = 0
        for command in failed { command.completion(.failure(command.unsent == nil ? error : Self.notSent(error.description))) }
    }

    /// The error of a command whose bytes never left the process.
    static func notSent(_ why: String) -> RedisError { .unavailable("not sent: \(why)") }
}
