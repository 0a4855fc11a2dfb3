import GatewayCore
import PropertyBased
@testable import Surfaces
import Testing

/// A relayed event's three repairs (bytes that are not UTF-8, lone surrogate escapes, a data
/// line's line breaks and separators) run only when `SSERelay.mayNeedRepair` says they may
/// change something: whatever it skips, they would have left as it was.
@Suite struct RepairSkipTests {
    static let pieces: [[UInt8]] = [Array("abcdefg".utf8), Array(#"{"a":"b"}"#.utf8), [0x5C], Array(#"\ud83d"#.utf8), Array(#"\ude00"#.utf8),
                                    Array(#"\n"#.utf8), [0x0A], [0x0D], [0x09], [0x01], [0x7F], [0xC2, 0x85], [0xE2, 0x80, 0xA8], [0xE2, 0x80, 0xA9],
                                    [0xC3, 0xA9], [0xFF], [0xC3], [0xF0, 0x9F, 0x98, 0x80], Array("        ".utf8), [0x20], [0x22]]
    static let text = Gen.int(in: 0...(pieces.count - 1)).array(of: 0...40)

    @Test func aSkippedRepairWouldHaveChangedNothing() async {
        await propertyCheck(count: 4000, input: zip(Self.text, Gen.int(in: 0...9))) { choice, prefix in
            let bytes = Array(repeating: UInt8(ascii: "x"), count: prefix) + choice.flatMap { Self.pieces[$0] }
            var repaired = bytes
            SSERelay.repairUTF8(&repaired, from: prefix)
            SSERelay.repairSurrogateEscapes(&repaired, from: prefix)
            SSEEncoder.makeDataLineSafe(&repaired, from: prefix)
            if repaired != bytes { #expect(SSERelay.mayNeedRepair(bytes, from: prefix), "\(bytes)") }
            // Only what may need it is flagged: plain printable ASCII never is.
            if bytes[prefix...].allSatisfy({ $0 >= 0x20 && $0 < 0x80 && $0 != 0x5C }) { #expect(!SSERelay.mayNeedRepair(bytes, from: prefix)) }
        }
    }
}
