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
        client.onFailure = { error in onError("connect", error) }
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

    /// Closes the connection. What still waits for Redis is lost with the process: said, not
    /// dropped silently (review 22 F3).
    func close() {
        // Closed first: closing fails the commands still in flight or waiting for a connection,
        // and their completions queue them again; counted before, they were lost unsaid (review
        // 62A #4).
        retry?.close()
        retry = nil
        redis?.close()
        let records = ((records as? RedisGenerationRecordStore).map { $0.unwritten.count + $0.waitingToEncode }) ?? 0
        let settlements = (limiter as? RedisKeyLimiter)?.unsent.count ?? 0
        let releases = (limiter as? RedisKeyLimiter)?.unreleased.count ?? 0
        if records + settlements + releases > 0 {
            // Unreleased holds lapse by themselves (`RedisKeyLimiter.holdLifetimeMicros`).
            logger.warning("stopping with records, usage settlements and hold releases the shared store never got", metadata: [
                "records": .stringConvertible(records), "settlements": .stringConvertible(settlements),
                "hold_releases": .stringConvertible(releases)])
        }
    }
}
