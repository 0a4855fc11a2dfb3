import FanIn
import Synchronization

/// A `FanInBuffer` wired to the loop that consumes it.
///
/// Producers on any loop `push`; the consumer loop is woken and calls `onRecords` with every
/// published record, in batches:
/// - a producer on the consumer's own loop schedules the drain for the check phase of the
///   current iteration (no syscall, no extra iteration);
/// - a producer on another loop calls `uv_async_send`, which libuv coalesces (several sends,
///   one callback), so the consumer drains until empty each time it wakes.
///
/// A producer that finds the buffer full registers with `resumeWhenSpace` and stops (its curl
/// transfer paused); after each drain that frees space the consumer runs those callbacks on the
/// producers' loops. Memory per stream is therefore the ring plus what producers hold paused.
public final class FanInChannel: @unchecked Sendable {
    // @unchecked Sendable: `push` and `resumeWhenSpace` are thread-safe (the buffer's atomics, a
    // `Lock`, and uv_async_send); everything else is used on the consumer loop only.

    public let buffer: FanInBuffer
    public let loop: EventLoop
    /// Consumer loop only: called with each record, seen in place in the ring (valid during the
    /// call).
    public var onRecords: ((FanInBuffer.Record) -> Void)?
    /// After each drain (records delivered or not): the consumer's chance to act on an empty ring.
    public var onDrained: (() -> Void)?
    /// Consumer loop only: while false, records stay in the ring and paused producers stay paused
    /// (the consumer's own backpressure, e.g. a client socket that is not draining). Set true and
    /// call `drainSoon()`.
    public var isAcceptingRecords = true
    private var wakeup: Wakeup!
    /// A paused producer: `resume` runs on `loop` only, which is why it may cross threads.
    private struct Waiter: @unchecked Sendable {
        let loop: EventLoop
        let resume: () -> Void
    }
    private let waiters = Lock<[Waiter]>([])
    /// Consumer loop only: the waiters being resumed. It swaps with `waiters` and both keep their
    /// storage, so a pause and its resume allocate nothing here once warm (a slow client pauses
    /// its upstream every few records).
    private var resuming: [Waiter] = []
    /// Set while `waiters` is non-empty, so a drain checks it without taking the lock.
    private let hasWaiters = Atomic<Bool>(false)
    private var drainScheduled = false
    private var closed = false
    /// Set (release) before the async handle is closed; producers on other loops check it
    /// (acquire) before signalling, so a finished stream's late producers stay quiet.
    private let closedForProducers = Atomic<Bool>(false)

    /// Consumer loop only.
    public init(loop: EventLoop, capacity: Int) {
        buffer = FanInBuffer(capacity: capacity)
        self.loop = loop
        // The channel stays alive while its wakeup is open (the callback holds it); a stream's
        // channel does not keep the loop running by itself.
        wakeup = Wakeup(loop: loop) { [self] in drain() }
        wakeup.onClose = { [unowned self] in markClosed() }
    }

    /// Any thread. Appends a record and wakes the consumer; `.full` means: stop, and call
    /// `resumeWhenSpace`.
    public func push(producer: UInt16, kind: UInt8, bytes: UnsafeRawBufferPointer) -> FanInBuffer.PushResult {
        let result = buffer.push(producer: producer, kind: kind, bytes: bytes)
        if result == .pushed { wake() }
        return result
    }

    public func push(producer: UInt16, kind: UInt8, bytes: [UInt8]) -> FanInBuffer.PushResult {
        bytes.withUnsafeBytes { push(producer: producer, kind: kind, bytes: $0) }
    }

    /// Any thread: `resume` runs on `producerLoop` after the consumer next frees space.
    public func resumeWhenSpace(on producerLoop: EventLoop, _ resume: @escaping () -> Void) {
        waiters.withLock { $0.append(Waiter(loop: producerLoop, resume: resume)) }
        // Release: pairs with the acquire in `drain`; the waiter is in the list before the flag.
        hasWaiters.store(true, ordering: .releasing)
        wake()  // the consumer may have drained everything already
    }

    /// Consumer loop only: drain in this iteration's check phase.
    public func drainSoon() {
        guard !drainScheduled, !closed else { return }
        drainScheduled = true
        loop.scheduleFlush(self, beforeWrites: true)
    }

    private func wake() {
        if loop.inLoopThread {
            drainSoon()
        } else if !closedForProducers.load(ordering: .acquiring) {
            // Even if the channel closes right after the check, `wakeup`'s memory stays until
            // deinit (producers hold the channel), and a signal to a closed wakeup only wakes
            // its loop for nothing.
            wakeup.signal()
        }
    }

    /// Consumer loop only: delivers what the ring holds now, not in the check phase (a producer
    /// on this loop that would otherwise pause; see `ClientStream.makeRoom`). A drain already
    /// scheduled still runs, and finds what was pushed since.
    public func drainNow() {
        assert(loop.inLoopThread, "drainNow off the consumer loop")
        let scheduled = drainScheduled
        drain()
        drainScheduled = scheduled
    }

    /// Consumer loop only.
    func drain() {
        drainScheduled = false
        guard !closed else { return }
        if let onRecords {
            // Until empty: async sends coalesce, so this one wake may stand for many pushes. One
            // record at a time: the consumer may stop accepting on any of them (a client that
            // stopped reading), and the next must wait in the ring, not be handed over anyway
            // (review 43 engine F4: up to 63 more went, megabytes for a Fusion stream).
            while isAcceptingRecords, !closed, buffer.drainRecords(limit: 1, onRecords) > 0 {}
        }
        if !closed, let onDrained { onDrained() }
        // Not while the consumer holds records back (a client that is not reading): a producer
        // resumed then finds no room for its next read and pauses again, every iteration until
        // the client reads. The consumer's `drainSoon` once it accepts again resumes it.
        // Acquire: pairs with the release in `resumeWhenSpace`.
        if isAcceptingRecords, hasWaiters.load(ordering: .acquiring), buffer.approximateOccupancy < buffer.capacity / 2 {
            waiters.withLock { list in
                swap(&list, &resuming)
                // Relaxed: under the lock, ordered with the appends by the lock itself.
                hasWaiters.store(false, ordering: .relaxed)
            }
            var index = 0  // not for-in: its iterator allocates per element in unoptimized builds
            while index < resuming.count {
                let waiter = resuming[index]
                if waiter.loop === loop {
                    loop.deferToNextIteration(waiter.resume)
                } else {
                    waiter.loop.execute(unsafeSendable(waiter.resume))
                }
                index += 1
            }
            resuming.removeAll(keepingCapacity: true)
        }
    }

    /// Consumer loop only. Stops delivery; records still in the ring are dropped.
    public func close() {
        markClosed()
        wakeup.close()  // idempotent: the loop's teardown walk may have closed it already
    }

    /// The channel no longer delivers, and producers stop signalling it.
    private func markClosed() {
        guard !closed else { return }
        closed = true
        closedForProducers.store(true, ordering: .releasing)
        onRecords = nil
        onDrained = nil
        waiters.withLock { $0.removeAll() }
    }
}

extension FanInChannel: LoopFlushTarget {
    func flush() { drain() }
}

/// Closures handed to another loop run only there; callers guarantee what they capture is used
/// on that loop alone.
func unsafeSendable(_ work: @escaping () -> Void) -> @Sendable () -> Void {
    nonisolated(unsafe) let work = work
    return { work() }
}
