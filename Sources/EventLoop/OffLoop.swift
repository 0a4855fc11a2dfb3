import Dispatch
import Synchronization

/// CPU-bound work that must not hold a loop (parsing a fetched page: libxml2 over up to 2 MiB,
/// tens of milliseconds for an ordinary page, most of a second for a hostile one, during which
/// every stream on the loop would stall). It runs on a background thread; its result comes
/// back on the loop.
///
/// The threads are libdispatch's global pool (a well-kept pool sized to the machine: a loop
/// per core, so the pool never takes more cores than there are); the work is plain values in and out.
public enum OffLoop {
    /// Runs `work` off the loop, then `then` with its result on `loop`'s thread, where `then` is
    /// also released. If the loop has finished by then, `then` never runs and is released on the
    /// worker thread: capture loop objects weakly. Call on the loop's thread.
    public static func run<Value: Sendable>(on loop: EventLoop, _ work: @escaping @Sendable () -> Value,
                                            then: @escaping (Value) -> Void) {
        let handBack = LoopBound(then)
        DispatchQueue.global(qos: .userInitiated).async {
            let value = work()
            loop.execute { handBack.take()?(value) }
        }
    }
}

/// A bounded share of `OffLoop`'s threads, for work that clients can ask for in bulk (every
/// fetched page of every deliberation): at most `width` items run at once, and at most `backlog`
/// items of at most `backlogBytes` together wait (each item says what it holds), so requests
/// cannot queue minutes of CPU and gigabytes of pages (review 62B #1: one abandoned deliberation
/// of 32 fetches kept two threads busy 23 s after its client left). An item whose ticket is
/// cancelled before it starts is skipped, never run for nobody.
public final class OffLoopLane: Sendable {
    /// Cancels one item: set on the loop when its caller stops caring (finished, cancelled, its
    /// client gone); read by the worker before the work starts.
    public final class Ticket: Sendable {
        private let flag = Atomic<Bool>(false)
        public init() {}
        public func cancel() { flag.store(true, ordering: .relaxed) }
        public var isCancelled: Bool { flag.load(ordering: .relaxed) }
    }

    private struct Item: Sendable {
        let ticket: Ticket
        let bytes: Int
        let run: @Sendable () -> Void
    }

    private struct State {
        var running = 0
        /// A taken item's slot is emptied at once (its work holds a page), the array reset when
        /// all are taken: a queue without per-item shifting.
        var waiting: [Item?] = []
        var next = 0  // the first of `waiting` not yet taken
        var waitingBytes = 0

        mutating func take() -> Item? {
            guard next < waiting.count else { return nil }
            let taken = waiting[next]
            waiting[next] = nil
            next += 1
            waitingBytes -= taken?.bytes ?? 0
            // Taken slots are dropped once they are half the array: under constant load the
            // queue never empties, and would otherwise grow by a slot per item.
            if next == waiting.count {
                waiting.removeAll(keepingCapacity: true)
                next = 0
            } else if next >= 64 && next * 2 >= waiting.count {
                waiting.removeFirst(next)
                next = 0
            }
            return taken
        }
    }

    public let width: Int
    public let backlog: Int
    public let backlogBytes: Int
    private let state: Lock<State>

    public init(width: Int, backlog: Int, backlogBytes: Int = .max) {
        self.width = max(1, width)
        self.backlog = max(0, backlog)
        self.backlogBytes = max(0, backlogBytes)
        state = Lock(State())
    }

    /// Items waiting for a thread now (tests, metrics).
    public var waitingCount: Int { state.withLock { $0.waiting.count - $0.next } }

    /// Runs `work` off the loop when a place is free, then `then` on `loop`'s thread, unless
    /// `ticket` was cancelled before the work started (then neither runs). `bytes`: what the work
    /// holds while it waits. False, and nothing queued, when the backlog is full (in items, or in
    /// bytes once something waits): the caller answers "busy" at once.
    public func submit<Value: Sendable>(on loop: EventLoop, ticket: Ticket, bytes: Int = 0, _ work: @escaping @Sendable () -> Value,
                                        then: @escaping (Value) -> Void) -> Bool {
        let handBack = LoopBound(then)
        let item = Item(ticket: ticket, bytes: max(0, bytes)) {
            let value = work()
            loop.execute { handBack.take()?(value) }
        }
        let startNow: Bool? = state.withLock { state in
            if state.running < width {
                state.running += 1
                return true
            }
            let waiting = state.waiting.count - state.next
            guard waiting < backlog, waiting == 0 || state.waitingBytes + item.bytes <= backlogBytes else { return nil }
            state.waiting.append(item)
            state.waitingBytes += item.bytes
            return false
        }
        guard let startNow else { return false }
        if startNow { start(item) }
        return true
    }

    private func start(_ first: Item) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            var item: Item? = first
            while let current = item {
                if !current.ticket.isCancelled { current.run() }
                item = state.withLock { state -> Item? in
                    guard let taken = state.take() else {
                        state.running -= 1
                        return nil
                    }
                    return taken
                }
            }
        }
    }
}

/// A value created on a loop and used only there, carried through another thread that never
/// touches it (`OffLoop`'s completion).
private final class LoopBound<Value>: @unchecked Sendable {
    private var value: Value?
    init(_ value: Value) { self.value = value }

    /// On the loop: the value, once. The box then holds nothing, so whichever thread lets go of
    /// it last releases nothing of the loop's.
    func take() -> Value? {
        defer { value = nil }
        return value
    }
}
