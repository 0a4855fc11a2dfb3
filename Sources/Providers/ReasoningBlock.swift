import Foundation
import GatewayCore

/// A finished block of a model's reasoning that its provider needs back, unchanged, on the
/// conversation's next request: Anthropic's signed `thinking` block, or its `redacted_thinking`.
/// With extended thinking and tools, the assistant turn that called a tool must start with its
/// thinking block when the tool's result is sent back (the API refuses the request otherwise).
/// Only the Anthropic encoder sends them; other providers' APIs have no place for them.
public enum ReasoningBlock: Sendable, Equatable {
    case thinking(text: String, signature: String)
    case redacted(data: String)

    /// The block as a client of another API carries it (a Responses reasoning item's
    /// `encrypted_content`): `fgw.anthropic.v1.` and the base64 of a small JSON object. Opaque to
    /// the client; the thinking text in it is the one the client was shown.
    public var token: String {
        let object: JSONValue = switch self {
        case .thinking(let text, let signature): .object(["thinking": .string(text), "signature": .string(signature)])
        case .redacted(let data): .object(["redacted_thinking": .string(data)])
        }
        return Self.tokenPrefix + Data(object.serialized()).base64EncodedString()
    }

    static let tokenPrefix = "fgw.anthropic.v1."

    /// Whether `token` is one of ours (another API's opaque reasoning, e.g. OpenAI's own
    /// `encrypted_content`, is not, and is left out rather than refused).
    public static func isToken(_ token: String) -> Bool { token.hasPrefix(tokenPrefix) }

    /// The block `token` carries; nil if it is not a well-formed token of ours. The bytes are the
    /// client's: the JSON is parsed with the gateway's limits, and a signature or data that is
    /// empty or not a string is refused. Whether a signature is genuine is the provider's to say.
    public init?(token: String) {
        guard Self.isToken(token), let data = Data(base64Encoded: String(token.dropFirst(Self.tokenPrefix.count))),
              let object = try? JSONValue.parse([UInt8](data)), case .object(let fields) = object else { return nil }
        if let signature = fields["signature"]?.stringValue, !signature.isEmpty, let text = fields["thinking"]?.stringValue {
            self = .thinking(text: text, signature: signature)
        } else if let data = fields["redacted_thinking"]?.stringValue, !data.isEmpty {
            self = .redacted(data: data)
        } else {
            return nil
        }
    }
}

/// Gathers a stream's reasoning events into `ReasoningBlock`s: the text of a thinking block until
/// its signature ends it. Unsigned reasoning (other providers') never makes a block.
///
/// A block's text is kept up to `maximumTextBytes`: real thinking is bounded by its budget (128k
/// tokens is about 512 KiB), an upstream that sends more is not followed. A longer block is not
/// made (its text still streamed as it came; without the block, a chat client's tool loop goes
/// on with thinking off, as for a client that kept only the text).
public struct ReasoningBlockBuilder: Sendable {
    public static let maximumTextBytes = 4 << 20
    private var text = ""
    private var overflowed = false

    public init() {}

    /// Takes in one event; returns the block it finished, if any.
    public mutating func add(_ event: ModelEvent) -> ReasoningBlock? {
        switch event {
        case .reasoning(let piece):
            guard !overflowed else { return nil }
            if text.utf8.count + piece.utf8.count > Self.maximumTextBytes {
                overflowed = true
                text = ""
            } else {
                text += piece
            }
            return nil
        case .reasoningSignature(let signature):
            defer { text = ""; overflowed = false }
            return overflowed ? nil : .thinking(text: text, signature: signature)
        case .redactedReasoning(let data):
            return .redacted(data: data)
        default:
            return nil
        }
    }
}
