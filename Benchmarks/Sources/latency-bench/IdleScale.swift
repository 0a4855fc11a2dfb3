import BenchSupport
import EventLoop
import Foundation

/// Thousands of slow streams open at once (chat's shape: one event a second per stream), per
/// level and path in one run: what each idle-ish stream costs in memory and in wakeups.
///
/// With `--pin`, the client and the mock upstream run on CPU 0 and the proxy under test alone on
/// CPU 1, so the proxy's CPU figures are not its share of a contended core. The network stays the
/// shared loopback. A proxy is `--idle-processes` processes (nginx: workers; the gateway: one-loop
/// processes the client spreads its streams over): a process may hold 20,000 descriptors here
/// and 10,000 proxied streams need 20,000 sockets.
extension LatencyBench {
    struct IdleFigures {
        var path: String
        var streams: Int
        var result: LoadRunner.Result
        var windowSeconds: Double
        var kibPerStream: Double?
        var cpuPerEventMicroseconds: Double?
        var switchesPerEvent: Double?
        var setupCPUPerStreamMicroseconds: Double?
        var cpuShare: Double?
        /// Stalls while the streams were being opened (the rest are the steady state's).
        var rampStalls = 0

        var json: String {
            var extra = ""
            if let kibPerStream { extra += #","rss_kib_per_stream":\#(kibPerStream)"# }
            if let cpuPerEventMicroseconds { extra += #","cpu_us_per_event":\#(cpuPerEventMicroseconds)"# }
            if let switchesPerEvent { extra += #","context_switches_per_event":\#(switchesPerEvent)"# }
            if let setupCPUPerStreamMicroseconds { extra += #","setup_cpu_us_per_stream":\#(setupCPUPerStreamMicroseconds)"# }
            if let cpuShare { extra += #","cpu_share":\#(cpuShare)"# }
            extra += #","ramp_stalls":\#(rampStalls)"#
            return #"{"path":"\#(path)","streams":\#(streams),"window_s":\#(windowSeconds),"events":\#(result.events),"opened":\#(result.opened),"stalls":\#(result.stalls),"stalls_held_in_transit":\#(result.stallsHeldInTransit),"failures":\#(result.failures),"latency_p50_us":\#(result.latency.valueAtPercentile(50)),"latency_p99_us":\#(result.latency.valueAtPercentile(99)),"gap_p99_us":\#(result.gaps.valueAtPercentile(99)),"ttft_p99_us":\#(result.ttft.valueAtPercentile(99))\#(extra)}"#
        }
    }

    /// The config of a gateway that may hold `streams` client connections on one loop.
    func idleConfig(mockPort: Int, streams: Int) throws -> URL {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("latency-bench-idle-\(getpid()).yaml")
        try """
            server: {max_connections: \(streams + 1000)}
            upstream: {keepalive_interval_ms: 60000}
            providers:
              mock: {base_url: 'http://127.0.0.1:\(mockPort)/v1'}
            """.write(to: config, atomically: true, encoding: .utf8)
        return config
    }

    /// Each path at each level gets fresh proxies, stopped before the next path starts: a
    /// proxy's memory is measured from its own idle start, and no proxy's idle upstream
    /// connections count against the mock's descriptors while another runs.
    func runIdle(levels: [Int], mockPort: Int, thread: EventLoopThread) throws -> String {
        let most = levels.max() ?? 0
        let config = try idleConfig(mockPort: mockPort, streams: most)
        defer { try? FileManager.default.removeItem(at: config) }
        let model = "paced:pace_ms=\(idlePaceMs):deltas=\(idleEvents)"
        print("\nslow streams: \(idleEvents) deltas each, \(idlePaceMs) ms apart, opened \(idleBatch) every 20 ms; proxies: "
            + "gateway \(idleProcesses) processes × 1 loop, nginx \(idleProcesses) workers; "
            + (pin ? "client + mock pinned to CPU 0, proxies to CPU 1 (taskset)" : "unpinned"))
        print("cost in the steady window (every stream open, none finished): the proxy's CPU and context switches ÷ events forwarded")
        print("path      streams  KiB/stream  µs CPU/event  switches/event  CPU%   setup µs/stream  lat p50   lat p99   gap p99   stalls+ramp fail")
        var entries: [String] = []
        for level in levels {
            for name in idleDirect ? ["direct", "gateway", "nginx"] : ["gateway", "nginx"] {
                sleep(2)  // the previous path's connections close (TIME_WAIT needs no descriptors)
                var urls = ["http://127.0.0.1:\(mockPort)/v1/chat/completions"]
                var pids: [Int32] = []
                var stops: [() -> Void] = []
                defer { stops.forEach { $0() } }
                if name == "gateway" {
                    urls = []
                    let arguments = ["serve", "--port", "0", "--config", config.path, "--log-level", "error", "--loops", "1"]
                    for _ in 0..<idleProcesses {
                        let process = try pin
                            ? ChildProcess("/usr/bin/taskset", ["-c", "1", gateway] + arguments, banner: "fusion-gateway listening on http://127.0.0.1:")
                            : ChildProcess(gateway, arguments, banner: "fusion-gateway listening on http://127.0.0.1:")
                        stops.append(process.stop)
                        pids.append(process.pid)
                        urls.append("http://127.0.0.1:\(process.port)/v1/chat/completions")
                    }
                } else if name == "nginx" {
                    // A worker holds its share's client and upstream sockets; reuseport spreads them.
                    guard let nginx = try NginxPeer(upstreamPort: mockPort, workers: idleProcesses,
                                                    connectionsPerWorker: 2 * most / idleProcesses + 600, pinCPU: pin ? 1 : nil)
                    else { continue }
                    stops.append(nginx.stop)
                    pids.append(nginx.process.processIdentifier)
                    urls = ["http://127.0.0.1:\(nginx.port)/v1/chat/completions"]
                }
                let figures = try idleLevel(name: name, urls: urls, model: name == "gateway" ? "mock/\(model)" : model,
                                            streams: level, pids: pids, thread: thread)
                entries.append(figures.json)
                func f(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "" }
                let row = [name.padding(toLength: 9, withPad: " ", startingAt: 0), pad(level, 8),
                           f(figures.kibPerStream, "%.1f").padding(toLength: 11, withPad: " ", startingAt: 0),
                           f(figures.cpuPerEventMicroseconds, "%.1f").padding(toLength: 13, withPad: " ", startingAt: 0),
                           f(figures.switchesPerEvent, "%.3f").padding(toLength: 15, withPad: " ", startingAt: 0),
                           f(figures.cpuShare.map { $0 * 100 }, "%.1f").padding(toLength: 6, withPad: " ", startingAt: 0),
                           f(figures.setupCPUPerStreamMicroseconds, "%.0f").padding(toLength: 16, withPad: " ", startingAt: 0),
                           pad(figures.result.latency.valueAtPercentile(50), 9), pad(figures.result.latency.valueAtPercentile(99), 9),
                           pad(figures.result.gaps.valueAtPercentile(99), 9),
                           "\(figures.result.stalls - figures.rampStalls)+\(figures.rampStalls)".padding(toLength: 11, withPad: " ", startingAt: 0), pad(figures.result.failures, 5)]
                print(row.joined(separator: " "))
                if figures.result.stalls > 0 {
                    print("          \(name) stalls: \(figures.result.stallsHeldInTransit) held in transit (arrived over a pace after the mock's send stamp), "
                        + "\(figures.result.stalls - figures.result.stallsHeldInTransit) sent late by the mock")
                }
                for (kind, count) in figures.result.failureKinds.sorted(by: { $0.value > $1.value }).prefix(3) {
                    print("          \(name) failures: \(count) × \(kind)")
                }
                if figures.result.opened < level || figures.windowSeconds < 3 {
                    print("          \(name): \(figures.result.opened) of \(level) streams opened; steady window \(String(format: "%.1f", figures.windowSeconds)) s")
                }
            }
        }
        return "[" + entries.joined(separator: ",") + "]"
    }

    /// One path at one level. The steady window starts a second after the last stream's first
    /// event and ends a second and a half before the first stream's last one is due.
    func idleLevel(name: String, urls: [String], model: String, streams: Int, pids: [Int32], thread: EventLoopThread) throws -> IdleFigures {
        let measured = !pids.isEmpty
        func rss() -> Int { pids.map(ProcessUsage.residentKiBWithChildren).reduce(0, +) }
        func cpu() -> Double { pids.map(ProcessUsage.cpuSecondsWithChildren).reduce(0, +) }
        func switches() -> Int { pids.map(ProcessUsage.contextSwitchesWithChildren).reduce(0, +) }
        let idleRSS = rss()
        let cpuAtStart = cpu()
        let runner = try thread.loop.submitAndWait {
            let runner = LoadRunner(loop: thread.loop, path: name, url: urls[0], model: model, streams: streams, paceMilliseconds: idlePaceMs)
            runner.moreURLs = Array(urls.dropFirst())
            return runner
        }
        let done = DispatchSemaphore(value: 0)
        thread.loop.execute { [idleBatch] in runner.start(batch: idleBatch, everyMilliseconds: 20) { done.signal() } }
        let lastEventDue = UInt64(idleEvents) * UInt64(idlePaceMs) * 1_000_000
        var window: (start: UInt64, cpu: Double, switches: Int, events: Int)?
        var figures = IdleFigures(path: name, streams: streams, result: runner.result, windowSeconds: 0)
        var peakRSS = 0
        while done.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            let (opened, firstOpen, events, completed, failures) = try thread.loop.submitAndWait {
                (runner.result.opened, runner.result.firstOpenNanoseconds, runner.result.events, runner.result.completed, runner.result.failures)
            }
            let now = EventLoop.monotonicNanoseconds()
            // Failed streams count as completed: the window ends when a stream finishes well.
            guard completed == failures, firstOpen > 0 else { continue }
            if window == nil, opened + failures >= streams {
                usleep(1_000_000)
                // Latency and gaps from here on: the steady state, not the ramp's connects.
                let (events, stalls) = try thread.loop.submitAndWait {
                    runner.result.latency.reset()
                    runner.result.gaps.reset()
                    return (runner.result.events, runner.result.stalls)
                }
                figures.rampStalls = stalls
                window = (EventLoop.monotonicNanoseconds(), cpu(), switches(), events)
                if measured { figures.setupCPUPerStreamMicroseconds = (window!.cpu - cpuAtStart) / Double(streams) * 1e6 }
            }
            if measured, window != nil { peakRSS = max(peakRSS, rss()) }
            if let start = window, now + 1_500_000_000 >= firstOpen + lastEventDue, figures.windowSeconds == 0 {
                figures.windowSeconds = Double(now - start.start) / 1e9
                let forwarded = Double(max(events - start.events, 1))
                if measured {
                    let used = cpu() - start.cpu
                    figures.cpuPerEventMicroseconds = used / forwarded * 1e6
                    figures.cpuShare = used / figures.windowSeconds
                    figures.switchesPerEvent = Double(switches() - start.switches) / forwarded
                    figures.kibPerStream = Double(max(0, peakRSS - idleRSS)) / Double(streams)
                }
            }
        }
        figures.result = try thread.loop.submitAndWait { runner.result }
        return figures
    }
}
