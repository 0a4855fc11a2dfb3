import FixtureFiles
import Foundation
import Fusion
import GatewayCore
import Providers
import Surfaces
import Testing

/// What the Messages writer and builder produce for fixed answers, byte for byte, kept in
/// `Fixtures/surfaces/`. `Tests/e2e/anthropic_sdk_check.py` replays those files to the official
/// anthropic Python SDK (its raw stream, its `messages.stream()` helper, its errors), so a change
/// to the bytes shows here and is checked there again.
enum MessagesSDKFixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/surfaces")

    static var toolUse: [UInt8] { MessagesStreamWriterTests.render(MessagesStreamWriterTests.answer) }

    static var fusion: [UInt8] {
        var renderer = FusionMessagesRenderer(id: "msg_fusion", model: "fusion", stream: true)
        var out: [UInt8] = []
        renderer.render(.progress(.toolCalled(arguments: #"{"question":"Should cities ban cars?"}"#)), at: 1, into: &out)
        renderer.render(.progress(.memberStarted(index: 0, model: "anthropic/claude-x")), at: 2, into: &out)
        renderer.render(.progress(.memberDelta(index: 0, model: "anthropic/claude-x", text: "Cities\nshould")), at: 3, into: &out)
        renderer.render(.progress(.memberText(index: 0, model: "anthropic/claude-x", text: "Cities", reasoning: false)), at: 3, into: &out)
        renderer.render(.progress(.memberCut(index: 1, model: "anthropic/claude-y", characters: 40, cause: .deadline)), at: 3, into: &out)
        renderer.render(.progress(.phase(PhaseReport(.panel, .completed, duration: 2, summary: "1 of 2 answered, 1 cut for latency"))),
                        at: 3, into: &out)
        renderer.render(.progress(.judgeItem(model: "sim/outer", attempt: 1,
                                             item: AnalysisItem(field: "consensus", index: 0, value: .string("Cities should")))), at: 3, into: &out)
        renderer.render(.finalAnswerStarts(model: "sim/outer"), at: 4, into: &out)
        renderer.render(.answer(.text("Drawing on a panel ")), at: 5, into: &out)
        renderer.render(.answer(.text("of 3 models.")), at: 6, into: &out)
        renderer.render(.answer(.finish(.stop)), at: 7, into: &out)
        renderer.renderEnd(usage: Usage(promptTokens: 120, completionTokens: 40, totalTokens: 160), into: &out)
        return out
    }

    static var error: [UInt8] {
        var writer = MessagesStreamWriter(id: "msg_err", model: "claude-x")
        var out: [UInt8] = []
        writer.append(.text("Partial"), to: &out)
        writer.append(.error(APIError(status: 503, type: "upstream_error", code: "overloaded", message: "The upstream reported an error: Overloaded")),
                      to: &out)
        return out
    }

    static var whole: [UInt8] {
        var response = MessagesResponse(id: "msg_whole", model: "claude-x")
        for event in MessagesStreamWriterTests.answer { response.add(event) }
        return (try? response.body()) ?? []
    }

    /// An Anthropic upstream's server tool blocks and citations (web search), relayed.
    static var serverTools: [UInt8] {
        guard let upstream = try? Fixtures.bytes("providers/anthropic-server-and-parallel-tools.sse"),
              let (events, _) = try? MessagesStreamWriterTests.decoded(upstream) else { return [] }
        return MessagesStreamWriterTests.render(events)
    }
    static var all: [(String, [UInt8])] {
        [("messages-tool-use.sse", toolUse), ("messages-fusion.sse", fusion), ("messages-error.sse", error), ("messages-whole.json", whole),
         ("messages-server-tools.sse", serverTools)]
    }
}

@Suite struct MessagesSDKFixtureTests {
    @Test(arguments: MessagesSDKFixtures.all.map(\.0))
    func theWriterStillProducesTheBytesTheSDKWasCheckedAgainst(name: String) throws {
        let produced = MessagesSDKFixtures.all.first { $0.0 == name }!.1
        if ProcessInfo.processInfo.environment["FUSION_UPDATE_GOLDENS"] == "1" {
            try Data(produced).write(to: MessagesSDKFixtures.root.appendingPathComponent(name))  // then re-run anthropic_sdk_check.py
        }
        let expected = try Data(contentsOf: MessagesSDKFixtures.root.appendingPathComponent(name))
        if name.hasSuffix(".json") {
            #expect(try JSONValue.parse(produced) == JSONValue.parse(Array(expected)), "\(name)")  // key order is the encoder's
        } else {
            #expect(produced == Array(expected), "\(name): re-run Tests/e2e/anthropic_sdk_check.py after changing the bytes")
        }
    }
}

/// The official `anthropic` Python SDK, unmodified, reading the fixtures above. The test command
/// (`scripts/test`) installs it into `.venv` and sets FUSION_REQUIRE_PYTHON_E2E=1, which turns a
/// missing SDK into a failure instead of a skip.
@Suite struct AnthropicSDKTests {
    static let repository = MessagesSDKFixtures.root.deletingLastPathComponent().deletingLastPathComponent()

    static var python: String? {
        let candidate = ProcessInfo.processInfo.environment["FUSION_PYTHON"] ?? repository.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }

    static var required: Bool { ProcessInfo.processInfo.environment["FUSION_REQUIRE_PYTHON_E2E"] == "1" }

    @Test(.enabled(if: python != nil || required, "no .venv with the anthropic SDK: run scripts/test"), .timeLimit(.minutes(1)))
    func officialPythonSDKReadsTheMessagesStream() throws {
        let python = try #require(Self.python, "FUSION_REQUIRE_PYTHON_E2E=1 but no Python at .venv/bin/python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.repository.appendingPathComponent("Tests/e2e/anthropic_sdk_check.py").path, MessagesSDKFixtures.root.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if !Self.required && text.contains("No module named 'anthropic'") { return }  // an older .venv with only openai
        #expect(process.terminationStatus == 0, "anthropic SDK check failed:\n\(text)")
        #expect(text.contains("all checks passed"), "\(text)")
    }
}
