import EventLoop

/// Whether a client takes what is queued for it fast enough: since `since`, it must have taken
/// what was on its way then, or `minBytesPerSecond` for every second since, whichever is less
/// (one byte at the least). Progress alone is not enough: a reader taking a few bytes every
/// 25 s would hold what is queued for it, and its connection, for hours (review 44 perimeter #3).
/// Socket-free; arithmetic on the figures saturates.
public struct DrainPace: Sendable, Equatable {
    public let since: UInt64
    public let backlog: WriteBacklog

    /// A check from `now`, against what is on its way (`backlog`) now.
    public init(since now: UInt64, backlog: WriteBacklog) {
        since = now
        self.backlog = backlog
    }

    public func kept(now: UInt64, backlog current: WriteBacklog, minBytesPerSecond: Int) -> Bool {
        let elapsed = now > since ? now - since : 0
        let (product, overflow) = UInt64(max(1, minBytesPerSecond)).multipliedReportingOverflow(by: elapsed)
        let owed = min(backlog.outstanding, overflow ? .max : product / 1_000)
        return current.delivered(since: backlog) >= max(1, owed)
    }
}
