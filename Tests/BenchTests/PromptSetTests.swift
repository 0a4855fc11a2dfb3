import Bench
import GatewayCore
import Testing

@Suite struct PromptSetTests {
    @Test func jsonLinesWithPromptsAndMessages() throws {
        let text = """
            {"prompt": "Why is the sky blue?"}

            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 16}\r
            """
        let set = try PromptSet.parse(jsonLines: text, source: "p.jsonl")
        #expect(set.prompts.count == 2)
        #expect(set.prompts[0] == Prompt(text: "Why is the sky blue?"))
        #expect(set.prompts[1].maxTokens == 16)
        #expect(set.prompts[1].messages.arrayValue?.count == 2)
        #expect(set.source == "p.jsonl")
    }

    @Test(arguments: [
        ("{\"prompt\": \"a\"}\nnot json", 2, "not JSON"),
        ("[1]", 1, "not a JSON object"),
        ("{\"prompt\": \"\"}", 1, "prompt must be a non-empty string"),
        ("{\"prompt\": \"a\", \"max_tokens\": 0}", 1, "max_tokens must be a positive integer"),
        ("{\"prompt\": \"a\", \"max_tokens\": 1e30}", 1, "max_tokens must be a positive integer"),
        ("{\"messages\": []}", 1, "messages must be a non-empty array of objects with role and content"),
        ("{\"messages\": [{\"content\": \"x\"}]}", 1, "messages must be a non-empty array of objects with role and content"),
        ("{\"text\": \"a\"}", 1, "needs \"prompt\" or \"messages\""),
        ("\n\n", 0, "no prompts"),
    ])
    func badLinesAreNamed(text: String, line: Int, reason: String) {
        #expect(throws: PromptSet.ParseError(line: line, reason: reason)) {
            try PromptSet.parse(jsonLines: text, source: "p.jsonl")
        }
    }

    @Test func streamedBodiesAskForUsage() throws {
        let body = try JSONValue.parse(PromptSet.requestBody(model: "m/x", prompt: Prompt(text: "hi"), streamed: true, defaultMaxTokens: 32))
        #expect(body["model"]?.stringValue == "m/x")
        #expect(body["stream"]?.boolValue == true)
        #expect(body["stream_options"]?["include_usage"]?.boolValue == true)
        #expect(body["max_tokens"]?.intValue == 32)
        #expect(body["messages"]?.arrayValue?.first?["content"]?.stringValue == "hi")
        let own = try JSONValue.parse(PromptSet.requestBody(model: "m", prompt: Prompt(text: "hi", maxTokens: 5), streamed: false,
                                                            defaultMaxTokens: 32))
        #expect(own["max_tokens"]?.intValue == 5)
        #expect(own["stream"]?.boolValue == false)
        #expect(own["stream_options"] == nil)
        let none = try JSONValue.parse(PromptSet.requestBody(model: "m", prompt: Prompt(text: "hi"), streamed: true, defaultMaxTokens: nil))
        #expect(none["max_tokens"] == nil)
    }
}
