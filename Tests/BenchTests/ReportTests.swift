@testable import Bench
import Foundation
import Testing

/// Results built from known outcomes: counts, error classification, ratios and the three
/// renderings, without sockets.
@Suite struct ReportTests {
    static let ms: UInt64 = 1_000_000

    /// A successful stream: first token at `ttft` ms, then `tokens − 1` tokens `gap` ms apart.
    static func success(target: Int = 0, at start: UInt64 = 0, ttft: UInt64, gap: UInt64, tokens: Int,
                        source: TokenSource = .usage) -> RequestOutcome {
        let sent = start * ms
        let first = sent + ttft * ms
        let gaps = Array(repeating: gap * ms, count: tokens - 1)
        return RequestOutcome(target: target, scheduledAt: sent, sentAt: sent, firstContentAt: first,
                              endAt: first + gaps.reduce(0, +), interTokenGaps: gaps, contentEvents: tokens,
                              outputTokens: tokens, tokenSource: source, status: 200)
    }

    static func failure(_ kind: ErrorKind, status: Int? = nil, detail: String) -> RequestOutcome {
        RequestOutcome(target: 0, scheduledAt: 0, sentAt: 0, status: status, error: kind, errorDetail: detail)
    }

    static func results(ttft: UInt64, gap: UInt64) -> TargetResults {
        var results = TargetResults()
        for index in 0..<10 { results.add(success(at: UInt64(index) * 100, ttft: ttft, gap: gap, tokens: 5), runStartedAt: 0) }
        return results
    }

    static func report(_ a: TargetResults, _ b: TargetResults? = nil, model: String = "paced", streamed: Bool = true) throws -> BenchReport {
        let plan = try LoadPlan(shape: .closedLoop(concurrency: b == nil ? 1 : 2), stop: StopCondition(requestsPerTarget: 10),
                                targets: b == nil ? 1 : 2, loops: 1)
        let settings = RunSettings(plan: plan, warmupRequests: 1, streamed: streamed, prompts: .builtIn, maxTokens: nil)
        var targets = [TargetReport(info: TargetInfo(label: "A", url: "http://a/v1/chat/completions", model: model),
                                    results: a, durationSeconds: 2)]
        if let b {
            targets.append(TargetReport(info: TargetInfo(label: "B", url: "http://b/v1/chat/completions", model: model),
                                        results: b, durationSeconds: 2))
        }
        return BenchReport(settings: settings, targets: targets)
    }

    @Test func resultsCountSuccessesErrorsAndTokens() {
        var results = Self.results(ttft: 10, gap: 2)
        results.add(Self.success(ttft: 10, gap: 2, tokens: 3, source: .countedEvents), runStartedAt: 0)
        results.add(Self.failure(.http5xx, status: 503, detail: "HTTP 503: busy"), runStartedAt: 0)
        results.add(Self.failure(.http5xx, status: 500, detail: "HTTP 500: other"), runStartedAt: 0)
        results.add(Self.failure(.truncated, detail: "reset"), runStartedAt: 0)
        #expect(results.succeeded == 11)
        #expect(results.failed == 3)
        #expect(results.errors == [.http5xx: 2, .truncated: 1])
        #expect(results.statuses == [503: 1, 500: 1])
        #expect(results.errorExamples[.http5xx] == "HTTP 503: busy")  // the first one seen
        #expect(results.outputTokens == 53)
        #expect(results.tokenSources == [.usage: 10, .countedEvents: 1])
        #expect(results[.ttft].count == 11)  // failures add no latency
        // Nor in the samples plotted and written (review 103 #2: a failed stream's TTFT was).
        var failedStream = Self.success(ttft: 4, gap: 2, tokens: 3)
        failedStream.error = .streamError
        results.add(failedStream, runStartedAt: 0)
        #expect(results.samples.last?.ttftMilliseconds == nil && results.samples.last?.e2eMilliseconds == nil)
        results = Self.results(ttft: 10, gap: 2)
        results.add(Self.success(ttft: 10, gap: 2, tokens: 3, source: .countedEvents), runStartedAt: 0)
        results.add(Self.failure(.http5xx, status: 503, detail: "HTTP 503: busy"), runStartedAt: 0)
        results.add(Self.failure(.http5xx, status: 500, detail: "HTTP 500: other"), runStartedAt: 0)
        results.add(Self.failure(.truncated, detail: "reset"), runStartedAt: 0)
        #expect(results[.itl].count == 10 * 4 + 2)  // pooled gaps
        #expect(results[.itl].summary?.mean == 2)
        #expect(results[.tpot].summary?.max == 2)
        #expect(results[.e2e].summary?.max == 18)
        #expect(results.samples.count == 14)
        let target = TargetReport(info: TargetInfo(label: "A", url: "u", model: "m"), results: results, durationSeconds: 2)
        #expect(target.requestsPerSecond == 5.5)
        #expect(target.outputTokensPerSecond == 26.5)
    }

    @Test func mergedLoopsEqualOneLoop() {
        var one = TargetResults()
        var left = TargetResults()
        var right = TargetResults()
        for index in 0..<20 {
            let outcome = Self.success(at: UInt64(index), ttft: UInt64(5 + index % 3), gap: 2, tokens: 4)
            one.add(outcome, runStartedAt: 0)
            if index % 2 == 0 { left.add(outcome, runStartedAt: 0) } else { right.add(outcome, runStartedAt: 0) }
        }
        left.merge(right)
        #expect(left.samples == one.samples)
        #expect(left[.ttft].summary == one[.ttft].summary)
        #expect(left.outputTokens == one.outputTokens)
    }

    @Test func comparisonRatiosAreBOverA() throws {
        let report = try Self.report(Self.results(ttft: 10, gap: 2), Self.results(ttft: 15, gap: 1))
        let comparison = try #require(report.comparison)
        #expect(comparison.metrics[.ttft]?["p50"] == 1.5)
        #expect(comparison.metrics[.ttft]?["max"] == 1.5)
        #expect(comparison.metrics[.itl]?["mean"] == 0.5)
        // A metric A has no samples of has no ratio.
        #expect(comparison.metrics[.queueWait]?["p50"] == .some(nil))
    }

    @Test func jsonReportRoundTrips() throws {
        var a = Self.results(ttft: 10, gap: 2)
        a.add(Self.failure(.streamError, detail: "boom"), runStartedAt: 0)
        let report = try Self.report(a, Self.results(ttft: 12, gap: 2))
        let json = JSONReport(report)
        let decoded = try JSONReport.decode(json.encoded())
        #expect(decoded == json)
        #expect(decoded.schema == "fusion-gateway-bench/1")
        #expect(decoded.targets[0].errors["stream_error"] == 1)
        #expect(decoded.targets[0].errors["timeout"] == 0)
        #expect(decoded.targets[0].metrics["ttft_ms"]?.p50 == 10)
        #expect(decoded.targets[0].samples.last?.error == .streamError)
        #expect(decoded.comparison?.metrics["ttft_ms"]?["p50"] == 1.2)
        #expect(decoded.comparison?.metrics["queue_wait_ms"]?["p50"] == nil)
        // A closed loop has no queue (review 64A #8: its JSON had the metric and a ratio of it).
        #expect(decoded.targets[0].metrics["queue_wait_ms"] == nil && decoded.comparison?.metrics["queue_wait_ms"] == nil)
        // Ratios are keyed like the summaries they divide.
        #expect(decoded.comparison.map { Set($0.metrics["ttft_ms"]?.keys ?? [:].keys) } == Set(Summary.statisticKeys))
        #expect(decoded.targets[0].metrics["ttft_ms"]?.p99_9 == 10)
        // The keys a consumer reads, spelled as documented.
        let object = try JSONSerialization.jsonObject(with: json.encoded()) as? [String: Any]
        let target = (object?["targets"] as? [[String: Any]])?.first
        for key in ["requests_per_s", "output_tokens_per_s", "duration_s", "error_rate", "token_sources", "http_statuses"] {
            #expect(target?[key] != nil, "missing \(key)")
        }
        // No ratio of rates both targets' shared run makes equal by construction.
        let comparison = object?["comparison"] as? [String: Any]
        #expect(comparison?["metrics"] != nil && comparison?["requests_per_s"] == nil && comparison?["output_tokens_per_s"] == nil)
    }

    @Test func textReportShowsFiguresErrorsAndRatios() throws {
        var a = Self.results(ttft: 10, gap: 2)
        a.add(Self.failure(.http4xx, status: 401, detail: "HTTP 401: Invalid API key"), runStartedAt: 0)
        let text = TextReport.render(try Self.report(a, Self.results(ttft: 20, gap: 2)))
        #expect(text.contains("11 requests: 10 ok, 1 failed in 2.000 s: 5.000 req/s"))
        #expect(text.contains("errors: http_4xx 1 (HTTP 401: Invalid API key)"))
        #expect(text.contains("output tokens: usage chunk for 10"))
        #expect(text.contains("B ÷ A"))
        let ttftRatio = try #require(text.split(separator: "\n").last { $0.contains("TTFT (ms)") })
        #expect(ttftRatio.contains("2.00×"))
        #expect(!text.contains("requests/s 1.00×") && text.contains("no ratio of requests/s or output tokens/s"))
    }

    /// A run stopped early says so in every form, so an archived report cannot pass for the run
    /// it was set up to be.
    @Test func anInterruptedRunSaysSoEverywhere() throws {
        var report = try Self.report(Self.results(ttft: 10, gap: 2))
        #expect(!TextReport.render(report).contains("INTERRUPTED"))
        report.settings.interrupted = true
        #expect(TextReport.render(report).contains("INTERRUPTED: stopped early (Ctrl-C or SIGTERM)"))
        #expect(HTMLReport.render(report).contains("INTERRUPTED"))
        let json = try JSONSerialization.jsonObject(with: try JSONReport(report).encoded()) as? [String: Any]
        #expect((json?["settings"] as? [String: Any])?["interrupted"] as? Bool == true)
    }

    @Test func withoutAStreamUsageIsTheBodysNotAChunks() throws {
        let text = TextReport.render(try Self.report(Self.results(ttft: 10, gap: 2), streamed: false))
        #expect(text.contains("output tokens: the body's usage for 10") && !text.contains("chunk"))
        let html = HTMLReport.render(try Self.report(Self.results(ttft: 10, gap: 2), streamed: false))
        #expect(html.contains("the body&#39;s usage for 10") || html.contains("the body's usage for 10"))
    }

    @Test func htmlReportIsSelfContainedAndEscapesServerText() throws {
        var a = Self.results(ttft: 10, gap: 2)
        a.add(Self.failure(.streamError, detail: "<b onmouseover=alert(1)>x</b>"), runStartedAt: 0)
        let html = HTMLReport.render(try Self.report(a, Self.results(ttft: 12, gap: 3), model: "<script>alert(1)</script>"))
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(html.contains("<svg"))
        #expect(html.contains("<circle"))
        #expect(html.contains("<polyline"))
        #expect(html.contains("<rect"))
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("<b onmouseover"))
        #expect(html.contains("&lt;b onmouseover=alert(1)&gt;"))
        #expect(html.contains("&lt;script&gt;"))
        // Nothing is loaded from elsewhere: no src, no stylesheet link, no href.
        for marker in ["src=", "<link", "href=", "@import", "url("] { #expect(!html.contains(marker), "\(marker)") }
    }

    /// Review 127 #1: a prepend letter (U+0D4E, U+111C2) made one grapheme cluster of itself and
    /// the `<` after it, and the `<` went out raw. Property: over random text from the letters
    /// that join others (prepend, combining, ZWJ, variation selectors, regional indicators) and
    /// markup, the escaped text holds no markup character and decodes back to the text.
    @Test func escapingHoldsForEveryClusterAMarkupCharacterCanJoin() {
        let pieces: [String] = ["<", ">", "&", "\"", "'", "\u{0D4E}", "\u{111C2}", "\u{0600}", "\u{110BD}", "\u{0301}", "\u{200D}",
                                "\u{FE0F}", "\u{1F1FA}", "\u{1F468}", "\r", "\n", "a", "img ", "onerror=", "\u{E0041}", "\u{1100}", "\u{AC00}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let text = (0..<Int.random(in: 1...12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            let escaped = escape(text)
            #expect(!escaped.unicodeScalars.contains { "<>\"'".unicodeScalars.contains($0) }, "\(text.unicodeScalars.map { String($0.value, radix: 16) })")
            // Decoded by scalar too (`replacingOccurrences` compares clusters: `&lt;` before a
            // combining mark is not found).
            var decoded = String.UnicodeScalarView(), rest = Substring.UnicodeScalarView(escaped.unicodeScalars)
            while let first = rest.first {
                let entity = [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")].first { rest.starts(with: $0.0.unicodeScalars) }
                #expect(first != "&" || entity != nil, "a bare & in \(escaped.debugDescription)")
                decoded.append(entity.map { $0.1.unicodeScalars.first! } ?? first)
                rest = rest.dropFirst(entity.map { $0.0.unicodeScalars.count } ?? 1)
            }
            #expect(decoded.elementsEqual(text.unicodeScalars))
        }
        // The review's payload, through a whole report.
        var a = Self.results(ttft: 10, gap: 2)
        a.add(Self.failure(.http5xx, detail: "HTTP 500: \u{0D4E}<img src=x onerror=alert(document.domain) x="), runStartedAt: 0)
        let html = HTMLReport.render(try! Self.report(a, Self.results(ttft: 12, gap: 3), model: "\u{111C2}<svg onload=alert(2) x="))
        #expect(!html.contains("<img") && !html.contains("<svg onload"))
        #expect(html.contains("&lt;img src=x onerror="))
    }

    @Test func progressLineShowsCountsAndRates() throws {
        let plan = try LoadPlan(shape: .closedLoop(concurrency: 2), stop: StopCondition(requestsPerTarget: 100), targets: 1, loops: 1)
        let line = ProgressLine.render(warmingUp: false, elapsedSeconds: 2, plan: plan, targets: [
            TargetProgress(label: "A", succeeded: 40, failed: 1, inFlight: 2, outputTokens: 800),
        ])
        #expect(line == "measuring 2.000 s | A 40/100 ok, 1 failed, 2 in flight, 20.00 req/s, 400.0 tok/s")
        let timed = try LoadPlan(shape: .closedLoop(concurrency: 2), stop: StopCondition(durationSeconds: 1), targets: 1, loops: 1)
        let target = TargetProgress(label: "A", succeeded: 4, failed: 0, inFlight: 2, outputTokens: 8)
        #expect(ProgressLine.render(warmingUp: false, elapsedSeconds: 0.5, plan: timed, targets: [target])
                == "measuring 0.500 s of 1.000 s | A 4 ok, 0 failed, 2 in flight, 8.000 req/s, 16.00 tok/s")
        #expect(ProgressLine.render(warmingUp: false, elapsedSeconds: 2, plan: timed, targets: [target])
                .hasPrefix("measuring 2.000 s, finishing the requests in flight | "))
        #expect(ProgressLine.render(warmingUp: true, elapsedSeconds: 2, plan: timed, targets: [target])
                == "warming up | A 4 ok, 0 failed, 2 in flight")
    }
}
