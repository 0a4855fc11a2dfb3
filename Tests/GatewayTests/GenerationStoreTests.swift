import EventLoop
import Foundation
import PropertyBased
import Providers
import GatewayCore
import Testing
@testable import Gateway

/// The in-memory record store is bounded: the newest `capacity` records, the oldest evicted first.
@Suite struct GenerationStoreTests {
    static func record(_ id: String) -> GenerationRecord {
        GenerationRecord(id: id, route: .chatCompletions, kind: .proxy, requestedModel: "m", streamed: true, created: 0, owner: nil)
    }

    /// Only an id of the gateway's own form is looked up again on another replica's miss (each
    /// retry is a Redis round trip a client could otherwise ask for with any id).
    @Test func onlyTheGatewaysOwnIdsAreLookedUpAgain() {
        #expect((0..<100).allSatisfy { _ in GenerationStore.isGatewayID(GenerationStore.newID()) })
        for hostile in ["", "gen-", "gen-unknown", "gen-0123456789ABCDEF01234567", "gen-0123456789abcdef0123456", "gen-0123456789abcdef012345678",
                        "gen-0123456789abcdef0123456g", "gen-0123456789abcdef012345\u{0}7", "gen-0123456789abcdef01234é",
                        "resp_0123456789abcdef01234567", "GEN-0123456789abcdef01234567"] {
            #expect(!GenerationStore.isGatewayID(hostile), "\(hostile.debugDescription)")
        }
    }

    /// Ids drawn from a loop's pool (4 KiB of the kernel's bytes, refilled when spent) are of the
    /// gateway's form and never repeat, across refills; a draw larger than the pool spans refills.
    @Test func idsFromARandomPoolAreDistinctAcrossRefills() {
        let pool = RandomPool()
        let ids = (0..<1_000).map { _ in GenerationStore.newID(from: pool) }  // ~4 refills
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy(GenerationStore.isGatewayID))
        var large = [UInt8](repeating: 0, count: 10_000)
        large.withUnsafeMutableBytes { pool.fill($0) }
        // Each 4 KiB stretch is random: none is all zeros (what a spent pool holds).
        for start in stride(from: 0, to: large.count, by: 4096) {
            #expect(large[start..<min(start + 4096, large.count)].contains { $0 != 0 })
        }
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

    /// Refusals have their own ring: any number of them, in any order with completions, never
    /// push out a completion's record, and the newest tenth-of-capacity refusals are kept.
    @Test func refusalsCannotPushOutCompletions() async {
        await propertyCheck(count: 200, input: Gen.int(in: 10...40), Gen.int(in: 0...300)) { capacity, seed in
            let store = GenerationStore(capacity: capacity)
            var state = UInt64(seed) &* 6_364_136_223_846_793_005 &+ 1  // a small LCG: the mix of kinds
            var completions: [String] = []
            var refusals: [String] = []
            for index in 0..<(capacity * 5) {
                var record = Self.record("gen-\(index)")
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                if (state >> 33) % 4 != 0 {
                    record.kind = .rejected
                    refusals.append(record.id)
                } else {
                    completions.append(record.id)
                }
                store.add(record)
            }
            let keptCompletions = completions.suffix(capacity)
            #expect(completions.allSatisfy { (store.record($0) != nil) == keptCompletions.contains($0) })
            let keptRefusals = refusals.suffix(capacity / 10)
            #expect(refusals.allSatisfy { (store.record($0) != nil) == keptRefusals.contains($0) })
            #expect(store.count == keptCompletions.count + keptRefusals.count)
        }
    }

    /// A client's model name is kept short in its record (and so in its log line), whatever it sent.
    @Test func aRecordKeepsTheClientsModelNameShort() {
        let huge = String(repeating: "é", count: 300_000)
        var record = GenerationRecord(id: "gen-1", route: .chatCompletions, kind: .rejected, requestedModel: huge, streamed: false,
                                      created: 0, owner: nil)
        #expect(record.requestedModel.utf8.count <= ModelRouter.maxModelNameBytes + 3 && record.requestedModel.hasSuffix("…"))
        record.note(requestedModel: "sim/" + huge, streamed: true, kind: .proxy)
        #expect(record.model.utf8.count <= ModelRouter.maxModelNameBytes + 3 && record.model.hasPrefix("sim/é"))
        let error = RecordError(.invalidRequest("bad: " + huge), redactor: Redactor.none)
        #expect(error.message.utf8.count <= RecordError.maxMessageBytes + 3)
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

    /// What a record keeps of a client's or an upstream's words is bounded whoever sets it: a
    /// model name in bytes, a finish reason as an identifier or `other` (review 46 #1, #2).
    @Test func aRecordKeepsOnlyBoundedWordsFromOutside() {
        var record = Self.record("gen-1")
        record.requestedModel = "a" + String(repeating: "\u{0301}", count: 100_000)
        #expect(record.requestedModel.utf8.count <= ModelRouter.maxModelNameBytes + 3)
        for (given, kept) in [("stop", "stop"), ("tool_calls", "tool_calls"), ("end-turn.2", "end-turn.2"),
                              (String(repeating: "x", count: 65), "other"), ("sk-or-v1 abc", "other"), ("", "other"), ("é", "other")] {
            var call = CallRecord(role: "panel", model: "m", provider: "p")
            call.finishReason = given
            #expect(call.finishReason == kept, "\(given)")
            record.close(ResponseEnding(upstreamFinishReason: given), durationMilliseconds: 1)
            #expect(record.finishReason == kept, "\(given)")
        }
    }

    /// A key fits an identifier's characters: an upstream that sends one as its finish reason
    /// has it recorded as `other`, whole or cut to three quarters, in a record and a Fusion
    /// call's (review 83A #1: the client and the log line had it redacted, the record served it).
    @Test func aFinishReasonHoldingASecretIsRecordedAsOther() {
        let secret = "sk-fake-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        LogRedaction.shared.add([secret])
        let cut = String(secret.prefix(secret.count * 4 / 5))
        for given in [secret, cut, secret.uppercased(), "x" + secret] {
            var record = Self.record("gen-2")
            record.close(ResponseEnding(upstreamFinishReason: given), durationMilliseconds: 1)
            #expect(record.finishReason == "other", "\(given)")
            var call = CallRecord(role: "panel", model: "m", provider: "p")
            call.finishReason = given
            #expect(call.finishReason == "other", "\(given)")
        }
        let own = LogRedaction()
        own.add([secret])
        #expect(GenerationRecord.recordable(secret, secrets: own) == "other")
        #expect(GenerationRecord.recordable("stop", secrets: own) == "stop")
        #expect(GenerationRecord.recordable(String(secret.prefix(8)), secrets: own) == String(secret.prefix(8)), "a few letters of it are no key")
    }
}
