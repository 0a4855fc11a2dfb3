import PropertyBased
@testable import RedisClient
import Testing

/// hiredis' RESP reader with our bounds, fed as Redis (or anything on its port) might send:
/// whole, byte by byte, split at every position, and hostile.
@Suite struct RedisReplyReaderTests {
    static func replies(_ chunks: [[UInt8]], maxBufferedBytes: Int = 1 << 20) throws -> [RedisValue] {
        let reader = RedisReplyReader(maxBufferedBytes: maxBufferedBytes)
        var out: [RedisValue] = []
        for chunk in chunks {
            try chunk.withUnsafeBytes { try reader.feed($0) }
            while let reply = try reader.next() { out.append(reply) }
        }
        return out
    }

    static let sample = Array("+OK\r\n-ERR wrong\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n*0\r\n".utf8)
    static let expected: [RedisValue] = [
        .status("OK"), .error("ERR wrong"), .integer(42), .integer(-7), .bulk(Array("hello".utf8)), .bulk([]), .null,
        .array([.bulk([UInt8(ascii: "a")]), .array([.integer(1)])]), .null, .array([]),
    ]

    @Test func everyTypeWholeByteByByteAndSplitEverywhere() throws {
        #expect(try Self.replies([Self.sample]) == Self.expected)
        #expect(try Self.replies(Self.sample.map { [$0] }) == Self.expected)
        for split in 0...Self.sample.count {
            #expect(try Self.replies([Array(Self.sample[..<split]), Array(Self.sample[split...])]) == Self.expected, "split at \(split)")
        }
    }

    @Test func binaryBulkStringsAreKeptByteForByte() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 36, 42]
        #expect(try Self.replies([Array("$6\r\n".utf8) + payload + [13, 10]]) == [.bulk(payload)])
    }

    @Test func aHugeAnnouncedBulkStopsAtTheBufferCap() throws {
        // hiredis would wait for 2^63 bytes; we stop once more than the cap is held.
        let head = Array("$9223372036854775000\r\n".utf8)
        let filler = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        #expect(throws: RedisReplyReader.Failure.self) {
            _ = try Self.replies([head] + Array(repeating: filler, count: 5), maxBufferedBytes: 16 * 1024)
        }
    }

    @Test func anArrayAnnouncingTooManyElementsIsRefusedBeforeAllocation() throws {
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array("*2000000000\r\n".utf8)]) }
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array("*4097\r\n".utf8)]) }
        let fine = Array("*4096\r\n".utf8) + Array(repeating: Array(":1\r\n".utf8), count: 4096).flatMap { $0 }
        #expect(try Self.replies([fine]).first?.array?.count == 4096)
    }

    /// hiredis drops the input it consumed while it builds a reply: an array of arrays that never
    /// ends held nothing "buffered" and grew the heap by hundreds of megabytes (review 45 Redis
    /// #3). What a reply under construction holds is capped too; the next reply starts afresh.
    @Test func aReplyThatNeverEndsStopsAtTheCapWhateverIsBuffered() throws {
        let reader = RedisReplyReader(maxBufferedBytes: 1 << 20)
        let string = Array("$1000\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 1000) + Array("\r\n".utf8)
        let inner = Array("*4096\r\n".utf8) + Array(repeating: string, count: 4096).flatMap { $0 }
        var fed = 0
        var failure: RedisReplyReader.Failure?
        do {
            try Array("*4096\r\n".utf8).withUnsafeBytes { try reader.feed($0) }
            for _ in 0..<64 {
                for start in stride(from: 0, to: inner.count, by: 65_536) {
                    let piece = Array(inner[start..<min(inner.count, start + 65_536)])
                    try piece.withUnsafeBytes { try reader.feed($0) }
                    fed += piece.count
                    #expect(try reader.next() == nil)
                    #expect(reader.bufferedBytes < 1 << 20)
                }
            }
        } catch let error as RedisReplyReader.Failure {
            failure = error
        }
        #expect(failure?.reason.contains("exceeds") == true, "\(String(describing: failure)) after \(fed) bytes")
        #expect(fed <= (1 << 20) + 65_536, "stopped at the cap: \(fed) bytes")
        // Replies within the cap, one after another, each counted on its own.
        let chunk = Array("$600000\r\n".utf8) + [UInt8](repeating: 1, count: 600_000) + Array("\r\n".utf8)
        #expect(try Self.replies([chunk, chunk, chunk]).count == 3)
    }

    @Test func deepNestingAndGarbageAreErrorsNotCrashes() throws {
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array(String(repeating: "*1\r\n", count: 20).utf8)]) }
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array("?what\r\n".utf8)]) }
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array("$abc\r\n".utf8)]) }
        #expect(throws: RedisReplyReader.Failure.self) { _ = try Self.replies([Array("$-5\r\n".utf8)]) }
    }

    @Test func statusAndErrorTextIsBoundedAndHasNoControlCharacters() throws {
        let long = "-" + String(repeating: "E", count: 1000) + "\u{1b}[31m\r\n"
        let reply = try Self.replies([Array(long.utf8)]).first
        guard case .error(let text) = reply else { Issue.record("not an error: \(String(describing: reply))"); return }
        #expect(text.utf8.count <= RedisReplyReader.maxTextBytes)
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 })
    }

    /// Whatever bytes arrive, in whatever pieces: replies or a thrown failure, never a crash, and
    /// never more held than the cap plus one read.
    @Test func randomBytesNeverCrash() async {
        let alphabet = Array("*$:+-\r\n0123456789-abc".utf8)
        await propertyCheck(count: 2000, input: Gen.int(in: 0...(alphabet.count - 1)).array(of: 0...200), Gen.int(in: 1...16)) { indices, piece in
            let bytes = indices.map { alphabet[$0] }
            let reader = RedisReplyReader(maxBufferedBytes: 256)
            var offset = 0
            do {
                while offset < bytes.count {
                    let end = min(bytes.count, offset + piece)
                    try Array(bytes[offset..<end]).withUnsafeBytes { try reader.feed($0) }
                    while try reader.next() != nil {}
                    #expect(reader.bufferedBytes <= 256 + piece + 1024)
                    offset = end
                }
            } catch {}
        }
    }

    /// Well-formed replies come back equal whatever the pieces they arrive in.
    @Test func wellFormedRepliesRoundTripInAnyPieces() async {
        let values = Gen.int(in: 0...4).array(of: 1...6).map { kinds in
            kinds.enumerated().map { index, kind -> RedisValue in
                switch kind {
                case 0: .integer(Int64(index) * 1_000_003 - 500)
                case 1: .bulk(Array("v\(index)\r\n\u{0}".utf8))
                case 2: .status("S\(index)")
                case 3: .null
                default: .array([.integer(Int64(index)), .bulk([])])
                }
            }
        }
        await propertyCheck(count: 300, input: values, Gen.int(in: 1...7)) { values, piece in
            let bytes = values.flatMap(Self.encode)
            let chunks = stride(from: 0, to: bytes.count, by: piece).map { Array(bytes[$0..<min(bytes.count, $0 + piece)]) }
            #expect((try? Self.replies(chunks)) == values)
        }
    }

    static func encode(_ value: RedisValue) -> [UInt8] {
        switch value {
        case .bulk(let bytes): Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
        case .status(let text): Array("+\(text)\r\n".utf8)
        case .error(let text): Array("-\(text)\r\n".utf8)
        case .integer(let number): Array(":\(number)\r\n".utf8)
        case .null: Array("$-1\r\n".utf8)
        case .array(let items): Array("*\(items.count)\r\n".utf8) + items.flatMap(encode)
        }
    }

    @Test func commandsAreEncodedAsRESPArraysOfBulkStrings() {
        let encoded = RedisCommandEncoder.encode([Array("SET".utf8), Array("k".utf8), [0, 13, 10]])
        #expect(encoded == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n".utf8) + [0, 13, 10] + [13, 10])
        #expect(RedisCommandEncoder.encode([Array("GET".utf8), []]) == Array("*2\r\n$3\r\nGET\r\n$0\r\n\r\n".utf8))
    }
}

@Suite struct RedisEndpointTests {
    @Test(arguments: [
        ("redis://127.0.0.1:6380/2", RedisEndpoint(host: "127.0.0.1", port: 6380, database: 2)),
        ("redis://redis", RedisEndpoint(host: "redis")),
        ("redis://cache.internal:7000", RedisEndpoint(host: "cache.internal", port: 7000)),
        ("redis://[::1]:6379/0", RedisEndpoint(host: "::1")),
        ("redis://gateway@10.0.0.5/1", RedisEndpoint(host: "10.0.0.5", database: 1, username: "gateway")),
    ])
    func validURLs(url: String, expected: RedisEndpoint) throws {
        #expect(try RedisEndpoint.parse(url: url) == expected)
    }

    @Test(arguments: ["http://x", "rediss://x", "redis://", "redis://h:0", "redis://h:65536", "redis://h:99999999999999999999",
                      "redis://h/65536", "redis://h/-1", "redis://user:secret@h", "redis://:secret@h", "redis://[::1", "redis://h x"])
    func invalidURLs(url: String) {
        #expect(throws: RedisEndpoint.Invalid.self) { try RedisEndpoint.parse(url: url) }
    }

    @Test func backoffGrowsIsCappedAndJittered() {
        let backoff = RedisBackoff(baseMilliseconds: 100, maxMilliseconds: 5_000)
        #expect(backoff.ceiling(failures: 1) == 100)
        #expect(backoff.ceiling(failures: 2) == 200)
        #expect(backoff.ceiling(failures: 7) == 5_000)
        #expect(backoff.ceiling(failures: Int.max) == 5_000)
        var generator = SystemRandomNumberGenerator()
        for failures in [1, 3, 10, 1_000] {
            let delay = backoff.delay(failures: failures, using: &generator)
            #expect(delay >= backoff.ceiling(failures: failures) / 2 && delay <= backoff.ceiling(failures: failures))
        }
    }
}
