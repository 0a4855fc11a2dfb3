import EventLoop
import Foundation
import PropertyBased
import Testing
@testable import Gateway

/// The in-memory record store is bounded: the newest `capacity` records, the oldest evicted first.
@Suite struct GenerationStoreTests {
    static func record(_ id: String) -> GenerationRecord {
        GenerationRecord(id: id, route: .chatCompletions, kind: .proxy, requestedModel: "m", streamed: true, created: 0, owner: nil)
    }

    @Test func theOldestGoFirst() {
        let store = GenerationStore(capacity: 3)
        for index in 0..<5 { store.add(Self.record("gen-\(index)")) }
        #expect(store.count == 3)
        #expect(store.record("gen-0") == nil && store.record("gen-1") == nil)
        #expect((2..<5).allSatisfy { store.record("gen-\($0)")?.id == "gen-\($0)" })
    }

    /// However many records arrive: exactly the newest `capacity` are held, each findable.
    @Test func exactlyTheNewestAreHeld() async {
        await propertyCheck(count: 300, input: Gen.int(in: 1...20), Gen.int(in: 0...70)) { capacity, added in
            let store = GenerationStore(capacity: capacity)
            for index in 0..<added { store.add(Self.record("gen-\(index)")) }
            #expect(store.count == min(capacity, added))
            for index in 0..<added {
                #expect((store.record("gen-\(index)") != nil) == (index >= added - capacity), "capacity \(capacity), added \(added), id \(index)")
            }
        }
    }

    /// A record is filed just after its response's last bytes: a lookup from another loop in
    /// between waits for it (answered on its own loop), where an id nobody expects is missing at
    /// once.
    @Test(.timeLimit(.minutes(1))) func aLookupOfAnExpectedRecordWaitsForIt() throws {
        let store = GenerationStore(capacity: 4)
        let reader = EventLoopThread(name: "store-reader")
        defer { reader.shutdown() }
        store.expect("gen-soon")
        let answers = Lock<[String?]>([])
        let onReaderLoop = Lock<[Bool]>([])
        try reader.loop.submitAndWait {
            for id in ["gen-soon", "gen-unknown"] {
                store.lookup(id, on: reader.loop) { record in
                    answers.withLock { $0.append(record?.id) }
                    onReaderLoop.withLock { $0.append(reader.loop.inLoopThread) }
                }
            }
        }
        #expect(answers.withLock { $0 } == [nil], "the unknown id answered at once; the expected one waits")
        store.add(Self.record("gen-soon"))
        let deadline = Date().addingTimeInterval(10)
        while answers.withLock({ $0.count }) < 2 && Date() < deadline { usleep(1_000) }
        #expect(answers.withLock { $0 } == [nil, "gen-soon"])
        #expect(onReaderLoop.withLock { $0 } == [true, true])
        // Filed: later lookups answer at once, and the id is no longer expected.
        let later = try reader.loop.submitAndWait { () -> String? in
            var found: String?
            store.lookup("gen-soon", on: reader.loop) { found = $0?.id }
            return found
        }
        #expect(later == "gen-soon")
    }
}
