internal import CLibUV
import Synchronization
import Foundation

/// One libuv loop. Everything created on a loop (connections, timers, transfers) must be used
/// only from that loop's thread; other threads talk to it through `execute(_:)`.
///
/// `@unchecked Sendable`: the only members touched from other threads are `pendingWork`
/// (behind a `Lock`), `threadID` (atomic) and `wakeup` (a `Wakeup`: libuv's one thread-safe call).
public final class EventLoop: @unchecked Sendable {
    let uvLoop: UnsafeMutablePointer<uv_loop_t>
    private var wakeup: Wakeup!
    private let pendingWork = Lock<PendingWork>(PendingWork())
    /// Work queued from other threads, and whether the loop still takes it: once `run()` has
    /// returned, the loop's descriptors are closed, and a wakeup would write to a closed (or
    /// reused) descriptor, so `execute` refuses instead.
    private struct PendingWork {
        var items: [@Sendable () -> Void] = []
        /// Per item, what to do if the loop finishes before running it (`submitAndWait`'s waiter).
        var dropped: [(@Sendable () -> Void)?] = []
        var accepting = true
    }
    /// Shared read buffer: reads are consumed synchronously inside the read callback, so one
    /// buffer serves every stream of the loop.
    let readBuffer: UnsafeMutableRawPointer
    let readBufferSize = 64 * 1024
    /// A read's bytes are in `readBuffer` (its `onRead` is running).
    var readBufferInUse = false
    /// The thread running the loop (0 when none): read by any thread asking `inLoopThread`.
    private let threadID = Atomic<UInt>(0)
    /// Work to run when `run()` is asked to stop, before handles are torn down.
    private var shutdownHooks: [() -> Void] = []
    /// Connections with writes to flush this iteration (see `TCPConnection`).
    private var flushes: [any LoopFlushTarget] = []
    /// Flushed before `flushes`: fan-in channels, whose drains write to connections, so that
    /// everything bound for one socket in this iteration leaves in one syscall.
    private var earlyFlushes: [any LoopFlushTarget] = []
    /// The batch being flushed (swapped with the lists above: no array is copied or allocated).
    private var flushing: [any LoopFlushTarget] = []
    /// The check and prepare hooks that run the flushes (two properties, not an array: a loop
    /// over an array costs allocations per iteration in unoptimized builds).
    private var checkFlushHook: PhaseHook?
    private var prepareFlushHook: PhaseHook?
    private var flushHooksStarted = false
    /// Work deferred to the next loop iteration (loop thread only), and the batch being run: the
    /// two swap each iteration and keep their storage, so deferring allocates nothing once warm
    /// (a paused upstream's resume goes through here, once per backpressure pause).
    private var deferredWork: [Deferred] = []
    private var deferredRunning: [Deferred] = []
    /// A closure held in a struct: an array stores it as it is, where a bare closure in an array
    /// is wrapped in an allocated reabstraction thunk on every append.
    private struct Deferred { let work: () -> Void }
    private var deferredRunner: Idle?
    /// Work to run once this iteration's writes have gone to the kernel (see `afterWrites`), and
    /// the batch being run (swapped, as above).
    private var afterWriteWork: [Deferred] = []
    private var afterWriteRunning: [Deferred] = []

    public init() {
        CLibUV_ignore_sigpipe()
        uvLoop = .allocate(capacity: 1)
        precondition(uv_loop_init(uvLoop) == 0, "uv_loop_init failed")
        readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
        // Not keeping the loop alive on its own: only real work does. Its memory outlives the
        // loop's teardown (see `Wakeup`), and once `run()` returns `execute` no longer signals
        // it, so `execute` from another thread is always safe.
        wakeup = Wakeup(loop: self) { [unowned self] in runPendingWork() }
    }

    deinit {
        uv_loop_close(uvLoop)
        uvLoop.deallocate()
        readBuffer.deallocate()
    }

    /// The loop's raw `uv_loop_t *`, for the other targets of this package that wrap libuv-driven
    /// C libraries (curl). Never part of a public API.
    package var unsafeUVLoop: UnsafeMutableRawPointer { UnsafeMutableRawPointer(uvLoop) }

    /// Cross-thread wakeups open on this loop (the loop's own, and one per fan-in channel): a
    /// count that must come back down as streams end, for lifetime tests. On the loop's thread.
    public func openWakeupCount() -> Int {
        var count = 0
        withUnsafeMutablePointer(to: &count) { pointer in
            uv_walk(uvLoop, { handle, context in
                guard let handle, let context, handle.pointee.type == UV_ASYNC, uv_is_closing(handle) == 0 else { return }
                context.assumingMemoryBound(to: Int.self).pointee += 1
            }, pointer)
        }
        return count
    }

    /// Runs the loop on the calling thread until `stop()`; then closes every handle still open.
    public func run() {
        // Relaxed: only this thread can ever find its own id here; others just need a torn-free read.
        threadID.store(UInt(pthread_self()), ordering: .relaxed)
        uv_run(uvLoop, UV_RUN_DEFAULT)
        // Stopped (or out of work): close whatever is still open and let the close callbacks run,
        // so every wrapper object is released exactly once.
        // Every handle is a `LoopHandle`'s; closing one tells its owner (a fan-in channel's wakeup
        // marks the channel closed, so producers on other loops stop signalling it).
        uv_walk(uvLoop, { handle, _ in
            guard let handle, uv_is_closing(handle) == 0 else { return }
            LoopHandle.closeFromWalk(handle)
        }, nil)
        uv_run(uvLoop, UV_RUN_DEFAULT)
        // Work promised to run after the writes still runs (a record filed as its response ended).
        while !afterWriteWork.isEmpty { runAfterWriteBatch() }
        // The loop's own helper handles reference the loop: drop them (they are closed) so the
        // loop can be freed.
        checkFlushHook = nil
        prepareFlushHook = nil
        flushes.removeAll()
        earlyFlushes.removeAll()
        flushing.removeAll()
        deferredRunner = nil
        deferredWork.removeAll()
        deferredRunning.removeAll()
        afterWriteWork.removeAll()
        // From here on no other thread wakes this loop (see `execute`); work queued and not run
        // is dropped with the loop, and whoever waits for it is told (review 50 #5).
        // Taken out of the lock and released after it: a capture's deinit may call `execute`.
        let (unrun, dropped) = pendingWork.withLock { pending in
            pending.accepting = false
            defer { pending.items = []; pending.dropped = [] }
            return (pending.items, pending.dropped)
        }
        for handler in dropped { handler?() }
        _ = consume unrun
        threadID.store(0, ordering: .relaxed)
    }

    /// Thread-safe: runs `work` on the loop thread soon. False (and `work` never runs) once the
    /// loop has finished: a thread that outlives the loop (a page parse, a late producer) can
    /// hand work back without knowing whether the loop is still there.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        execute(work, ifDropped: nil)
    }

    /// `execute`, with `ifDropped` run (on the loop's thread, as it finishes) if the loop finishes
    /// before running `work`.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void, ifDropped: (@Sendable () -> Void)?) -> Bool {
        // The signal is sent under the lock: `run()` stops accepting under it too, so no signal
        // can reach a loop whose teardown has begun.
        pendingWork.withLock { pending in
            guard pending.accepting else { return false }
            pending.items.append(work)
            pending.dropped.append(ifDropped)
            wakeup.signal()
            return true
        }
    }

    /// Thread-safe: runs `work` on the loop and waits for its result. Must not be called from the
    /// loop's own thread.
    public func submitAndWait<T: Sendable>(_ work: @escaping @Sendable () throws -> T) throws -> T {
        precondition(!inLoopThread, "submitAndWait from the loop thread would deadlock")
        let done = DispatchSemaphore(value: 0)
        let result = Lock<Result<T, any Error>?>(nil)
        let accepted = execute({
            let value = Result { try work() }
            result.withLock { $0 = value }
            done.signal()
        }, ifDropped: {
            // Accepted as the loop was stopping, then dropped with it: the waiter is told.
            result.withLock { $0 = .failure(LoopError(Int32(UV_ECANCELED.rawValue), "the loop finished before running it")) }
            done.signal()
        })
        // A finished loop never runs it: waiting would be forever (review 49 #8).
        guard accepted else { throw LoopError(Int32(UV_ECANCELED.rawValue), "the loop has finished") }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Thread-safe: stops `run()`, after running the shutdown hooks on the loop thread.
    public func stop() {
        execute { [self] in
            let hooks = shutdownHooks
            shutdownHooks.removeAll()
            for hook in hooks { hook() }
            uv_stop(uvLoop)
        }
    }

    /// Loop thread only: runs `work` on the next loop iteration, after the current callbacks have
    /// returned. For work that must not run nested inside another callback (e.g. curl's).
    public func deferToNextIteration(_ work: @escaping () -> Void) {
        deferredWork.append(Deferred(work: work))
        if deferredRunner == nil {
            deferredRunner = Idle(loop: self) { [unowned self] in
                deferredRunner?.stop()
                swap(&deferredWork, &deferredRunning)  // what the batch defers goes to the next one
                var index = 0
                while index < deferredRunning.count {
                    deferredRunning[index].work()
                    index += 1
                }
                deferredRunning.removeAll(keepingCapacity: true)
            }
            onShutdown { [unowned self] in deferredRunner?.close() }
        }
        deferredRunner?.start()
    }

    /// Loop thread only: flushes `target` in this iteration, after the I/O callbacks (check phase)
    /// or, for writes made by timers and idle work, before the loop blocks (prepare phase).
    /// `beforeWrites` targets (fan-in drains) run before the others (socket writes).
    func scheduleFlush(_ target: any LoopFlushTarget, beforeWrites: Bool = false) {
        if beforeWrites {
            earlyFlushes.append(target)
        } else {
            flushes.append(target)
        }
        startFlushHooks()
    }

    /// Loop thread only: runs `work` in this iteration's flush phase, once every write queued so
    /// far has been handed to the kernel (what a slow client does not take stays queued). For
    /// bookkeeping the client need not wait for: a finished response's record is built and filed
    /// after its last bytes are written, not before. Work still pending when the loop stops runs
    /// after its handles are closed.
    public func afterWrites(_ work: @escaping () -> Void) {
        afterWriteWork.append(Deferred(work: work))
        startFlushHooks()
    }

    /// One batch: what it queues (writes, more work) waits for the next round of `runFlushes`.
    private func runAfterWriteBatch() {
        swap(&afterWriteWork, &afterWriteRunning)
        var index = 0
        while index < afterWriteRunning.count {
            afterWriteRunning[index].work()
            index += 1
        }
        afterWriteRunning.removeAll(keepingCapacity: true)
    }

    private func startFlushHooks() {
        guard !flushHooksStarted else { return }
        flushHooksStarted = true
        if checkFlushHook == nil {
            checkFlushHook = PhaseHook(loop: self, phase: .check) { [unowned self] in runFlushes() }
            prepareFlushHook = PhaseHook(loop: self, phase: .prepare) { [unowned self] in runFlushes() }
        }
        checkFlushHook?.start()
        prepareFlushHook?.start()
    }

    private func runFlushes() {
        // A flush may schedule another (a drain writes, a write completing synchronously
        // re-arms): loop until quiet, drains first.
        while true {
            if !earlyFlushes.isEmpty {
                swap(&earlyFlushes, &flushing)
            } else if !flushes.isEmpty {
                swap(&flushes, &flushing)
            } else if !afterWriteWork.isEmpty {
                runAfterWriteBatch()  // it may write again: loop until quiet
                continue
            } else {
                break
            }
            var index = 0
            while index < flushing.count {
                flushing[index].flush()
                index += 1
            }
            flushing.removeAll(keepingCapacity: true)
        }
        flushHooksStarted = false
        checkFlushHook?.stop()
        prepareFlushHook?.stop()
    }

    /// Registers work to run (on the loop) when `stop()` is called.
    public func onShutdown(_ hook: @escaping () -> Void) {
        shutdownHooks.append(hook)
    }

    public var inLoopThread: Bool {
        // Relaxed: see `run()`.
        threadID.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// The loop's cached time in milliseconds (updated once per loop iteration).
    public var nowMilliseconds: UInt64 { uv_now(uvLoop) }

    /// Unblocks SIGINT and SIGTERM in the calling thread, before it starts the loop threads (they
    /// inherit its mask): a parent that started this process with them blocked must not stop the
    /// graceful shutdown `SignalWatcher`s rely on.
    public static func unblockTerminationSignals() { CLibUV_unblock_termination_signals() }

    /// A monotonic clock in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 { uv_hrtime() }

    private func runPendingWork() {
        // Several uv_async_send calls may coalesce into one callback: take everything queued.
        let work = pendingWork.withLock { pending -> [@Sendable () -> Void] in
            let taken = pending.items
            pending.items.removeAll()
            pending.dropped.removeAll()
            return taken
        }
        for item in work { item() }
    }
}

/// Something that writes or drains in the flush phase (see `EventLoop.scheduleFlush`).
protocol LoopFlushTarget: AnyObject {
    func flush()
}

/// A thread running one `EventLoop`; what tests and the CLI use to own a loop.
public final class EventLoopThread: Sendable {
    public let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)

    public init(name: String = "fusion-loop") {
        let loop = EventLoop()
        self.loop = loop
        let finished = self.finished
        let started = DispatchSemaphore(value: 0)
        let thread = Thread {
            CLibUV_set_thread_name(name)
            // Keep the loop alive while idle: an unref'd async handle alone would let run() return.
            let keepAlive = LoopTimer(loop: loop) {}
            keepAlive.start(afterMilliseconds: 1 << 40)
            loop.onShutdown { keepAlive.close() }
            loop.execute { started.signal() }
            loop.run()
            finished.signal()
        }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
        started.wait()
    }

    /// Stops the loop and waits for its thread to finish.
    public func shutdown() {
        loop.stop()
        finished.wait()
    }
}
