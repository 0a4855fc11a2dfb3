import Foundation
import Testing

/// The official `openai` and `anthropic` Python SDKs, unmodified, against the gateway. The test command
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

    /// Runs `script` (under Tests/e2e) with `arguments`; its exit status and output.
    static func runCheck(_ script: String, _ arguments: [String]) throws -> (Int32, String) {
        let python = try #require(python, "FUSION_REQUIRE_PYTHON_E2E=1 but no Python with the SDKs at .venv/bin/python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [repository.appendingPathComponent("Tests/e2e/\(script)").path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: python != nil || required, "no .venv with the openai SDK: run scripts/test"),
          .timeLimit(.minutes(1)))
    func officialPythonSDKStreamsAndCompletes() throws {
        let env = try TestEnvironment(web: true)
        let (status, text) = try Self.runCheck("openai_sdk_check.py", ["http://127.0.0.1:\(env.gatewayPort)/v1"])
        #expect(status == 0, "openai SDK check failed:\n\(text)")
        #expect(text.contains("all checks passed"), "\(text)")
    }

    /// `client.responses.create(...)` and `responses.stream()`, plain, function calls and Fusion
    /// (the `response.fusion_call.*` events checked in order as raw events too).
    @Test(.enabled(if: python != nil || required, "no .venv with the openai SDK: run scripts/test"),
          .timeLimit(.minutes(2)))
    func officialPythonSDKUsesTheResponsesAPI() throws {
        let env = try TestEnvironment()
        let (status, text) = try Self.runCheck("responses_sdk_check.py", ["http://127.0.0.1:\(env.gatewayPort)/v1"])
        #expect(status == 0, "responses SDK check failed:\n\(text.suffix(3000))")
        #expect(text.contains("all responses checks passed"), "\(text.suffix(3000))")
    }

    /// The official `anthropic` SDK against `/v1/messages`: streamed, whole, tool use, Fusion, errors.
    @Test(.enabled(if: python != nil || required, "no .venv with the anthropic SDK: run scripts/test"),
          .timeLimit(.minutes(2)))
    func officialAnthropicSDKUsesTheMessagesAPI() throws {
        // With an Anthropic provider (the mock speaks its API): token counts come from it.
        let env = try MessagesRouteTests.environment()
        let (status, text) = try Self.runCheck("anthropic_sdk_check.py", ["--gateway", "http://127.0.0.1:\(env.gatewayPort)", "anth/normal"])
        #expect(status == 0, "anthropic SDK check failed:\n\(text.suffix(3000))")
        #expect(text.contains("all gateway checks passed"), "\(text.suffix(3000))")
    }
}
