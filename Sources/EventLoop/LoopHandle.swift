internal import CLibUV

/// Base of every libuv handle wrapper: owns the handle's memory and keeps itself alive while the
/// handle is open (libuv may call back until the close callback), the pattern of uvloop's
/// `UVHandle` and node's `HandleWrap`. `close()` is idempotent; the memory is freed and the
/// wrapper released in the close callback, exactly once.
public class LoopHandle {
    enum State { case open, closing, closed }

    /// Unowned: the loop owns its handles (its teardown closes them), and a loop's own wakeup
    /// must not keep the loop alive. Handles are used only while their loop runs.
    public unowned let loop: EventLoop
    let rawHandle: UnsafeMutableRawPointer
    private(set) var state = State.open
    private let byteCount: Int
    /// Whether the close callback frees the handle's memory (the usual case) or `deinit` does
    /// (`Wakeup`: another thread may still signal it after it closed).
    private let freesMemoryOnClose: Bool
    private var memoryFreed = false
    /// Why the handle could not be initialized (it never opened).
    private(set) var initError: LoopError?

    var handle: UnsafeMutablePointer<uv_handle_t> { rawHandle.assumingMemoryBound(to: uv_handle_t.self) }

    init(loop: EventLoop, byteCount: Int, freesMemoryOnClose: Bool = true) {
        self.loop = loop
        self.byteCount = byteCount
        self.freesMemoryOnClose = freesMemoryOnClose
        rawHandle = .allocate(byteCount: byteCount, alignment: 16)
        rawHandle.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    deinit {
        if !memoryFreed { rawHandle.deallocate() }
    }

    /// Call with the result of the handle's `uv_*_init`: on success libuv holds a strong reference
    /// until the close callback; on failure the handle never opened (`close()` does nothing).
    @discardableResult
    func didInitialize(_ result: Int32, _ operation: String) -> Bool {
        guard result == 0 else {
            state = .closed
            initError = LoopError(result, operation)
            return false
        }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        return true
    }

    /// For handles whose init fails only on a programming error (timers, idle, check, prepare, async).
    func mustInitialize(_ result: Int32, _ operation: String) {
        precondition(didInitialize(result, operation), "\(operation) failed: \(result)")
    }

    public var isOpen: Bool { state == .open }

    public func close() {
        guard state == .open else { return }
        state = .closing
        willClose()
        uv_close(handle) { handle in
            LoopHandle.didCloseHandle(handle!)
        }
    }

    /// Subclasses stop their work here (before libuv cancels pending requests).
    func willClose() {}
    /// Subclasses notify their owners here; the handle memory is still valid.
    func didClose() {}

    private static func didCloseHandle(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        let wrapper = Unmanaged<LoopHandle>.fromOpaque(handle.pointee.data).takeRetainedValue()
        wrapper.state = .closed
        wrapper.didClose()
        if wrapper.freesMemoryOnClose {
            wrapper.memoryFreed = true
            wrapper.rawHandle.deallocate()
        }
    }

    static func from(_ handle: UnsafeMutableRawPointer) -> LoopHandle {
        let data = handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data!
        return Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue()
    }

    /// At loop teardown, for every handle still open (see `EventLoop.run`): all are ours.
    static func closeFromWalk(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        if handle.pointee.data != nil {
            from(UnsafeMutableRawPointer(handle)).close()
        } else {
            uv_close(handle, nil)
        }
    }
}

/// The one handle other threads may poke: `signal()` from any thread runs the callback on the
/// loop soon, several signals coalescing into one call (libuv's async handle). Its memory lives
/// until the wrapper is released, not just until it closes: a producer on another loop may still
/// signal it right after it closed, which then only wakes the loop for nothing. Owners check
/// their own "closed" flag before signalling, and `onClose` tells them the teardown closed it.
public final class Wakeup: LoopHandle, @unchecked Sendable {
    // @unchecked Sendable: `signal()` is the only member used off the loop, and uv_async_send is
    // libuv's one thread-safe call.
    private var callback: () -> Void
    /// Called (on the loop) when the handle closes, whoever closed it.
    var onClose: (() -> Void)?

    init(loop: EventLoop, keepsLoopAlive: Bool = false, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_async_t>.size, freesMemoryOnClose: false)
        mustInitialize(uv_async_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_async_t.self)) { async in
            (LoopHandle.from(UnsafeMutableRawPointer(async!)) as! Wakeup).callback()
        }, "uv_async_init")
        if !keepsLoopAlive { uv_unref(handle) }
    }

    /// Any thread.
    func signal() {
        uv_async_send(rawHandle.assumingMemoryBound(to: uv_async_t.self))
    }

    override func willClose() {
        let hook = onClose
        onClose = nil
        hook?()
    }

    override func didClose() { callback = {} }
}

/// A one-shot or repeating timer.
public final class LoopTimer: LoopHandle {
    private var callback: () -> Void
    /// See `init`.
    private let readsFirstWhenLate: Bool
    /// When the next firing is due, in the loop's milliseconds, and the repeat interval.
    private var due: UInt64 = 0
    private var interval: UInt64 = 0
    /// The last firing was put off (`readsFirstWhenLate`): the next one runs the callback.
    private var putOff = false

    /// `readsFirstWhenLate`: for a timer that judges silence (an idle upstream, a client taking
    /// nothing). libuv runs due timers before it polls the sockets, so a loop kept busy (or
    /// stopped) past a deadline would judge bytes that came in time, and wait in the kernel, as
    /// never sent. A firing 2 ms or more late is put off 1 ms instead, so the loop's next poll
    /// reads first; once: the firing after a put-off one runs, however late.
    public init(loop: EventLoop, readsFirstWhenLate: Bool = false, _ callback: @escaping () -> Void) {
        self.callback = callback
        self.readsFirstWhenLate = readsFirstWhenLate
        super.init(loop: loop, byteCount: MemoryLayout<uv_timer_t>.size)
        mustInitialize(uv_timer_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_timer_t.self)), "uv_timer_init")
    }

    public func start(afterMilliseconds delay: UInt64, repeatMilliseconds: UInt64 = 0) {
        putOff = false  // a new arming: its first late firing reads first too (review 99 #5)
        arm(afterMilliseconds: delay, repeatMilliseconds: repeatMilliseconds)
    }

    private func arm(afterMilliseconds delay: UInt64, repeatMilliseconds: UInt64) {
        guard isOpen else { return }
        due = loop.nowMilliseconds &+ delay
        interval = repeatMilliseconds
        uv_timer_start(rawHandle.assumingMemoryBound(to: uv_timer_t.self), { timer in
            (LoopHandle.from(UnsafeMutableRawPointer(timer!)) as! LoopTimer).fire()
        }, delay, repeatMilliseconds)
    }

    private func fire() {
        let now = loop.nowMilliseconds
        let late = now &- due
        // libuv re-arms a repeating timer from now.
        due = now &+ interval
        if readsFirstWhenLate && !putOff && late >= 2 && late < .max / 2 {
            putOff = true
            arm(afterMilliseconds: 1, repeatMilliseconds: interval)
            return
        }
        putOff = false
        callback()
    }

    public func stop() {
        putOff = false
        guard isOpen else { return }
        uv_timer_stop(rawHandle.assumingMemoryBound(to: uv_timer_t.self))
    }

    /// Started and not yet fired (a one-shot) or stopped.
    public var isActive: Bool { isOpen && uv_is_active(handle) != 0 }

    override func didClose() { callback = {} }
}

/// Runs its callback once per loop iteration while started, without blocking the poll phase:
/// the way to do "as soon as possible" (a 0 ms timer can re-run in the same pass on libuv 1.44).
public final class Idle: LoopHandle {
    private var callback: () -> Void

    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_idle_t>.size)
        mustInitialize(uv_idle_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_idle_t.self)), "uv_idle_init")
    }

    public func start() {
        guard isOpen else { return }
        uv_idle_start(rawHandle.assumingMemoryBound(to: uv_idle_t.self)) { idle in
            (LoopHandle.from(UnsafeMutableRawPointer(idle!)) as! Idle).callback()
        }
    }

    public func stop() {
        guard isOpen else { return }
        uv_idle_stop(rawHandle.assumingMemoryBound(to: uv_idle_t.self))
    }

    override func didClose() { callback = {} }
}

/// Watches a process signal (SIGINT, SIGTERM) on the loop.
public final class SignalWatcher: LoopHandle {
    private var callback: (Int32) -> Void

    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) {
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_signal_t>.size)
        let signalHandle = rawHandle.assumingMemoryBound(to: uv_signal_t.self)
        guard didInitialize(uv_signal_init(loop.uvLoop, signalHandle), "uv_signal_init") else { return }
        let started = uv_signal_start(signalHandle, { handle, signum in
            (LoopHandle.from(UnsafeMutableRawPointer(handle!)) as! SignalWatcher).callback(signum)
        }, signal)
        precondition(started == 0, "uv_signal_start(\(signal)) failed: \(started)")
        // A signal watcher alone must not keep the loop running.
        uv_unref(handle)
    }

    override func didClose() { callback = { _ in } }
}

/// Watches a socket someone else owns (curl's) for readability/writability.
public final class SocketWatcher: LoopHandle {
    public struct Events: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: 1)
        public static let writable = Events(rawValue: 2)
        public static let error = Events(rawValue: 4)
    }

    private var callback: (Events) -> Void
    public let fd: Int32

    public init(loop: EventLoop, socket fd: Int32, _ callback: @escaping (Events) -> Void) {
        self.fd = fd
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_poll_t>.size)
        // Can fail (a socket libuv cannot poll): the watcher then never opens; see `initError`.
        didInitialize(uv_poll_init_socket(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_poll_t.self), fd), "uv_poll_init_socket")
    }

    public func watch(_ events: Events) {
        guard isOpen else { return }
        var flags: Int32 = 0
        if events.contains(.readable) { flags |= Int32(UV_READABLE.rawValue) }
        if events.contains(.writable) { flags |= Int32(UV_WRITABLE.rawValue) }
        uv_poll_start(rawHandle.assumingMemoryBound(to: uv_poll_t.self), flags) { poll, status, events in
            let watcher = LoopHandle.from(UnsafeMutableRawPointer(poll!)) as! SocketWatcher
            var fired: Events = []
            if status < 0 { fired.insert(.error) }
            if events & Int32(UV_READABLE.rawValue) != 0 { fired.insert(.readable) }
            if events & Int32(UV_WRITABLE.rawValue) != 0 { fired.insert(.writable) }
            watcher.callback(fired)
        }
    }

    override func didClose() { callback = { _ in } }
}

/// Runs a callback in a loop phase: `check` (right after I/O callbacks) or `prepare` (right
/// before the loop blocks for I/O). Does not keep the loop alive by itself.
final class PhaseHook: LoopHandle {
    enum Phase { case check, prepare }
    private let phase: Phase
    private var callback: () -> Void

    init(loop: EventLoop, phase: Phase, _ callback: @escaping () -> Void) {
        self.phase = phase
        self.callback = callback
        switch phase {
        case .check:
            super.init(loop: loop, byteCount: MemoryLayout<uv_check_t>.size)
            mustInitialize(uv_check_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_check_t.self)), "uv_check_init")
        case .prepare:
            super.init(loop: loop, byteCount: MemoryLayout<uv_prepare_t>.size)
            mustInitialize(uv_prepare_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_prepare_t.self)), "uv_prepare_init")
        }
        uv_unref(handle)
    }

    func start() {
        guard isOpen else { return }
        switch phase {
        case .check:
            uv_check_start(rawHandle.assumingMemoryBound(to: uv_check_t.self)) { check in
                (LoopHandle.from(UnsafeMutableRawPointer(check!)) as! PhaseHook).callback()
            }
        case .prepare:
            uv_prepare_start(rawHandle.assumingMemoryBound(to: uv_prepare_t.self)) { prepare in
                (LoopHandle.from(UnsafeMutableRawPointer(prepare!)) as! PhaseHook).callback()
            }
        }
    }

    func stop() {
        guard isOpen else { return }
        switch phase {
        case .check: uv_check_stop(rawHandle.assumingMemoryBound(to: uv_check_t.self))
        case .prepare: uv_prepare_stop(rawHandle.assumingMemoryBound(to: uv_prepare_t.self))
        }
    }

    override func didClose() { callback = {} }
}
