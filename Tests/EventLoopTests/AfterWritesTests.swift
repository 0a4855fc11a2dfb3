@testable import EventLoop
import Foundation
import Testing

/// `EventLoop.afterWrites`: bookkeeping that runs once the iteration's writes are out, so a
/// response's last bytes do not wait for it (a finished completion's record is filed this way).
@Suite struct AfterWritesTests {
    @Test(.timeLimit(.minutes(1))) func workRunsOnceTheIterationsWritesHaveGoneOut() throws {
        let loop = EventLoop()
        var server: TCPConnection?
        var client: TCPConnection?
        var seen: [String] = []
        var received = 0
        var failure: String?
        let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0) { connection in
            server = connection
            connection.write(Array(repeating: UInt8(ascii: "a"), count: 100))
            seen.append("queued \(connection.bufferedBytes)")
            loop.afterWrites {
                seen.append("first \(connection.bufferedBytes)")
                // Work that writes again and defers more: its own write goes out before it runs.
                connection.write(Array(repeating: UInt8(ascii: "b"), count: 50))
                loop.afterWrites { seen.append("second \(connection.bufferedBytes)") }
            }
            seen.append("callback returned")
        }
        let deadline = LoopTimer(loop: loop) { failure = "timed out"; loop.stop() }
        deadline.start(afterMilliseconds: 30_000)
        TCPConnectAttempt.start(loop: loop, host: "127.0.0.1", port: listener.port) { result in
            guard case .success(let connection) = result else { failure = "connect failed"; loop.stop(); return }
            client = connection
            connection.onRead = { bytes in
                received += bytes.count
                if received == 150 { loop.deferToNextIteration { loop.stop() } }
            }
            connection.onDisconnect = { _ in failure = "disconnected"; loop.stop() }
            connection.startReading()
        }
        loop.run()
        deadline.close()
        #expect(failure == nil)
        #expect(received == 150)
        #expect(seen == ["queued 100", "callback returned", "first 0", "second 0"])
        server?.close()
        client?.close()
        listener.close()
        loop.run()
    }
}
