import EventLoop

/// When to log one kind of warning whose cause can come in floods (connections refused, a shared
/// store failing, records dropped): the first at once, then at most one per interval, each saying
/// how many happened since the last. The count of a burst is logged when its interval ends, not
/// held back until the next occurrence, which may come hours later or never. Socket-free: times
/// are the loop's milliseconds; `ThrottledWarning` is its shell.
struct WarningThrottle {
    static let defaultIntervalMilliseconds: UInt64 = 10_000
    let intervalMilliseconds: UInt64
    /// When the last warning was logged (nil: never).
    private var lastLogged: UInt64?
    /// Occurrences since then, not logged yet.
    private(set) var pending = 0

    init(intervalMilliseconds: UInt64 = defaultIntervalMilliseconds) {
        self.intervalMilliseconds = intervalMilliseconds
    }

    enum Decision: Equatable {
        /// Log now, for this many occurrences.
        case log(count: Int)
        /// Counted; when the interval ends (in this many ms) call `intervalEnded`. Only the
        /// first occurrence held in an interval asks for it.
        case holdUntil(afterMilliseconds: UInt64)
        /// Counted; the end of the interval is already awaited.
        case held
    }

    mutating func occurred(at now: UInt64) -> Decision {
        pending = pending == .max ? pending : pending + 1
        guard let lastLogged, now &- lastLogged < intervalMilliseconds else { return take(at: now) }
        return pending == 1 ? .holdUntil(afterMilliseconds: intervalMilliseconds - (now &- lastLogged)) : .held
    }

    /// The interval after a warning ended: the occurrences held since, if any, to log now.
    mutating func intervalEnded(at now: UInt64) -> Int? {
        pending > 0 ? take(at: now).count : nil
    }

    /// What was held back, to log when the process stops (nil: nothing).
    mutating func flush() -> Int? {
        guard pending > 0 else { return nil }
        defer { pending = 0 }
        return pending
    }

    private mutating func take(at now: UInt64) -> Decision {
        lastLogged = now
        defer { pending = 0 }
        return .log(count: pending)
    }
}

extension WarningThrottle.Decision {
    fileprivate var count: Int? { if case .log(let count) = self { count } else { nil } }
}

/// `WarningThrottle` on a loop: `log` is called with the count of occurrences it covers, at once
/// or when the interval ends (a timer). Loop-confined.
final class ThrottledWarning {
    private var throttle: WarningThrottle
    private let loop: EventLoop
    private let log: (Int) -> Void
    private var timer: LoopTimer?
    /// After `flush` (the gateway stopping, its loop about to end) nothing waits for a timer.
    private var flushed = false

    init(loop: EventLoop, intervalMilliseconds: UInt64 = WarningThrottle.defaultIntervalMilliseconds, log: @escaping (_ count: Int) -> Void) {
        self.loop = loop
        self.log = log
        throttle = WarningThrottle(intervalMilliseconds: intervalMilliseconds)
    }

    func occurred() {
        guard !flushed else {
            log(1)
            return
        }
        switch throttle.occurred(at: loop.nowMilliseconds) {
        case .log(let count): log(count)
        case .holdUntil(let delay):
            if timer == nil {
                timer = LoopTimer(loop: loop) { [weak self] in self?.intervalEnded() }
            }
            timer?.start(afterMilliseconds: delay)
        case .held: break
        }
    }

    /// Logs what is held back (the gateway stopping) and stops the timer; later occurrences
    /// (the last records filed as the loop ends) are logged at once.
    func flush() {
        flushed = true
        timer?.close()
        timer = nil
        if let count = throttle.flush() { log(count) }
    }

    private func intervalEnded() {
        if let count = throttle.intervalEnded(at: loop.nowMilliseconds) { log(count) }
    }
}
