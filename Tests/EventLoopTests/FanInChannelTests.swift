@testable import EventLoop
import FanIn
import Testing

/// `FanInChannel`'s drain on its consumer loop.
@Suite struct FanInChannelTests {
    /// A consumer that stops accepting on a record gets no other until it accepts again: the rest
    /// wait in the ring (review 43 engine F4: up to 63 more were handed over in the same batch,
    /// megabytes queued for a client that had stopped reading).
    @Test(.timeLimit(.minutes(1))) func aConsumerThatStopsAcceptingGetsNothingMoreUntilItAccepts() throws {
        let loop = EventLoop()
        let channel = FanInChannel(loop: loop, capacity: 128)
        var delivered: [UInt8] = []
        channel.onRecords = { record in
            delivered.append(record.kind)
            if record.kind == 10 { channel.isAcceptingRecords = false }  // the client fell behind here
        }
        for kind in UInt8(1)...UInt8(40) { _ = channel.push(producer: 0, kind: kind, bytes: [kind]) }
        loop.deferToNextIteration {
            channel.drainNow()
            #expect(delivered == Array(1...10), "nothing past the record that blocked")
            channel.isAcceptingRecords = true
            channel.drainNow()
            #expect(delivered == Array(1...40), "the rest, in order, once it accepts again")
            channel.close()
            loop.stop()
        }
        loop.run()
    }
}
