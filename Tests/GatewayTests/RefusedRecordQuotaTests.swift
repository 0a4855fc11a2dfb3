@testable import Gateway
import Testing

/// The quota of refused requests' records a key may write to Redis a minute (review 43 state #1).
@Suite struct RefusedRecordQuotaTests {
    @Test func eachKeyWritesAtMostItsQuotaAMinuteThenAgainInTheNext() {
        var quota = RefusedRecordQuota()
        let minute: UInt64 = 60_000 * 1_000
        let first = (0..<100).filter { _ in quota.admit(owner: "sha256:a", nowMilliseconds: minute + 5) }.count
        #expect(first == RefusedRecordQuota.perKeyPerMinute)
        let other = quota.admit(owner: "sha256:b", nowMilliseconds: minute + 59_999)
        #expect(other, "another key has its own")
        let keyless = (0..<100).filter { _ in quota.admit(owner: nil, nowMilliseconds: minute + 10) }.count
        #expect(keyless == RefusedRecordQuota.perKeyPerMinute, "requests without a key share one")
        let next = quota.admit(owner: "sha256:a", nowMilliseconds: 2 * minute)
        #expect(next, "the next minute")
    }

    @Test func aMinuteCountsABoundedNumberOfKeys() {
        var quota = RefusedRecordQuota()
        let admitted = (0..<(RefusedRecordQuota.maxKeysPerWindow + 50)).filter { quota.admit(owner: "k\($0)", nowMilliseconds: 1) }.count
        #expect(admitted == RefusedRecordQuota.maxKeysPerWindow)
        let counted = quota.admit(owner: "k0", nowMilliseconds: 2)
        #expect(counted, "a key counted already goes on")
        let later = quota.admit(owner: "new", nowMilliseconds: 60_000)
        #expect(later, "every key again in the next minute")
    }
}
