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
}
