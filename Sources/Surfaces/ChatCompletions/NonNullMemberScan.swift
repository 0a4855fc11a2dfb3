import GatewayCore
import Glibc

extension UnsafeRawBufferPointer {
    /// Whether any of the keys (each given with its quotes) occurs as a member key whose value is
    /// not `null`, in one pass: only quote positions are compared, and a match counts only when a
    /// colon follows (a key, not a string value; inside a JSON string a quote is escaped). Runs
    /// on every relayed event: the cheap way to know which few chunks are worth parsing (every
    /// OpenAI chunk has a `"finish_reason"`, null until the last). With `orIndexOtherThanZero`,
    /// in the same pass, an `"index"` that is not a plain `0` counts too (`hasIndexOtherThanZero`).
    ///
    /// A key is compared only when the byte after the quote is one of the keys' first letters (or
    /// a backslash: an escaped key is counted as a match, `escapedKeyHasValue`).
    func hasNonNullMember(_ first: StaticString, _ second: StaticString, _ third: StaticString, _ fourth: StaticString,
                          orIndexOtherThanZero checkIndex: Bool = false) -> Bool {
        let initials = (first.utf8Start[1], second.utf8Start[1], third.utf8Start[1], fourth.utf8Start[1])
        func isMatch(_ index: Int) -> Bool {
            guard index + 1 < count else { return false }
            let next = self[index + 1]
            if next == initials.0 || next == initials.1 || next == initials.2 || next == initials.3 {
                if let end = keyEnd(first, at: index) ?? keyEnd(second, at: index) ?? keyEnd(third, at: index) ?? keyEnd(fourth, at: index) {
                    if let value = valueStart(after: end), !hasPrefix("null", at: value) { return true }
                    return false
                }
                return escapedKeyHasValue(at: index)
            }
            if next == UInt8(ascii: "\\") { return escapedKeyHasValue(at: index) }
            return checkIndex && indexIsNotZero(at: index)
        }
        // Sixteen bytes at a time: the quotes whose next byte is one of the keys' first letters, a
        // backslash or (for `index`) `i`, found by comparing the block and the block one byte on
        // (SSE2's compares, one test a block); only those few quotes are looked at further (a
        // chunk's other two dozen, every key's and string value's, cost nothing on their own).
        // Hand-written for the per-event path: quote by quote it was ~1,800 instructions an event.
        var position = 0
        if let base = baseAddress, count >= 17 {
            let quote = SIMD16<UInt8>(repeating: UInt8(ascii: "\""))
            let first = SIMD16<UInt8>(repeating: initials.0), second = SIMD16<UInt8>(repeating: initials.1)
            let third = SIMD16<UInt8>(repeating: initials.2), fourth = SIMD16<UInt8>(repeating: initials.3)
            let backslash = SIMD16<UInt8>(repeating: UInt8(ascii: "\\"))
            let index = SIMD16<UInt8>(repeating: checkIndex ? UInt8(ascii: "i") : initials.0)
            while position + 17 <= count {
                let here = base.loadUnaligned(fromByteOffset: position, as: SIMD16<UInt8>.self)
                let next = base.loadUnaligned(fromByteOffset: position + 1, as: SIMD16<UInt8>.self)
                let initial = (next .== first) .| (next .== second) .| (next .== third) .| (next .== fourth)
                    .| (next .== backslash) .| (next .== index)
                // Each lane 0xFF or 0, read as two words (not `any`, a call per block; and no
                // array of the two, which a debug build allocates per block: the perf gate).
                let lanes = unsafeBitCast((here .== quote) .& initial, to: SIMD2<UInt64>.self)
                var low = lanes[0] & ByteWords.high, high = lanes[1] & ByteWords.high
                while low != 0 {
                    if isMatch(position + low.trailingZeroBitCount >> 3) { return true }
                    low &= low &- 1
                }
                while high != 0 {
                    if isMatch(position + 8 + high.trailingZeroBitCount >> 3) { return true }
                    high &= high &- 1
                }
                position += 16
            }
        }
        while position < count {
            if self[position] == UInt8(ascii: "\""), isMatch(position) { return true }
            position += 1
        }
        return false
    }

    /// Whether an `"index"` member's value is anything but a plain `0` (another number, a string,
    /// `0.0`): with one choice asked for, such a chunk is parsed, so another choice's chunk cannot
    /// pass as the answer's (review 81B #3: a content chunk of choice 1 was relayed and the SDK
    /// merged it). The relay asks it with `hasNonNullMember`, in one pass; an escaped key makes
    /// that scan parse the chunk.
    func hasIndexOtherThanZero() -> Bool {
        anyQuote { indexIsNotZero(at: $0) }
    }

    /// Whether `isMatch` holds at some quote: eight bytes at a time, from one quote straight to
    /// the next (a chunk has a quote every few bytes: a byte loop was most of the scan's cost).
    private func anyQuote(_ isMatch: (_ index: Int) -> Bool) -> Bool {
        var index = 0
        while index + 8 <= count {
            let quotes = ByteWords.equal(ByteWords.load(self, at: index), UInt8(ascii: "\""))
            if quotes == 0 {
                index += 8
                continue
            }
            index += ByteWords.firstFlagged(quotes)
            if isMatch(index) { return true }
            index += 1
        }
        while index < count {
            if self[index] == UInt8(ascii: "\""), isMatch(index) { return true }
            index += 1
        }
        return false
    }

    /// Whether the quote at `index` begins an `"index"` key whose value is not a plain `0` (a key
    /// whose value is cut off by the event's end counts: the parse refuses it).
    private func indexIsNotZero(at index: Int) -> Bool {
        guard let end = keyEnd(#""index""#, at: index), let value = valueStart(after: end) else { return false }
        guard value + 1 < count, self[value] == UInt8(ascii: "0") else { return true }
        switch self[value + 1] {
        case UInt8(ascii: ","), UInt8(ascii: "}"), 0x20, 0x09, 0x0A, 0x0D: return false
        default: return true
        }
    }

    /// Whether the string starting at `index` is a short key with an escape in it (`"us\u0061ge"`,
    /// which every JSON parser reads as `usage`) whose value is not `null`: such a chunk is
    /// parsed, so an escaped name cannot slip usage or an error past the relay's checks. Only
    /// keys of at most 78 bytes are looked at: the longest key asked for, `finish_reason`, with
    /// every letter escaped (`\u0066`).
    private func escapedKeyHasValue(at index: Int) -> Bool {
        var position = index + 1
        var escaped = false
        let limit = Swift.min(count, index + 1 + 78 + 1)
        while position < limit {
            switch self[position] {
            case UInt8(ascii: "\\"):
                escaped = true
                position += 2
            case UInt8(ascii: "\""):
                guard escaped, let value = valueStart(after: position + 1) else { return false }
                return !hasPrefix("null", at: value)
            default:
                position += 1
            }
        }
        return false
    }

    /// Where `key` ends if it starts at `index`.
    private func keyEnd(_ key: StaticString, at index: Int) -> Int? {
        hasPrefix(key, at: index) ? index + key.utf8CodeUnitCount : nil
    }

    /// After a key ending at `index`: where its value starts, when a colon follows.
    private func valueStart(after index: Int) -> Int? {
        var position = index
        while position < count, self[position] == 0x20 || self[position] == 0x09 || self[position] == 0x0A || self[position] == 0x0D {
            position += 1
        }
        guard position < count, self[position] == UInt8(ascii: ":") else { return nil }
        position += 1
        while position < count, self[position] == 0x20 || self[position] == 0x09 || self[position] == 0x0A || self[position] == 0x0D {
            position += 1
        }
        return position
    }

    private func hasPrefix(_ prefix: StaticString, at index: Int) -> Bool {
        let length = prefix.utf8CodeUnitCount
        guard index >= 0, index + length <= count, let base = baseAddress else { return false }
        return memcmp(base + index, prefix.utf8Start, length) == 0  // a key's bytes at once, not one by one
    }
}
