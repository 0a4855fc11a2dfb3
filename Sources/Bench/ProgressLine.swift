/// One target's counters while a run is going.
public struct TargetProgress: Sendable, Equatable {
    public var label: String
    public var succeeded: Int
    public var failed: Int
    public var inFlight: Int
    public var outputTokens: Int

    public init(label: String, succeeded: Int, failed: Int, inFlight: Int, outputTokens: Int) {
        self.label = label
        self.succeeded = succeeded
        self.failed = failed
        self.inFlight = inFlight
        self.outputTokens = outputTokens
    }
}

/// The progress line printed to stderr while a run goes.
public enum ProgressLine {
    /// "measuring 12.0 s of 30 s | A 340 ok, 0 failed, 8 in flight, 28.3 req/s, 560 tok/s | B …"
    public static func render(warmingUp: Bool, elapsedSeconds: Double, plan: LoadPlan, targets: [TargetProgress]) -> String {
        var head = warmingUp ? "warming up" : "measuring \(Format.number(elapsedSeconds)) s"
        if !warmingUp, let duration = plan.stop.durationSeconds {
            head += elapsedSeconds < duration ? " of \(Format.number(duration)) s" : ", finishing the requests in flight"
        }
        let parts = targets.map { target in
            var text = "\(target.label) \(target.succeeded)"
            if !warmingUp, let limit = plan.stop.requestsPerTarget { text += "/\(limit)" }
            text += " ok, \(target.failed) failed, \(target.inFlight) in flight"
            if !warmingUp, elapsedSeconds > 0 {
                text += ", \(Format.number(Double(target.succeeded) / elapsedSeconds)) req/s"
                    + ", \(Format.number(Double(target.outputTokens) / elapsedSeconds)) tok/s"
            }
            return text
        }
        return ([head] + parts).joined(separator: " | ")
    }
}
