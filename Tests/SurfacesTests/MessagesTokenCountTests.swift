import GatewayCore
import Providers
import Surfaces
import Testing

/// The count-tokens body (`max_tokens` optional) and an upstream's answer read.
@Suite struct MessagesTokenCountTests {
    @Test func aCountBodyNeedsNoLimitButAnyLimitSentIsChecked() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
        #expect(throws: APIError.self) { try MessagesRequest(body: Array(body.utf8)) }
        _ = try MessagesRequest(body: Array(body.utf8), forTokenCount: true)
        _ = try MessagesRequest(body: Array(#"{"model":"m","max_tokens":null,"messages":[{"role":"user","content":"hi"}]}"#.utf8), forTokenCount: true)
        #expect(throws: APIError.self) {
            try MessagesRequest(body: Array(#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}"#.utf8), forTokenCount: true)
        }
        // Everything else is checked as for a completion.
        #expect(throws: APIError.self) { try MessagesRequest(body: Array(#"{"model":"m","messages":[]}"#.utf8), forTokenCount: true) }
    }

    @Test func anUpstreamCountIsANonNegativeIntegerOrNothing() {
        #expect(MessagesTokenCount.upstreamCount(Array(#"{"input_tokens":42}"#.utf8)) == 42)
        #expect(MessagesTokenCount.upstreamCount(Array(#"{"input_tokens":1e300}"#.utf8)) == nil)
        #expect(MessagesTokenCount.upstreamCount(Array(#"{"input_tokens":9007199254740992}"#.utf8)) == Usage.maxTokens, "clamped")
        for body in [#"{"input_tokens":-1}"#, #"{"input_tokens":1.5}"#, #"{"input_tokens":"3"}"#, #"{"tokens":3}"#, "[3]", "", "{", "null"] {
            #expect(MessagesTokenCount.upstreamCount(Array(body.utf8)) == nil, "\(body)")
        }
        #expect(String(decoding: MessagesTokenCount.body(inputTokens: 7), as: UTF8.self) == #"{"input_tokens":7}"#)
        #expect(String(decoding: MessagesTokenCount.body(inputTokens: -7), as: UTF8.self) == #"{"input_tokens":0}"#)
    }
}
