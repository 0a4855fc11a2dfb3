@testable import EventLoop
import Foundation
import Testing

/// `LoopTimer(readsFirstWhenLate:)`: libuv runs due timers before it polls the sockets, so a
/// timer that judges silence, firing late behind a busy loop, would judge bytes that came in time
/// as never sent. Put off once, it sees them.
@Suite struct LoopTimerTests {
    final class State: @unchecked Sendable {
        var listener: TCPListener?
        var connection: TCPConnection?
        var timer: LoopTimer?
        var bytesRead = 0
        /// Bytes read when the timer's callback ran, once per firing.
        var seenAtFiring: [Int] = []
    }

    /// A connection's byte arrives while the loop is busy past the timer's due time: a plain timer
    /// fires before the loop reads it, a `readsFirstWhenLate` one after; a repeating one goes on
    /// ticking.
    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func aLateTimerThatReadsFirstSeesWhatCameInTime(readsFirst: Bool) throws {
        let thread = EventLoopThread(name: "late-timer-test")
        defer { thread.shutdown() }
        let state = State()
        let port = try thread.loop.submitAndWait {
            let listener = try TCPListener(loop: thread.loop, host: "127.0.0.1", port: 0) { connection in
                state.connection = connection
                connection.onRead = { bytes in state.bytesRead += bytes.count }
                connection.startReading()
            }
            state.listener = listener
            return listener.port
        }
        let fd = try TCPListenerTests.connect(port: port, timeoutMilliseconds: 1_000)
        defer { close(fd) }
        for _ in 0..<200 where try thread.loop.submitAndWait({ state.connection == nil }) { usleep(5_000) }
        // The timer is due in 100 ms; the loop is then busy for 400 ms, and the byte comes at 150 ms.
        let busy = DispatchSemaphore(value: 0)
        try thread.loop.submitAndWait {
            let timer = LoopTimer(loop: thread.loop, readsFirstWhenLate: readsFirst) {
                state.seenAtFiring.append(state.bytesRead)
            }
            timer.start(afterMilliseconds: 100, repeatMilliseconds: 20)
            state.timer = timer
            thread.loop.execute {
                busy.signal()
                usleep(400_000)
            }
        }
        busy.wait()
        usleep(150_000)
        #expect(send(fd, "x", 1, 0) == 1)
        usleep(600_000)
        let seen = try thread.loop.submitAndWait { () -> [Int] in
            state.timer?.close()
            state.connection?.close()
            state.listener?.close()
            return state.seenAtFiring
        }
        #expect(seen.first == (readsFirst ? 1 : 0), "\(seen)")
        // The repeating timer kept firing after that, at least every other time.
        #expect(seen.count >= 10, "\(seen)")
    }
}
