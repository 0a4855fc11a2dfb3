import ArgumentParser
import Bench
import BenchRunner
import BenchSupport
import EventLoop
import Foundation
import GatewayCore
import Histogram
import Synchronization
import UpstreamClient

/// Measures what the gateway adds to a stream's latency: the same streams, in the same run,
/// alternately direct to the mock upstream and through the gateway (both separate processes,
/// release builds), timed by one client on its own event loop.
@main
struct LatencyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency-bench",
        abstract: "Time to first token and inter-token gaps, direct vs. through fusion-gateway.")

    @Option(help: "The fusion-gateway binary (release build).")
    var gateway = "../.build/release/fusion-gateway"

    @Option(help: "Streams per path, run one after another.")
    var streams = 300

    @Option(help: "Deltas per stream.")
    var deltas = 16

    @Option(help: "Milliseconds between deltas at the mock.")
    var paceMs = 2

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    @Option(help: "Fusion runs to time end to end (0 skips them).")
    var fusion = 30

    @Option(help: "Concurrent-stream load levels, comma-separated (empty skips the load test).")
    var load = "256,512,1024,2048"

    @Option(help: "Event loops for the gateway under test.")
    var loops = 2

    @Option(help: "Slow-stream levels, comma-separated, e.g. 1000,5000,10000 (empty skips the scale test).")
    var idle = ""

    @Option(help: "Milliseconds between deltas in the slow-stream test.")
    var idlePaceMs = 1000

    @Option(help: "Deltas per slow stream.")
    var idleEvents = 30

    @Option(help: "Slow streams opened per 20 ms (2,500 a second: a ramp the proxies absorb).")
    var idleBatch = 50

    @Option(help: "Processes per proxy in the slow-stream test: nginx workers, or one-loop gateway processes.")
    var idleProcesses = 2

    @Flag(inversion: .prefixedNo, help: "Also time slow streams direct to the mock (the client's and mock's own share).")
    var idleDirect = true

    @Flag(help: "Pin with taskset: this client and the mock on CPU 0, the gateway (one loop) and nginx (one worker) on CPU 1.")
    var pin = false

    @Option(help: "Another fusion-gateway binary (e.g. the last commit's build): its deliberations alternate with the gateway's, one by one, in the same run, so both see the same machine (--fusion).")
    var baseline: String?

    func run() throws {
        let idleLevels = idle.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        // Two descriptors per stream in a proxy, plus slack; children inherit the limit.
        let descriptors = ProcessUsage.raiseDescriptorLimit(to: max(65_536, 3 * (idleLevels.max() ?? 0) + 1000))
        if pin { try ProcessUsage.pinSelf(toCPU: 0) }  // the mock, started next, inherits CPU 0
        print("descriptor limit \(descriptors); \(ProcessInfo.processInfo.activeProcessorCount) CPUs" + (pin ? "; pinned (taskset)" : ""))
        let mock = try ChildProcess(gateway, ["mock-upstream", "--port", "0", "--log-level", "error",
                                              "--max-connections", String(max(4096, min(descriptors - 500, 2 * (idleLevels.max() ?? 0))))],
                                    banner: "mock upstream listening on http://127.0.0.1:")
        defer { mock.stop() }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("latency-bench-\(getpid()).yaml")
        try """
            upstream: {keepalive_interval_ms: 60000}
            providers:
              mock: {base_url: 'http://127.0.0.1:\(mock.port)/v1'}
            fusion:
              outer_model: 'mock/outer:pace_ms=\(paceMs)'
              presets:
                quality: {analysis_models: ['mock/expert-1:pace_ms=\(paceMs)', 'mock/expert-2:pace_ms=\(paceMs)', 'mock/expert-3:pace_ms=\(paceMs)']}
            """.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let serveArguments = ["serve", "--port", "0", "--config", config.path, "--log-level", "error", "--loops", String(loops)]
        func startGateway(_ binary: String) throws -> ChildProcess {
            try pin
                ? ChildProcess("/usr/bin/taskset", ["-c", "1", binary] + serveArguments, banner: "fusion-gateway listening on http://127.0.0.1:")
                : ChildProcess(binary, serveArguments, banner: "fusion-gateway listening on http://127.0.0.1:")
        }
        let gatewayProcess = try startGateway(gateway)
        defer { gatewayProcess.stop() }
        let baselineProcess = try baseline.map(startGateway)
        defer { baselineProcess?.stop() }

        let model = "paced:pace_ms=\(paceMs):deltas=\(deltas)"
        let thread = EventLoopThread(name: "bench-client")
        defer { thread.shutdown() }
        if !idleLevels.isEmpty && streams == 0 {  // the scale test alone
            let idleJSON = try runIdle(levels: idleLevels, mockPort: mock.port, thread: thread)
            if let json { try #"{"idle":\#(idleJSON)}"#.write(toFile: json, atomically: true, encoding: .utf8) }
            return
        }
        var report = try oneStreamAtATime(direct: BenchTarget(label: "direct", baseURL: "http://127.0.0.1:\(mock.port)/v1",
                                                              model: model, apiKey: nil),
                                          gateway: BenchTarget(label: "gateway", baseURL: "http://127.0.0.1:\(gatewayProcess.port)/v1",
                                                               model: "mock/\(model)", apiKey: nil))
        print(report.table)
        if fusion > 0 {
            let url = "http://127.0.0.1:\(gatewayProcess.port)/v1/chat/completions"
            let fusionRunner = try thread.loop.submitAndWait { [fusion] in FusionRunner(loop: thread.loop, url: url, runs: fusion) }
            let baselineRunner = try baselineProcess.map(\.port).map { port in
                try thread.loop.submitAndWait { [fusion] in
                    FusionRunner(loop: thread.loop, url: "http://127.0.0.1:\(port)/v1/chat/completions", runs: fusion)
                }
            }
            let fusionDone = DispatchSemaphore(value: 0)
            thread.loop.execute {
                if let baselineRunner {
                    // Strictly alternating, one deliberation at a time: gateway, baseline, gateway, …
                    fusionRunner.handoff = { baselineRunner.next() }
                    baselineRunner.handoff = { fusionRunner.next() }
                    baselineRunner.completion = {}
                }
                fusionRunner.start { fusionDone.signal() }
            }
            fusionDone.wait()
            let fusionReport = try thread.loop.submitAndWait { fusionRunner.report() }
            if let baselineRunner, let baseline {
                let baselineReport = try thread.loop.submitAndWait { baselineRunner.report() }
                print("gateway: \(gateway)\n" + fusionReport.table + "baseline: \(baseline)\n" + baselineReport.table)
                report.json = String(report.json.dropLast()) + #","fusion":\#(fusionReport.json),"fusion_baseline":\#(baselineReport.json)}"#
            } else {
                print(fusionReport.table)
                report.json = String(report.json.dropLast()) + #","fusion":\#(fusionReport.json)}"#
            }
        }
        let levels = load.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        if !levels.isEmpty {
            let loadJSON = try runLoad(levels: levels, mockPort: mock.port, configPath: config.path, thread: thread)
            report.json = String(report.json.dropLast()) + #","load":\#(loadJSON)}"#
        }
        if !idleLevels.isEmpty {
            let idleJSON = try runIdle(levels: idleLevels, mockPort: mock.port, thread: thread)
            report.json = String(report.json.dropLast()) + #","idle":\#(idleJSON)}"#
        }
        if let json {
            try report.json.write(toFile: json, atomically: true, encoding: .utf8)
            print("wrote \(json)")
        }
    }

    /// Concurrent paced streams (64 deltas, 20 ms apart) per level and path, in one run. The
    /// gateway and nginx are started afresh for each level, so a level's memory per open stream
    /// is (peak RSS during the level − the fresh process's idle RSS) / streams: a process that
    /// kept the memory of an earlier level would understate it.
    func runLoad(levels: [Int], mockPort: Int, configPath: String, thread: EventLoopThread) throws -> String {
        let model = "paced:pace_ms=20:deltas=64"
        print("\nconcurrent streams: 64 deltas each, 20 ms apart; latency = arrival − mock's send stamp (µs)")
        print("path      streams  lat p50   lat p99   gap p50   gap p99   stalls  fail  +lat p50  +lat p99  +gap p99")
        var entries: [String] = []
        var maxWithoutStalls: [String: Int] = [:]
        var ratios: [String] = []
        var loopCPU: [String: Double] = [:]
        for level in levels {
            // Fresh for this level (nginx: its master and workers, whose RSS is summed).
            let gatewayProcess = try ChildProcess(gateway, ["serve", "--port", "0", "--config", configPath, "--log-level", "error",
                                                            "--loops", String(loops)],
                                                  banner: "fusion-gateway listening on http://127.0.0.1:")
            defer { gatewayProcess.stop() }
            let gatewayPID = gatewayProcess.process.processIdentifier
            let nginx = try NginxPeer(upstreamPort: mockPort)
            defer { nginx?.stop() }
            var paths = [("direct", "http://127.0.0.1:\(mockPort)/v1/chat/completions", model),
                         ("gateway", "http://127.0.0.1:\(gatewayProcess.port)/v1/chat/completions", "mock/\(model)")]
            if let nginx { paths.append(("nginx", "http://127.0.0.1:\(nginx.port)/v1/chat/completions", model)) }
            var direct: LoadRunner.Result?
            var addedGap: [String: Int64] = [:]
            var tokenCPU: [String: Double] = [:]
            var memory: [String: Double] = [:]
            for (name, url, pathModel) in paths {
                usleep(300_000)  // let the previous path's connections close
                let measuredPID: Int32? = name == "gateway" ? gatewayPID : (name == "nginx" ? nginx?.process.processIdentifier : nil)
                let idleRSS = measuredPID.map { ProcessUsage.residentKiBWithChildren($0) } ?? 0
                let cpuBefore = measuredPID.map { ProcessUsage.cpuSecondsWithChildren($0) } ?? 0
                let runner = try thread.loop.submitAndWait {
                    LoadRunner(loop: thread.loop, path: name, url: url, model: pathModel, streams: level, paceMilliseconds: 20)
                }
                let done = DispatchSemaphore(value: 0)
                thread.loop.execute { runner.start { done.signal() } }
                // While the streams run (64 × 20 ms), sample the proxy's memory.
                var peakRSS = 0
                if let measuredPID {
                    while done.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
                        peakRSS = max(peakRSS, ProcessUsage.residentKiBWithChildren(measuredPID))
                    }
                } else {
                    done.wait()
                }
                let result = try thread.loop.submitAndWait { runner.result }
                if result.stalls == 0 && result.failures == 0 { maxWithoutStalls[name] = max(maxWithoutStalls[name] ?? 0, level) }
                if name == "direct" { direct = result }
                var added = ["", "", ""]
                if let direct, name != "direct" {
                    added = [signed(result.latency.valueAtPercentile(50), direct.latency.valueAtPercentile(50)),
                             signed(result.latency.valueAtPercentile(99), direct.latency.valueAtPercentile(99)),
                             signed(result.gaps.valueAtPercentile(99), direct.gaps.valueAtPercentile(99))]
                }
                if let measuredPID {
                    tokenCPU[name] = (ProcessUsage.cpuSecondsWithChildren(measuredPID) - cpuBefore) / Double(max(result.events, 1))
                    memory[name] = Double(max(0, peakRSS - idleRSS)) / Double(level)
                }
                if let direct { addedGap[name] = Int64(result.gaps.valueAtPercentile(99)) - Int64(direct.gaps.valueAtPercentile(99)) }
                let row = [name.padding(toLength: 10, withPad: " ", startingAt: 0), pad(level, 7),
                           pad(result.latency.valueAtPercentile(50), 9), pad(result.latency.valueAtPercentile(99), 9),
                           pad(result.gaps.valueAtPercentile(50), 9), pad(result.gaps.valueAtPercentile(99), 9),
                           pad(result.stalls, 7), pad(result.failures, 5)] + added.map { $0.padding(toLength: 9, withPad: " ", startingAt: 0) }
                print(row.joined(separator: " "))
                if let cpu = tokenCPU[name], let perStream = memory[name] {
                    print(String(format: "          %@: +%.1f KiB resident per open stream (fresh process), %.2f µs CPU per forwarded token",
                                 name, perStream, cpu * 1e6))
                }
                var extra = ""
                if let cpu = tokenCPU[name] { extra += #","cpu_us_per_token":\#(cpu * 1e6)"# }
                if let perStream = memory[name] { extra += #","rss_kib_per_stream":\#(perStream)"# }
                entries.append(#"{"path":"\#(name)","streams":\#(level),"latency_p50_us":\#(result.latency.valueAtPercentile(50)),"latency_p99_us":\#(result.latency.valueAtPercentile(99)),"gap_p50_us":\#(result.gaps.valueAtPercentile(50)),"gap_p99_us":\#(result.gaps.valueAtPercentile(99)),"ttft_p50_us":\#(result.ttft.valueAtPercentile(50)),"ttft_p99_us":\#(result.ttft.valueAtPercentile(99)),"stalls":\#(result.stalls),"failures":\#(result.failures),"events":\#(result.events)\#(extra)}"#)
            }
            for (thread, seconds) in ProcessUsage.threadCPU(gatewayPID, prefix: "fusion-loop") { loopCPU[thread, default: 0] += seconds }
            if let gateway = tokenCPU["gateway"], let peer = tokenCPU["nginx"], peer > 0 {
                let memoryRatio = (memory["nginx"] ?? 0) > 0 ? String(format: "%.2f×", (memory["gateway"] ?? 0) / memory["nginx"]!) : "n/a"
                ratios.append(String(format: "%d streams: CPU/token %.2f×, memory/stream %@, added gap p99 %@", level, gateway / peer, memoryRatio,
                                     addedGap["nginx"].map { $0 > 0 ? String(format: "%.2f×", Double(addedGap["gateway"] ?? 0) / Double($0)) : "n/a" } ?? "n/a"))
            }
        }
        print("gateway ÷ nginx: " + ratios.joined(separator: "; "))
        print("gateway CPU seconds per loop thread (all levels, startup included): "
            + loopCPU.sorted { $0.key < $1.key }.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "))
        print("most concurrent streams without stalls: " + maxWithoutStalls.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        return "[" + entries.joined(separator: ",") + "]"
    }

    func pad(_ value: some BinaryInteger, _ width: Int) -> String {
        String(value).padding(toLength: width, withPad: " ", startingAt: 0)
    }

    func signed(_ value: UInt64, _ base: UInt64) -> String {
        let difference = Int64(value) - Int64(base)
        return difference >= 0 ? "+\(difference)" : "\(difference)"
    }
}

extension LatencyBench {
    /// One stream at a time, alternating direct and gateway: `fusion-gateway bench --compare` with
    /// concurrency 1 (the Bench library's client and metric definitions), 10 warm-up streams per
    /// path. Gaps are its ITL: between consecutive content events.
    func oneStreamAtATime(direct: BenchTarget, gateway: BenchTarget) throws -> (table: String, json: String) {
        let plan = try LoadPlan(shape: .closedLoop(concurrency: 1), stop: StopCondition(requestsPerTarget: streams),
                                targets: 2, loops: 1)
        let configuration = BenchConfiguration(targets: [direct, gateway], plan: plan,
                                               prompts: PromptSet(prompts: [Prompt(text: "bench")], source: "latency-bench"),
                                               warmupRequests: 10, requestTimeoutMilliseconds: 30_000)
        let report = try BenchRunner(configuration: configuration).run()
        /// p50, p99 of TTFT and ITL in µs.
        func figures(_ target: TargetReport) -> [Int64] {
            [Metric.ttft, .itl].flatMap { metric in
                let summary = target.results[metric].summary
                return [summary?.p50 ?? 0, summary?.p99 ?? 0].map { Int64(($0 * 1000).rounded()) }
            }
        }
        func ms(_ micros: Int64, signed: Bool = false) -> String { String(format: signed ? "%+.3f" : "%.3f", Double(micros) / 1000) }
        let failures = report.targets.map(\.results.failed).reduce(0, +)
        var table = "streams per path: \(streams), failures: \(failures)\n"
        table += "path      TTFT p50   TTFT p99   gap p50    gap p99   (ms)\n"
        var entries: [String] = []
        for target in report.targets {
            let values = figures(target)
            table += target.info.label.padding(toLength: 10, withPad: " ", startingAt: 0)
                + values.map { ms($0).padding(toLength: 11, withPad: " ", startingAt: 0) }.joined() + "\n"
            entries.append(#""\#(target.info.label)":{"ttft_p50_us":\#(values[0]),"ttft_p99_us":\#(values[1]),"gap_p50_us":\#(values[2]),"gap_p99_us":\#(values[3])}"#)
        }
        let added = zip(figures(report.targets[1]), figures(report.targets[0])).map { $0 - $1 }
        table += "added     " + added.map { ms($0, signed: true).padding(toLength: 11, withPad: " ", startingAt: 0) }.joined() + "\n"
        entries.append(#""added":{"ttft_p50_us":\#(added[0]),"ttft_p99_us":\#(added[1]),"gap_p50_us":\#(added[2]),"gap_p99_us":\#(added[3])}"#)
        return (table, "{" + entries.joined(separator: ",") + #","streams_per_path":\#(streams),"failures":\#(failures)}"#)
    }
}

/// Runs streamed fusion requests one after another and compares each end-to-end time with the
/// critical path of its upstream calls (outer + slowest member + judge(s) + final outer), as
/// timed by the gateway and reported in the usage breakdown. The difference is what the gateway
/// adds to a deliberation: parsing, scheduling the phases, writing progress, extra hops.
///
/// The usage breakdown times a call from the session's decision to its handling of the end, so
/// that path holds the gateway's work on each call too (building the request, handling the end).
/// The second figure takes each call's `upstream_time` from the generation record instead (from
/// the request handed to curl to the answer's final event): end to end less that path is all of
/// the gateway's time on the critical path.
final class FusionRunner: @unchecked Sendable {  // loop-confined after creation
    let loop: EventLoop
    let client: UpstreamClient
    let url: String
    var remaining: Int
    let runs: Int
    var overhead = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var total = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var critical = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var upstreamPath = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var gatewayTime = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var failures = 0
    var completion: () -> Void = {}
    /// What runs after each deliberation: the next one here, or (with a baseline) the other
    /// gateway's next.
    var handoff: (() -> Void)?

    init(loop: EventLoop, url: String, runs: Int) {
        self.loop = loop
        client = UpstreamClient(loop: loop)
        self.url = url
        self.runs = runs
        remaining = runs + 3  // the first 3 warm up
    }

    func start(_ completion: @escaping () -> Void) {
        self.completion = completion
        next()
    }

    func next() {
        guard remaining > 0 else {
            client.close()
            completion()
            return
        }
        remaining -= 1
        let record = remaining < runs
        let body = #"{"model":"fusion","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}"#
        let started = EventLoop.monotonicNanoseconds()
        var decoder = SSEDecoder()
        var calls: [JSONValue] = []
        var done = false
        var doneAt: UInt64?
        var generationID: String?
        let transfer = client.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: Array(body.utf8)))
        transfer.onHead = { _, headers in generationID = headers.first { $0.0.lowercased() == "x-generation-id" }?.1 }
        transfer.onData = { bytes in
            // The response ends when `[DONE]`'s bytes arrive: the client's own parsing after that
            // (the usage chunk is a few KiB) is not the gateway's time.
            let arrived = EventLoop.monotonicNanoseconds()
            try? decoder.feed(bytes) { event in
                if event.isDone { done = true; doneAt = arrived; return }
                // Only the usage chunk is read: parsing every token's chunk would take the
                // gateway's CPU on a 2-core machine.
                guard Self.mentionsCalls(event.data) else { return }
                if let chunk = try? JSONValue.parse(Array(event.data)), let list = chunk["usage"]?["fusion"]?["calls"]?.arrayValue {
                    calls = list
                }
            }
            return true
        }
        transfer.onComplete = { [unowned self] failure in
            let elapsed = ((doneAt ?? EventLoop.monotonicNanoseconds()) - started) / 1000
            if failure != nil || !done || calls.isEmpty {
                failures += 1
            } else if record {
                func duration(_ role: String) -> [Double] {
                    calls.filter { $0["role"]?.stringValue == role }.compactMap { $0["duration_ms"]?.doubleValue }
                }
                let path = (duration("outer").reduce(0, +) + (duration("panel").max() ?? 0) + duration("judge").reduce(0, +)
                            + duration("outer_final").reduce(0, +)) * 1000
                _ = total.record(elapsed)
                _ = critical.record(UInt64(path))
                _ = overhead.record(elapsed > UInt64(path) ? elapsed - UInt64(path) : 0)
                if let generationID {
                    fetchUpstreamPath(generationID, attemptsLeft: 20) { [unowned self] upstream in
                        if let upstream {
                            _ = upstreamPath.record(upstream)
                            _ = gatewayTime.record(elapsed > upstream ? elapsed - upstream : 0)
                        } else {
                            failures += 1
                        }
                        (handoff ?? next)()
                    }
                    return
                }
                failures += 1
            }
            loop.deferToNextIteration { [unowned self] in (handoff ?? next)() }
        }
    }

    private static let callsKey = Data(#""calls":"#.utf8)

    static func mentionsCalls(_ bytes: UnsafeRawBufferPointer) -> Bool {
        Data(bytes).range(of: callsKey) != nil
    }

    /// The critical path of the deliberation's upstream calls, in µs, from its generation record's
    /// `inner_calls[].upstream_time` (the record is filed as the response ends: asked again a few
    /// times if it is not there yet). nil if it never came or a call has no upstream time.
    private func fetchUpstreamPath(_ id: String, attemptsLeft: Int, _ done: @escaping (UInt64?) -> Void) {
        let recordURL = url.replacingOccurrences(of: "/v1/chat/completions", with: "/api/v1/generation?id=") + id
        var body: [UInt8] = []
        var status = 0
        let transfer = client.start(UpstreamRequest(url: recordURL, method: "GET", headers: [], body: []))
        transfer.onHead = { code, _ in status = code }
        transfer.onData = { bytes in body += bytes; return true }
        transfer.onComplete = { [unowned self] failure in
            guard failure == nil, status == 200, let calls = (try? JSONValue.parse(body))?["data"]?["inner_calls"]?.arrayValue else {
                if attemptsLeft > 0 {
                    var retry: LoopTimer?  // held by its own callback until it fires
                    retry = LoopTimer(loop: loop) { [unowned self] in
                        retry?.close()
                        retry = nil
                        fetchUpstreamPath(id, attemptsLeft: attemptsLeft - 1, done)
                    }
                    retry?.start(afterMilliseconds: 5)
                } else {
                    done(nil)
                }
                return
            }
            func upstream(_ role: String) -> [Double]? {
                let times = calls.filter { $0["role"]?.stringValue == role }.map { $0["upstream_time"]?.doubleValue }
                return times.contains(nil) ? nil : times.compactMap { $0 }
            }
            guard let outer = upstream("outer"), let panel = upstream("panel"), let judge = upstream("judge"),
                  let final = upstream("outer_final") else { done(nil); return }
            done(UInt64((outer.reduce(0, +) + (panel.max() ?? 0) + judge.reduce(0, +) + final.reduce(0, +)) * 1000))
        }
    }

    func report() -> (table: String, json: String) {
        func ms(_ micros: UInt64) -> String { String(format: "%.3f", Double(micros) / 1000) }
        var table = "fusion runs: \(runs), failures: \(failures) (3 members, judge, two outer calls; mock pacing)\n"
        table += "               p50        p99       (ms)\n"
        for (name, histogram) in [("end to end", total), ("critical path", critical), ("added", overhead),
                                  ("upstream path", upstreamPath), ("gateway time", gatewayTime)] {
            table += name.padding(toLength: 15, withPad: " ", startingAt: 0)
                + ms(histogram.valueAtPercentile(50)).padding(toLength: 11, withPad: " ", startingAt: 0)
                + ms(histogram.valueAtPercentile(99)) + "\n"
        }
        let json = #"{"runs":\#(runs),"failures":\#(failures),"end_to_end_p50_us":\#(total.valueAtPercentile(50)),"critical_path_p50_us":\#(critical.valueAtPercentile(50)),"added_p50_us":\#(overhead.valueAtPercentile(50)),"added_p99_us":\#(overhead.valueAtPercentile(99)),"upstream_path_p50_us":\#(upstreamPath.valueAtPercentile(50)),"gateway_time_p50_us":\#(gatewayTime.valueAtPercentile(50)),"gateway_time_p99_us":\#(gatewayTime.valueAtPercentile(99))}"#
        return (table, json)
    }
}

