import EventLoop

/// Watches one streamed response, for the proxy and for Fusion alike: when nothing has been
/// written for `keepAliveInterval` it asks for a `: keep-alive` comment (a slow first token, a
/// slow panel), and a client that has taken no bytes for `slowClientTimeout` is reported (it
/// would pin upstream transfers forever). One repeating timer per stream.
final class StreamWatchdog {
    private let loop: EventLoop
    private let keepAliveInterval: UInt64
    private let slowClientTimeout: UInt64
    private var timer: LoopTimer?
    private var lastWrite: UInt64

    /// `blockedMilliseconds`: how long the client has taken nothing. `onTick` runs first on every
    /// tick (the proxy checks its upstream's idle time there, whose timeout,
    /// `tickBoundMilliseconds`, bounds the tick too: review 64D #9, a 4 s idle timeout fired at 5 s).
    init(loop: EventLoop, keepAliveIntervalMilliseconds: UInt64, slowClientTimeoutMilliseconds: UInt64,
         tickBoundMilliseconds: UInt64 = .max,
         blockedMilliseconds: @escaping () -> UInt64, onTick: @escaping () -> Void = {},
         sendKeepAlive: @escaping () -> Void, dropClient: @escaping () -> Void) {
        self.loop = loop
        keepAliveInterval = keepAliveIntervalMilliseconds
        slowClientTimeout = slowClientTimeoutMilliseconds
        lastWrite = loop.nowMilliseconds
        let tick = max(min(keepAliveIntervalMilliseconds, slowClientTimeoutMilliseconds, tickBoundMilliseconds) / 4, 10)
        let timer = LoopTimer(loop: loop, readsFirstWhenLate: true) { [unowned self] in
            onTick()
            guard self.timer != nil else { return }  // onTick may have ended the stream
            if blockedMilliseconds() >= slowClientTimeout {
                close()
                dropClient()
            } else if loop.nowMilliseconds &- lastWrite >= keepAliveInterval {
                lastWrite = loop.nowMilliseconds
                sendKeepAlive()
            }
        }
        timer.start(afterMilliseconds: tick, repeatMilliseconds: tick)
        self.timer = timer
    }

    /// Something was written to the client: silence is counted from now.
    func noteWrite() { lastWrite = loop.nowMilliseconds }

    func close() {
        timer?.close()
        timer = nil
    }
}
