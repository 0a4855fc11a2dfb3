import Bench
import Dispatch
import Foundation
import EventLoop
import Synchronization

/// One endpoint to load.
public struct BenchTarget: Sendable {
    /// As reports show it: a password in the URL is `***` there.
    public var info: TargetInfo
    /// The URL requests go to (with any `user:password@`, which curl sends as Basic auth).
    public var requestURL: String
    /// Sent as `Authorization: Bearer …`; never printed or written to a report.
    public var apiKey: String?

    public init(label: String, baseURL: String, model: String, apiKey: String?) {
        requestURL = Self.chatCompletionsURL(baseURL)
        info = TargetInfo(label: label, url: Self.withoutPassword(requestURL), model: model)
        self.apiKey = apiKey
    }

    /// The secrets of this target that must never reach a report: its key, its URL's password,
    /// and the Basic credentials curl makes of `user:password` (a server may echo the header).
    /// Each as written in the URL and as curl sends it, percent-decoded (a strong password's
    /// `@` or `!` is written `%40`, `%21`: review 64A #2). A user name without a password is a
    /// secret too: some services take a key as the URL's user name, and curl sends it as
    /// Basic `user:` (review 127 #4).
    var secrets: [String] {
        let password = Self.password(in: requestURL)
        var secrets = [apiKey, password, password?.removingPercentEncoding].compactMap { $0 }.filter { !$0.isEmpty }
        if let userInfo = Self.userInfo(in: requestURL) {
            let colon = userInfo.firstIndex(of: ":")
            let user = String(userInfo[..<(colon ?? userInfo.endIndex)])
            let pass = colon.map { String(userInfo[userInfo.index(after: $0)...]) } ?? ""
            // Without a password (`key@`, or `key:@`, which curl sends alike), a name long
            // enough to be a key (12 characters or more: `admin@` redacted every "admin" of a
            // server's text, review 129 #5).
            if pass.isEmpty {
                secrets += [user, user.removingPercentEncoding].compactMap { $0 }.filter { $0.count >= 12 }
            }
            secrets.append(Data("\(user):\(pass)".utf8).base64EncodedString())
            if let user = user.removingPercentEncoding, let pass = pass.removingPercentEncoding {
                secrets.append(Data("\(user):\(pass)".utf8).base64EncodedString())
            }
        }
        return secrets  // `Redactor` drops repeats
    }

    static func userInfo(in url: String) -> String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" }
        return authority.lastIndex(of: "@").map { String(authority[..<$0]) }
    }

    /// `scheme://user:password@host…` → `scheme://user:***@host…`; `scheme://user@host…` or
    /// `scheme://user:@host…` (a key as the user name, sent alike: review 129 #4) →
    /// `scheme://***@host…`.
    static func withoutPassword(_ url: String) -> String {
        if let password = password(in: url), !password.isEmpty, let range = url.range(of: ":" + password + "@") {
            return url.replacingCharacters(in: range, with: ":***@")
        }
        guard let userInfo = userInfo(in: url), !userInfo.isEmpty else { return url }
        let user = userInfo.hasSuffix(":") ? userInfo.dropLast() : Substring(userInfo)  // an empty password is none
        guard !user.isEmpty, !user.contains(":"), let range = url.range(of: "://" + userInfo + "@") else { return url }
        return url.replacingCharacters(in: range, with: "://***@")
    }

    static func password(in url: String) -> String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return nil }
        return String(authority[authority.index(after: colon)..<at])
    }

    /// What is wrong with `base` as a target's URL, or nil: it must be http:// or https:// with
    /// a host, a port (if any) in 1...65535, and neither a query nor a fragment (the endpoint's
    /// path is appended to it). Checked before `chatCompletionsURL`, which would turn `http://`
    /// into a path.
    public static func problem(withBaseURL base: String) -> String? {
        // Every message shows the URL escaped: a raw escape sequence or bidi override would reach
        // the terminal (review 105 #3).
        let shown = TerminalText.shown(base)
        guard let scheme = ["http://", "https://"].first(where: { base.hasPrefix($0) }) else {
            return "\(shown): only http:// and https:// URLs"
        }
        if base.unicodeScalars.contains(where: { $0.properties.isWhitespace || TerminalText.isUnsafe($0) }) {
            return "\(shown == base ? base.debugDescription : shown): no spaces or control characters in the URL (percent-encode them)"
        }
        if base.contains("?") || base.contains("#") {
            return "\(shown): no query or fragment in the base URL (/chat/completions is appended to it)"
        }
        let authority = base.dropFirst(scheme.count).prefix { $0 != "/" }
        let hostAndPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? ""
        let host: Substring
        let port: Substring?
        if hostAndPort.hasPrefix("[") {
            // Refused here, not found by curl on every request and counted as the endpoint's
            // fault (review 103 #10).
            guard let bracket = hostAndPort.firstIndex(of: "]") else {
                return "\(shown): an IPv6 address needs its closing bracket (http://[::1]:8080/v1)"
            }
            host = hostAndPort[..<bracket]
            let rest = hostAndPort[bracket...].dropFirst()
            port = rest.hasPrefix(":") ? rest.dropFirst() : nil
        } else {
            host = hostAndPort.prefix { $0 != ":" }
            port = hostAndPort.contains(":") ? hostAndPort.drop { $0 != ":" }.dropFirst() : nil
        }
        if host.isEmpty { return "\(shown): no host in the URL (expected \(scheme)host:port/v1)" }
        if let port, !(port.allSatisfy(\.isASCII) && Int(port).map { (1...65535).contains($0) } == true) {
            return "\(shown): the port must be a number in 1...65535"
        }
        return nil
    }

    /// `…/v1` → `…/v1/chat/completions`; a URL already naming the endpoint is kept.
    public static func chatCompletionsURL(_ base: String) -> String {
        var url = base
        while url.hasSuffix("/") { url.removeLast() }
        return url.hasSuffix("/chat/completions") ? url : url + "/chat/completions"
    }
}

/// Everything a run needs, validated.
public struct BenchConfiguration: Sendable {
    public var targets: [BenchTarget]
    public var plan: LoadPlan
    public var prompts: PromptSet
    public var streamed: Bool
    public var maxTokens: Int?
    /// Requests per target sent before the measured run and left out of every figure: they open
    /// the connections and warm the server's caches.
    public var warmupRequests: Int
    public var requestTimeoutMilliseconds: Int
    public var connectTimeoutMilliseconds: Int
    /// Once the run stops issuing (its duration is over, or Ctrl-C), how long requests still in
    /// flight may take to finish before they are abandoned (`ErrorKind.interrupted`).
    public var drainMilliseconds: Int

    public init(targets: [BenchTarget], plan: LoadPlan, prompts: PromptSet, streamed: Bool = true, maxTokens: Int? = nil,
                warmupRequests: Int = 2, requestTimeoutMilliseconds: Int = 300_000, connectTimeoutMilliseconds: Int = 10_000,
                drainMilliseconds: Int = 30_000) {
        self.drainMilliseconds = drainMilliseconds
        self.targets = targets
        self.plan = plan
        self.prompts = prompts
        self.streamed = streamed
        self.maxTokens = maxTokens
        self.warmupRequests = warmupRequests
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
    }

    /// The warm-up: closed loop, no more streams than the measured run opens (and at most the
    /// requests it sends), `warmupRequests` per target; within a `--duration` run's duration and
    /// drain, like the run (against endless streams each warm-up request waited for `--timeout`:
    /// review 64A #1).
    var warmupPlan: LoadPlan? {
        guard warmupRequests > 0 else { return nil }
        let streams: Int
        switch plan.shape {
        case .closedLoop(let concurrency): streams = concurrency
        case .openLoop(_, _, let cap): streams = cap ?? plan.loops
        }
        // Saturating: the command bounds `--warmup`, a library caller need not.
        let requests = warmupRequests.multipliedReportingOverflow(by: plan.targets)
        var concurrency = min(streams, requests.overflow ? .max : requests.partialValue)
        if plan.targets == 2 && concurrency > 1 && concurrency % 2 == 1 { concurrency -= 1 }
        let stop = StopCondition(requestsPerTarget: warmupRequests, durationSeconds: plan.stop.durationSeconds)
        return try? LoadPlan(shape: .closedLoop(concurrency: concurrency), stop: stop, targets: plan.targets, loops: plan.loops)
    }
}

/// Per-target counters shared by the loops: the claim counter that hands out request numbers
/// (so prompts go in order and `--requests` holds across loops) and the progress figures.
final class TargetCounters: Sendable {
    let claimed = Atomic<Int>(0)
    let succeeded = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let outputTokens = Atomic<Int>(0)

    func reset() {
        claimed.store(0, ordering: .relaxed)
        succeeded.store(0, ordering: .relaxed)
        failed.store(0, ordering: .relaxed)
        inFlight.store(0, ordering: .relaxed)
        outputTokens.store(0, ordering: .relaxed)
    }
}

/// Runs a benchmark: warm-up, then the measured run, on `plan.loops` event-loop threads, each
/// with its own `UpstreamClient` and its share of the load (see `LoadPlan`). The measurement is
/// all in `Bench`; this only issues requests and feeds what arrives to `ResponseRecorder`s.
public final class BenchRunner: Sendable {
    public let configuration: BenchConfiguration
    let counters: [TargetCounters]
    let stopRequested = Atomic<Bool>(false)
    /// The loops running a phase, for `requestStop` and `abandonInFlight` to reach.
    let running = Mutex<[(EventLoop, LoopDriver)]>([])
    let warmingUp = Atomic<Bool>(false)
    let phaseStartedAt = Atomic<UInt64>(0)

    public init(configuration: BenchConfiguration) {
        self.configuration = configuration
        counters = configuration.targets.map { _ in TargetCounters() }
    }

    /// Stops issuing requests; those in flight may finish within the drain time and count, and
    /// are abandoned after it. Thread-safe. For Ctrl-C.
    public func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        for (loop, driver) in running.withLock({ $0 }) { loop.execute { driver.drain() } }
    }

    /// Abandons every request in flight now (counted `interrupted`): the run ends and reports.
    /// Thread-safe. For a second Ctrl-C.
    public func abandonInFlight() {
        stopRequested.store(true, ordering: .relaxed)
        for (loop, driver) in running.withLock({ $0 }) { loop.execute { driver.abandonInFlight() } }
    }

    /// Runs the warm-up and the measured run; blocks the calling thread (not a loop thread),
    /// calling `onProgress` on it every `progressInterval` seconds.
    public func run(progressInterval: Double = 1, onProgress: (String) -> Void = { _ in }) throws -> BenchReport {
        let threads = (0..<configuration.plan.loops).map { EventLoopThread(name: "bench-loop-\($0)") }
        defer { for thread in threads { thread.shutdown() } }
        let drivers = try threads.map { thread in
            try thread.loop.submitAndWait { [self] in
                LoopDriver(loop: thread.loop, configuration: configuration, counters: counters,
                           stopRequested: { self.stopRequested.load(ordering: .relaxed) },
                           allClaimed: { [weak self] in
                               for (loop, driver) in self?.running.withLock({ $0 }) ?? [] { loop.execute { driver.stopArrivals() } }
                           })
            }
        }
        running.withLock { $0 = zip(threads, drivers).map { ($0.loop, $1) } }
        defer {
            running.withLock { $0 = [] }
            for (thread, driver) in zip(threads, drivers) { try? thread.loop.submitAndWait { driver.close() } }
        }
        if let warmup = configuration.warmupPlan {
            warmingUp.store(true, ordering: .relaxed)
            _ = try runPhase(warmup, measuring: false, drivers: drivers, threads: threads,
                             progressInterval: progressInterval, onProgress: onProgress)
            warmingUp.store(false, ordering: .relaxed)
        }
        let (startedAt, endedAt) = try runPhase(configuration.plan, measuring: true, drivers: drivers, threads: threads,
                                                progressInterval: progressInterval, onProgress: onProgress)
        var merged = configuration.targets.map { _ in TargetResults() }
        for (thread, driver) in zip(threads, drivers) {
            let results = try thread.loop.submitAndWait { driver.results }
            for index in merged.indices { merged[index].merge(results[index]) }
        }
        let duration = endedAt > startedAt ? Double(endedAt - startedAt) / 1e9 : 0
        var settings = RunSettings(plan: configuration.plan, warmupRequests: configuration.warmupRequests,
                                   streamed: configuration.streamed, prompts: configuration.prompts, maxTokens: configuration.maxTokens)
        settings.interrupted = stopRequested.load(ordering: .relaxed)
        settings.drainSeconds = Double(configuration.drainMilliseconds) / 1000
        return BenchReport(settings: settings, targets: zip(configuration.targets, merged).map {
            TargetReport(info: $0.info, results: $1, durationSeconds: duration)
        })
    }

    /// One phase on every loop; returns when every loop is done: (start, last request's end).
    private func runPhase(_ plan: LoadPlan, measuring: Bool, drivers: [LoopDriver], threads: [EventLoopThread],
                          progressInterval: Double, onProgress: (String) -> Void) throws -> (UInt64, UInt64) {
        for counter in counters { counter.reset() }
        let group = DispatchGroup()
        let startedAt = EventLoop.monotonicNanoseconds()
        phaseStartedAt.store(startedAt, ordering: .relaxed)
        for (index, (thread, driver)) in zip(threads, drivers).enumerated() {
            group.enter()
            // A loop that finishes first runs nothing: nothing to wait for (reviews 50 #5, 51 #6).
            let started = thread.loop.execute({
                driver.start(plan: plan, loopIndex: index, measuring: measuring, startedAt: startedAt) { group.leave() }
            }, ifDropped: { group.leave() })
            if !started { group.leave() }
        }
        while group.wait(timeout: .now() + progressInterval) == .timedOut { onProgress(progressLine()) }
        var endedAt = startedAt
        for (thread, driver) in zip(threads, drivers) {
            endedAt = max(endedAt, try thread.loop.submitAndWait { driver.lastFinishedAt })
        }
        return (startedAt, endedAt)
    }

    /// The current progress, one line (thread-safe).
    public func progressLine() -> String {
        let elapsed = Double(EventLoop.monotonicNanoseconds() &- phaseStartedAt.load(ordering: .relaxed)) / 1e9
        let targets = zip(configuration.targets, counters).map { target, counter in
            TargetProgress(label: target.info.label, succeeded: counter.succeeded.load(ordering: .relaxed),
                           failed: counter.failed.load(ordering: .relaxed), inFlight: counter.inFlight.load(ordering: .relaxed),
                           outputTokens: counter.outputTokens.load(ordering: .relaxed))
        }
        return ProgressLine.render(warmingUp: warmingUp.load(ordering: .relaxed), elapsedSeconds: elapsed,
                                   plan: configuration.plan, targets: targets)
    }
}
