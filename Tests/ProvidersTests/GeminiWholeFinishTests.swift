import GatewayCore
import Providers
import Testing

/// A whole Gemini answer (or the array form of a stream) that never says how it finished is cut,
/// as a stream without a `finishReason` is: an error, never a finished answer (review 64D #1).
@Suite struct GeminiWholeFinishTests {
    let provider = GeminiProvider()

    @Test(arguments: [
        #"{"candidates":[{"content":{"parts":[{"text":"half an answer"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2}}"#,
        #"[{"candidates":[{"content":{"parts":[{"text":"arr "}]}}]},{"candidates":[{"content":{"parts":[{"text":"cut"}]}}]}]"#,
    ])
    func anAnswerWithoutAFinishReasonIsCut(body: String) throws {
        let events = try provider.decodeResponse(Array(body.utf8), redactor: .none)
        guard events.count == 1, case .error(let error) = events[0] else {
            Issue.record("\(events)")
            return
        }
        #expect(error.code == "upstream_truncated" && error.status == 502)
    }

    @Test func aFinishedAnswerIsPassedOn() throws {
        let body = #"[{"candidates":[{"content":{"parts":[{"text":"whole"}]}}]},{"candidates":[{"finishReason":"STOP"}]}]"#
        let events = try provider.decodeResponse(Array(body.utf8), redactor: .none)
        #expect(events.contains(.text("whole")) && events.contains(.finish(.stop)), "\(events)")
    }
}
