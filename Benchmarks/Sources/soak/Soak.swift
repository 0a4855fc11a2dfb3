import BenchSupport
import ArgumentParser
import EventLoop
import Foundation
import GatewayCore
import UpstreamClient

/// A bounded soak: for `--seconds`, `--concurrency` clients loop over random requests through
/// the gateway (release build, separate process) against the mock: plain and fusion streams,
/// streamed and not, upstream faults of every kind, and clients that hang up at random. Every
/// completed response is checked; afterwards the gateway's open descriptors and resident memory
/// must be back to their level after the warm-up. Exits non-zero on any violation.
@main
struct Soak: ParsableCommand {
    @Option(help: "The fusion-gateway binary (release build).")
    var gateway = "../.build/release/fusion-gateway"
    @Option(help: "How long to run, after a 20 s warm-up.")
    var seconds = 600
    @Option(help: "Concurrent clients.")
    var concurrency = 48

    func run() throws {
        let mock = try ChildProcess(gateway, ["mock-upstream", "--port", "0", "--log-level", "error"], banner: "mock upstream listening on http://127.0.0.1:")
        defer { mock.stop() }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("soak-\(getpid()).yaml")
        try """
            upstream: {keepalive_interval_ms: 1000, idle_timeout_ms: 1500, retry_base_delay_ms: 20}
            providers:
              mock: {base_url: 'http://127.0.0.1:\(mock.port)/v1'}
            fusion:
              outer_model: 'mock/outer:pace_ms=2'
              member_timeout_ms: 3000
              presets:
                quality: {analysis_models: ['mock/expert-1:pace_ms=2', 'mock/expert-2:pace_ms=3', 'mock/expert-3:pace_ms=2']}
                research: {analysis_models: ['mock/researcher:pace_ms=2', 'mock/expert-1:pace_ms=2', 'mock/researcher:pace_ms=2:loop=1']}
            web:
              search: {backend: searxng, url: 'http://127.0.0.1:\(mock.port)'}
              fetch: {allow: ['127.0.0.1:\(mock.port)'], timeout_ms: 1000, max_bytes: 100000}
            """.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let gw = try ChildProcess(gateway, ["serve", "--port", "0", "--config", config.path, "--log-level", "error", "--loops", "2"],
                           banner: "fusion-gateway listening on http://127.0.0.1:")
        defer { gw.stop() }
        let url = "http://127.0.0.1:\(gw.port)/v1/chat/completions"
        let web = "http://127.0.0.1:\(mock.port)/web"
        Case.researchQuestions = [
            "Should cities ban cars from their centres?",  // searches, then reads the top result
            "Read \(web)/slow?ms=300 and \(web)/redirect?to=http://169.254.169.254/ and \(web)/big?bytes=300000 and \(web)/status/500",
        ]
        let thread = EventLoopThread(name: "soak-client")
        defer { thread.shutdown() }

        func phase(_ seconds: Int) throws -> Tally {
            let runner = try thread.loop.submitAndWait { Runner(loop: thread.loop, url: url, concurrency: concurrency, seconds: seconds) }
            let done = DispatchSemaphore(value: 0)
            thread.loop.execute { runner.start { done.signal() } }
            done.wait()
            return try thread.loop.submitAndWait { runner.tally }
        }
        // The warm-up also fills the gateway's record store (10,000 records of completions, then
        // the oldest are overwritten; refusals have 1,000 of their own, which this mix never
        // makes): a baseline taken before it is full counts the store's growth as the soak's (a
        // 300 s soak grew 16.6 MiB that way). 11,500 requests leave a margin for hang-ups.
        print("warm-up: 20 s, and until the record store is full …")
        var warm = try phase(20)
        for _ in 0..<6 where warm.started < 11_500 {
            let more = try phase(20)
            warm.started += more.started
            warm.completed += more.completed
            warm.hungUp += more.hungUp
            warm.expectedErrors += more.expectedErrors
            warm.violations += more.violations
        }
        Thread.sleep(forTimeInterval: 3)
        let baseFDs = Self.openFDs(gw.pid), baseRSS = ProcessUsage.residentKiB(gw.pid)
        print("baseline after warm-up: \(baseFDs) descriptors, \(baseRSS) KiB resident (\(warm.summary))")
        print("soak \(seconds) s with \(concurrency) concurrent clients …")
        let tally = try phase(seconds)
        Thread.sleep(forTimeInterval: 3)
        let fds = Self.openFDs(gw.pid), rss = ProcessUsage.residentKiB(gw.pid)
        print(tally.summary)
        print("after: \(fds) descriptors (baseline \(baseFDs)), \(rss) KiB resident (baseline \(baseRSS))")
        var problems = (warm.violations + tally.violations).prefix(10).map { "violation: \($0)" }
        if !gw.isRunning { problems.append("the gateway is not running any more") }
        if fds > baseFDs + 16 { problems.append("descriptors grew from \(baseFDs) to \(fds)") }
        if rss > baseRSS + max(baseRSS / 4, 16 * 1024) { problems.append("resident memory grew from \(baseRSS) to \(rss) KiB") }
        if tally.completed == 0 { problems.append("nothing completed") }
        for problem in problems { print(problem) }
        print(problems.isEmpty ? "soak passed" : "soak FAILED")
        if !problems.isEmpty { throw ExitCode.failure }
    }

    static func openFDs(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }
}

struct Tally {
    var started = 0, completed = 0, hungUp = 0, expectedErrors = 0
    var violations: [String] = []
    var summary: String {
        "\(started) requests: \(completed) checked intact, \(expectedErrors) expected errors, \(hungUp) client hang-ups, \(violations.count) violations"
    }
}

/// What a request is and what its response must look like.
struct Case {
    enum Expect { case content(String), prefix(String), status(Int), errorChunk, fusionAnswer }
    var model: String
    var stream: Bool
    var expect: Expect
    var hangUpAfterEvents: Int?
    /// Fusion with the web tools (the `research` preset) and this question.
    var research: String?

    /// Set once before the run.
    nonisolated(unsafe) static var researchQuestions: [String] = []

    static func random() -> Case {
        var generator = SystemRandomNumberGenerator()
        let roll = Int(generator.next() % 100)
        var c: Case
        switch roll {
        case 0..<30: c = Case(model: "mock/paced:pace_ms=2:deltas=40", stream: true, expect: .content((0..<40).map { "t\($0) " }.joined()))
        case 30..<38: c = Case(model: "mock/normal:pace_ms=1", stream: false, expect: .prefix("This is a simulated answer"))
        case 38..<46: c = Case(model: "fusion", stream: true, expect: .fusionAnswer)
        case 46..<50: c = Case(model: "fusion", stream: false, expect: .fusionAnswer)
        case 50..<56: c = Case(model: "mock/error:status=503", stream: Bool.random(), expect: .status(503))
        case 56..<62: c = Case(model: "mock/error-mid-stream:after=3:pace_ms=1", stream: true, expect: .errorChunk)
        case 62..<67: c = Case(model: "mock/disconnect:after=3:pace_ms=1", stream: true, expect: .errorChunk)
        case 67..<71: c = Case(model: "mock/malformed:after=2:pace_ms=1", stream: true, expect: .errorChunk)
        case 71..<74: c = Case(model: "mock/stall:after=2:pace_ms=1", stream: true, expect: .errorChunk)
        case 74..<80: c = Case(model: "mock/flaky:fail=1:pace_ms=1:status=502:n=\(generator.next() % 1_000_000)", stream: true,
                               expect: .prefix("This is a simulated answer"))
        case 80..<84: c = Case(model: "mock/rate-limited:retry_after_ms=10", stream: false, expect: .status(429))
        case 84..<90:
            c = Case(model: "fusion", stream: roll != 84, expect: .fusionAnswer)
            c.research = researchQuestions.randomElement()
            if Bool.random() { c.hangUpAfterEvents = Int(generator.next() % 300) }
        default: c = Case(model: "mock/paced:pace_ms=3:deltas=100", stream: true, expect: .content(""), hangUpAfterEvents: Int(generator.next() % 60))
        }
        if roll >= 38 && roll < 46 && Bool.random() { c.hangUpAfterEvents = Int(generator.next() % 200) }
        return c
    }
}

/// `concurrency` request loops on one client loop (libcurl multi).
final class Runner: @unchecked Sendable {  // loop-confined after creation
    let loop: EventLoop
    let client: UpstreamClient
    let url: String
    let concurrency: Int
    let deadline: Date
    var tally = Tally()
    private var running = 0
    private var completion: () -> Void = {}

    init(loop: EventLoop, url: String, concurrency: Int, seconds: Int) {
        self.loop = loop
        client = UpstreamClient(loop: loop)
        self.url = url
        self.concurrency = concurrency
        deadline = Date().addingTimeInterval(TimeInterval(seconds))
    }

    func start(_ completion: @escaping () -> Void) {
        self.completion = completion
        for _ in 0..<concurrency { next() }
    }

    private func next() {
        guard Date() < deadline else {
            if running == 0 {
                client.close()
                completion()
            }
            return
        }
        running += 1
        tally.started += 1
        let c = Case.random()
        let question = c.research ?? "Should cities ban cars from their centres?"
        let tools = c.research == nil ? "" : #","tools":[{"type":"fusion","parameters":{"preset":"research"}}]"#
        let body = Array(#"{"model":"\#(c.model)","stream":\#(c.stream),"messages":[{"role":"user","content":"\#(question)"}]\#(tools)}"#.utf8)
        var status = 0
        var raw: [UInt8] = []
        var events = 0
        var decoder = SSEDecoder()
        let transfer = client.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: body,
                                                    connectTimeoutMilliseconds: 10_000))
        transfer.onHead = { code, _ in status = code }
        transfer.onData = { [unowned self, unowned transfer] bytes in
            raw.append(contentsOf: bytes)
            if let limit = c.hangUpAfterEvents {
                try? decoder.feed(bytes) { _ in events += 1 }
                if events >= limit {
                    tally.hungUp += 1
                    transfer.cancel()
                    finishOne()
                }
            }
            return true
        }
        transfer.onComplete = { [unowned self] failure in
            if let failure {
                tally.violations.append("\(c.model): transport failure \(failure)")
            } else {
                check(c, status: status, raw: raw)
            }
            finishOne()
        }
    }

    private func finishOne() {
        running -= 1
        loop.deferToNextIteration { [unowned self] in next() }
    }

    private func check(_ c: Case, status: Int, raw: [UInt8]) {
        let text = String(decoding: raw, as: UTF8.self)
        var content = ""
        var errorChunk = false
        var done = false
        if c.stream && status == 200 {
            var decoder = SSEDecoder()
            try? decoder.feed(raw) { event in
                if event.isDone { done = true; return }
                guard let json = try? JSONValue.parse(Array(event.data)) else { return }
                if json["error"] != nil { errorChunk = true }
                content += json["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue ?? ""
            }
        } else if let json = try? JSONValue.parse(raw) {
            content = json["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
        }
        func violation(_ what: String) { tally.violations.append("\(c.model) stream=\(c.stream): \(what) [status \(status)] \(text.prefix(160))") }
        switch c.expect {
        case .status(let expected):
            // A stream may have committed its 200 with a keep-alive: then the error is in-band.
            if status == expected || (status == 200 && errorChunk && done) { tally.expectedErrors += 1 } else { violation("expected \(expected)") }
        case .errorChunk:
            if status == 200 && errorChunk && done { tally.expectedErrors += 1 } else { violation("expected an error chunk then [DONE]") }
        case .content(let expected):
            if status == 200 && done && content == expected { tally.completed += 1 } else { violation("content differs") }
        case .prefix(let expected):
            if status == 200 && content.hasPrefix(expected) && (!c.stream || done) { tally.completed += 1 } else { violation("expected \(expected)…") }
        case .fusionAnswer:
            if status == 200 && content.hasPrefix("Drawing on a panel of 3 models") && (!c.stream || done) { tally.completed += 1 }
            else { violation("fusion answer missing") }
        }
    }
}

