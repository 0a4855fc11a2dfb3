import Fusion
import GatewayCore
import Providers
import Testing

/// The call log's estimates folded into the per-call stats: the client's usage and the
/// record's (what the key is charged) are one figure.
@Suite struct EstimatedUsageTests {
    func stats(_ role: String, _ model: String, _ usage: Usage?) -> MemberStats {
        MemberStats(model: model, role: role, status: usage == nil ? "cut_for_latency" : "ok", usage: usage,
                    firstTokenMilliseconds: nil, durationMilliseconds: 1, characters: 1)
    }

    @Test func eachEstimateGoesToItsCallAndTheTotalsAgree() {
        let reported = Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15)
        let calls = [stats("panel", "a", reported), stats("panel", "b", nil), stats("panel", "b", nil), stats("judge", "j", reported)]
        let estimates = [
            MemberStats.Estimate(role: "panel", model: "b", usage: Usage(promptTokens: 7, completionTokens: 3, totalTokens: 10)),
            MemberStats.Estimate(role: "panel", model: "b", usage: Usage(promptTokens: 7, completionTokens: 4, totalTokens: 11)),
            // A later turn of a call that has usage: added to it.
            MemberStats.Estimate(role: "judge", model: "j", usage: Usage(promptTokens: 20, completionTokens: 2, totalTokens: 22)),
            // No call of its role and model: only in the total.
            MemberStats.Estimate(role: "outer_final", model: "o", usage: Usage(promptTokens: 1, completionTokens: 1, totalTokens: 2)),
        ]
        let folded = MemberStats.folding(estimates, into: calls)
        #expect(folded.calls.map(\.usage?.totalTokens) == [15, 10, 11, 37])
        #expect(folded.calls.map(\.usageEstimated) == [false, true, true, true])
        #expect(folded.unplaced.totalTokens == 2)
        // Every estimate is counted once: the sum over the calls plus what matched none.
        let total = folded.calls.compactMap(\.usage).reduce(folded.unplaced, +)
        let expected = calls.compactMap(\.usage).reduce(Usage(), +) + estimates.map(\.usage).reduce(Usage(), +)
        #expect(total == expected)
        // The breakdown says which calls hold an estimate.
        #expect(folded.calls[1].json["estimated"] == .bool(true) && folded.calls[1].json["usage_unknown"] == nil)
        var bytes: [UInt8] = []
        folded.calls[1].appendJSON(to: &bytes)
        #expect(bytes == folded.calls[1].json.serialized())
    }

    /// Two members of one model, the second cut after a finished tool turn (its stats hold that
    /// turn's usage): its cancelled turn's estimate is its own, not the first member's (review 49 #7).
    @Test func aCutCallWithEarlierTurnsTakesItsOwnEstimate() {
        let reported = Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15)
        var cut = stats("panel", "m", Usage(promptTokens: 100, completionTokens: 10, totalTokens: 110))
        cut.status = "cut_for_latency"
        let folded = MemberStats.folding([MemberStats.Estimate(role: "panel", model: "m", usage: Usage(promptTokens: 7, completionTokens: 3, totalTokens: 10))],
                                         into: [stats("panel", "m", reported), cut])
        #expect(folded.calls.map(\.usage?.totalTokens) == [15, 120])
        #expect(folded.calls.map(\.usageEstimated) == [false, true])
        // Both cut, the first in its first turn: each takes its own (review 50 #4).
        var first = stats("panel", "m", nil)
        first.status = "cut_for_latency"
        let both = MemberStats.folding([MemberStats.Estimate(role: "panel", model: "m", usage: Usage(promptTokens: 5, completionTokens: 2, totalTokens: 7)),
                                        MemberStats.Estimate(role: "panel", model: "m", usage: Usage(promptTokens: 20, completionTokens: 10, totalTokens: 30))],
                                       into: [first, cut])
        #expect(both.calls.map(\.usage?.totalTokens) == [7, 140])
    }

    /// Matched by member, not by model: member 0 cut in its second turn after a finished tool
    /// turn, member 1 (same model) cut before any output: the estimate is member 0's, and member
    /// 1 shows nothing (review 51 #5: by order, member 1 took it and member 0's showed as measured).
    @Test func aMembersEstimateIsItsOwnWhateverItsModel() {
        var earlier = stats("panel", "m", Usage(promptTokens: 80, completionTokens: 20, totalTokens: 100))
        earlier.status = "cut_for_latency"
        earlier.member = 0
        var silent = stats("panel", "m", nil)
        silent.member = 1
        let estimate = MemberStats.Estimate(role: "panel", model: "m", usage: Usage(promptTokens: 20, completionTokens: 10, totalTokens: 30), member: 0)
        let folded = MemberStats.folding([estimate], into: [earlier, silent])
        #expect(folded.calls.map(\.usage?.totalTokens) == [130, nil])
        #expect(folded.calls.map(\.usageEstimated) == [true, false])
        #expect(folded.unplaced == Usage())
        // A member with no stats (still running when the request ended): a row of its own,
        // `cancelled`, not on another member's call of its model (review 53 #6), and not only in
        // the total, where the breakdown did not add up to it (review 62C #5).
        let running = MemberStats.Estimate(role: "panel", model: "m", usage: Usage(promptTokens: 5, completionTokens: 5, totalTokens: 10), member: 2,
                                           firstTokenMilliseconds: 40, durationMilliseconds: 250)
        let unmatched = MemberStats.folding([running], into: [earlier, silent])
        #expect(unmatched.calls.map(\.usage?.totalTokens) == [100, nil, 10] && unmatched.unplaced == Usage())
        #expect(unmatched.calls[2].status == "cancelled" && unmatched.calls[2].member == 2 && unmatched.calls[2].usageEstimated)
        // Its time as the call log saw it, not 0 (review 63 #5).
        #expect(unmatched.calls[2].durationMilliseconds == 250 && unmatched.calls[2].firstTokenMilliseconds == 40)
    }
}
