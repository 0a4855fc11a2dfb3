import EventLoop
import Fusion
import GatewayCore
import Providers
import Surfaces

// What a deliberation charges: the totals its client is told and the record it files, one
// figure for both (from the call log, the machine's stats and the meter).
extension FusionSession {
    /// What the response ends with: usage summed over every call, per call when fusion ran, cut
    /// calls charged from their ledgers as they stand, as the record is (CI run 138: a piece read
    /// as a member was cut made the record a token more than the client was told).
    func settledTotals() -> FusionTotals {
        callLog.settle()
        let accounted = accounted
        var totals = FusionTotals(usage: accounted.usage, calls: machine.deliberated ? accounted.calls : nil, fusion: machine.fusionResult,
                                  finishReason: machine.finishReason, sources: machine.sources)
        totals.usageEstimated = accounted.estimated
        totals.answeringModel = callLog.answeringOuterCall.flatMap { $0.fellBack ? $0.model : nil }
        return totals
    }

    /// The usage the client is told and the record (and so the key) is charged, one figure for
    /// both: the sum of every upstream call's, each once, as the call log has it (what the spend
    /// prices too: review 97 #1, the machine's stats have no row for a call still running when
    /// the request ends, nor for a tool loop's earlier turns then); and the per-call breakdown,
    /// the machine's stats with what the call log charges beyond them folded in (estimates,
    /// reports only a cut call read).
    var accounted: (calls: [MemberStats], usage: Usage, estimated: Bool) {
        let charges = callLog.charges(pricedBy: routes.price(of:))
        var folded = MemberStats.folding(charges, into: machine.calls)
        for row in callLog.silentlyCancelledMembers where !folded.calls.contains(where: { $0.member == row.member && $0.role == row.role }) {
            folded.calls.append(row)
        }
        // A row without usage whose calls owe nothing (refused, unreachable) is known, zero, as
        // the record counts it (`InnerCallLog.usageUnknown`; review 99 #1).
        for index in folded.calls.indices where folded.calls[index].usage == nil {
            let row = folded.calls[index]
            if !callLog.mayOweUnknown(member: row.member, role: row.role, model: row.model) { folded.calls[index].usage = Usage() }
        }
        let calls = callLog.records(pricedBy: routes.price(of:))
        return (folded.calls, calls.compactMap(\.usage).reduce(Usage(), +), calls.contains(where: \.usageEstimated))
    }

    /// The record, from the machine's accounting, the call log and the meter.
    func fileRecord() {
        let time = EventLoop.monotonicNanoseconds()
        callLog.cancelAll(at: time)
        callLog.settle()
        for start in callStarts.values { meter.waited(from: start, to: time) }
        callStarts.removeAll()
        meter.end(at: time)
        // Whether or not the outer model went on to deliberate.
        record.router = FusionRequest.router
        record.entryPoint = machine.request.entryPoint
        record.firstTokenMilliseconds = machine.firstTokenAt.map(OverheadMeter.roundedMilliseconds)
        let accounted = accounted
        record.fusionCalls = accounted.calls.map(\.json)
        record.innerCalls = callLog.records(pricedBy: routes.price(of:))
        // The model that answered, as a proxied request's record names it (review 64B #2).
        if let answering = callLog.answeringOuterCall { (record.model, record.provider) = (answering.model, answering.provider) }
        // The client's usage, the estimates of calls cut before theirs included: what the key
        // is charged.
        record.usage = accounted.usage
        record.usageEstimated = record.innerCalls.contains(where: \.usageEstimated)
        record.usageUnknown = callLog.usageUnknown
        record.upstreamAttempts = record.innerCalls.reduce(0) { $0 + $1.attempts }
        record.fallbacks = record.innerCalls.reduce(0) { $0 + $1.fallbacks }
        record.retries = record.innerCalls.reduce(0) { $0 + max(0, $1.attempts - 1 - $1.fallbacks) }
        record.webToolCalls = machine.webToolCalls
        record.numSearchResults = machine.searchResults
        record.phases = meter.timings()
        record.fusionCost = machine.costEstimate?.report(calls: accounted.calls, prices: machine.prices)
        record.overheadMilliseconds = meter.totalOverheadMilliseconds()
        record.close(ResponseEnding(sentStatus: sentStatus, upstreamFinishReason: machine.finishReason?.rawValue, error: failure,
                                    cancelled: cancelled),
                     durationMilliseconds: OverheadMeter.milliseconds(time - startedAt))
    }
}
