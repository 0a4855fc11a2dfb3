import GatewayCore
import Providers

/// The deliberation part of a Fusion session: the panel and the judge with their tool loops,
/// their web tool calls, and the hand-over to the outer model's final turn.
extension FusionSessionMachine {
    // MARK: the deliberation

    mutating func startDeliberation(_ call: ToolCall, at time: Double) -> [Action] {
        phase = .deliberating
        finishReason = nil
        let arguments = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .object([:])
        var question = arguments["question"]?.stringValue ?? ""
        if question.trimmingWhitespace().isEmpty { question = request.lastUserText }
        var deliberation = Deliberation(question: question, models: request.parameters.analysisModels,
                                        judge: request.judgeModel, judgeFallback: judgeFallback, quorum: quorum, labels: labels)
        deliberation.judgeHasTools = !judgeTools.isEmpty
        let actions = deliberation.start(at: time)
        self.deliberation = deliberation
        var out: [Action] = []
        if !prices.isEmpty {
            let memberMessages = memberMessages(question)
            let judgeMessages = FusionPrompts.judgeMessages(question: question, answers: [], neutral: labels.isNeutral,
                                                            tools: !judgeTools.isEmpty)
            costEstimate = CostEstimate.make(panel: request.parameters.analysisModels.map { ($0, memberMessages) },
                                             judge: request.judgeModel, judgeMessages: judgeMessages,
                                             panelTools: panelTools, judgeTools: judgeTools,
                                             maxOutputTokens: FusionPrompts.innerOutputLimit(request.parameters, defaultMaxTokens: limits.defaultMaxTokens),
                                             prices: prices)
        }
        if let costEstimate { out.append(.output(.progress(.estimate(costEstimate)))) }
        if request.forced {
            out.append(.output(.progress(.phase(PhaseReport(.outer, .skipped, summary: "fusion is forced: the panel starts at once")))))
        } else if let turn = firstTurn {
            out.append(.output(.progress(.phase(PhaseReport(.outer, .completed, duration: time - turn.startedAt,
                                                            summary: "\(request.outerModel) called the fusion tool")))))
        }
        out.append(.output(.progress(.toolCalled(arguments: call.arguments, callID: call.id, forced: request.forced))))
        return out + perform(actions, at: time)
    }

    mutating func deliberate(_ event: Deliberation.Event, at time: Double) -> [Action] {
        guard phase == .deliberating, deliberation != nil else { return [] }
        // Changed in place (no copy in and out, which retained its thirty-odd fields per delta):
        // its texts stay uniquely referenced and grow in place (a copy that outlived the change
        // would make every delta copy every member's text: quadratic in an answer's length).
        let actions = deliberation!.handle(event, at: time)
        return perform(actions, at: time)
    }

    mutating func perform(_ actions: [Deliberation.Action], at time: Double) -> [Action] {
        var out: [Action] = []
        for action in actions {
            guard phase == .deliberating else { break }
            switch action {
            case .startMember(let index, _):
                out += startMember(index, at: time)
            case .startJudge(let model, _, let messages):
                out += startJudge(model, redactor.secrets.isEmpty ? messages : messages.map(redacted), at: time)
            case .cancelMember(let index):
                out += cancelMember(index, at: time)
            case .startTimer(let timer, let milliseconds):
                armedTimers.insert(timer)
                out.append(.startTimer(timer, milliseconds: milliseconds))
            case .cancelTimer(let timer):
                if armedTimers.remove(timer) != nil { out.append(.cancelTimer(timer)) }
            case .progress(let progress):
                out += show(progress, at: time)
            case .finish(var result):
                result.sources = sources.sources.map { ($0.url, $0.title) }
                if !redactor.secrets.isEmpty { result = redacted(result) }
                fusionResult = result
                out.append(.output(.progress(.completed(result: result))))
                out += finishDeliberation(result, at: time)
            }
        }
        return out
    }

    /// `message` with its text parts redacted.
    func redacted(_ message: ModelMessage) -> ModelMessage {
        var message = message
        message.content = message.content.map { if case .text(let text) = $0 { .text(redactor(text)) } else { $0 } }
        return message
    }

    /// `result` with every text a model wrote redacted.
    func redacted(_ result: FusionResult) -> FusionResult {
        var result = result
        result.answered = result.answered.map { ($0.model, redactor($0.content)) }
        result.failed = result.failed.map { failed in
            var failed = failed
            failed.message = redactor(failed.message)
            failed.partial = failed.partial.map(redactor.callAsFunction)
            return failed
        }
        result.analysis = result.analysis.map(redacted)
        return result
    }

    func redacted(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): .string(redactor(text))
        case .array(let items): .array(items.map(redacted))
        case .object(let members): .object(members.mapValues(redacted))
        default: value
        }
    }

    /// What every panel member is asked.
    func memberMessages(_ question: String) -> [ModelMessage] {
        var messages = FusionPrompts.panelMessages(request, question: question, context: panelContext)
        if !panelTools.isEmpty { messages.insert(ModelMessage(role: .system, text: FusionPrompts.panelToolNote), at: 0) }
        return messages
    }

    mutating func startMember(_ index: Int, at time: Double) -> [Action] {
        let messages = memberMessages(deliberation?.question ?? request.lastUserText)
        members[index] = MemberRun(loop: ToolLoop(messages: messages, tools: panelTools, maxSteps: request.parameters.maxToolCalls),
                                   startedAt: time)
        return callMember(index, at: time)
    }

    /// A member cut for latency: its transfer is cancelled now, and nothing of its tool loop
    /// goes on (a web tool result arriving later is dropped).
    mutating func cancelMember(_ index: Int, at time: Double) -> [Action] {
        var out: [Action] = []
        if let id = members[index]?.call {
            roles[id] = nil
            cutCalls.insert(id)
            out.append(.cancelCall(id))
        }
        members[index]?.call = nil
        return out + stopTools(of: .member(index), why: "its member was cut for latency", at: time)
    }

    /// Stops the tool calls `owner` waits for (cut, out of time, a judge restarted): their
    /// fetches end now, not when the response does (review 62B #4), and a result arriving
    /// later is dropped.
    mutating func stopTools(of owner: ToolOwner, why: String, at time: Double) -> [Action] {
        var out: [Action] = []
        pendingTools[owner] = nil
        for (run, entry) in toolRuns.sorted(by: { $0.key < $1.key }) where entry.owner == owner {
            toolRuns[run] = nil
            out.append(.cancelTool(run))
            // Its start was shown: so is its end (review 63 #2: the playground showed it running).
            if let started = runningActivities.removeValue(forKey: run) {
                var activity = started.activity
                activity.error = "stopped before it finished: \(why)"
                activity.durationMilliseconds = time - started.startedAt
                out.append(.output(.progress(.webToolFinished(activity))))
            }
        }
        let timer = toolTimer(owner)
        if armedTimers.remove(timer) != nil { out.append(.cancelTimer(timer)) }
        return out
    }

    func toolTimer(_ owner: ToolOwner) -> FusionTimer {
        switch owner {
        case .member(let index): .memberTools(index)
        case .judge(let generation): .judgeTools(generation: generation)
        }
    }

    /// A member's or the judge's time ran out while its web tools ran: it fails with `timeout`
    /// now, as it would at its next turn (review 62B #3: a member with 3 s failed at 15 s, its
    /// fetch's own timeout), and its tools stop.
    mutating func toolTimeRanOut(_ timer: FusionTimer, at time: Double) -> [Action] {
        guard phase == .deliberating else { return [] }
        switch timer {
        case .memberTools(let index):
            guard pendingTools[.member(index)] != nil else { return [] }
            return stopTools(of: .member(index), why: "its member ran out of time", at: time)
                + deliberate(.memberFailed(index: index, reason: .timeout,
                                           message: "no answer within \(limits.memberTimeoutMilliseconds) ms (web tool calls included)",
                                           usage: members[index]?.usage), at: time)
        case .judgeTools(let generation):
            guard judge?.generation == generation, pendingTools[.judge(generation: generation)] != nil else { return [] }
            return stopTools(of: .judge(generation: generation), why: "the judge ran out of time", at: time)
                + deliberate(.judgeFailed(message: "no analysis within \(limits.judgeTimeoutMilliseconds) ms (web tool calls included)",
                                          reason: .timeout, usage: judge?.usage), at: time)
        default:
            return []
        }
    }

    /// One turn of member `index`'s tool loop.
    mutating func callMember(_ index: Int, at time: Double) -> [Action] {
        guard let run = members[index] else { return [] }
        guard let timeout = remaining(limits.memberTimeoutMilliseconds, since: run.startedAt, at: time) else {
            return deliberate(.memberFailed(index: index, reason: .timeout,
                                            message: "no answer within \(limits.memberTimeoutMilliseconds) ms (web tool calls included)",
                                            usage: run.usage), at: time)
        }
        // A member's first turn is the panel itself; the turns of its tool loop after it leave
        // the judge's call and the final answer's their inner calls.
        guard let id = allocate(.member(index: index), keeping: run.loop.steps == 0 ? 0 : 2) else {
            return deliberate(.memberFailed(index: index, reason: .innerCallLimit,
                                            message: "the request reached its limit of \(limits.maxInnerCalls) inner calls "
                                                + "(the last are kept for the judge and the final answer)",
                                            usage: run.usage), at: time)
        }
        members[index]?.call = id
        members[index]?.usageBeforeCall = run.usage
        let model = request.parameters.analysisModels[index]
        let base = FusionPrompts.innerRequest(model: model, messages: [], parameters: request.parameters,
                                              defaultMaxTokens: limits.defaultMaxTokens)
        return [.startCall(Call(id: id, role: .member(index: index), model: model, request: run.loop.request(base),
                                timeoutMilliseconds: timeout))]
    }

    mutating func memberEvent(_ index: Int, _ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard members[index]?.call == id else { return [] }
        members[index]?.loop.received(event)
        switch event {
        case .usage(let usage):
            let sum = (members[index]?.usageBeforeCall ?? Usage()) + usage  // earlier turns' and this one's last report
            members[index]?.usage = sum
            deliberation?.memberSpent[index, default: .init()].usage = sum
            return []
        case .text(let text) where !text.isEmpty:
            return deliberate(.memberDelta(index: index, text: text), at: time)
        case .reasoning(let text) where !text.isEmpty:
            // Shown live, never part of the answer the judge sees.
            return show(.memberReasoningDelta(index: index, model: request.parameters.analysisModels[index], text: text), at: time)
        default:
            return []
        }
    }

    mutating func memberEnded(_ index: Int, _ id: CallID, _ end: StreamEnd, at time: Double) -> [Action] {
        guard var run = members[index], run.call == id else { return [] }
        run.call = nil
        guard end == .complete else {
            members[index] = run
            return deliberate(.memberFailed(index: index, reason: .truncated,
                                            message: "the stream ended before the answer was complete", usage: run.usage), at: time)
        }
        let turnEnd = run.loop.endTurn()
        members[index] = run
        switch turnEnd {
        case .answered:
            return deliberate(.memberFinished(index: index, usage: run.usage, toolCalls: run.loop.callCount), at: time)
        case .callTools(let toolCalls):
            let model = request.parameters.analysisModels[index]
            return runTools(toolCalls, owner: .member(index), participant: .member(index: index, model: model), at: time)
        }
    }

    mutating func startJudge(_ model: String, _ messages: [ModelMessage], at time: Double) -> [Action] {
        var out: [Action] = []
        if let previous = judge?.call {
            roles[previous] = nil
            out.append(.cancelCall(previous))
        }
        if let previous = judge?.generation { out += stopTools(of: .judge(generation: previous), why: "the judge started again", at: time) }
        judge = JudgeRun(model: model, loop: ToolLoop(messages: messages, tools: judgeTools, maxSteps: request.parameters.maxToolCalls),
                         startedAt: time, generation: (judge?.generation ?? 0) + 1)
        return out + callJudge(at: time)
    }

    mutating func callJudge(at time: Double) -> [Action] {
        guard let run = judge else { return [] }
        guard let timeout = remaining(limits.judgeTimeoutMilliseconds, since: run.startedAt, at: time) else {
            return deliberate(.judgeFailed(message: "no analysis within \(limits.judgeTimeoutMilliseconds) ms (web tool calls included)",
                                           reason: .timeout, usage: run.usage), at: time)
        }
        guard let id = allocate(.judge, keeping: 1) else {
            return deliberate(.judgeFailed(message: "the request reached its limit of \(limits.maxInnerCalls) inner calls "
                                               + "(the last is kept for the final answer)",
                                           reason: .innerCallLimit, usage: run.usage), at: time)
        }
        judge?.call = id
        judge?.usageBeforeCall = run.usage
        judge?.reachedLimit = false
        let base = FusionPrompts.innerRequest(model: run.model, messages: [], parameters: request.parameters,
                                              defaultMaxTokens: limits.defaultMaxTokens, judge: true)
        return [.startCall(Call(id: id, role: .judge, model: run.model, request: run.loop.request(base), timeoutMilliseconds: timeout))]
    }

    mutating func judgeEvent(_ id: CallID, _ event: ModelEvent, at time: Double) -> [Action] {
        guard judge?.call == id else { return [] }
        judge?.loop.received(event)
        switch event {
        case .usage(let usage):
            let sum = (judge?.usageBeforeCall ?? Usage()) + usage
            judge?.usage = sum
            deliberation?.judgeSpent.usage = sum
            return []
        case .text(let text) where !text.isEmpty:
            return deliberate(.judgeDelta(text: text), at: time)
        case .finish(let reason):
            judge?.reachedLimit = reason == .length
            return []
        default:
            return []
        }
    }

    mutating func judgeEnded(_ id: CallID, _ end: StreamEnd, at time: Double) -> [Action] {
        guard var run = judge, run.call == id else { return [] }
        run.call = nil
        guard end == .complete else {
            judge = run
            return deliberate(.judgeFailed(message: "the stream ended before the analysis was complete", usage: run.usage), at: time)
        }
        let turnEnd = run.loop.endTurn()
        judge = run
        switch turnEnd {
        case .answered:
            return deliberate(.judgeFinished(usage: run.usage, toolCalls: run.loop.callCount, reachedLimit: run.reachedLimit), at: time)
        case .callTools(let toolCalls):
            return deliberate(.judgeCalledTools, at: time)
                + runTools(toolCalls, owner: .judge(generation: run.generation), participant: .judge(model: run.model), at: time)
        }
    }

    /// What is left of a `budget` (ms) started at `start`, or nil if nothing.
    func remaining(_ budget: UInt64, since start: Double, at time: Double) -> UInt64? {
        let left = Double(budget) - (time - start)
        return left >= 1 ? UInt64(left) : nil
    }

    // MARK: web tools

    /// Runs one turn's tool calls (at most `maxWebCallsPerTurn`, and within the request's total;
    /// the rest are answered with an error), streaming each start and outcome.
    mutating func runTools(_ toolCalls: [ToolCall], owner: ToolOwner, participant: Participant, at time: Double) -> [Action] {
        pendingTools[owner] = PendingTools(results: Array(repeating: "", count: toolCalls.count), remaining: toolCalls.count)
        var out: [Action] = []
        for (position, call) in toolCalls.enumerated() {
            let activity = WebToolActivity(participant: participant, name: call.name, arguments: call.arguments)
            out.append(.output(.progress(.webToolStarted(activity))))
            let run = nextToolRun
            nextToolRun += 1
            toolRuns[run] = (owner, position)
            if position >= limits.maxWebCallsPerTurn {
                out += toolFinished(run, .failure("too many tool calls in one turn: at most \(limits.maxWebCallsPerTurn) run, this one did not"),
                                    at: time, activity: activity)
            } else if webToolCalls >= limits.maxWebToolCalls {
                out += toolFinished(run, .failure("this request reached its limit of \(limits.maxWebToolCalls) web tool calls"),
                                    at: time, activity: activity)
            } else {
                webToolCalls += 1
                runningActivities[run] = (activity, time)
                out.append(.runTool(run, call))
            }
        }
        // The owner's time bounds its tools too, not only its next turn.
        if pendingTools[owner] != nil, let left = toolTimeLeft(owner, at: time) {
            let timer = toolTimer(owner)
            armedTimers.insert(timer)
            out.append(.startTimer(timer, milliseconds: left))
        }
        return out
    }

    /// What is left of `owner`'s time budget (at least 1 ms: out of time, it fails at once).
    func toolTimeLeft(_ owner: ToolOwner, at time: Double) -> UInt64? {
        switch owner {
        case .member(let index):
            guard let run = members[index] else { return nil }
            return remaining(limits.memberTimeoutMilliseconds, since: run.startedAt, at: time) ?? 1
        case .judge(let generation):
            guard let run = judge, run.generation == generation else { return nil }
            return remaining(limits.judgeTimeoutMilliseconds, since: run.startedAt, at: time) ?? 1
        }
    }


    mutating func toolFinished(_ run: ToolRunID, _ outcome: ToolOutcome, at time: Double,
                                       activity known: WebToolActivity? = nil) -> [Action] {
        guard phase == .deliberating, let (owner, position) = toolRuns.removeValue(forKey: run) else { return [] }
        let started = runningActivities.removeValue(forKey: run)
        var activity = known ?? started?.activity
        activity?.durationMilliseconds = started.map { time - $0.startedAt } ?? 0
        activity?.resultBytes = outcome.content.utf8.count
        activity?.error = outcome.error
        activity?.sources = outcome.sources.count
        for source in outcome.sources { sources.add(source) }
        if activity?.name == WebToolNames.search { searchResults += outcome.sources.count }
        var out: [Action] = activity.map { [.output(.progress(.webToolFinished($0)))] } ?? []
        guard var pending = pendingTools[owner] else { return out }
        pending.results[position] = outcome.content
        pending.remaining -= 1
        guard pending.remaining == 0 else {
            pendingTools[owner] = pending
            return out
        }
        pendingTools[owner] = nil
        if armedTimers.remove(toolTimer(owner)) != nil { out.append(.cancelTimer(toolTimer(owner))) }
        switch owner {
        case .member(let index):
            members[index]?.loop.complete(results: pending.results)
            deliberation?.memberSpent[index, default: .init()].toolCalls = members[index]?.loop.callCount ?? 0
            out += callMember(index, at: time)
        case .judge(let generation):
            guard judge?.generation == generation else { return out }  // a restarted judge
            judge?.loop.complete(results: pending.results)
            deliberation?.judgeSpent.toolCalls = judge?.loop.callCount ?? 0
            out += callJudge(at: time)
        }
        return out
    }

    // MARK: the final answer

    mutating func finishDeliberation(_ result: FusionResult, at time: Double) -> [Action] {
        // Running tools and members still streaming (none normally) are over.
        var out = cancelAllCalls()
        guard let turn = firstTurn, let fusionCall = turn.fusionCall else { return out + complete(at: time) }
        out += turn.extraFusionCalls.map { .output(.progress(.invocationCapped(arguments: $0.arguments, callID: $0.id))) }
        let capped = String(decoding: JSONValue.object([
            "status": .string("error"), "failure_reason": .string("fusion_invocation_capped"),
            "error": .string("fusion runs once per request; this call was not run"),
        ]).serialized(), as: UTF8.self)
        let answered = [ServerToolCall(call: fusionCall, result: String(decoding: result.json.serialized(), as: UTF8.self))]
            + turn.extraFusionCalls.map { ServerToolCall(call: $0, result: capped) }
        let callerCalls = turn.callerCalls
        if !callerCalls.isEmpty {
            // A parallel turn: the caller's calls (already streamed) need the caller's results
            // before the model can go on, so the turn goes back to the client, a real parallel
            // tool-call turn: its calls, and the fusion calls with their results, which the
            // client sends back with the turn for the next request to restore.
            deferredCallerCalls = callerCalls
            finishReason = .toolCalls
            return out + [.output(.serverToolCalls(answered)), .output(.answer(.finish(.toolCalls)))] + complete(at: time)
        }
        phase = .outerFinal
        out += startOuter(FusionPrompts.outerFinalRequest(request, assistantContent: turn.content, calls: answered.map(\.call),
                                                          results: answered.map { ($0.call.id, $0.result) }, reasoning: turn.reasoning),
                          final: true, at: time)
        return out
    }
}
