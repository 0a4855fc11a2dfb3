import Foundation
import Testing

/// The golden Responses streams (Fixtures/responses, written by the writer and renderer tests)
/// replayed from a local HTTP server to the official `openai` Python SDK, unmodified:
/// Tests/e2e/responses_sdk_check.py validates every standard event against the SDK's own types,
/// reads each stream with `responses.create(stream=True)` and `responses.stream()`, and checks
/// the fusion events' order. `scripts/test` installs the SDK into `.venv` and sets
/// FUSION_REQUIRE_PYTHON_E2E=1, which turns a missing SDK into a failure instead of a skip.
@Suite struct ResponsesSDKReplayTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var python: String? {
        let candidate = ProcessInfo.processInfo.environment["FUSION_PYTHON"] ?? repository.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }

    static var required: Bool { ProcessInfo.processInfo.environment["FUSION_REQUIRE_PYTHON_E2E"] == "1" }

    @Test(.enabled(if: python != nil || required, "no .venv with the openai SDK: run scripts/test"), .timeLimit(.minutes(1)))
    func theOpenAISDKReadsEveryGoldenStream() throws {
        let python = try #require(Self.python, "FUSION_REQUIRE_PYTHON_E2E=1 but no Python with openai at .venv/bin/python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.repository.appendingPathComponent("Tests/e2e/responses_sdk_check.py").path,
                             "--fixtures", Golden.directory.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "openai SDK replay failed:\n\(text)")
        #expect(text.contains("all responses checks passed"), "\(text)")
    }
}
