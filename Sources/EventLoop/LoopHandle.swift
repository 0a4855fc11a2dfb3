internal import CLibUV

/// Base of every libuv handle wrapper: owns the handle's memory and keeps itself alive while the
/// handle is open (libuv may call back until the close callback), the pattern of uvloop's
/// `UVHandle` and node's `HandleWrap`. `close()` is idempotent; the memory is freed and the
/// wrapper released in the close callback, exactly once.
public class LoopHandle {
    enum State { case open, closing, closed }

    public let loop: EventLoop
    let rawHandle: UnsafeMutableRawPointer
    private(set) var state = State.open
    private let byteCount: Int

    var handle: UnsafeMutablePointer<uv_handle_t> { rawHandle.assumingMemoryBound(to: uv_handle_t.self) }

    init(loop: EventLoop, byteCount: Int) {
        self.loop = loop
        self.byteCount = byteCount
        rawHandle = .allocate(byteCount: byteCount, alignment: 16)
        rawHandle.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    /// Call once the handle is initialized: from here on libuv holds a strong reference.
    func retainWhileOpen() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
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
        wrapper.rawHandle.deallocate()
    }

    static func from(_ handle: UnsafeMutableRawPointer) -> LoopHandle {
        let data = handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data!
        return Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue()
    }

    /// At loop teardown, for handles wrapped by a `LoopHandle` (see `EventLoop.run`).
    static func closeFromWalk(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        if handle.pointee.data != nil {
            from(UnsafeMutableRawPointer(handle)).close()
        } else {
            uv_close(handle, nil)
        }
    }
}

/// A one-shot or repeating timer.
public final class LoopTimer: LoopHandle {
    private var callback: () -> Void

    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_timer_t>.size)
        uv_timer_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_timer_t.self))
        retainWhileOpen()
    }

    public func start(afterMilliseconds delay: UInt64, repeatMilliseconds: UInt64 = 0) {
        guard isOpen else { return }
        uv_timer_start(rawHandle.assumingMemoryBound(to: uv_timer_t.self), { timer in
            (LoopHandle.from(UnsafeMutableRawPointer(timer!)) as! LoopTimer).callback()
        }, delay, repeatMilliseconds)
    }

    public func stop() {
        guard isOpen else { return }
        uv_timer_stop(rawHandle.assumingMemoryBound(to: uv_timer_t.self))
    }

    override func didClose() { callback = {} }
}

/// Runs its callback once per loop iteration while started, without blocking the poll phase:
/// the way to do "as soon as possible" (a 0 ms timer can re-run in the same pass on libuv 1.44).
public final class Idle: LoopHandle {
    private var callback: () -> Void

    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop, byteCount: MemoryLayout<uv_idle_t>.size)
        uv_idle_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_idle_t.self))
        retainWhileOpen()
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
        uv_signal_init(loop.uvLoop, signalHandle)
        retainWhileOpen()
        uv_signal_start(signalHandle, { handle, signum in
            (LoopHandle.from(UnsafeMutableRawPointer(handle!)) as! SignalWatcher).callback(signum)
        }, signal)
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
        uv_poll_init_socket(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_poll_t.self), fd)
        retainWhileOpen()
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
            uv_check_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_check_t.self))
        case .prepare:
            super.init(loop: loop, byteCount: MemoryLayout<uv_prepare_t>.size)
            uv_prepare_init(loop.uvLoop, rawHandle.assumingMemoryBound(to: uv_prepare_t.self))
        }
        retainWhileOpen()
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
