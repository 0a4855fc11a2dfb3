import GatewayCore
import Providers

/// The judge's half of a deliberation: its attempts (retry, fallback, degrade), its analysis
/// streamed item by item as the judge writes it, and the deadline reaching it.
extension Deliberation {
    mutating func judgeEvent(_ event: Event, at time: Double) -> [Action] {
        guard judgeAttempt > 0 else { return [] }
        switch event {
        case .judgeDelta(let text):
            guard !text.isEmpty else { return [] }
            if judgeFirstToken == nil { judgeFirstToken = time - judgeStarted }
            let wasBlank = !judgeWroteText
            judgeText += text
            // While blank, the reply's first visible character is this piece's.
            if wasBlank, text.contains(where: { !$0.isWhitespace }) { judgeWroteText = true }
            let wasStopped = tokenizer.stopped
            let (shown, problem) = items(from: text)
            let actions = [.progress(.judgeDelta(model: currentJudge, attempt: judgeAttempt, text: text))] + shown
            let failure = problem.map { JudgeFailure(schemaProblem: $0, labels: labels) }
                ?? (wasBlank ? Self.openingProblem(text, tools: judgeHasTools) : nil)
                ?? (wasStopped ? nil : Self.stopProblem(tokenizer.stopReason, tools: judgeHasTools))
            guard let failure else { return actions }
            // The attempt can no longer pass validation: it ends now (its call is cancelled as the
            // next starts, or as the deliberation finishes), not once the judge has written the
            // rest, which the retry or fallback would wait for and the request pay for.
            recordJudge(status: failure.reason.rawValue, usage: judgeSpent.usage, toolCalls: judgeSpent.toolCalls, at: time)
            return actions + judgeFailed(failure, at: time)

        case .judgeCalledTools:
            // What it wrote before calling a tool was not the analysis.
            judgeText = ""
            tokenizer = AnalysisTokenizer()
            itemValues.removeAll()
            itemsSuspended = false
            return withdrawItems()

        case .judgeFinished(let usage, let toolCalls, let reachedLimit):
            let assembled = itemsSuspended ? nil : JudgeAnalysis.assembled(judgeText, tokenizer: tokenizer, items: itemValues)
            switch assembled.map(Result.success) ?? JudgeAnalysis.parse(judgeText, citable: citable, labels: labels) {
            case .success(let analysis):
                recordJudge(status: "ok", usage: usage, toolCalls: toolCalls, at: time)
                let result = makeResult(analysis: analysis, judgeFailure: nil)
                return [.progress(.judgeCompleted(model: currentJudge, analysis: analysis)), judgePhaseEnded(result, at: time)]
                    + finish(result)
            case .failure(var failure):
                if reachedLimit {
                    // Cut at its output limit, not malformed: the same model with the same limit
                    // writes as much again (review 122 #2: a judge ignoring its limit was cut at
                    // the bound twice, paying it twice). Said so, and not retried on it.
                    failure.message = "the reply reached its output limit before the analysis was complete (\(failure.message))"
                    failure.judgeMessage = nil
                    failure.sameModelMayRetry = false
                }
                recordJudge(status: failure.reason.rawValue, usage: usage, toolCalls: toolCalls, at: time)
                return judgeFailed(failure, at: time)
            }

        case .judgeFailed(let message, let reason, let usage):
            recordJudge(status: reason.rawValue, usage: usage, at: time)
            return judgeFailed(JudgeFailure(reason, message), at: time)

        default:
            return []
        }
    }

    /// A reply the tokenizer stopped reading can no longer pass: one past a cap (too deep, an
    /// element too large) would fail at the end (`parse` has no such cap, and would pass a reply
    /// whose items were never shown: review 68C #2), and one that broke JSON's syntax cannot
    /// parse (68C #3: both read to their end, the retry too, ~6 s paid for nothing). A judge with
    /// web tools may write a sentence with a brace in it before it searches: for it, only caps.
    static func stopProblem(_ reason: AnalysisTokenizer.StopReason?, tools: Bool) -> JudgeFailure? {
        switch reason {
        case nil: nil
        case .syntax? where tools: nil
        case let reason?: JudgeFailure(.notValidJSON, reason.problem)
        }
    }

    /// What is wrong with a reply from its first visible character: `parse` takes only an object,
    /// alone or in a ``` fence, so a reply that opens with anything else (prose, an array) cannot
    /// pass (review 20 B2). A judge with web tools may write a sentence before it searches.
    static func openingProblem(_ text: String, tools: Bool) -> JudgeFailure? {
        guard !tools, let first = text.first(where: { !$0.isWhitespace }), first != "{", first != "`" else { return nil }
        return first == "[" ? JudgeFailure(.schemaMismatch, "the reply is JSON but not an object") : JudgeFailure(.notValidJSON, "the reply is not a JSON object")
    }

    /// The items this piece of the judge's reply completed, models mapped back and each checked
    /// on its own, and the problem of the first that breaks the schema: the attempt will fail
    /// its validation (`parse` reads the same object, or fails on what surrounds it), and an
    /// index shown must stay the judge's index, so nothing after it is shown.
    private mutating func items(from text: String) -> ([Action], problem: String?) {
        guard !itemsSuspended else { return ([], nil) }
        var actions: [Action] = []
        for found in tokenizer.feed(text) {
            if let problem = JudgeAnalysis.problem(in: found.value, field: found.field, index: found.index, citable: citable) {
                itemsSuspended = true
                return (actions, problem)
            }
            let value = labels.restore(found.value)
            shownItems.append((found.field, found.index))
            itemValues[found.field, default: []].append(value)
            actions.append(.progress(.judgeItem(model: currentJudge, attempt: judgeAttempt,
                                                item: AnalysisItem(field: found.field, index: found.index, value: value))))
        }
        return (actions, nil)
    }

    /// Every item of this attempt shown so far no longer stands, last first.
    mutating func withdrawItems() -> [Action] {
        let shown = shownItems
        shownItems.removeAll()
        return shown.reversed().map {
            .progress(.judgeItemWithdrawn(model: currentJudge, attempt: judgeAttempt, field: $0.field, index: $0.index))
        }
    }

    mutating func startJudge(model: String, attempt: Int, messages: [ModelMessage], at time: Double) -> [Action] {
        currentJudge = model
        judgeAttempt = attempt
        judgeText = ""
        judgeSpent = Spent()
        judgeStarted = time
        judgeFirstToken = nil
        tokenizer = AnalysisTokenizer()
        itemValues.removeAll()
        shownItems.removeAll()
        itemsSuspended = false
        return [.startJudge(model: model, attempt: attempt, messages: messages),
                .progress(.judgeStarted(model: model, attempt: attempt, labels: labels.mapping))]
    }

    /// Invalid JSON or schema: one retry with the error (not for a reply cut at its output
    /// limit). Then (or on an upstream failure or an
    /// empty reply) the fallback judge, if any. Then the result without analysis. Whatever of
    /// the failed attempt was shown is withdrawn first.
    mutating func judgeFailed(_ failure: JudgeFailure, at time: Double) -> [Action] {
        let withdrawn = withdrawItems()
        let retryable = (failure.reason == .notValidJSON || failure.reason == .schemaMismatch) && failure.sameModelMayRetry
        if retryable && judgeAttempt == 1 {
            let retry = FusionPrompts.judgeRetryMessages(judgeMessages, reply: judgeText, problem: failure.judgeMessage ?? failure.message)
            return withdrawn
                + [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: true))]
                + startJudge(model: currentJudge, attempt: 2, messages: retry, at: time)
        }
        if let fallback = judgeFallback, currentJudge != fallback {
            return withdrawn
                + [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: true))]
                + startJudge(model: fallback, attempt: 1, messages: judgeMessages, at: time)
        }
        let result = makeResult(analysis: nil, judgeFailure: failure)
        return withdrawn
            + [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: false)),
               judgePhaseEnded(result, at: time)]
            + finish(result)
    }

    /// The deadline passed while the judge was still writing: the result goes on without analysis.
    mutating func judgeOutOfTime(at time: Double) -> [Action] {
        guard judgeAttempt > 0 else { return [] }
        recordJudge(status: JudgeFailureReason.timeout.rawValue, usage: judgeSpent.usage, toolCalls: judgeSpent.toolCalls, at: time)
        let budget = quorum.deadlineMilliseconds ?? 0
        return judgeFailed(JudgeFailure(.timeout, "the deliberation's deadline (\(budget) ms) passed before the analysis was complete"),
                           noRetry: true, at: time)
    }

    private mutating func judgeFailed(_ failure: JudgeFailure, noRetry: Bool, at time: Double) -> [Action] {
        let result = makeResult(analysis: nil, judgeFailure: failure)
        return withdrawItems()
            + [.progress(.judgeFailed(model: currentJudge, reason: failure.reason, message: failure.message, willRetry: false)),
               judgePhaseEnded(result, at: time)]
            + finish(result)
    }

    func judgePhaseEnded(_ result: FusionResult, at time: Double) -> Action {
        let summary: String
        if let analysis = result.analysis {
            summary = "analysis ready: " + JudgeAnalysis.countsSummary(analysis)
        } else {
            summary = "no analysis (\(result.judgeFailure?.reason.rawValue ?? "judge failed"))"
        }
        return .progress(.phase(PhaseReport(.judge, .completed, duration: time - (judgePhaseStartedAt ?? time), summary: summary)))
    }

    mutating func recordJudge(status: String, usage: Usage?, toolCalls: Int = 0, at time: Double) {
        stats.append(MemberStats(model: currentJudge, role: "judge", status: status, usage: usage,
                                 firstTokenMilliseconds: judgeFirstToken, durationMilliseconds: time - judgeStarted,
                                 characters: judgeText.count, toolCalls: toolCalls))
    }
}
