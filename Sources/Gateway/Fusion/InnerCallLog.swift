import Fusion
import GatewayCore
import Providers

/// The record of every upstream call a Fusion session makes (outer turns, each panel member's
/// turns, the judge's), kept by the session's shell from what it already sees: the calls it
/// starts and cancels, their events, and the summary each call sends with its end. Socket-free.
/// Times are the session's (monotonic ns), so a call's time to first token includes the hop from
/// its loop, as the client would feel it.
final class InnerCallLog: @unchecked Sendable {  // owned by one session, on its loop
    typealias CallID = FusionSessionMachine.CallID

    /// A class: updated in place per event (a struct read out of the dictionary was copied
    /// whole, record and routes, on every delta).
    private final class Entry: @unchecked Sendable {  // confined to its log
        var record: CallRecord
        let startedAt: UInt64
        /// The call's model, then its fallbacks: (slug, provider).
        let routes: [(model: String, provider: String)]
        var open = true
        /// Pieces of output (text, reasoning, tool call fragments): a call cut before its usage
        /// is charged a token for each.
        var outputEvents: Int64 = 0
        /// The output charged: the session's count, or the ledger's (what the call read and the
        /// session has not yet; a large piece a token per four bytes), whichever is more.
        var output: Int64 { max(outputEvents, ledger.outputPieces) }
        /// The prompt's counts its upstream gave before the answer (Anthropic's `message_start`):
        /// what it is charged for its prompt if cut before its usage.
        var promptUsage: Usage?
        /// What the call owes as far as it has read (its upstream holds its prompt, the output
        /// and usage it read), set on its loop: a call the session cuts is charged from it,
        /// whatever of its records the session never read.
        let ledger: CallLedger
        /// The last usage report the session read (what its own stats of the call hold).
        var sessionReport: Usage?
        /// Of a cut call's usage, the pieces of output after its upstream's last report, a token
        /// each (priced on top of the report's cost).
        var tailTokens: Int64 = 0
        /// Its request (sharing the session's storage): its prompt is what the call is charged
        /// if cut before its usage, estimated only then (`CostEstimate.tokens(request:)`), off
        /// the path of every call's start.
        let request: ModelRequest
        /// The panel member it answers for (nil: an outer or judge call).
        let member: Int?

        init(record: CallRecord, startedAt: UInt64, routes: [(model: String, provider: String)], request: ModelRequest, member: Int?,
             ledger: CallLedger) {
            self.record = record
            self.ledger = ledger
            self.startedAt = startedAt
            self.routes = routes
            self.request = request
            self.member = member
        }
    }

    private var entries: [CallID: Entry] = [:]
    /// When the request arrived (the zero of every `start_ms`).
    private let requestStart: UInt64
    private let redactor: Redactor

    init(requestStart: UInt64, redactor: Redactor) {
        self.requestStart = requestStart
        self.redactor = redactor
    }

    static func role(_ role: FusionSessionMachine.Role) -> String {
        switch role {
        case .outer(let final): final ? "outer_final" : "outer"
        case .member: "panel"
        case .judge: "judge"
        }
    }

    func started(_ id: CallID, role: FusionSessionMachine.Role, routes: [(model: String, provider: String)], request: ModelRequest,
                 ledger: CallLedger = CallLedger(), at now: UInt64) {
        guard let first = routes.first else { return }
        var record = CallRecord(role: Self.role(role), model: first.model, provider: first.provider)
        record.startMilliseconds = OverheadMeter.milliseconds(now &- requestStart)
        let member: Int? = if case .member(let index) = role { index } else { nil }
        entries[id] = Entry(record: record, startedAt: now, routes: routes, request: request, member: member, ledger: ledger)
    }

    func event(_ id: CallID, _ event: ModelEvent, at now: UInt64) {
        guard let entry = entries[id], entry.open else { return }
        switch event {
        case .text, .reasoning, .refusal, .toolCall:
            entry.outputEvents += 1
            if entry.record.firstTokenMilliseconds == nil { entry.record.firstTokenMilliseconds = OverheadMeter.milliseconds(now &- entry.startedAt) }
        case .usage(let usage):
            entry.record.usage = usage  // per call: the last report is the total
            entry.sessionReport = usage
        case .finish(let reason):
            entry.record.finishReason = reason.rawValue
        case .error, .reasoningSignature, .redactedReasoning, .stopDetail, .messageExtras, .providerBlock:
            break
        }
    }

    /// What the call's upstream said of its prompt before answering (`InnerCall` sends each
    /// attempt's as it reads them: a later attempt's replace an earlier one's until output came,
    /// so the answering attempt's count). The session may cut the call before the record
    /// arrives: then the estimate made at its end is made again from them.
    func promptUsage(_ id: CallID, _ usage: Usage) {
        guard let entry = entries[id], entry.promptUsage == nil || entry.outputEvents == 0 else { return }
        if entry.open {
            entry.promptUsage = usage
        } else if entry.record.usageEstimated || (entry.record.cancelled && entry.record.usage == nil) {
            entry.promptUsage = usage
            entry.record.usage = nil
            estimateUsage(entry, cut: entry.record.cancelled)
        }
    }

    /// The call's stream ended; returns its upstream wait (for the overhead).
    func ended(_ id: CallID, _ end: StreamEnd, _ summary: InnerCallRecord.Summary, at now: UInt64) -> (UInt64, UInt64)? {
        let error = end == .complete ? nil : RecordError(type: "upstream_error", code: "upstream_truncated",
                                                         message: "the stream ended before the answer was complete")
        return close(id, summary: summary, error: error, at: now)
    }

    func failed(_ id: CallID, _ error: APIError, _ summary: InnerCallRecord.Summary, at now: UInt64) -> (UInt64, UInt64)? {
        close(id, summary: summary, error: RecordError(error, redactor: redactor), at: now)
    }

    /// The call's upstream answered 2xx. What it said of itself so far (its status, request id,
    /// which route answered) is the record's until the call's end says more: a call the
    /// session cuts keeps them (review 81A #3: it had no status and no ids).
    func accepted(_ id: CallID, _ summary: InnerCallRecord.Summary) { described(id, summary) }

    /// The call's current attempt has sent its whole request: its record says this attempt's
    /// count and route (review 95 #1: a retry's cut row said the refused attempt's status).
    func requestSent(_ id: CallID, _ summary: InnerCallRecord.Summary) { described(id, summary) }

    /// The call's current attempt was refused (a status not 2xx): its record says what answered
    /// (review 94 #5: a cut call's row had no status after a `500`).
    func refused(_ id: CallID, _ summary: InnerCallRecord.Summary) { described(id, summary) }

    /// A record of what the call's upstream holds (its ledger already says it): an open call's
    /// row takes its summary; a call the session cut before the record was read (records cross
    /// loops) is charged again from its ledger as it stands now.
    private func described(_ id: CallID, _ summary: InnerCallRecord.Summary) {
        guard let entry = entries[id] else { return }
        if entry.open { describe(entry, summary) } else { reconsider(entry) }
    }

    /// A cut call's charge, from its ledger as it stands now: its upstream's usage report if the
    /// call read one; else its prompt once its upstream holds it, and not while it does not
    /// (refused after the cut), unless output owes it, and a token a piece of its output.
    private func reconsider(_ entry: Entry) {
        guard entry.record.cancelled else { return }
        if chargeLastReport(entry) { return }
        guard entry.record.usage == nil || entry.record.usageEstimated else { return }
        // Made again from what it owes now, never below what it was charged for output (its
        // output limit, when it stopped there).
        let charged = entry.record.usage?.completionTokens ?? 0
        entry.record.usage = nil
        entry.record.usageEstimated = false
        estimateUsage(entry, cut: true, completionAtLeast: charged)
    }

    /// A call that did not run to its end, charged from the last usage report it read (the
    /// session may have read an earlier one, or none): output read after the report (an
    /// upstream that reports first, or as it goes) is a token a piece on top (review 96 #2,
    /// 97 #2: charged nothing, whether the session cut the call or its own timeout did). False
    /// when it read none.
    private func chargeLastReport(_ entry: Entry) -> Bool {
        guard let report = entry.ledger.lastReport else { return false }
        let tail = max(0, entry.output - report.piecesBefore)
        var usage = report.usage
        usage.completionTokens = Usage.saturatingAdd(usage.completionTokens, tail)
        usage.totalTokens = Usage.saturatingAdd(usage.totalTokens, tail)
        entry.record.usage = usage
        entry.record.usageEstimated = tail > 0
        entry.tailTokens = tail
        return true
    }

    /// Before the record is filed: every cut call charged from its ledger, whose records may
    /// never be read (held behind a client that reads nothing, in the ring or the call's
    /// outbox, they go with the session: review 94 #3).
    func settle() {
        for entry in entries.values where !entry.open { reconsider(entry) }
    }

    /// The session stopped the call (or the request ended with it running).
    func cancelled(_ id: CallID, at now: UInt64) {
        guard let entry = entries[id], entry.open else { return }
        entry.open = false
        entry.record.cancelled = true
        reconsider(entry)  // what it owes, from its ledger too: the session may not have read it all
        entry.record.finishReason = ResponseEnding(upstreamFinishReason: entry.record.finishReason, cancelled: true).finishReason
        entry.record.durationMilliseconds = OverheadMeter.milliseconds(now &- entry.startedAt)
    }

    /// A call that produced output but ended without its usage (cut, failed, or an upstream that
    /// never reports it) is charged an estimate, so hanging up mid-deliberation does not make
    /// the calls free (the key's tokens per minute and budget): its prompt as its upstream
    /// counted it, when it said so first, or by its size. `cut`: the session stopped it, so one
    /// whose upstream took the prompt is charged it even before any output (review 77B #1).
    private func estimateUsage(_ entry: Entry, cut: Bool = false, completionAtLeast floor: Int64 = 0) {
        let output = entry.output
        guard entry.record.usage == nil, output > 0 || (cut && owesPrompt(entry)) else { return }
        let prompt = entry.promptUsage ?? Usage(promptTokens: CostEstimate.tokens(request: entry.request))
        // One that stopped at its output limit (the upstream's `length`, or stopped there by the
        // gateway as its output passed the bound) wrote its limit: a token per piece would charge
        // 110 tokens for 900 KB in one delta (review 68C #4).
        var completion = max(output, floor)
        if entry.record.finishReason == FinishReason.length.rawValue, let limit = entry.request.maxOutputTokens {
            completion = max(completion, limit)
        }
        entry.record.usage = Usage.estimate(prompt: prompt, completionTokens: completion)
        entry.record.usageEstimated = true
    }

    /// Whether a call cut before any output owes its prompt: its upstream took it (answered 2xx,
    /// or counted it first), or has the whole request and has not refused it.
    private func owesPrompt(_ entry: Entry) -> Bool {
        entry.promptUsage != nil || entry.ledger.owesPrompt
    }

    /// The model that answered a closed call, when it was not the one asked (a fallback).
    func answeredBy(_ id: CallID) -> String? {
        guard let entry = entries[id], !entry.open, let asked = entry.routes.first?.model, entry.record.model != asked else { return nil }
        return entry.record.model
    }

    /// The model (and its provider) that wrote the answer: the final outer turn's, else the
    /// first's; a fallback's when one took over (nil: no outer turn has ended).
    var answeringOuterCall: (model: String, provider: String, fellBack: Bool)? {
        let outer = entries.keys.sorted().compactMap { entries[$0] }.filter { !$0.open && $0.record.role.hasPrefix("outer") }
        guard let last = outer.last(where: { $0.record.role == "outer_final" }) ?? outer.last else { return nil }
        return (last.record.model, last.record.provider, last.record.model != last.routes.first?.model)
    }

    /// The model of the latest outer turn, as far as it went: a fallback's once one took over
    /// (its upstream answered). Read only until a stream names its model, not per token.
    var currentOuterModel: String? {
        entries.filter { $0.value.record.role.hasPrefix("outer") }.max { $0.key < $1.key }?.value.record.model
    }

    /// Panel calls still running: at the request's end, the members it cancels.
    var openPanelCalls: Int { entries.values.count { $0.open && $0.record.role == "panel" } }

    func isOpenPanelCall(_ id: CallID) -> Bool { entries[id].map { $0.open && $0.record.role == "panel" } ?? false }

    func cancelAll(at now: UInt64) {
        for id in entries.keys where entries[id]?.open == true { cancelled(id, at: now) }
    }

    /// Whether a call may owe what no figure says: no usage (reported or estimated) though its
    /// upstream took the prompt or sent output (an answer without usage and without output). A
    /// call cut or failed before its upstream took the request owes nothing: known, zero (review
    /// 97 #4: a tool loop's turn cut before it went out made the record's usage "unknown" while
    /// every row of the breakdown said known).
    var usageUnknown: Bool { entries.values.contains(where: mayOweUnknown) }

    /// Whether a call of this panel member (`member`; nil: the outer model's or the judge's
    /// calls of `role` asked of or answered by `model`) may owe what no figure says: a row of
    /// the breakdown without usage whose calls all owe nothing (refused, unreachable) is known,
    /// zero (review 99 #1; review 100 #1: a refused fallback judge stayed unknown beside another
    /// judge call that was).
    func mayOweUnknown(member: Int?, role: String, model: String) -> Bool {
        entries.values.contains {
            $0.member == member && $0.record.role == role && (member != nil || $0.record.model == model || $0.routes.first?.model == model)
                && mayOweUnknown($0)
        }
    }

    private func mayOweUnknown(_ entry: Entry) -> Bool {
        entry.record.usage == nil && (owesPrompt(entry) || entry.output > 0)
    }

    /// Every call, in the order they started.
    var records: [CallRecord] { entries.keys.sorted().compactMap { entries[$0]?.record } }

    /// `records`, each usage priced as `charges(pricedBy:)` prices it: the record's calls add up
    /// to what it charges (review 62C #4: each estimated call said `cost: 0`).
    func records(pricedBy price: (String) -> ModelPrice?) -> [CallRecord] {
        entries.keys.sorted().compactMap { id in
            guard let entry = entries[id] else { return nil }
            var record = entry.record
            record.usage = priced(entry, price)
            return record
        }
    }

    /// A call's usage with its cost: an estimate without one costed as a reported usage
    /// without a cost is (`Usage.costed(at:)`), at the price of the model that answered, as the
    /// spend prices the call (review 54 #2); a report's tail of estimated tokens added to its cost.
    private func priced(_ entry: Entry, _ price: (String) -> ModelPrice?) -> Usage? {
        guard var usage = entry.record.usage, entry.record.usageEstimated else { return entry.record.usage }
        if usage.cost == 0 {
            usage = usage.costed(at: price(entry.record.model))
        } else if entry.tailTokens > 0, let price = price(entry.record.model) {
            usage.cost = Usage.roundedCost(usage.cost + price.cost(input: 0, output: entry.tailTokens))
        }
        return usage
    }

    /// What the log charges closed calls beyond what the session's own stats of them hold,
    /// under the model the session asked for (a fallback's call is its model's): folded into the
    /// client's usage, so it is what the record charges. An estimate whole (a call cut or ended
    /// without its usage); for a cut call whose last report only the call read, or with output
    /// after its last report, what that adds to the report the session read (review 96 #1: a
    /// report only the call read was charged as spend and missing from the usage).
    func charges(pricedBy price: (String) -> ModelPrice?) -> [MemberStats.Estimate] {
        entries.keys.sorted().compactMap { id in
            guard let entry = entries[id], !entry.open, let usage = priced(entry, price) else { return nil }
            let charge = Self.excess(of: usage, over: entry.sessionReport ?? Usage())
            guard entry.record.usageEstimated || charge != Usage() else { return nil }
            let asked = entry.routes.first?.model ?? entry.record.model
            return MemberStats.Estimate(role: entry.record.role, model: asked, usage: charge, member: entry.member,
                                        answeredBy: entry.record.model == asked ? nil : entry.record.model,
                                        firstTokenMilliseconds: entry.record.firstTokenMilliseconds,
                                        durationMilliseconds: entry.record.durationMilliseconds, estimated: entry.record.usageEstimated)
        }
    }

    /// `charges(pricedBy:)` without prices.
    var charges: [MemberStats.Estimate] { charges(pricedBy: { _ in nil }) }

    /// `usage` less `known`, field by field, none below zero.
    private static func excess(of usage: Usage, over known: Usage) -> Usage {
        var excess = Usage()
        excess.promptTokens = max(0, usage.promptTokens - known.promptTokens)
        excess.completionTokens = max(0, usage.completionTokens - known.completionTokens)
        excess.totalTokens = max(0, usage.totalTokens - known.totalTokens)
        excess.reasoningTokens = max(0, usage.reasoningTokens - known.reasoningTokens)
        excess.cachedTokens = max(0, usage.cachedTokens - known.cachedTokens)
        excess.cacheWriteTokens = max(0, usage.cacheWriteTokens - known.cacheWriteTokens)
        excess.cost = Usage.roundedCost(max(0, usage.cost - known.cost))
        return excess
    }

    /// Panel members the session cancelled (its response ended: a shutdown, a failure, the client
    /// gone) before they wrote anything or their upstream took the prompt (one that took it is
    /// charged an estimate): their rows in the breakdown (review 71A #5: such a member was missing
    /// from `usage.fusion.calls`), owing nothing, so known and zero, as the record counts them
    /// (`usageUnknown`; review 97 #4).
    var silentlyCancelledMembers: [MemberStats] {
        entries.keys.sorted().compactMap { id in
            guard let entry = entries[id], let member = entry.member, entry.record.cancelled, entry.record.usage == nil else { return nil }
            var row = MemberStats(model: entry.routes.first?.model ?? entry.record.model, role: entry.record.role, status: "cancelled",
                                  usage: Usage(), firstTokenMilliseconds: nil, durationMilliseconds: entry.record.durationMilliseconds, characters: 0)
            row.member = member
            return row
        }
    }

    /// The route that answered, its status and ids, and the attempts made, as `summary` says.
    private func describe(_ entry: Entry, _ summary: InnerCallRecord.Summary) {
        if summary.route < entry.routes.count {
            entry.record.model = entry.routes[summary.route].model
            entry.record.provider = entry.routes[summary.route].provider
        }
        entry.record.httpStatus = summary.httpStatus == 0 ? nil : summary.httpStatus
        entry.record.upstreamID = summary.upstreamID
        entry.record.upstreamRequestID = summary.upstreamRequestID
        entry.record.attempts = summary.attempts
        entry.record.fallbacks = summary.route
    }

    private func close(_ id: CallID, summary: InnerCallRecord.Summary, error: RecordError?, at now: UInt64) -> (UInt64, UInt64)? {
        guard let entry = entries[id], entry.open else { return nil }
        entry.open = false
        // Cut by the gateway (its member or judge timeout, its idle timeout) after the upstream
        // took the prompt: charged it, as a call the session stops is (review 78 #2). One that
        // did not end whole is charged its last report and what came after it.
        if error == nil || !chargeLastReport(entry) { estimateUsage(entry, cut: error?.isGatewaysCut == true) }
        describe(entry, summary)
        entry.record.error = error
        entry.record.finishReason = ResponseEnding(upstreamFinishReason: entry.record.finishReason, error: error).finishReason
        entry.record.durationMilliseconds = OverheadMeter.milliseconds(now &- entry.startedAt)
        guard summary.upstreamStart != 0, summary.upstreamEnd >= summary.upstreamStart else { return nil }
        entry.record.upstreamMilliseconds = OverheadMeter.milliseconds(summary.upstreamEnd - summary.upstreamStart)
        return (summary.upstreamStart, summary.upstreamEnd)
    }
}
