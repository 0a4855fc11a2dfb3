import GatewayCore
import Providers

/// Why a panel member produced no answer.
public enum MemberFailureReason: String, Sendable, Equatable, CaseIterable {
    case upstreamError = "upstream_error"
    case rateLimited = "rate_limited"
    case timeout
    case unreachable
    case emptyCompletion = "empty_completion"
    case invalidResponse = "invalid_response"
    /// The stream ended without its end marker or a finish reason: the answer may be cut short.
    case truncated
    /// Still running when the quorum's grace or the deliberation's deadline ran out: cancelled so
    /// the judge could start (what it had written is kept as `partial_content`).
    case cutForLatency = "cut_for_latency"
    /// Its tool loop wanted another turn, but the request's remaining inner calls
    /// (`fusion.max_inner_calls`) are kept for the judge and the final answer.
    case innerCallLimit = "inner_call_limit"
}

/// A panel member without an answer, as the result reports it.
public struct FailedMember: Sendable, Equatable {
    public var model: String
    public var reason: MemberFailureReason
    public var message: String
    /// What a member cut for latency had written (nil for every other failure).
    public var partial: String?
    /// The upstream's HTTP status when it refused the call (OpenRouter's `status_code`); nil when
    /// the call failed otherwise (unreachable, timed out, cut, a stream broken after its 200).
    public var statusCode: Int?

    public init(model: String, reason: MemberFailureReason, message: String, partial: String? = nil, statusCode: Int? = nil) {
        self.model = model
        self.reason = reason
        self.message = message
        self.partial = partial
        self.statusCode = statusCode
    }
}

/// Per-call accounting, for the usage breakdown and the generation record.
public struct MemberStats: Sendable, Equatable {
    public var model: String
    public var role: String
    public var status: String
    public var usage: Usage?
    public var firstTokenMilliseconds: Double?
    public var durationMilliseconds: Double
    public var characters: Int
    /// Web tool calls made (over all turns of its tool loop).
    public var toolCalls = 0
    /// `usage` holds the gateway's estimate for a turn cut or failed before its upstream reported
    /// usage (the prompt by its size, a token per piece of output): what the key is charged.
    public var usageEstimated = false
    /// A panel member's index in the panel: what its calls' estimates are matched by (two
    /// members may share a model).
    public var member: Int?
    /// It produced something or was charged: not a call refused before its answer began.
    public var ran: Bool { usage != nil || characters > 0 || toolCalls > 0 }

    public init(model: String, role: String, status: String, usage: Usage?, firstTokenMilliseconds: Double?,
                durationMilliseconds: Double, characters: Int, toolCalls: Int = 0, member: Int? = nil) {
        self.toolCalls = toolCalls
        self.member = member
        self.model = model
        self.role = role
        self.status = status
        self.usage = usage
        self.firstTokenMilliseconds = firstTokenMilliseconds
        self.durationMilliseconds = durationMilliseconds
        self.characters = characters
    }

    /// `json`, serialized, written directly (keys in the order `serialized()` sorts them): each
    /// call's entry goes into the usage at the end of every deliberation's stream.
    public func appendJSON(to out: inout [UInt8]) {
        func number(_ key: StaticString, _ value: Int64) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            out.append(contentsOf: String(value).utf8)
        }
        func milliseconds(_ key: StaticString, _ value: Double) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            JSONWriting.appendValue(.double((value * 1000).rounded() / 1000), to: &out)
        }
        number(#"{"characters":"#, Int64(characters))
        if let usage {
            number(#","completion_tokens":"#, usage.completionTokens)
            out.append(contentsOf: #","cost":"#.utf8)
            JSONWriting.appendValue(.double(usage.cost), to: &out)
        }
        milliseconds(#","duration_ms":"#, durationMilliseconds)
        if usageEstimated { out.append(contentsOf: #","estimated":true"#.utf8) }
        out.append(contentsOf: #","model":"#.utf8)
        JSONWriting.appendString(model, to: &out)
        if let usage {
            number(#","prompt_tokens":"#, usage.promptTokens)
            // Each call's cache reads and writes, so the breakdown adds up to the total's (review 71A #4).
            if usage.cachedTokens > 0 || usage.cacheWriteTokens > 0 {
                var separate = false
                out.append(contentsOf: #","prompt_tokens_details":{"#.utf8)
                if usage.cacheWriteTokens > 0 {
                    number(#""cache_write_tokens":"#, usage.cacheWriteTokens)
                    separate = true
                }
                if usage.cachedTokens > 0 { number(separate ? #","cached_tokens":"# : #""cached_tokens":"#, usage.cachedTokens) }
                out.append(UInt8(ascii: "}"))
            }
        }
        out.append(contentsOf: #","role":"#.utf8)
        JSONWriting.appendString(role, to: &out)
        out.append(contentsOf: #","status":"#.utf8)
        JSONWriting.appendString(status, to: &out)
        if toolCalls > 0 { number(#","tool_calls":"#, Int64(toolCalls)) }
        if let usage { number(#","total_tokens":"#, usage.totalTokens) }
        if let firstTokenMilliseconds { milliseconds(#","ttft_ms":"#, firstTokenMilliseconds) }
        if usage == nil { out.append(contentsOf: #","usage_unknown":true"#.utf8) }
        out.append(UInt8(ascii: "}"))
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "model": .string(model), "role": .string(role), "status": .string(status),
            "duration_ms": .double((durationMilliseconds * 1000).rounded() / 1000), "characters": .int(Int64(characters)),
        ]
        if toolCalls > 0 { object["tool_calls"] = .int(Int64(toolCalls)) }
        if usageEstimated { object["estimated"] = .bool(true) }
        if let firstTokenMilliseconds { object["ttft_ms"] = .double((firstTokenMilliseconds * 1000).rounded() / 1000) }
        if usage == nil {
            // Unknown, not zero: the upstream reported none (or the call failed before it could).
            object["usage_unknown"] = .bool(true)
        }
        if let usage {
            object["prompt_tokens"] = .int(usage.promptTokens)
            object["completion_tokens"] = .int(usage.completionTokens)
            object["total_tokens"] = .int(usage.totalTokens)
            object["cost"] = .double(usage.cost)
            var details: [String: JSONValue] = [:]
            if usage.cachedTokens > 0 { details["cached_tokens"] = .int(usage.cachedTokens) }
            if usage.cacheWriteTokens > 0 { details["cache_write_tokens"] = .int(usage.cacheWriteTokens) }
            if !details.isEmpty { object["prompt_tokens_details"] = .object(details) }
        }
        return .object(object)
    }
}

/// What the fusion tool returns to the outer model.
public struct FusionResult: Sendable, Equatable {
    public var answered: [(model: String, content: String)]
    /// Members without an answer; `partial` is what a member cut for latency had written.
    public var failed: [FailedMember]
    public var panelSize: Int
    /// The quorum asked for (nil: every member).
    public var minAnswers: Int?
    public var analysis: JSONValue?
    public var judgeModel: String?
    public var judgeFailure: JudgeFailure?
    /// Web sources the panel and judge found or read (url, title), for the outer model to cite.
    public var sources: [(url: String, title: String)] = []

    public var isError: Bool { answered.isEmpty }

    /// Members cut for latency.
    public var cutCount: Int { failed.filter { $0.reason == .cutForLatency }.count }

    /// Why no panel model answered, as OpenRouter names it: `rate_limited` when every member was
    /// refused for its rate limit (the client may retry later), else `all_panels_failed`.
    public var noAnswerReason: String {
        !failed.isEmpty && failed.allSatisfy({ $0.reason == .rateLimited }) ? "rate_limited" : "all_panels_failed"
    }

    /// Why there is no answer at all, as it was: every member failed (or was rate limited), every
    /// member was cut for latency (by the deadline), or some of each.
    public var noAnswerMessage: String {
        let cut = cutCount
        if cut == 0 { return noAnswerReason == "rate_limited" ? "every panel model was rate limited" : "all panel models failed" }
        if cut == failed.count { return "every panel model was cut for latency before it finished" }
        return "no panel model answered (\(cut) cut for latency, \(failed.count - cut) failed)"
    }

    /// Said to the outer model when the panel was not whole, so its answer does not claim more
    /// authority than the deliberation had.
    public var partialPanelNote: String? {
        guard answered.count < panelSize else { return nil }
        let cut = failed.filter { $0.reason == .cutForLatency }.map(\.model)
        let other = failed.filter { $0.reason != .cutForLatency }.map(\.model)
        var note = "The panel was partial: \(answered.count) of \(panelSize) models answered."
        if !cut.isEmpty { note += " Cut for latency before finishing: \(cut.joined(separator: ", "))." }
        if !other.isEmpty { note += " Failed: \(other.joined(separator: ", "))." }
        // Without an analysis (the judge failed or ran out of time) there is none to qualify.
        return note + (analysis == nil ? " Say so where it matters, and do not present the answers as the view of the whole panel."
                                       : " Say so where it matters, and do not present the analysis as the view of the whole panel.")
    }

    public static func failedEntry(_ failed: FailedMember) -> [String: JSONValue] {
        var entry: [String: JSONValue] = ["model": .string(failed.model), "reason": .string(failed.reason.rawValue),
                                          "message": .string(failed.message)]
        if let status = failed.statusCode { entry["status_code"] = .int(Int64(status)) }
        if let partial = failed.partial {
            entry["partial_content"] = .string(partial)
            entry["characters"] = .int(Int64(partial.count))
        }
        return entry
    }

    /// `{"requested","answered","degraded"}`, with the cut and the quorum when they apply.
    public var panelJSON: JSONValue {
        var panel: [String: JSONValue] = ["requested": .int(Int64(panelSize)), "answered": .int(Int64(answered.count)),
                                          "degraded": .bool(answered.count < panelSize)]
        if cutCount > 0 { panel["cut_for_latency"] = .int(Int64(cutCount)) }
        if failed.count > cutCount { panel["failed"] = .int(Int64(failed.count - cutCount)) }
        if let minAnswers { panel["min_answers"] = .int(Int64(minAnswers)) }
        return .object(panel)
    }

    public static func == (lhs: FusionResult, rhs: FusionResult) -> Bool {
        lhs.json == rhs.json
    }

    /// `{"status","analysis","responses","failed_models",…}` or the error form.
    public var json: JSONValue {
        let failedModels: JSONValue = .array(failed.map { .object(Self.failedEntry($0)) })
        if isError {
            return .object([
                "status": .string("error"), "error": .string(noAnswerMessage),
                "failure_reason": .string(noAnswerReason), "failed_models": failedModels, "panel": panelJSON,
            ])
        }
        var object: [String: JSONValue] = [
            "status": .string("ok"),
            "responses": .array(answered.map { .object(["model": .string($0.model), "content": .string($0.content)]) }),
            // A degraded panel never looks like a full one.
            "panel": panelJSON,
        ]
        if let partialPanelNote { object["note"] = .string(partialPanelNote) }
        object["failed_models"] = failedModels  // always there, empty for a whole panel: clients read it unconditionally
        if !sources.isEmpty {
            object["sources"] = .array(sources.map { .object(["url": .string($0.url), "title": .string($0.title)]) })
        }
        if let analysis {
            object["analysis"] = analysis
            if let judgeModel { object["judge"] = .string(judgeModel) }
        } else if let judgeFailure {
            object["analysis_failure"] = .object(["reason": .string(judgeFailure.reason.rawValue),
                                                  "message": .string(judgeFailure.message)])
        }
        return .object(object)
    }
}

extension MemberStats {
    /// One inner call's estimated usage, from the session's call log: a turn cut or failed after
    /// it produced output, before its upstream reported usage.
    public struct Estimate: Sendable, Equatable {
        public var role: String
        public var model: String
        public var usage: Usage
        /// The panel member whose call it was (nil: not a member's).
        public var member: Int?
        /// The model that answered, when a fallback did (`model` is the one asked for, which
        /// the call's stats are under): what the estimate is priced as.
        public var answeredBy: String?
        /// The call's time to first token and duration (a row made from the estimate alone, for
        /// a call still running when the request ended, shows them: review 63 #5).
        public var firstTokenMilliseconds: Double?
        public var durationMilliseconds: Double = 0
        /// The gateway's estimate; false for the upstream's own report that only the call read
        /// (the session cut it first), which is folded in the same way but said exact.
        public var estimated = true
        public init(role: String, model: String, usage: Usage, member: Int? = nil, answeredBy: String? = nil,
                    firstTokenMilliseconds: Double? = nil, durationMilliseconds: Double = 0, estimated: Bool = true) {
            self.estimated = estimated
            self.role = role
            self.model = model
            self.usage = usage
            self.member = member
            self.answeredBy = answeredBy
            self.firstTokenMilliseconds = firstTokenMilliseconds
            self.durationMilliseconds = durationMilliseconds
        }
    }

    /// `calls` with `estimates` (and reports only a cut call read) folded in, so the client's usage is what the key is charged: a
    /// panel member's estimate goes to that member's call (its cancelled turn's, added to its
    /// earlier turns'); any other goes to the first call of its role and model without usage (a
    /// judge stopped by the deadline), else is added to the first of them (a later turn of a
    /// tool loop); `unplaced` is what matched no call (still part of the total).
    public static func folding(_ estimates: [Estimate], into calls: [MemberStats]) -> (calls: [MemberStats], unplaced: Usage) {
        var calls = calls
        var unplaced = Usage()
        var filled = Set<Int>()
        for estimate in estimates {
            // By member first: two members of one model, one cut after a tool turn and one before
            // any output, each keep their own (review 51 #5).
            if let member = estimate.member {
                // A member with no stats (still running when the request ended) gets a row of its
                // own, `cancelled`: never on another member's call (review 53 #6), and not in the
                // total only, where the per-call breakdowns did not add up to it (review 62C #5).
                guard let own = calls.indices.first(where: { calls[$0].member == member && calls[$0].role == estimate.role }) else {
                    var cancelled = MemberStats(model: estimate.answeredBy ?? estimate.model, role: estimate.role, status: "cancelled",
                                                usage: estimate.usage, firstTokenMilliseconds: estimate.firstTokenMilliseconds,
                                                durationMilliseconds: estimate.durationMilliseconds, characters: 0)
                    cancelled.usageEstimated = estimate.estimated
                    cancelled.member = member
                    calls.append(cancelled)
                    filled.insert(calls.count - 1)
                    continue
                }
                calls[own].usageEstimated = calls[own].usageEstimated || estimate.estimated
                calls[own].usage = (calls[own].usage ?? Usage()) + estimate.usage
                filled.insert(own)
                continue
            }
            // An outer turn a fallback answered is under the fallback's name (review 64B #2).
            let matches = calls.indices.filter {
                calls[$0].role == estimate.role && (calls[$0].model == estimate.model || calls[$0].model == estimate.answeredBy)
            }
            if let empty = matches.first(where: { calls[$0].usage == nil && !filled.contains($0) }) {
                calls[empty].usage = estimate.usage
                calls[empty].usageEstimated = estimate.estimated
                filled.insert(empty)
            } else if let stopped = matches.first(where: { calls[$0].status != "ok" && !filled.contains($0) }) {
                // A cut or stopped call that has its earlier turns' usage: the estimate is its
                // cancelled turn's, not another member's of the same model (review 49 #7), and
                // each such call takes one (review 50 #4).
                calls[stopped].usageEstimated = calls[stopped].usageEstimated || estimate.estimated
                calls[stopped].usage = (calls[stopped].usage ?? Usage()) + estimate.usage
                filled.insert(stopped)
            } else if let first = matches.first {
                calls[first].usageEstimated = calls[first].usageEstimated || estimate.estimated
                calls[first].usage = (calls[first].usage ?? Usage()) + estimate.usage
            } else {
                unplaced = unplaced + estimate.usage
            }
        }
        return (calls, unplaced)
    }
}
