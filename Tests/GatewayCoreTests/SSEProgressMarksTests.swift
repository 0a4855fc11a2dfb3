import GatewayCore
import Testing

/// `SSEDecoder.progressMarks` counts the events and comment lines a stream completed, however it
/// is split into reads: what the idle timers count as an upstream's activity (reviews 123 #1,
/// 124 #1 and #4).
@Suite struct SSEProgressMarksTests {
    static func marks(_ reads: [String]) throws -> [Int] {
        var decoder = SSEDecoder()
        return try reads.map { read in
            try decoder.feed(Array(read.utf8)) { _ in }
            return decoder.progressMarks
        }
    }

    @Test func everySplitCountsEachEventAndCommentOnce() throws {
        let stream = Array("data: {\"a\":1}\n\n: keep-alive\r\n\r\nevent: x\rdata: 2\r\rdata: 3\ndata: 4\n\n\n\nx\n\n".utf8)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var decoder = SSEDecoder()
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + Int.random(in: 1...7, using: &generator))
                try decoder.feed(Array(stream[start..<end])) { _ in }
                start = end
            }
            #expect(decoder.progressMarks == 4, "three events with data, one comment")
        }
    }

    @Test func bytesThatCompleteNothingAreNoProgress() throws {
        #expect(try Self.marks(["data: {\"a\":\"", "a", "a", "a"]) == [0, 0, 0, 0], "an event never ended")
        #expect(try Self.marks(["\n", "\r", "\n\n", "x\n\n", "data: a\n", "data: b\n"]) == [0, 0, 0, 0, 0, 0], "blank lines, no field, no blank line")
        #expect(try Self.marks(["data:\n\n", "data: \r\r", "event: x\ndata:\n\n"]) == [0, 0, 0], "events whose data is empty, which every reader drops")
        #expect(try Self.marks(["data: a\n\ndata: {\"b", "\":2}\n", "\n", ": ping\n"]) == [1, 1, 2, 3], "a read ending inside the next event still counts the one it ended")
    }
}
