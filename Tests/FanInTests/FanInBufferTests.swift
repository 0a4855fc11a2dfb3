import FanIn
import Foundation
import Synchronization
import Testing

@Suite struct FanInBufferTests {
    func push(_ buffer: FanInBuffer, _ producer: UInt16, _ text: String, kind: UInt8 = 0) -> FanInBuffer.PushResult {
        Array(text.utf8).withUnsafeBytes { buffer.push(producer: producer, kind: kind, bytes: $0) }
    }

    func drainAll(_ buffer: FanInBuffer) -> [(UInt16, UInt8, String)] {
        var records: [(UInt16, UInt8, String)] = []
        buffer.drain { producer, kind, bytes in records.append((producer, kind, String(decoding: bytes, as: UTF8.self))) }
        return records
    }

    @Test func recordsComeOutInOrderWithTheirTags() {
        let buffer = FanInBuffer(capacity: 8)
        #expect(push(buffer, 1, "a", kind: 3) == .pushed)
        #expect(push(buffer, 2, "", kind: 4) == .pushed)
        #expect(push(buffer, 1, "bc") == .pushed)
        let records = drainAll(buffer)
        #expect(records.map(\.0) == [1, 2, 1])
        #expect(records.map(\.1) == [3, 4, 0])
        #expect(records.map(\.2) == ["a", "", "bc"])
        #expect(drainAll(buffer).isEmpty)
    }

    @Test func multiSlotRecordsSurviveWrapAround() {
        let capacity = 8
        let buffer = FanInBuffer(capacity: capacity)
        let big = String(repeating: "x", count: FanInBuffer.payloadPerSlot * 2 + 17)  // 3 slots
        var position = 0
        var straddled = 0
        for round in 0..<24 {
            // 1 to 3 one-slot records first, so the big record starts at every offset of the ring.
            let small = (0...(round % 3)).map { "r\(round).\($0)" }
            for text in small { #expect(push(buffer, 0, text) == .pushed) }
            position += small.count
            if position % capacity + 3 > capacity { straddled += 1 }  // its slots wrap past the ring's end
            #expect(push(buffer, 1, big + "\(round)") == .pushed)
            position += 3
            let records = drainAll(buffer)
            #expect(records.map(\.2) == small + [big + "\(round)"])
        }
        #expect(straddled >= 4, "records really straddled the end of the ring")
    }

    @Test func fullAndTooLargeAreRefusedWithoutSideEffects() {
        let buffer = FanInBuffer(capacity: 4)
        for index in 0..<4 { #expect(push(buffer, 0, "\(index)") == .pushed) }
        #expect(push(buffer, 0, "overflow") == .full)
        #expect(buffer.approximateOccupancy == 4)
        let tooBig = String(repeating: "y", count: FanInBuffer.payloadPerSlot * 4 + 1)
        #expect(push(buffer, 0, tooBig) == .tooLarge)
        #expect(drainAll(buffer).map(\.2) == ["0", "1", "2", "3"])
        // A 3-slot record does not fit after one slot is taken... until drained.
        #expect(push(buffer, 0, "z") == .pushed)
        #expect(push(buffer, 0, String(repeating: "w", count: FanInBuffer.payloadPerSlot * 3 + 1)) == .full)
        #expect(drainAll(buffer).map(\.2) == ["z"])
        #expect(push(buffer, 0, String(repeating: "w", count: FanInBuffer.payloadPerSlot * 3 + 1)) == .pushed)
    }

    @Test func drainLimitAndPublishedFlag() {
        let buffer = FanInBuffer(capacity: 8)
        #expect(!buffer.hasPublishedRecord)
        for index in 0..<5 { _ = push(buffer, 0, "\(index)") }
        #expect(buffer.hasPublishedRecord)
        var seen = 0
        #expect(buffer.drain(limit: 2) { _, _, _ in seen += 1 } == 2)
        #expect(seen == 2)
        #expect(drainAll(buffer).count == 3)
    }

    /// More producer threads than cores, records of varied sizes (some spanning slots), a small
    /// ring (constant backpressure): every record arrives exactly once, intact, and each
    /// producer's records arrive in the order it pushed them.
    @Test(.timeLimit(.minutes(1)), arguments: [1, 2, 4, 8])
    func stressManyProducersNothingLostDuplicatedOrReordered(producers: Int) throws {
        let perProducer = 20_000
        let buffer = FanInBuffer(capacity: 64)
        let finished = Atomic<Int>(0)
        let threads = (0..<producers).map { producer in
            Thread {
                var scratch = [UInt8](repeating: 0, count: 700)
                for sequence in 0..<perProducer {
                    // Payload: sequence number, then a length-dependent pattern to detect tearing.
                    let length = 8 + (sequence * 37 + producer * 11) % 600
                    scratch.withUnsafeMutableBytes { bytes in
                        bytes.storeBytes(of: UInt64(sequence), as: UInt64.self)
                        for index in 8..<length { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ sequence) }
                    }
                    while scratch.withUnsafeBytes({ buffer.push(producer: UInt16(producer), kind: 7,
                                                                 bytes: UnsafeRawBufferPointer(rebasing: $0[..<length])) }) != .pushed {
                        sched_yield()  // full: wait for the consumer
                    }
                }
                finished.add(1, ordering: .releasing)
            }
        }
        for thread in threads { thread.start() }
        var next = [Int](repeating: 0, count: producers)
        var problems: [String] = []
        var total = 0
        let deadline = Date().addingTimeInterval(50)
        while total < producers * perProducer && Date() < deadline {
            let drained = buffer.drain { producer, kind, bytes in
                let sequence = Int(bytes.load(as: UInt64.self))
                let expectedLength = 8 + (sequence * 37 + Int(producer) * 11) % 600
                if kind != 7 || bytes.count != expectedLength { problems.append("bad record from \(producer)") }
                if sequence != next[Int(producer)] { problems.append("producer \(producer): got \(sequence), expected \(next[Int(producer)])") }
                for index in 8..<bytes.count where bytes[index] != UInt8(truncatingIfNeeded: index &* 31 &+ sequence) {
                    problems.append("torn record \(producer)#\(sequence)")
                    break
                }
                next[Int(producer)] = sequence + 1
            }
            total += drained
            if drained == 0 { sched_yield() }
            if problems.count > 5 { break }
        }
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        #expect(total == producers * perProducer)
        #expect(next.allSatisfy { $0 == perProducer })
        #expect(finished.load(ordering: .acquiring) == producers)
        #expect(!buffer.hasPublishedRecord)
    }
}
