import ArgumentParser
import Bench
import BenchRunner
import Dispatch
import Foundation
import Synchronization

/// `fusion-gateway bench`: latency of any OpenAI-compatible endpoint, or two side by side. Only
/// option parsing and output here: the load generator is BenchRunner, the measurement Bench.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure an OpenAI-compatible endpoint: TTFT, inter-token latency, TPOT, end-to-end latency, throughput, errors.",
        discussion: """
            Examples:
              fusion-gateway bench http://127.0.0.1:8080/v1 --model sim/paced \\
                  --concurrency 8 --requests 200
              fusion-gateway bench https://openrouter.ai/api/v1 --model openai/gpt-4o \\
                  --api-key-env OPENROUTER_API_KEY --rate 2 --duration 60 \\
                  --max-concurrency 16 --json results.json --html report.html
              fusion-gateway bench http://127.0.0.1:8090/v1 --model paced \\
                  --compare http://127.0.0.1:8080/v1 --compare-model sim/paced

            Errors are counted by kind: http_4xx, http_5xx, http_other, stream_error (a chunk carrying an error), \
            truncated (no [DONE] or connection lost), malformed (not SSE/JSON, oversized, invalid usage), empty (no \
            content), timeout, connect, interrupted (abandoned in flight when the run stopped and --drain ran out). \
            Ctrl-C once: stop issuing and drain; twice: abandon what is in flight and report; three times: quit. \
            Exit status 1 when a target had no successful request.

            \(BenchReport.definitions)
            """)

    // Numeric options take the next argument whatever it looks like (`.unconditional`): by
    // default `--requests -5` reads `-5` as an unknown option and says "Missing value", where
    // the range check below says what is allowed.

    @Argument(help: "Base URL of the OpenAI-compatible API (http://host:port/v1), or its /chat/completions URL.")
    var url: String

    @Option(help: "Model to ask for.")
    var model: String

    @Option(name: .customLong("api-key-env"), help: "Environment variable holding the API key (sent as a Bearer token).")
    var apiKeyEnv: String?

    @Option(help: "JSON Lines prompt file: {\"prompt\": \"…\"} or {\"messages\": […]} per line, optional max_tokens (default: 8 built-in prompts).")
    var prompts: String?

    @Option(parsing: .unconditional, help: "max_tokens for prompts that do not set their own (default: the server's).")
    var maxTokens: Int?

    @Option(parsing: .unconditional, help: "Closed loop: streams open at once, each sending its next request when the last ends (default 1).")
    var concurrency: Int?

    @Option(parsing: .unconditional, help: "Open loop: requests per second (total over both targets with --compare).")
    var rate: Double?

    @Option(help: "Open-loop arrivals: poisson (default) or constant.")
    var arrivals: String?

    @Option(parsing: .unconditional, help: "Open loop: most requests in flight; later arrivals wait for a slot (reported as queue wait).")
    var maxConcurrency: Int?

    @Option(parsing: .unconditional, help: "Measured requests per target (default 100 unless --duration).")
    var requests: Int?

    @Option(parsing: .unconditional, help: "Seconds to keep issuing requests; those in flight then finish and count.")
    var duration: Double?

    @Option(parsing: .unconditional, help: "Warm-up requests per target, sent first and left out of every figure.")
    var warmup = 2

    @Flag(name: .customLong("no-stream"), help: "Ask for whole responses (stream: false): no TTFT, ITL or TPOT then.")
    var noStream = false

    @Option(help: "A second endpoint: both run interleaved (same prompts, same order) and the report adds its ratios to the first.")
    var compare: String?

    @Option(help: "Model for the --compare endpoint (default: --model).")
    var compareModel: String?

    @Option(name: .customLong("compare-api-key-env"), help: "Environment variable with the --compare endpoint's key (default: none; the first key is never sent to the second endpoint).")
    var compareApiKeyEnv: String?

    @Option(parsing: .unconditional, help: "Event loops generating the load, one thread each.")
    var loops = 1

    @Option(parsing: .unconditional, help: "Seconds before a request is abandoned (counted as a timeout).")
    var timeout = 300.0

    @Option(parsing: .unconditional, help: "Once the run stops issuing (--duration over, or Ctrl-C), seconds the requests in flight may take to finish; then they are abandoned (counted as interrupted).")
    var drain = 30.0

    @Option(help: "Write the JSON report (schema fusion-gateway-bench/1) to this file, or - for stdout (the text report then goes to stderr).")
    var json: String?

    @Option(help: "Write a self-contained HTML report (inline SVG charts) to this file.")
    var html: String?

    @Flag(help: "No progress line on stderr.")
    var quiet = false

    func validate() throws {
        if concurrency != nil && rate != nil { throw ValidationError("--concurrency (closed loop) and --rate (open loop) exclude each other") }
        if maxConcurrency != nil && rate == nil { throw ValidationError("--max-concurrency applies to --rate") }
        if arrivals != nil && rate == nil { throw ValidationError("--arrivals applies to --rate") }
        if ArrivalProcess(rawValue: arrivals ?? "poisson") == nil { throw ValidationError("--arrivals is poisson or constant") }
        if model.isEmpty || compareModel?.isEmpty == true { throw ValidationError("--model and --compare-model cannot be empty") }
        // As the URL's: a model name never holds them, and the reports would print them raw
        // (review 103 #5: an OSC sequence in `--model` set the terminal's title).
        for name in [model] + (compareModel.map { [$0] } ?? []) where TerminalText.shown(name) != name {
            throw ValidationError("\(TerminalText.shown(name)): no control or format characters in a model name")
        }
        if compare == nil && (compareModel != nil || compareApiKeyEnv != nil) {
            throw ValidationError("--compare-model and --compare-api-key-env need --compare")
        }
        if !(0...1_000_000).contains(warmup) { throw ValidationError("--warmup is 0 to 1000000 requests per target") }
        // At least a millisecond: curl counts in them, and 0 is "never" to it (review 48 bench #8).
        if !(timeout >= 0.001 && timeout < 86_400) { throw ValidationError("--timeout is seconds, at least 0.001 and less than a day") }
        if !(drain >= 0 && drain < 86_400) { throw ValidationError("--drain is seconds, at least 0 and less than a day") }
        if html == "-" { throw ValidationError("--html needs a file name (the report is a whole HTML page)") }
        if let json, json != "-", let html, Self.sameFile(json, html) {
            throw ValidationError("--json and --html name the same file; one report would overwrite the other")
        }
        // The bound a prompt file's `max_tokens` has (and a usage count the bench believes).
        if let maxTokens, !(1...ResponseRecorder.maxUsageTokens).contains(maxTokens) {
            throw ValidationError("--max-tokens is 1 to \(ResponseRecorder.maxUsageTokens)")
        }
        // Built here once to be checked (and again in `run`): an error thrown from `run` is
        // printed with the root command's usage, not the bench's.
        _ = try makeConfiguration()
        // Where the reports go is checked before the run, not found unwritable after it; last,
        // and without emptying a file that is there (review 48 bench #7: a refused command line
        // truncated the previous report).
        for path in [json, html].compactMap({ $0 }) where path != "-" {
            if let problem = ReportFile(path).problem { throw ValidationError("cannot write \(TerminalText.shown(path)): \(problem)") }
        }
    }

    func run() throws {
        let configuration = try makeConfiguration()
        let runner = BenchRunner(configuration: configuration)
        let interrupt = interruptHandler(runner)
        let terminal = isatty(STDERR_FILENO) == 1
        let report = try runner.run(progressInterval: terminal ? 0.5 : 5) { line in
            guard !quiet else { return }
            // On a terminal the line is redrawn in place; in a log, one line every 5 s.
            Console.error(terminal ? "\r\u{1B}[2K" + line : line + "\n")
        }
        interrupt.forEach { $0.cancel() }
        // Ctrl-C works again while the reports are written (review 64A #9).
        for number in [SIGINT, SIGTERM] { signal(number, SIG_DFL) }
        if terminal && !quiet { Console.error("\r\u{1B}[2K") }

        let text = TextReport.render(report)
        Console.write(text, to: json == "-" ? STDERR_FILENO : STDOUT_FILENO)
        if let json {
            let data = try JSONReport(report).encoded()
            if json == "-" {
                Console.out(data + Data("\n".utf8))
            } else {
                try ReportFile(json).write(data)
                Console.error("wrote \(TerminalText.shown(json))\n")
            }
        }
        if let html {
            try ReportFile(html).write(Data(HTMLReport.render(report).utf8))
            Console.error("wrote \(TerminalText.shown(html))\n")
        }
        if report.settings.interrupted == true { throw ExitCode(130) }  // reported, but not the run asked for
        if report.targets.contains(where: { $0.results.succeeded == 0 }) { throw ExitCode(1) }
    }

    /// The two paths name one file: the same path once links are followed (a link to the other,
    /// review 64A #5), or one file under two names (a hard link).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        let resolved = [a, b].map(Self.followingLinks)
        if resolved[0] == resolved[1] { return true }
        var first = stat(), second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }

    /// `path` with its links followed, a link whose target does not exist yet included (the
    /// report will create it there: review 65 #6), at most 16 hops.
    static func followingLinks(_ path: String) -> String {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        for _ in 0..<16 {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) else { break }
            url = URL(fileURLWithPath: target, relativeTo: url.deletingLastPathComponent()).standardizedFileURL
        }
        // Links among the directories above it too.
        let directory = url.deletingLastPathComponent().resolvingSymlinksInPath()
        return directory.appendingPathComponent(url.lastPathComponent).standardizedFileURL.path
    }

    /// A prompts file, read and parsed once per process (`validate` and `run` both build the
    /// configuration, and a pipe, `/dev/stdin` or `<(…)`, can be read only once: review 64A #6;
    /// parsed twice, a 200 MB file took twice as long: review 127 #5). Its bytes are not kept.
    private static let promptFiles = Mutex<[String: PromptSet]>([:])
    /// Far above any prompt set (the built-in one is a few KiB).
    static let maxPromptFileBytes = 256 << 20

    static func promptSet(_ path: String) throws -> PromptSet {
        if let set = promptFiles.withLock({ $0[path] }) { return set }
        let bytes = try promptBytes(path)
        let set: PromptSet
        do {
            set = try PromptSet.parse(jsonLines: bytes, source: path)  // the text report shows it escaped
        } catch {
            throw ValidationError("\(TerminalText.shown(path)): \(error)")
        }
        promptFiles.withLock { $0[path] = set }
        return set
    }

    static func promptBytes(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ValidationError("cannot read \(TerminalText.shown(path)): a directory, not a JSON Lines file")
        }
        var bytes: [UInt8] = []
        do {
            // Not `Data(contentsOf:)`, which refuses what is not a regular file; read a piece at a
            // time up to a bound (review 121 #6: `/dev/zero` grew without end).
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            while let piece = try handle.read(upToCount: 1 << 20), !piece.isEmpty {
                bytes += piece
                guard bytes.count <= Self.maxPromptFileBytes else {
                    throw ValidationError("cannot read \(TerminalText.shown(path)): larger than \(Self.maxPromptFileBytes >> 20) MiB, which no prompt set is")
                }
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("cannot read \(TerminalText.shown(path)): \(error.localizedDescription)")
        }
        return bytes
    }

    func makeConfiguration() throws -> BenchConfiguration {
        let environment = ProcessInfo.processInfo.environment
        func key(_ name: String?) throws -> String? {
            guard let name else { return nil }
            // Trimmed as the gateway trims its keys (a line end from `echo` is not part of it).
            guard let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                throw ValidationError("environment variable \(TerminalText.shown(name)) is not set")
            }
            return value
        }
        var targets = [BenchTarget(label: "A", baseURL: url, model: model, apiKey: try key(apiKeyEnv))]
        if let compare {
            targets.append(BenchTarget(label: "B", baseURL: compare, model: compareModel ?? model,
                                       apiKey: try key(compareApiKeyEnv)))
        }
        for base in [url] + (compare.map { [$0] } ?? []) {
            if let problem = BenchTarget.problem(withBaseURL: base) { throw ValidationError(problem) }
        }
        let shape: LoadShape = rate.map { .openLoop(rate: $0, arrivals: ArrivalProcess(rawValue: arrivals ?? "poisson")!, maxConcurrency: maxConcurrency) }
            ?? .closedLoop(concurrency: concurrency ?? 1)
        let stop = StopCondition(requestsPerTarget: requests ?? (duration == nil ? 100 : nil), durationSeconds: duration)
        let plan: LoadPlan
        do {
            plan = try LoadPlan(shape: shape, stop: stop, targets: targets.count, loops: loops)
        } catch {
            throw ValidationError(error.description)
        }
        let promptSet = try prompts.map(Self.promptSet) ?? .builtIn
        return BenchConfiguration(targets: targets, plan: plan, prompts: promptSet, streamed: !noStream, maxTokens: maxTokens,
                                  warmupRequests: warmup, requestTimeoutMilliseconds: Int(timeout * 1000),
                                  drainMilliseconds: Int(drain * 1000))
    }

    /// Ctrl-C (or SIGTERM, as `timeout` sends) once: stop issuing, let requests in flight
    /// finish within `--drain`, report. Twice: abandon them now and report (`timeout` signals
    /// the process and its group, so one `timeout` may deliver two). Three times: quit.
    func interruptHandler(_ runner: BenchRunner) -> [any DispatchSourceSignal] {
        nonisolated(unsafe) var signals = 0  // read and written on `queue` only
        let queue = DispatchQueue(label: "bench-signals")
        return [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                signals += 1
                let name = number == SIGINT ? "Ctrl-C" : "SIGTERM"
                switch signals {
                case 1:
                    runner.requestStop()
                    let message = "\nstopping (\(name)): finishing the requests in flight, for up to \(drain) s (again: abandon them and report)\n"
                    Console.error(message)
                case 2:
                    runner.abandonInFlight()
                    Console.error("\nstopping (\(name)): abandoning the requests in flight (again quits)\n")
                default:
                    Foundation.exit(130)
                }
            }
            source.resume()
            return source
        }
    }
}
