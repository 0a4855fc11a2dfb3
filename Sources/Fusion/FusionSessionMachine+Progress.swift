import GatewayCore

/// Progress for the client: each update as it is, plus, for a client reading comments, the
/// members' text in readable pieces (`ReadableText`) on a ~100 ms timer.
extension FusionSessionMachine {
    /// `progress` for the client, with the readable pieces it completes (a member's last words
    /// come before its status line).
    mutating func show(_ progress: FusionProgress, at time: Double) -> [Action] {
        guard readable != nil else { return [.output(.progress(progress))] }
        switch progress {
        case .memberDelta(let index, _, let text):
            return [.output(.progress(progress))] + pieces { $0.add(index: index, reasoning: false, text, at: time) }
                + armReadableTimer(at: time)
        case .memberReasoningDelta(let index, _, let text):
            return [.output(.progress(progress))] + pieces { $0.add(index: index, reasoning: true, text, at: time) }
                + armReadableTimer(at: time)
        case .memberCompleted(let index, _, _), .memberFailed(let index, _, _, _, _), .memberCut(let index, _, _, _):
            return pieces { $0.flush(index: index) } + [.output(.progress(progress))]
        default:
            return [.output(.progress(progress))]
        }
    }

    mutating func readableTimerFired(at time: Double) -> [Action] {
        pieces { $0.flushDue(at: time) } + armReadableTimer(at: time)
    }

    private mutating func pieces(_ body: (inout ReadableText) -> [ReadableText.Piece]) -> [Action] {
        guard var text = readable else { return [] }
        readable = nil  // so its buffers stay uniquely referenced and grow in place
        let found = body(&text)
        readable = text
        let models = request.parameters.analysisModels
        return found.compactMap { piece in
            guard models.indices.contains(piece.index) else { return nil }
            return .output(.progress(.memberText(index: piece.index, model: models[piece.index], text: piece.text,
                                                 reasoning: piece.reasoning)))
        }
    }

    /// Words are waiting: show them when they are due, even if no line ends.
    private mutating func armReadableTimer(at time: Double) -> [Action] {
        guard phase == .deliberating, !armedTimers.contains(.readableText), let due = readable?.nextDue else { return [] }
        armedTimers.insert(.readableText)
        return [.startTimer(.readableText, milliseconds: UInt64(max(1, min(due - time, 1_000)).rounded(.up)))]
    }
}
