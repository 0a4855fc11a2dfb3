import Providers

/// What a call's output bound counts and keeps (`InnerCall.maxOutputBytes`): socket-free.
extension InnerCall {
    /// A text event's first `bytes` bytes, ending at a character (nil: none fits, or not text).
    static func prefix(of event: ModelEvent, bytes: Int) -> ModelEvent? {
        func cut(_ text: String) -> String? {
            var end = text.startIndex
            var used = 0
            for character in text {
                let size = character.utf8.count
                guard used + size <= bytes else { break }
                used += size
                end = text.index(after: end)
            }
            return end == text.startIndex ? nil : String(text[..<end])
        }
        switch event {
        case .text(let text): return cut(text).map(ModelEvent.text)
        case .reasoning(let text): return cut(text).map(ModelEvent.reasoning)
        case .refusal(let text): return cut(text).map(ModelEvent.refusal)
        default: return nil
        }
    }

    /// The bytes of output an event carries (what the output limit bounds).
    static func outputBytes(of event: ModelEvent) -> Int {
        switch event {
        case .text(let text), .reasoning(let text), .refusal(let text): text.utf8.count
        case .toolCall(let fragment): (fragment.arguments?.utf8.count ?? 0) + (fragment.name?.utf8.count ?? 0)
        default: 0
        }
    }
}
