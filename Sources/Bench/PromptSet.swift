import Foundation
import GatewayCore

/// One request's input: chat messages and an optional output cap.
public struct Prompt: Sendable, Equatable {
    /// The `messages` array, passed to the endpoint as given.
    public var messages: JSONValue
    public var maxTokens: Int?

    public init(messages: JSONValue, maxTokens: Int? = nil) {
        self.messages = messages
        self.maxTokens = maxTokens
    }

    public init(text: String, maxTokens: Int? = nil) {
        self.init(messages: .array([.object(["role": .string("user"), "content": .string(text)])]), maxTokens: maxTokens)
    }
}

/// The prompts a run cycles through, in order: request k of every target uses prompt k mod count.
public struct PromptSet: Sendable, Equatable {
    public var prompts: [Prompt]
    /// Where they came from, for the report ("built-in" or the file's path).
    public var source: String

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var description: String { "line \(line): \(reason)" }

        public init(line: Int, reason: String) {
            self.line = line
            self.reason = reason
        }
    }

    public init(prompts: [Prompt], source: String) {
        self.prompts = prompts
        self.source = source
    }

    /// Eight chat prompts of different lengths, so the default run is not one repeated request.
    public static let builtIn = PromptSet(prompts: [
        "Why is the sky blue?",
        "Write a haiku about latency.",
        "Explain the difference between TCP and UDP to a new engineer, with one example of when to use each.",
        "List five practical ways to reduce the time to first token of a large language model served behind an HTTP gateway.",
        "Summarise the plot of Romeo and Juliet in three sentences.",
        "What is a closed-loop load test, and how does it differ from an open-loop one? Explain coordinated omission.",
        "Translate into French: 'The benchmark finished without errors and the tail latency stayed under ten milliseconds.'",
        "You are reviewing a pull request that adds a lock-free queue. Which questions would you ask the author, and why?",
    ].map { Prompt(text: $0) }, source: "built-in")

    /// JSON Lines: one object per line, `{"prompt": "…"}` or `{"messages": [...]}`, each with an
    /// optional positive `max_tokens`. Blank lines are skipped.
    public static func parse(jsonLines text: String, source: String) throws(ParseError) -> PromptSet {
        var prompts: [Prompt] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty else { continue }
            prompts.append(try parseLine(line, number: index + 1))
        }
        guard !prompts.isEmpty else { throw ParseError(line: 0, reason: "no prompts") }
        return PromptSet(prompts: prompts, source: source)
    }

    private static func parseLine(_ line: String, number: Int) throws(ParseError) -> Prompt {
        let json: JSONValue
        do {
            json = try JSONValue.parse(Array(line.utf8))
        } catch {
            throw ParseError(line: number, reason: "not JSON")
        }
        guard case .object = json else { throw ParseError(line: number, reason: "not a JSON object") }
        var maxTokens: Int?
        if let value = json["max_tokens"], value != .null {
            guard let count = value.intValue, count > 0, count <= Int64(ResponseRecorder.maxUsageTokens) else {
                throw ParseError(line: number, reason: "max_tokens must be a positive integer")
            }
            maxTokens = Int(count)
        }
        if let text = json["prompt"] {
            guard let text = text.stringValue, !text.isEmpty else {
                throw ParseError(line: number, reason: "prompt must be a non-empty string")
            }
            return Prompt(text: text, maxTokens: maxTokens)
        }
        if let messages = json["messages"] {
            guard let list = messages.arrayValue, !list.isEmpty,
                  list.allSatisfy({ $0["role"]?.stringValue != nil && $0["content"] != nil })
            else {
                throw ParseError(line: number, reason: "messages must be a non-empty array of objects with role and content")
            }
            return Prompt(messages: messages, maxTokens: maxTokens)
        }
        throw ParseError(line: number, reason: "needs \"prompt\" or \"messages\"")
    }

    /// The request body for `prompt` on `model`. Streamed requests ask for the usage chunk
    /// (`stream_options.include_usage`), the only trustworthy token count a client gets.
    public static func requestBody(model: String, prompt: Prompt, streamed: Bool, defaultMaxTokens: Int?) -> [UInt8] {
        var body: [String: JSONValue] = ["model": .string(model), "messages": prompt.messages, "stream": .bool(streamed)]
        if streamed { body["stream_options"] = .object(["include_usage": .bool(true)]) }
        if let maxTokens = prompt.maxTokens ?? defaultMaxTokens { body["max_tokens"] = .int(Int64(maxTokens)) }
        return JSONValue.object(body).serialized()
    }
}
