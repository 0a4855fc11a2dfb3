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
        ("{\"prompt\": \"a\", \"max_tokens\": 0}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"max_tokens\": 1e30}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"max_tokens\": 1e400}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"max_tokens\": -1}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"max_tokens\": 2.5}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"max_tokens\": \"5\"}", 1, "max_tokens must be a positive integer up to 100000000"),
        ("{\"prompt\": \"a\", \"temperature\": 0}", 1, "unknown key \"temperature\" (a line has \"prompt\" or \"messages\", and may have \"max_tokens\")"),
        ("{\"prompt\": \"a\", \"prompt\": \"b\"}", 1, "the key \"prompt\" appears twice"),
        ("{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}", 1, "\"prompt\" and \"messages\" exclude each other"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"b\", \"n\": 1e999}]}", 1, "the number at messages[0].n is beyond a 64-bit float"),
        ("{\"messages\": []}", 1, "messages must be a non-empty array of objects with role and content"),
        ("{\"messages\": [{\"content\": \"x\"}]}", 1, "messages must be a non-empty array of objects with role and content"),
        ("{\"max_tokens\": 5}", 1, "needs \"prompt\" or \"messages\""),
        ("\n\n", 0, "no prompts in the file"),
    ])
    func badLinesAreNamed(text: String, line: Int, reason: String) {
        #expect(throws: PromptSet.ParseError(line: line, reason: reason)) {
            try PromptSet.parse(jsonLines: text, source: "p.jsonl")
        }
    }

    /// A file saved on Windows: CRLF line ends and a byte order mark.
    @Test func crlfLinesAndAByteOrderMarkAreRead() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("{\"prompt\": \"a\"}\r\n\r\n{\"prompt\": \"b\", \"max_tokens\": 3}\r\n".utf8)
        let set = try PromptSet.parse(jsonLines: bytes, source: "p.jsonl")
        #expect(set.prompts == [Prompt(text: "a"), Prompt(text: "b", maxTokens: 3)])
        // The String form splits the same way ("\r\n" is one Character in Swift, not "\n").
        #expect(try PromptSet.parse(jsonLines: "{\"prompt\": \"a\"}\r\n{\"prompt\": \"b\"}\r\n", source: "p").prompts.count == 2)
        #expect(throws: PromptSet.ParseError(line: 2, reason: "not JSON")) {
            try PromptSet.parse(jsonLines: "{\"prompt\": \"a\"}\r\n{oops\r\n", source: "p")
        }
    }

    @Test func bytesThatAreNotUTF8AreNamedByLine() {
        let bytes = Array("{\"prompt\": \"a\"}\n{\"prompt\": \"".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8)
        #expect(throws: PromptSet.ParseError(line: 2, reason: "not UTF-8 (byte 13 of the line)")) {
            try PromptSet.parse(jsonLines: bytes, source: "p")
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
