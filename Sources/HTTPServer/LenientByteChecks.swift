/// The bytes lenient http_parser passes without looking, checked by the decoder itself: the LF
/// after each CR of a head or a trailer section, the CRLF after chunk data and after a chunk-size
/// line, and the chunk-size line's own bytes. Offsets are in the whole stream, so a byte that
/// falls in the next buffer is checked there. A request read differently here and by a proxy in
/// front is how requests are smuggled.
struct LenientByteChecks {
    /// (stream offset, required byte, what it means if another byte is there).
    private var expected: [(offset: Int, byte: UInt8, what: StaticString)] = []
    /// Stream offset where the current chunk-size line starts (nil outside one), and the part of
    /// it already seen in earlier buffers: lenient http_parser takes anything there for a size
    /// (non-ASCII bytes, a missing size).
    private var chunkLineStart: Int?
    private var chunkLine: [UInt8] = []
    static let maxChunkLineBytes = 4096

    /// A new message: no chunk-size line is open (bytes still expected stay expected).
    mutating func beginMessage() {
        chunkLineStart = nil
        chunkLine.removeAll(keepingCapacity: true)
    }

    mutating func expect(_ byte: UInt8, at offset: Int, _ what: StaticString) {
        expected.append((offset, byte, what))
    }

    /// Every CR in the head (`range` of `bytes`, which starts at stream offset `base`) must start
    /// a CRLF. Lenient http_parser takes any byte after a CR as the LF, so
    /// `Content-Length: <CR>1<TAB>0` read as length 0 with the `1` swallowed, where RFC 9112 §2.2
    /// has a bare CR be invalid or read as a space (length "1 0", invalid).
    mutating func expectLFAfterEachCR(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>, base: Int) {
        var index = range.lowerBound
        while index < range.upperBound {
            if bytes[index] == 0x0D { expected.append((base + index + 1, 0x0A, "a CR in the request head is not followed by LF")) }
            index += 1
        }
    }

    /// The last byte of the request read so far, for a line end that starts the next read.
    var lastByte: UInt8 = 0

    /// Every LF in a chunked body's trailer section (`range` of `bytes`) ends a CRLF: chunk-size
    /// lines already need one, and a bare LF ending the section (`0\r\n\n`) let the bytes after
    /// it be read as a second request where a proxy in front that needs CRLF reads one (review
    /// 112 #2). (In the head a bare LF is a line end, as RFC 9112 §2.2 allows.)
    func refuseBareLF(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>) throws(HTTPRejection) {
        var previous = lastByte
        for index in range {
            if bytes[index] == 0x0A && previous != 0x0D { throw .malformed("a line of the trailer section does not end with CRLF") }
            previous = bytes[index]
        }
    }

    /// A chunk-size line starts at stream offset `offset`.
    mutating func startChunkLine(at offset: Int) {
        chunkLineStart = offset
        chunkLine.removeAll(keepingCapacity: true)
    }

    /// The chunk-size line just parsed (it ends at `end` in `bytes`, which starts at stream offset
    /// `base`, its CRLF included) must be hex digits, then optionally `;` and an extension of
    /// visible ASCII.
    mutating func checkChunkLine(_ bytes: UnsafeRawBufferPointer, upTo end: Int, base: Int) throws(HTTPRejection) {
        guard let start = chunkLineStart else { return }
        let from = max(start + chunkLine.count - base, 0)
        let line = chunkLine + (from < end ? Array(bytes[from..<end]) : [])
        chunkLineStart = nil
        chunkLine.removeAll(keepingCapacity: true)
        let content = line.count >= 2 ? line.dropLast(2) : line[...]
        let digits = content.prefix { Self.isHexDigit($0) }
        let rest = content.dropFirst(digits.count)
        guard (1...16).contains(digits.count), rest.isEmpty || rest.first == UInt8(ascii: ";"),
              rest.allSatisfy({ $0 == 0x09 || (0x20...0x7E).contains($0) })
        else { throw .malformed("invalid chunk size line") }
    }

    /// Keeps what this buffer held of an unfinished chunk-size line, for `checkChunkLine`.
    mutating func keepChunkLine(_ bytes: UnsafeRawBufferPointer, upTo consumed: Int, base: Int) throws(HTTPRejection) {
        guard let start = chunkLineStart else { return }
        let from = max(start + chunkLine.count - base, 0)
        guard from < consumed else { return }
        chunkLine.append(contentsOf: bytes[from..<consumed])
        if chunkLine.count > Self.maxChunkLineBytes { throw .malformed("chunk size line too long") }
    }

    /// Checks the expected bytes that lie in `bytes` (starting at stream offset `base`; consumed
    /// yet or not, they are the same bytes either way); the rest wait for the next buffer.
    mutating func check(_ bytes: UnsafeRawBufferPointer, base: Int) throws(HTTPRejection) {
        guard !expected.isEmpty else { return }
        var waiting: [(offset: Int, byte: UInt8, what: StaticString)] = []
        for item in expected {
            let index = item.offset - base
            guard index < bytes.count else {
                waiting.append(item)
                continue
            }
            if index < 0 || bytes[index] != item.byte { throw .malformed(item.what.description) }
        }
        expected = waiting
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }
}
