import EventLoop
import GatewayCore
import Logging
import RedisClient

/// One loop's way to the state replicas share: records and limits in this process, or through
/// this loop's own Redis connection (one per loop: commands are pipelined on the loop that needs
/// them, never handed across threads). Loop-confined.
final class LoopStore {
    let records: any GenerationRecordStore
    let limiter: any KeyLimiter
    let redis: RedisClient?
    let onStoreError: StoreSettings.OnError
    private let logger: Logger
    private let loop: EventLoop
    /// Polls a drain (`drain`) until the store is idle or its time is up.
    private var drainTimer: LoopTimer?
    /// Sends what waits for Redis a second after it started waiting, when Redis is connected:
    /// a write it refused while full (`OOM`) lands once it has room, without waiting for the next
    /// request's write to succeed or for a reconnect (review 23).
    private var retry: LoopTimer?

    /// `onError(operation, error)`: every failed Redis operation, for metrics and logs.
    /// `onReconnect`: Redis answered again after a failure (the caller logs it, throttled: a
    /// Redis that answers the handshake but not commands reconnects again and again).
    init(loop: EventLoop, shared: GatewayShared, settings: StoreSettings, logger: Logger, onReconnect: @escaping () -> Void = {},
         onError: @escaping (String, RedisError) -> Void) {
        onStoreError = settings.onError
        self.logger = logger
        self.loop = loop
        guard let redis = settings.redis else {
            records = LocalGenerationRecordStore(memory: shared.generations, loop: loop)
            limiter = shared.inProcessLimiter
            self.redis = nil
            return
        }
        let client = RedisClient(loop: loop, endpoint: redis.endpoint, password: shared.redisPassword, settings: redis.client)
        let records = RedisGenerationRecordStore(memory: shared.generations, refusedQuota: shared.refusedRecordQuota, client: client,
                                                 keyPrefix: redis.keyPrefix,
                                                 ttlSeconds: redis.recordTTLSeconds, maxUnwritten: redis.maxUnwrittenRecords,
                                                 onError: onError)
        let limiter = RedisKeyLimiter(client: client, keyPrefix: redis.keyPrefix, maxUnsent: redis.maxUnwrittenRecords, onError: onError)
        var everReady = false
        client.onReady = { [weak records, weak limiter] in
            if everReady { onReconnect() }
            everReady = true
            records?.flushUnwritten()
            limiter?.flushUnsent()
        }
        // The connection failed: connecting, or since (a command's deadline passed, Redis closed
        // it), whatever the commands on it were (review 114 #6: a timeout read as `connect`).
        client.onFailure = { error in onError("connection", error) }
        self.records = records
        self.limiter = limiter
        self.redis = client
        let retry = LoopTimer(loop: loop) { [weak records, weak limiter, weak client] in
            guard client?.isReady == true else { return }  // a reconnect flushes (`onReady`)
            records?.flushUnwritten(batch: 256)
            limiter?.flushUnsent(batch: 256)
        }
        self.retry = retry
        // Armed by the first write that waits, not pushed back by each later one: under steady
        // traffic the retry would otherwise never come.
        let arm = { if !retry.isActive { retry.start(afterMilliseconds: Self.retryMilliseconds) } }
        records.onQueued = arm
        limiter.onQueued = arm
        client.start()
    }

    static let retryMilliseconds: UInt64 = 1_000

    /// Whether this loop's Redis connection is ready (always, without Redis).
    var isReachable: Bool { redis?.isReady ?? true }

    /// Nothing on its way to Redis: no command awaiting its reply, nothing queued to send.
    var isIdle: Bool {
        guard let redis else { return true }
        let records = (records as? RedisGenerationRecordStore).map { $0.unwritten.count + $0.waitingToEncode } ?? 0
        let limiter = (limiter as? RedisKeyLimiter).map { $0.unsent.count + $0.unreleased.count } ?? 0
        return redis.pendingCount == 0 && records == 0 && limiter == 0
    }

    /// Calls `completion` once what is on its way to Redis has landed, or after `limit`
    /// milliseconds, whichever comes first (at once when Redis is not connected: nothing would
    /// land). Closed in the loop turn the last response ended, a graceful stop failed the
    /// settlements in flight and never sent their holds' release: the budget stayed held for
    /// the holds' lifetime (review 71D #1).
    func drain(withinMilliseconds limit: UInt64, then completion: @escaping () -> Void) {
        guard let redis, redis.isReady, !isIdle else {
            completion()
            return
        }
        let deadline = loop.nowMilliseconds &+ limit
        let timer = LoopTimer(loop: loop) { [unowned self] in
            guard !isIdle, self.redis?.isReady == true, loop.nowMilliseconds < deadline else {
                drainTimer?.close()
                drainTimer = nil
                completion()
                return
            }
        }
        drainTimer = timer
        timer.start(afterMilliseconds: 2, repeatMilliseconds: 2)
    }

    /// Closes the connection. What still waits for Redis is lost with the process: said, not
    /// dropped silently (review 22 F3).
    func close() {
        // Closed first: closing fails the commands still in flight or waiting for a connection,
        // and their completions queue them again; counted before, they were lost unsaid (review
        // 62A #4).
        retry?.close()
        retry = nil
        drainTimer?.close()
        drainTimer = nil
        redis?.close()
        let records = ((records as? RedisGenerationRecordStore).map { $0.unwritten.count + $0.waitingToEncode }) ?? 0
        let unsent = (limiter as? RedisKeyLimiter)?.unsent ?? []
        let settlements = unsent.count(where: { !$0.mayHaveApplied })
        let unconfirmed = unsent.count - settlements  // written, their reply never came
        // A settlement's holds wait with it (they end as it lands): counted with the releases.
        let releases = ((limiter as? RedisKeyLimiter)?.unreleased.count ?? 0) + unsent.reduce(0) { $0 + $1.releases.count }
        if records + unsent.count + releases > 0 {
            logger.warning("stopping with records, usage settlements and hold releases the shared store never got (or never confirmed); holds not released lapse by themselves", metadata: [
                "records": .stringConvertible(records), "settlements": .stringConvertible(settlements),
                "settlements_unconfirmed": .stringConvertible(unconfirmed), "hold_releases": .stringConvertible(releases),
                "holds_lapse_after_seconds": .stringConvertible(RedisKeyLimiter.holdLifetimeMicros / 1_000_000)])
        }
    }
}
