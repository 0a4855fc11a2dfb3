/// Eight bytes at a time (SWAR): the scans on the per-token path (an SSE line's end, a JSON
/// string's end, a chunk's keys) look at one `UInt64` where a byte loop looked at eight bytes.
/// Hand-written because it is that path; every function is a few arithmetic instructions.
///
/// A mask has the high bit of each flagged byte set. The classic tests (a byte below n shows as a
/// borrow into its high bit of `word - n×8`) flag the lowest matching byte exactly; a byte above
/// a match may be flagged falsely (the borrow runs on). So a mask's lowest flagged byte, and an
/// OR of such masks' lowest, is always a real match: `firstFlagged` is exact, and `!= 0` is
/// exact as to whether any byte matches. Little-endian: the lowest byte is the first in memory.
public enum ByteWords {
    public static let ones: UInt64 = 0x0101_0101_0101_0101
    public static let high: UInt64 = 0x8080_8080_8080_8080

    /// The eight bytes at `offset` (any alignment).
    @inlinable @inline(__always)
    public static func load(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
    }

    /// The bytes of `word` equal to `byte`.
    @inlinable @inline(__always)
    public static func equal(_ word: UInt64, _ byte: UInt8) -> UInt64 {
        let spread = word ^ (ones &* UInt64(byte))
        return (spread &- ones) & ~spread & high
    }

    /// The bytes of `word` below `bound` (at most 0x80).
    @inlinable @inline(__always)
    public static func below(_ word: UInt64, _ bound: UInt8) -> UInt64 {
        (word &- ones &* UInt64(bound)) & ~word & high
    }

    /// The bytes of `word` with their high bit set (not ASCII).
    @inlinable @inline(__always)
    public static func nonASCII(_ word: UInt64) -> UInt64 {
        word & high
    }

    /// The position (0–7) of the first flagged byte of a non-zero mask.
    @inlinable @inline(__always)
    public static func firstFlagged(_ mask: UInt64) -> Int {
        mask.trailingZeroBitCount &>> 3
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes, from `offset`, begin with `literal` (a short ASCII constant: a field
    /// name, `null`). A loop the compiler inlines: `elementsEqual` over a slice cost ~250
    /// instructions a call on the per-event path.
    @inlinable @inline(__always)
    public func hasLiteral(_ literal: StaticString, at offset: Int = 0) -> Bool {
        let length = literal.utf8CodeUnitCount
        guard offset >= 0, length <= count - offset else { return false }
        var index = 0
        while index < length {
            if self[offset + index] != literal.utf8Start[index] { return false }
            index += 1
        }
        return true
    }

    /// Whether these bytes are exactly `literal`.
    @inlinable @inline(__always)
    public func isLiteral(_ literal: StaticString) -> Bool {
        count == literal.utf8CodeUnitCount && hasLiteral(literal)
    }
}
