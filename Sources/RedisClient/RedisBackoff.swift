/// How long to wait before reconnecting after `failures` failed attempts in a row: exponential
/// from `base`, capped at `max`, with jitter over the upper half so replicas that lost Redis
/// together do not reconnect in lockstep. Saturating: any count is safe.
public struct RedisBackoff: Sendable, Equatable {
    public var baseMilliseconds: UInt64
    public var maxMilliseconds: UInt64

    public init(baseMilliseconds: UInt64 = 100, maxMilliseconds: UInt64 = 5_000) {
        self.baseMilliseconds = max(1, baseMilliseconds)
        self.maxMilliseconds = max(self.baseMilliseconds, maxMilliseconds)
    }

    /// The longest wait after `failures` failures (before jitter).
    public func ceiling(failures: Int) -> UInt64 {
        let shift = min(max(failures - 1, 0), 32)
        let (scaled, overflow) = baseMilliseconds.multipliedReportingOverflow(by: 1 << UInt64(shift))
        return overflow ? maxMilliseconds : min(scaled, maxMilliseconds)
    }

    /// A wait in [ceiling/2, ceiling].
    public func delay<Generator: RandomNumberGenerator>(failures: Int, using generator: inout Generator) -> UInt64 {
        let ceiling = ceiling(failures: failures)
        return ceiling / 2 + UInt64.random(in: 0...(ceiling - ceiling / 2), using: &generator)
    }
}
