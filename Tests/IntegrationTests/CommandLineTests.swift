import Foundation
import Testing

/// The `fusion-gateway` binary (built next to the test bundle) refuses numbers it cannot use
/// with a clear message and a usage error, instead of trapping later in a conversion.
@Suite struct CommandLineTests {
    static var binary: URL {
        // The test bundle lives in the build directory, next to the executables.
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fusion-gateway")
    }

    /// `openFiles`: the run's open-file limit, soft and hard (through the shell's `ulimit`).
    func run(_ arguments: [String], openFiles: Int? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        if let openFiles {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFiles) && exec \"$0\" \"$@\"", Self.binary.path] + arguments
        } else {
            process.executableURL = Self.binary
            process.arguments = arguments
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(arguments: [
        (["serve", "--port", "65536"], "--port must be in 0...65535"),
        (["serve", "--port=-1"], "--port must be in 0...65535"),
        (["serve", "--port", "-1"], "--port must be in 0...65535"),
        (["mock-upstream", "--port", "-5"], "--port must be in 0...65535"),
        (["serve", "--port", "99999999999999999999"], "is invalid for '--port"),
        (["mock-upstream", "--port", "70000"], "--port must be in 0...65535"),
        (["mock-upstream", "--max-connections", "0"], "--max-connections must be 1...1000000"),
        (["mock-upstream", "--max-connections", "1000001"], "--max-connections must be 1...1000000"),
        (["serve", "--loops", "0"], "--loops must be in 1...1024"),
        (["serve", "--loops", "100000"], "--loops must be in 1...1024"),
        (["serve", "--log-format", "xml"], "--log-format must be text or json"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--compare", "http://127.0.0.1:2/v1", "--warmup", "9223372036854775807"],
         "--warmup is 0 to 1000000"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--warmup=-1"], "--warmup is 0 to 1000000"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--timeout", "0.0004"], "--timeout is seconds, at least 0.001"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", "/"], "cannot write /: it is a directory"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", "/dev/fd/abc"], "it names no descriptor"),
        // What would reach the terminal raw, and what the bench would not believe (review 103 #5, #11).
        (["bench", "http://127.0.0.1:1/v1", "--model", "m\u{1B}]0;title\u{7}"], #""m\u{1B}]0;title\u{7}": no control or format characters in a model name"#),
        (["bench", "http://127.0.0.1:1/v1", "--model", "ok\u{9B}31m\u{202E}"], #""ok\u{9B}31m\u{202E}": no control or format characters"#),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--api-key-env", "K\u{1B}]0;T\u{7}"], #"environment variable "K\u{1B}]0;T\u{7}" is not set"#),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", "/nonexistent/r\u{1B}]0;T\u{7}.json"], #"cannot write "/nonexistent/r\u{1B}]0;T\u{7}.json""#),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--compare", "http://127.0.0.1:2/v1", "--compare-model", "b\u{202E}"],
         "no control or format characters in a model name"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--prompts", "/tmp"], "cannot read /tmp: a directory, not a JSON Lines file"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--prompts", "/dev/zero"], "cannot read /dev/zero: larger than 256 MiB"),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--prompts", "/nonexistent\u{1B}[2J"], #"cannot read "/nonexistent\u{1B}[2J""#),
        (["bench", "http://127.0.0.1:1/v1", "--model", "m", "--max-tokens", "9223372036854775807"], "--max-tokens is 1 to 100000000"),
        (["bench", "http://[::1/v1", "--model", "m"], "an IPv6 address needs its closing bracket"),
    ])
    func outOfRangeNumbersAreUsageErrors(arguments: [String], message: String) throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the package first: \(Self.binary.path)")
        let (status, output) = try run(arguments)
        #expect(status == 64, "EX_USAGE: \(output)")
        #expect(output.contains(message), "\(output)")
    }

    /// An open-file limit that leaves a loop a connection or two is refused at start (review 123
    /// #4: two idle sockets shut `/health` out).
    @Test(.timeLimit(.minutes(1))) func tooFewDescriptorsRefuseToStart() throws {
        let (status, output) = try run(["serve", "--port", "0", "--loops", "2"], openFiles: 80)
        #expect(status == 1 && output.contains("the open-file limit leaves too few connections per event loop"), "\(status) \(output)")
    }

    /// A refused command line leaves an earlier report as it was (review 48 bench #7: it was
    /// emptied before the arguments were checked).
    @Test func aRefusedBenchLeavesAnEarlierReportAlone() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).json")
        try Data(#"{"previous":"report"}"#.utf8).write(to: report)
        defer { try? FileManager.default.removeItem(at: report) }
        let (status, _) = try run(["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", report.path, "--api-key-env", "FUSION_NO_SUCH_VARIABLE_48"])
        #expect(status != 0)
        #expect(try String(contentsOf: report, encoding: .utf8) == #"{"previous":"report"}"#)
    }

    /// `--json` and `--html` naming one file under two names are refused before the run: through
    /// a link whose target is not there yet (review 65 #6), one that is, and a hard link
    /// (review 64A #5: one report silently overwrote the other).
    @Test func benchReportsNamingOneFileAreRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-same-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let report = folder.appendingPathComponent("report.out").path
        let link = folder.appendingPathComponent("link.out").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "report.out")
        for _ in 0..<2 {
            let (status, output) = try run(["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", link, "--html", report])
            #expect(status == 64 && output.contains("name the same file"), "\(output)")
            FileManager.default.createFile(atPath: report, contents: Data())  // the second time, the target is there
        }
        let hard = folder.appendingPathComponent("hard.out").path
        try FileManager.default.linkItem(atPath: report, toPath: hard)
        let (status, output) = try run(["bench", "http://127.0.0.1:1/v1", "--model", "m", "--json", hard, "--html", report])
        #expect(status == 64 && output.contains("name the same file"), "\(output)")
    }

    /// A config the gateway refuses: the reason, where it is (the file, then the key), no usage
    /// text (the command line was right), and EX_CONFIG.
    @Test func aConfigErrorSaysWhereWithoutTheUsage() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).yaml")
        try Data("server:\n  cors: {allow_origins: ['https://app.example.com/']}\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try run(["serve", "--port", "0", "--config", file.path])
        #expect(status == 78, "EX_CONFIG: \(output)")
        #expect(output.contains("\(file.path): server.cors.allow_origins[0]: 'https://app.example.com/' can never match"), "\(output)")
        #expect(!output.contains("Usage:"), "\(output)")
    }

    /// SIGHUP is logged and ignored: its default action ended the process at once, every stream
    /// cut mid-chunk (review 62D #3).
    /// Standard output a pipe nobody reads (`serve | head -1` after `head` left, a log shipper
    /// gone): the banner's write fails and the gateway serves on (review 83B #1: Foundation's
    /// `FileHandle.write` trapped on EPIPE, and the process died with SIGILL at every start).
    @Test(.timeLimit(.minutes(1)), arguments: [["serve", "--port", "0", "--loops", "1"], ["mock-upstream", "--port", "0"]])
    func aBannerNobodyReadsIsNoCrash(arguments: [String]) throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        let output = Pipe()
        try output.fileHandleForReading.close()  // no reader: a write gets EPIPE
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        usleep(1_500_000)
        let running = process.isRunning
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(running, "exited \(process.terminationStatus) with its banner unread")
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }

    /// Started with standard output closed (`>&-`): the event loop's first descriptor took its
    /// number, the banner went into it, and libuv asserted when closing it at the stop, exit 134
    /// (review 84 #5). Closed standard descriptors are /dev/null now; a drained stop exits 0.
    @Test(.timeLimit(.minutes(1))) func aClosedStandardOutputIsNoCrash() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", #"exec "$0" serve --port 0 --loops 1 >&- 0<&-"#, Self.binary.path]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        usleep(1_500_000)
        let running = process.isRunning
        kill(process.processIdentifier, SIGTERM)
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(running)
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(String(decoding: data.suffix(600), as: UTF8.self))")
    }

    @Test(.timeLimit(.minutes(1))) func aHangUpIsIgnored() throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0", "--loops", "1"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        usleep(1_500_000)
        kill(process.processIdentifier, SIGHUP)
        usleep(500_000)
        let running = process.isRunning
        kill(process.processIdentifier, SIGKILL)
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(running, "exited \(process.terminationStatus) on SIGHUP")
        #expect(String(decoding: data, as: UTF8.self).contains("SIGHUP ignored"))
    }

    /// A drained stop exits 0; a second signal, which cuts what is in flight, exits 1 (review 66
    /// #3: both exited 0, and a supervisor could not tell them apart).
    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func aForcedStopIsNoCleanExit(forced: Bool) throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0", "--loops", "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var banner = Data()
        while !String(decoding: banner, as: UTF8.self).contains("\n") { banner += output.fileHandleForReading.availableData }
        let text = String(decoding: banner, as: UTF8.self)
        let address = try #require(text.range(of: "127.0.0.1:"), "\(text)")
        let port = try #require(Int(text[address.upperBound...].prefix { $0.isNumber }), "\(text)")
        var client: TestClient?
        if forced {
            // A stream in flight for the second signal to cut.
            client = try TestClient(port: port)
            try client?.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "sim/paced:pace_ms=500:deltas=100")))
            usleep(300_000)
        }
        kill(process.processIdentifier, SIGTERM)
        if forced {
            usleep(300_000)
            kill(process.processIdentifier, SIGTERM)
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == (forced ? 1 : 0), "\(process.terminationStatus)")
        if let client {
            // The cut stream ends as the grace period's end would end it: an error the client can
            // read, then `[DONE]` (review 121 #5: it broke off mid-chunk, with no record).
            let text = (try? client.readResponse().text) ?? ""
            #expect(text.contains("shutting_down") && text.contains("data: [DONE]"), "\(text.suffix(400))")
        }
    }

    /// A second signal within the drain delay, with no response in flight, stops at once and
    /// cleanly: nothing was cut (review 79 #8: it said it cut requests and exited 1).
    @Test(.timeLimit(.minutes(1))) func aSecondSignalWithNothingInFlightIsACleanStop() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("second-signal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("gateway.yaml")
        try Data("server:\n  drain_delay_ms: 20000\n".utf8).write(to: config)
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0", "--loops", "2", "--config", config.path]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var banner = Data()
        while !String(decoding: banner, as: UTF8.self).contains("\n") { banner += output.fileHandleForReading.availableData }
        kill(process.processIdentifier, SIGTERM)
        usleep(100_000)
        let started = Date()
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(process.terminationStatus) \(log)")
        #expect(Date().timeIntervalSince(started) < 10, "not the 20 s drain delay")
        #expect(log.contains("no response in flight") && !log.contains("cutting what is in flight"), "\(log)")
    }

    /// A proxy named by the environment (here a dead one, as left over in many shells) is not
    /// used for loopback upstreams: the built-in simulator answers (review 68D #1: a 502 naming
    /// the proxy's address, the quick start broken).
    @Test(.timeLimit(.minutes(1))) func loopbackUpstreamsBypassTheEnvironmentsProxy() throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0", "--loops", "1"]
        var environment = ProcessInfo.processInfo.environment
        for name in ["no_proxy", "NO_PROXY"] { environment[name] = nil }
        environment["http_proxy"] = "http://127.0.0.1:1"
        environment["ALL_PROXY"] = "http://127.0.0.1:1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        defer { kill(process.processIdentifier, SIGKILL) }
        var banner = Data()
        while !String(decoding: banner, as: UTF8.self).contains("\n") { banner += output.fileHandleForReading.availableData }
        let text = String(decoding: banner, as: UTF8.self)
        let address = try #require(text.range(of: "127.0.0.1:"), "\(text)")
        let port = try #require(Int(text[address.upperBound...].prefix { $0.isNumber }), "\(text)")
        let client = try TestClient(port: port)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "sim/normal", stream: false)))
        let response = try client.readResponse()
        #expect(response.status == 200, "\(response.text)")
    }

    /// `--log-format json`: the running gateway's every line on standard error is one JSON object.
    @Test(.timeLimit(.minutes(1))) func jsonLogsFromTheCommandLine() throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0", "--loops", "1", "--log-format", "json"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        usleep(1_500_000)
        // SIGKILL: a child of the test runner inherits its blocked SIGTERM/SIGINT.
        kill(process.processIdentifier, SIGKILL)
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(json?["msg"] is String && json?["ts"] is String && json?["level"] is String, "not a JSON log line: \(line)")
        }
        #expect(lines.contains { $0.contains(#""msg":"listening""#) })
    }
}
