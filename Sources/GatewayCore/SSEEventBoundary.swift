/// Whether an event stream's bytes so far end at an event's end (a blank line), fed read by read
/// and keeping only the last four bytes: O(1) a read, nothing allocated (it runs on every read of
/// every stream). A stream's idle timer counts only reads that end an event as activity: an
/// upstream trickling one byte a second into an event that never ends reset it for ever, and held
/// its client on keep-alives for as long as it liked (review 123 #1); its own keep-alive
/// comments end with a blank line and still count.
public struct SSEEventBoundary: Sendable {
    /// The last four bytes fed, the latest in the low byte (0 before any).
    private var tail: UInt32 = 0

    public init() {}

    /// Feeds one read; true when the stream now ends at a blank line ("\n\n", "\r\r",
    /// "\r\n\r\n" or a mix: two line ends in a row, CRLF counted as one).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !bytes.isEmpty else { return false }
        for byte in bytes.suffix(4) { tail = tail << 8 | UInt32(byte) }
        return endsAtBlankLine
    }

    private var endsAtBlankLine: Bool {
        let cr: UInt32 = 0x0D, lf: UInt32 = 0x0A
        func byte(_ back: Int) -> UInt32 { tail >> (8 * UInt32(back)) & 0xFF }
        let last = byte(0)
        guard last == lf || last == cr else { return false }
        // The line end before the last one: one byte back, or two when the last is a CRLF's LF.
        let before = last == lf && byte(1) == cr ? byte(2) : byte(1)
        return before == lf || before == cr
    }
}
