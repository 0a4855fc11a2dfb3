@testable import EventLoop
import Foundation
import Testing

/// The connection's write queue: a FIFO whose memory a drained connection gives back.
@Suite struct ByteQueueTests {
    /// Property: under any sequence of appends, partial consumes, clears and releases, the
    /// readable bytes are exactly what a plain array model holds, and a queue that has been
    /// released while empty holds at most `keptCapacity`. Bytes are compared with `memcmp` and
    /// taken from one pattern buffer, so the test stays quick under AddressSanitizer (a test
    /// that holds a thread for long starves the others' time limits).
    @Test func behavesAsAFIFOAndGivesLargeBlocksBack() {
        // A 64-bit LCG's high bits: deterministic, so a failing seed replays.
        var state: UInt64 = 0
        func random() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 16
        }
        let pattern = (0..<65_536).map { _ in UInt8(truncatingIfNeeded: random()) }
        var released = 0
        var mismatches = 0
        for seed in 0..<80 {
            state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15
            let queue = ByteQueue()
            var model: [UInt8] = []
            var head = 0  // the model's bytes are model[head...]
            for _ in 0..<150 {
                switch random() % 10 {
                case 0...4:
                    // Mostly event-sized appends, now and then a burst (a slow client's backlog).
                    let count = random() % 8 == 0 ? Int(random() % 40_000) : Int(random() % 400)
                    let offset = Int(random() % UInt64(pattern.count - count + 1))
                    pattern.withUnsafeBytes { queue.append(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
                    model += pattern[offset..<offset + count]
                case 5...7:
                    let live = model.count - head
                    let count = live == 0 ? 0 : Int(random() % UInt64(live + 1))
                    queue.consume(count)
                    head += count
                case 8:
                    queue.clear()
                    model.removeAll(keepingCapacity: true)
                    head = 0
                default:
                    let before = queue.capacity
                    queue.releaseIfLarge()
                    if queue.capacity < before { released += 1 }
                    if model.count == head {
                        #expect(queue.capacity <= ByteQueue.keptCapacity, "seed \(seed)")
                        if before <= ByteQueue.keptCapacity { #expect(queue.capacity == before, "seed \(seed): a small block is kept") }
                    } else {
                        #expect(queue.capacity == before, "seed \(seed): a queue with bytes keeps its block")
                    }
                }
                if head == model.count {
                    model.removeAll(keepingCapacity: true)
                    head = 0
                }
                let readable = queue.readable
                let same = readable.count == model.count - head && model.withUnsafeBytes { bytes in
                    readable.isEmpty || memcmp(readable.baseAddress!, bytes.baseAddress! + head, readable.count) == 0
                }
                if !same { mismatches += 1 }
            }
        }
        #expect(mismatches == 0, "the queue's bytes and the model's differ")
        #expect(released > 0, "the sequences gave a large block back at least once")
    }

    /// The first block is small: an open stream holds it for as long as it streams.
    @Test func theFirstBlockFitsWhatIsWritten() {
        let queue = ByteQueue()
        #expect(queue.capacity == 0)
        [UInt8](repeating: 1, count: 300).withUnsafeBytes { queue.append($0) }
        #expect(queue.capacity == ByteQueue.initialCapacity)
        let big = ByteQueue()
        [UInt8](repeating: 1, count: 3_000).withUnsafeBytes { big.append($0) }
        #expect(big.capacity == 4_096)
    }

    /// Over loopback: a client that does not read makes the server's connection queue a large
    /// backlog; once the client has read it all (in order: sampled every 4 KiB), the
    /// connection's queues have given their blocks back.
    @Test(.timeLimit(.minutes(1))) func aDrainedConnectionGivesItsBacklogsMemoryBack() throws {
        let loop = EventLoop()
        // More than loopback's socket buffers take (they autotune to several MiB).
        let chunk = (0..<(1 << 20)).map { UInt8($0 % 251) }
        let chunks = 24
        let total = chunks * chunk.count
        var server: TCPConnection?
        var client: TCPConnection?
        var received = 0
        var misplaced = 0
        var capacityWhileBlocked = 0
        var failure: String?
        var startReading: LoopTimer?
        let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0) { connection in
            server = connection
            for _ in 0..<chunks { connection.write(chunk) }
        }
        let deadline = LoopTimer(loop: loop) { failure = "timed out"; loop.stop() }
        deadline.start(afterMilliseconds: 50_000)
        TCPConnectAttempt.start(loop: loop, host: "127.0.0.1", port: listener.port) { result in
            guard case .success(let connection) = result else { failure = "connect failed"; loop.stop(); return }
            client = connection
            // Let the server fill the socket buffers and queue the rest, then read everything.
            startReading = LoopTimer(loop: loop) {
                capacityWhileBlocked = server?.queueCapacity ?? 0
                connection.onRead = { bytes in
                    for index in stride(from: (4096 - received % 4096) % 4096, to: bytes.count, by: 4096)
                    where bytes[index] != UInt8((received + index) % chunk.count % 251) {
                        misplaced += 1
                    }
                    received += bytes.count
                    if received == total { loop.deferToNextIteration { loop.stop() } }
                }
                connection.startReading()
            }
            startReading?.start(afterMilliseconds: 100)
            connection.onDisconnect = { _ in failure = "client disconnected"; loop.stop() }
        }
        loop.run()
        deadline.close()
        #expect(failure == nil)
        #expect(received == total)
        #expect(misplaced == 0)
        #expect(capacityWhileBlocked > ByteQueue.keptCapacity, "the backlog was queued")
        #expect(server?.queueCapacity == 0, "drained: both queues gave their blocks back")
        startReading?.close()
        server?.close()
        client?.close()
        listener.close()
        loop.run()
    }
}
