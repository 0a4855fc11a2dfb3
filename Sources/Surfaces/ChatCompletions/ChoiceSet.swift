/// A set of choice indexes below 128 (`n`'s limit), as two words: no allocation.
struct ChoiceSet: Equatable {
    static let capacity = 128
    private var low: UInt64 = 0
    private var high: UInt64 = 0

    mutating func insert(_ index: Int) {
        precondition((0..<Self.capacity).contains(index))
        if index < 64 { low |= 1 << UInt64(index) } else { high |= 1 << UInt64(index - 64) }
    }

    func isSubset(of other: ChoiceSet) -> Bool { low & ~other.low == 0 && high & ~other.high == 0 }

    /// The least index here that `other` lacks.
    func first(notIn other: ChoiceSet) -> Int? {
        let low = low & ~other.low, high = high & ~other.high
        if low != 0 { return low.trailingZeroBitCount }
        return high != 0 ? 64 + high.trailingZeroBitCount : nil
    }
}
