import Application
import Foundation
import Gateway
import Logging
import Testing

/// The playground in a real browser: Tests/e2e/playground_check.py drives headless Chromium
/// (Selenium, Debian's chromium and chromium-driver) against the gateway on the embedded default,
/// as `scripts/run` serves it, and a second one that requires a key. The test command
/// (`scripts/test`) installs the browser and Selenium and sets FUSION_REQUIRE_BROWSER_E2E=1,
/// which turns a missing browser into a failure instead of a skip.
///
/// FUSION_PLAYGROUND_SCREENSHOT=path saves a screenshot of the finished deliberation there (how
/// docs/playground.png is made).
@Suite struct PlaygroundBrowserTests {
    static let chromedriver = ProcessInfo.processInfo.environment["FUSION_CHROMEDRIVER"] ?? "/usr/bin/chromedriver"
    static var required: Bool { ProcessInfo.processInfo.environment["FUSION_REQUIRE_BROWSER_E2E"] == "1" }

    /// A Python with Selenium, and a chromedriver.
    static let available: Bool = {
        guard let python = OpenAISDKTests.python, FileManager.default.isExecutableFile(atPath: chromedriver) else { return false }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: python)
        probe.arguments = ["-c", "import selenium"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }()

    static func start(keys: [String] = []) throws -> GatewayApplication {
        var config = GatewayConfig.embeddedDefault
        config.server.port = 0
        config.server.apiKeys = keys
        var logger = Logger(label: "playground-under-test")
        logger.logLevel = ProcessInfo.processInfo.environment["FUSION_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        return try GatewayApplication(config: config, environment: [:], logger: logger, loops: 2)
    }

    @Test(.enabled(if: available || required, "no Chromium, chromedriver or Selenium in .venv: run scripts/test"),
          .timeLimit(.minutes(3)))
    func aDeliberationInChromium() throws {
        let python = try #require(OpenAISDKTests.python, "FUSION_REQUIRE_BROWSER_E2E=1 but no .venv/bin/python")
        try #require(Self.available, "FUSION_REQUIRE_BROWSER_E2E=1 but no Selenium in .venv or no \(Self.chromedriver)")
        let open = try Self.start()
        let keyed = try Self.start(keys: ["gw-browser-key"])
        defer {
            for app in [open, keyed] {
                app.shutdown()
                app.waitUntilStopped()
            }
        }
        var arguments = [OpenAISDKTests.repository.appendingPathComponent("Tests/e2e/playground_check.py").path,
                         "http://127.0.0.1:\(open.port)",
                         "--keyed-url", "http://127.0.0.1:\(keyed.port)", "--key", "gw-browser-key", "--deadline", "110"]
        if let screenshot = ProcessInfo.processInfo.environment["FUSION_PLAYGROUND_SCREENSHOT"] {
            arguments += ["--screenshot", screenshot]
        }
        let (status, output) = try run(python, arguments, timeoutSeconds: 150)
        #expect(status == 0, "playground browser check failed:\n\(output)")
        #expect(output.contains("all checks passed"), "\(output)")
    }

    /// Runs a process with its output in a file (a pipe could be held open by the browser it
    /// starts), killed if it outlives `timeoutSeconds`.
    func run(_ executable: String, _ arguments: [String], timeoutSeconds: Double) throws -> (Int32, String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("playground-check-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        var timedOut = false
        if process.isRunning {
            timedOut = true
            process.terminate()
        }
        process.waitUntilExit()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return (process.terminationStatus, timedOut ? text + "\n(killed after \(Int(timeoutSeconds)) s)" : text)
    }
}
