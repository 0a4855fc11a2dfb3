import GatewayCore
import PropertyBased
@testable import Surfaces
import Testing

/// A relayed event's three repairs (bytes that are not UTF-8, lone surrogate escapes, a data
/// line's line breaks and separators) run only as `SSERelay.repairsNeeded` says: whatever it
/// skips, they would have left as it was.
@Suite struct RepairSkipTests {
    static let pieces: [[UInt8]] = [Array("abcdefg".utf8), Array(#"{"a":"b"}"#.utf8), [0x5C], Array(#"\ud83d"#.utf8), Array(#"\ude00"#.utf8),
                                    Array(#"\n"#.utf8), [0x0A], [0x0D], [0x09], [0x01], [0x7F], [0xC2, 0x85], [0xE2, 0x80, 0xA8], [0xE2, 0x80, 0xA9],
                                    [0xC3, 0xA9], [0xFF], [0xC3], [0xF0, 0x9F, 0x98, 0x80], Array("        ".utf8), [0x20], [0x22]]
    static let text = Gen.int(in: 0...(pieces.count - 1)).array(of: 0...40)

    @Test func aSkippedRepairWouldHaveChangedNothing() async {
        await propertyCheck(count: 4000, input: zip(Self.text, Gen.int(in: 0...9))) { choice, prefix in
            let bytes = Array(repeating: UInt8(ascii: "x"), count: prefix) + choice.flatMap { Self.pieces[$0] }
            var all = bytes
            SSERelay.repairUTF8(&all, from: prefix)
            SSERelay.repairSurrogateEscapes(&all, from: prefix)
            SSEEncoder.makeDataLineSafe(&all, from: prefix)
            var chosen = bytes
            switch SSERelay.repairsNeeded(bytes, from: prefix) {
            case .none:
                break
            case .escapes:
                SSERelay.repairSurrogateEscapes(&chosen, from: prefix)
            case .all:
                chosen = all
            }
            #expect(chosen == all, "\(bytes)")
            // Plain printable ASCII needs none; with a backslash, at most the escapes' repair.
            let rest = bytes[prefix...]
            if rest.allSatisfy({ $0 >= 0x20 && $0 < 0x80 }) {
                #expect(SSERelay.repairsNeeded(bytes, from: prefix) == (rest.contains(0x5C) ? .escapes : .none))
            }
        }
    }
}
