import Foundation

/// `--html`: one self-contained page (inline CSS and SVG, no script, no external asset) with the
/// summary tables, each target's latency over time and its distributions.
public enum HTMLReport {
    /// Series colours per target (first, second) and a second shade for the E2E dots.
    static let colors = ["#1f6fb4", "#d0452a"]
    static let lightColors = ["#8fb8dd", "#eba596"]
    /// Dots per series in a time plot: beyond that every k-th request is drawn (noted under it).
    static let maxDots = 5000
    static let bins = 40

    public static func render(_ report: BenchReport) -> String {
        var out = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>fusion-gateway bench</title>
            <style>
            body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1320px;padding:0 16px;color:#222}
            table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #e4e4e4}
            th:first-child,td:first-child{text-align:left}code{background:#f4f4f4;padding:1px 4px}
            .charts{display:flex;flex-wrap:wrap;gap:12px}.note{color:#666;font-size:12px}
            </style></head><body>
            <h1>fusion-gateway bench</h1>
            <p>\(escape(report.settings.description))</p>

            """
        if report.settings.interrupted == true { out += "<p><strong>\(escape(TextReport.interruptedNote))</strong></p>\n" }
        for (index, target) in report.targets.enumerated() {
            out += summary(target, index: index, openLoop: report.settings.mode == "open_loop", streamed: report.settings.streamed)
        }
        if let comparison = report.comparison { out += ratios(comparison, report) }
        if report.targets.count == 2 { out += overlays(report) }
        for (index, target) in report.targets.enumerated() { out += charts(target, index: index) }
        out += "<h2>Definitions</h2><p class=\"note\">\(escape(BenchReport.definitions))</p>\n</body></html>\n"
        return out
    }

    static func statisticsHeader() -> String {
        "<tr><th></th>" + Summary.statisticKeys.map { "<th>\(Summary.label($0))</th>" }.joined() + "</tr>"
    }

    static func summary(_ target: TargetReport, index: Int, openLoop: Bool, streamed: Bool) -> String {
        let results = target.results
        var out = "<h2 style=\"color:\(colors[index % 2])\">\(escape(target.info.label)): \(escape(target.info.url)), "
            + "model <code>\(escape(target.info.model))</code></h2>\n"
        out += "<p>\(results.requests) requests: \(results.succeeded) ok, \(results.failed) failed in "
            + "\(Format.number(target.durationSeconds)) s: <b>\(Format.number(target.requestsPerSecond)) req/s</b>, "
            + "\(results.outputTokens) output tokens, <b>\(Format.number(target.outputTokensPerSecond)) tokens/s</b>. "
            + "Output tokens: \(escape(results.tokenSourceDescription(streamed: streamed))).</p>\n<table>" + statisticsHeader()
        for metric in Metric.allCases where metric != .queueWait || openLoop {
            let cells = results[metric].summary?.statistics.map { Format.number($0.value) }
                ?? Array(repeating: "—", count: Summary.statisticKeys.count)
            out += "<tr><td>\(escape(metric.title))</td>" + cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }
        out += "</table>\n"
        if results.failed > 0 {
            out += "<table><tr><th>error</th><th>count</th><th>first seen</th></tr>"
            for (kind, count) in results.errors.sorted(by: { $0.key < $1.key }) {
                out += "<tr><td>\(kind.rawValue) <span class=\"note\">\(escape(kind.meaning))</span></td><td>\(count)</td>"
                    + "<td style=\"text-align:left\">\(escape(results.errorExamples[kind] ?? ""))</td></tr>"
            }
            out += "</table>\n"
        }
        return out
    }

    static func ratios(_ comparison: Comparison, _ report: BenchReport) -> String {
        let (a, b) = (escape(report.targets[0].info.label), escape(report.targets[1].info.label))
        var out = "<h2>\(b) ÷ \(a)</h2>\n<p>Below 1× means \(b) is lower (\(escape(Comparison.noRateRatio))).</p>\n<table>"
            + statisticsHeader()
        for metric in Metric.allCases where metric != .queueWait || report.settings.mode == "open_loop" {
            let ratios = comparison.metrics[metric] ?? [:]
            out += "<tr><td>\(escape(metric.title))</td>"
                + Summary.statisticKeys.map { "<td>\(Format.ratio(ratios[$0] ?? nil))</td>" }.joined() + "</tr>"
        }
        return out + "</table>\n"
    }

    /// Both targets' CDFs on one chart per metric: where their tails part is the comparison.
    static func overlays(_ report: BenchReport) -> String {
        var out = "<h2>Distributions side by side</h2>\n<div class=\"charts\">"
        for metric in [Metric.ttft, .itl, .e2e] {
            let series = report.targets.enumerated().map { index, target in
                SVGChart.Series(name: target.info.label, color: colors[index % 2],
                                points: target.results[metric].cumulative.map { ($0.value, $0.fraction * 100) })
            }
            out += cdfChart("\(metric.title): CDF", series)
        }
        return out + "</div>\n"
    }

    static func cdfChart(_ title: String, _ series: [SVGChart.Series]) -> String {
        let chart = SVGChart(title: title, xLabel: "ms (log scale)", yLabel: "% of samples at or below",
                             logX: true, yRange: 0...100, width: 420, height: 280)
        return chart.render(series, style: .line)
    }

    static func charts(_ target: TargetReport, index: Int) -> String {
        let results = target.results
        let label = escape(target.info.label)
        var out = "<h2>\(label): latency over time and distributions</h2>\n<div class=\"charts\">"
        let every = Swift.max(1, (results.samples.count + maxDots - 1) / maxDots)
        let drawn = stride(from: 0, to: results.samples.count, by: every).map { results.samples[$0] }
        let timeChart = SVGChart(title: "\(target.info.label): TTFT and E2E per request", xLabel: "request sent at (s since start)",
                                 yLabel: "ms", width: 860, height: 300)
        out += timeChart.render([
            SVGChart.Series(name: "E2E", color: lightColors[index % 2],
                            points: drawn.compactMap { sample in sample.e2eMilliseconds.map { (sample.startMilliseconds / 1000, $0) } }),
            SVGChart.Series(name: "TTFT", color: colors[index % 2],
                            points: drawn.compactMap { sample in sample.ttftMilliseconds.map { (sample.startMilliseconds / 1000, $0) } }),
        ], style: .dots)
        let cdf = [Metric.ttft, .itl, .tpot, .e2e].enumerated().map { position, metric in
            SVGChart.Series(name: metric.title.replacingOccurrences(of: " (ms)", with: ""),
                            color: ["#1f6fb4", "#2ca02c", "#9467bd", "#d0452a"][position],
                            points: results[metric].cumulative.map { ($0.value, $0.fraction * 100) })
        }
        out += cdfChart("\(target.info.label): CDFs", cdf)
        for metric in [Metric.ttft, .itl, .e2e] {
            out += histogram(results[metric], title: "\(target.info.label): \(metric.title)", color: colors[index % 2])
        }
        out += "</div>\n"
        if every > 1 {
            out += "<p class=\"note\">Every \(every)th of \(results.samples.count) requests is drawn in the time plot.</p>\n"
        }
        return out
    }

    /// Bins from the minimum to p99: the tail above p99 is counted in the last bin, so one
    /// outlier does not squash the body of the distribution into a single bar.
    static func histogram(_ distribution: Distribution, title: String, color: String) -> String {
        let chart = SVGChart(title: title, xLabel: "ms (the last bin holds everything above p99)", yLabel: "samples",
                             width: 420, height: 280)
        guard let summary = distribution.summary else { return chart.bars([], lower: 0, binWidth: 1) }
        let upper = summary.p99 > summary.min ? summary.p99 : summary.max
        let width = upper > summary.min ? (upper - summary.min) / Double(bins) : 1
        return chart.bars([("samples", color, distribution.binned(bins, from: summary.min, to: upper))],
                          lower: summary.min, binWidth: width)
    }
}
