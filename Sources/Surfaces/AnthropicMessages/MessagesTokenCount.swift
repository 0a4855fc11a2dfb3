import GatewayCore
import Providers

/// `POST /v1/messages/count_tokens` (Anthropic's token counting, which its SDKs and Claude Code
/// call before and between turns to manage the context window): the answer's shape and the
/// upstream's answer read. Only Anthropic's API counts tokens for a Messages body; the gateway
/// relays its count and never makes one up.
public enum MessagesTokenCount {
    /// `{"input_tokens":N}`.
    public static func body(inputTokens: Int64) -> [UInt8] {
        Array(#"{"input_tokens":\#(min(max(inputTokens, 0), Usage.maxTokens))}"#.utf8)
    }

    /// The upstream's count: a JSON object whose `input_tokens` is a non-negative integer (clamped
    /// as every count is); nil for anything else.
    public static func upstreamCount(_ body: [UInt8]) -> Int64? {
        guard let json = try? JSONValue.parse(body), let count = json["input_tokens"]?.intValue, count >= 0 else { return nil }
        return min(count, Usage.maxTokens)
    }
}
