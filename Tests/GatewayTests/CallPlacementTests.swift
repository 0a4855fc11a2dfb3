import PropertyBased
import Testing
@testable import Gateway

/// Where a panel member runs: its session's loop unless that loop is clearly the busiest.
@Suite struct CallPlacementTests {
    @Test(arguments: [
        // (own, open calls per loop, margin, expected)
        (0, [0, 0], 8, 0),
        (0, [8, 0], 8, 0),  // exactly the margin beyond: stays
        (0, [9, 0], 8, 1),
        (1, [0, 9], 8, 0),
        (0, [12, 5, 3, 3], 8, 2),  // the least busy, the first of equals
        (2, [3, 0, 4], 8, 2),
        (0, [0], 0, 0),  // one loop: always its own
        (0, [1, 0], 0, 1),  // margin 0 spreads
        (0, [1, 1], 0, 0),
    ])
    func placement(own: Int, loads: [Int], margin: Int, expected: Int) {
        #expect(CallPlacement.loop(own: own, loads: loads, margin: margin) == expected)
    }

    /// However loaded the loops: the member goes to its own loop, or to a least busy loop that
    /// its own exceeds by more than the margin.
    @Test func theChoiceIsTheOwnLoopOrALeastBusyOneBeyondTheMargin() async {
        await propertyCheck(input: Gen.int(in: 0...40).array(of: 1...8), Gen.int(in: 0...12), Gen.int(in: 0...7)) { loads, margin, own in
            let own = own % loads.count
            let chosen = CallPlacement.loop(own: own, loads: loads, margin: margin)
            if chosen != own {
                #expect(loads[chosen] == loads.min() && loads[own] - loads[chosen] > margin)
            } else {
                #expect(loads[own] - loads.min()! <= margin)
            }
        }
    }

    /// A panel placed member after member, each counted as it goes (as `CallHandle` does), from
    /// idle loops: with margin 0 it alternates over every loop; with the default it stays home.
    @Test func aPanelFromIdleLoops() {
        func place(members: Int, loops: Int, margin: Int) -> [Int] {
            var loads = Array(repeating: 0, count: loops)
            for _ in 0..<members { loads[CallPlacement.loop(own: 0, loads: loads, margin: margin)] += 1 }
            return loads
        }
        #expect(place(members: 8, loops: 2, margin: 8) == [8, 0])
        #expect(place(members: 8, loops: 4, margin: 0) == [2, 2, 2, 2])
        #expect(place(members: 4, loops: 2, margin: 2) == [3, 1])
    }
}
