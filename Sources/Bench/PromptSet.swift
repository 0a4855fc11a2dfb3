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
        /// Line 0: the file as a whole ("no prompts in the file", not "line 0: …": review 127 #7).
        public var description: String { line == 0 ? reason : "line \(line): \(reason)" }

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
        try parse(jsonLines: Array(text.utf8), source: source)
    }

    /// The file's bytes as JSON Lines. Lines end at LF, so a file saved on Windows (CRLF, a
    /// UTF-8 byte order mark) reads the same: the CR is JSON whitespace and the mark is skipped.
    /// Bytes that are not UTF-8 are refused naming the line, not read as something else.
    public static func parse(jsonLines bytes: [UInt8], source: String) throws(ParseError) -> PromptSet {
        var prompts: [Prompt] = []
        var text = bytes[...]
        if text.starts(with: [0xEF, 0xBB, 0xBF]) { text = text.dropFirst(3) }
        for (index, line) in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let invalid = line.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) }
            if let invalid { throw ParseError(line: number, reason: "not UTF-8 (byte \(invalid + 1) of the line)") }
            guard line.contains(where: { !jsonWhitespace.contains($0) }) else { continue }
            prompts.append(try parseLine(Array(line), number: number))
        }
        guard !prompts.isEmpty else { throw ParseError(line: 0, reason: "no prompts in the file") }
        return PromptSet(prompts: prompts, source: source)
    }

    /// Space, tab, CR and LF (RFC 8259).
    static let jsonWhitespace: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
    /// What a line may say: anything else is a mistake worth hearing about (a `temperature`
    /// here would otherwise be silently ignored).
    static let keys: Set<String> = ["prompt", "messages", "max_tokens"]

    private static func parseLine(_ line: [UInt8], number: Int) throws(ParseError) -> Prompt {
        let json: JSONValue
        do {
            // Strict, as the gateway reads a request: a key given twice or a number beyond a
            // double's range is refused, not resolved one way or the other.
            json = try JSONValue.parseRequest(line)
        } catch {
            switch error.code {
            case "duplicate_key": throw ParseError(line: number, reason: "the key \"\(error.param ?? "")\" appears twice")
            case "number_out_of_range" where error.param == "max_tokens": throw ParseError(line: number, reason: maxTokensReason)
            case "number_out_of_range": throw ParseError(line: number, reason: "the number at \(error.param ?? "?") is beyond a 64-bit float")
            default: throw ParseError(line: number, reason: "not JSON")
            }
        }
        guard case .object(let fields) = json else { throw ParseError(line: number, reason: "not a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !keys.contains($0) }) {
            throw ParseError(line: number, reason: "unknown key \"\(unknown)\" (a line has \"prompt\" or \"messages\", and may have \"max_tokens\")")
        }
        var maxTokens: Int?
        if let value = json["max_tokens"], value != .null {
            guard let count = value.intValue, count > 0, count <= Int64(ResponseRecorder.maxUsageTokens) else {
                throw ParseError(line: number, reason: maxTokensReason)
            }
            maxTokens = Int(count)
        }
        if json["prompt"] != nil && json["messages"] != nil {
            throw ParseError(line: number, reason: "\"prompt\" and \"messages\" exclude each other")
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

    static let maxTokensReason = "max_tokens must be a positive integer up to \(ResponseRecorder.maxUsageTokens)"

    /// The request body for `prompt` on `model`. Streamed requests ask for the usage chunk
    /// (`stream_options.include_usage`), the only trustworthy token count a client gets.
    public static func requestBody(model: String, prompt: Prompt, streamed: Bool, defaultMaxTokens: Int?) -> [UInt8] {
        var body: [String: JSONValue] = ["model": .string(model), "messages": prompt.messages, "stream": .bool(streamed)]
        if streamed { body["stream_options"] = .object(["include_usage": .bool(true)]) }
        if let maxTokens = prompt.maxTokens ?? defaultMaxTokens { body["max_tokens"] = .int(Int64(maxTokens)) }
        return JSONValue.object(body).serialized()
    }
}
