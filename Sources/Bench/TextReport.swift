import Foundation

/// Number formatting shared by the reports: about four significant figures, whatever the scale.
enum Format {
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "—" }
        let magnitude = abs(value)
        if magnitude == 0 { return "0" }
        if magnitude < 10 { return String(format: "%.3f", value) }
        if magnitude < 100 { return String(format: "%.2f", value) }
        if magnitude < 1000 { return String(format: "%.1f", value) }
        // Past 8 digits a column would not hold it (review 103 #4: a hostile usage count ran
        // seven figures together).
        if magnitude < 1e8 { return String(format: "%.0f", value) }
        return String(format: "%.3g", value)
    }

    static func ratio(_ value: Double?) -> String {
        guard let value else { return "—" }
        // As `number`: past what a column holds, three significant digits (review 104 #7).
        return abs(value) < 1e6 ? String(format: "%.2f×", value) : String(format: "%.3g×", value)
    }

    /// A right-aligned cell; one wider than its column still gets a space before it.
    static func padLeft(_ text: String, _ width: Int) -> String {
        text.count >= width ? " " + text : String(repeating: " ", count: width - text.count) + text
    }

    static func padRight(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}

/// The human-readable report printed at the end of a run.
public enum TextReport {
    static let interruptedNote = "INTERRUPTED: stopped early (Ctrl-C or SIGTERM); the figures cover only the requests that finished"
    static let labelWidth = 22
    static let columnWidth = 10

    public static func render(_ report: BenchReport) -> String {
        var out = "fusion-gateway bench: \(report.settings.description)\n"
        if report.settings.interrupted == true { out += Self.interruptedNote + "\n" }
        for target in report.targets {
            out += "\n" + render(target, openLoop: report.settings.mode == "open_loop", streamed: report.settings.streamed)
        }
        if let comparison = report.comparison {
            out += "\n" + render(comparison, report)
        }
        return out
    }

    static func header(_ title: String) -> String {
        "   " + Format.padRight(title, labelWidth) + Summary.statisticKeys.map { Format.padLeft(Summary.label($0), columnWidth) }.joined() + "\n"
    }

    static func render(_ target: TargetReport, openLoop: Bool, streamed: Bool) -> String {
        let results = target.results
        var out = "\(target.info.label)  \(target.info.url)  model \(target.info.model)\n"
        out += "   \(results.requests) requests: \(results.succeeded) ok, \(results.failed) failed in "
            + "\(Format.number(target.durationSeconds)) s: \(Format.number(target.requestsPerSecond)) req/s, "
            + "\(results.outputTokens) output tokens, \(Format.number(target.outputTokensPerSecond)) tokens/s\n"
        if results.notSent > 0 {
            out += "   not sent: \(results.notSent) arrivals still waiting for a slot (--max-concurrency) when the run stopped issuing\n"
        }
        out += "   output tokens: \(results.tokenSourceDescription(streamed: streamed))\n"
        out += header("")
        for metric in Metric.allCases where metric != .queueWait || openLoop {
            let cells = results[metric].summary?.statistics.map { Format.number($0.value) }
                ?? Array(repeating: "—", count: Summary.statisticKeys.count)
            out += "   " + Format.padRight(metric.title, labelWidth) + cells.map { Format.padLeft($0, columnWidth) }.joined() + "\n"
        }
        out += "   errors: " + errorLine(results) + "\n"
        return out
    }

    static func errorLine(_ results: TargetResults) -> String {
        guard results.failed > 0 else { return "none" }
        return results.errors.sorted { $0.key < $1.key }.map { kind, count in
            "\(kind.rawValue) \(count)" + (results.errorExamples[kind].map { " (\($0))" } ?? "")
        }.joined(separator: "; ")
    }

    static func render(_ comparison: Comparison, _ report: BenchReport) -> String {
        let (a, b) = (report.targets[0].info.label, report.targets[1].info.label)
        var out = "\(b) ÷ \(a)  (below 1× is \(b) lower; for tokens/s higher is better)\n"
        out += header("")
        let openLoop = report.settings.mode == "open_loop"
        for metric in Metric.allCases where metric != .queueWait || openLoop {
            let ratios = comparison.metrics[metric] ?? [:]
            out += "   " + Format.padRight(metric.title, labelWidth)
                + Summary.statisticKeys.map { Format.padLeft(Format.ratio(ratios[$0] ?? nil), columnWidth) }.joined() + "\n"
        }
        out += "   " + Comparison.noRateRatio + "\n"
        return out
    }
}
