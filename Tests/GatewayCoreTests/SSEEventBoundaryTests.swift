import GatewayCore
import Testing

/// `SSEEventBoundary` says, read by read, what a reader of the whole stream would: whether it
/// ends at a blank line, however the stream is split into reads.
@Suite struct SSEEventBoundaryTests {
    /// The reference: the whole stream's lines, CRLF, CR and LF each ending one.
    static func endsAtBlankLine(_ bytes: [UInt8]) -> Bool {
        var rest = bytes[...]
        func dropLineEnd() -> Bool {
            if rest.last == 0x0A {
                rest = rest.dropLast()
                if rest.last == 0x0D { rest = rest.dropLast() }
                return true
            }
            if rest.last == 0x0D {
                rest = rest.dropLast()
                return true
            }
            return false
        }
        return dropLineEnd() && (rest.last == 0x0A || rest.last == 0x0D)
    }

    @Test func everySplitOfEveryStreamAgreesWithTheWholeStream() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = Array("\r\n\r\n:da".utf8)
        for _ in 0..<20_000 {
            let stream = (0..<Int.random(in: 1...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            var boundary = SSEEventBoundary()
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + Int.random(in: 1...4, using: &generator))
                let said = stream[start..<end].withUnsafeBytes { boundary.feed($0) }
                #expect(said == Self.endsAtBlankLine(Array(stream[..<end])), "\(stream) split at \(end)")
                start = end
            }
        }
    }

    @Test func eventsAndCommentsEndAtABlankLineAPartialEventDoesNot() {
        func says(_ reads: [String]) -> Bool {
            var boundary = SSEEventBoundary()
            var last = false
            for read in reads { last = Array(read.utf8).withUnsafeBytes { boundary.feed($0) } }
            return last
        }
        #expect(says(["data: {\"a\":1}\n\n"]))
        #expect(says([": keep-alive\r\n\r\n"]))
        #expect(says(["data: x\r\r"]))
        #expect(says(["data: x\n", "\n"]))
        #expect(says(["data: x\r\n\r", "\n"]))
        #expect(!says(["data: {\"a\":\"", "a", "a"]))
        #expect(!says(["data: a\n", "data: b\n"]), "lines of an event not yet ended")
        #expect(!says(["data: x\r\n"]))
    }
}
