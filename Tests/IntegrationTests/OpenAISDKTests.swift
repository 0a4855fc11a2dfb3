import Foundation
import Testing

/// The official `openai` Python SDK, unmodified, against the gateway. The test command
/// (`scripts/test`) installs it into `.venv` and sets FUSION_REQUIRE_PYTHON_E2E=1, which turns a
/// missing SDK into a failure instead of a skip.
@Suite struct OpenAISDKTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var python: String? {
        let environment = ProcessInfo.processInfo.environment
        let candidate = environment["FUSION_PYTHON"] ?? repository.appendingPathComponent(".venv/bin/python").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return nil
    }

    static var required: Bool { ProcessInfo.processInfo.environment["FUSION_REQUIRE_PYTHON_E2E"] == "1" }

    @Test(.enabled(if: python != nil || required, "no .venv with the openai SDK: run scripts/test"),
          .timeLimit(.minutes(1)))
    func officialPythonSDKStreamsAndCompletes() throws {
        let python = try #require(Self.python, "FUSION_REQUIRE_PYTHON_E2E=1 but no Python with openai at .venv/bin/python")
        let env = try TestEnvironment(web: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.repository.appendingPathComponent("Tests/e2e/openai_sdk_check.py").path,
                             "http://127.0.0.1:\(env.gatewayPort)/v1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "openai SDK check failed:\n\(text)")
        #expect(text.contains("all checks passed"), "\(text)")
    }
}
