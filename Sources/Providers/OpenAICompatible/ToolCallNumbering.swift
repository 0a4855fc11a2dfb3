/// Gives each tool call of an OpenAI-wire stream its own index, whatever the server numbered.
///
/// Some OpenAI-compatible servers number every parallel call 0, or leave `index` out (its
/// position in the chunk's array stands in), and tell calls apart by their `id` alone; read
/// by index, two such calls merge into one with arguments like `{"a":1}{"z":1}`. So a
/// fragment carrying an id other than the one its index holds starts a new call, under the
/// next free index; fragments without an id continue the call their index holds now. A
/// server that repeats a call's id on every fragment (llama-cpp-python) repeats the same id,
/// which continues the call. Only the id and name of a call's first fragment are passed on,
/// since a client's accumulator would concatenate repeats ("lookuplookup").
///
/// Touched only by tool-call fragments; at most `limit` calls per stream.
struct ToolCallNumbering {
    private struct Call {
        var index: Int
        var id: String?
        var namePassed = false
    }

    /// The call each upstream index holds now.
    private var current: [Int: Call] = [:]
    /// Every index given out, so an upstream index used later never lands on a renumbered call.
    private var taken: Set<Int> = []
    private var nextFree = 0
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// The fragment under the index of its call, or nil when it would be call `limit + 1`.
    mutating func number(_ fragment: ToolCallFragment) -> ToolCallFragment? {
        var fragment = fragment
        let upstream = fragment.index
        var call: Call
        if let held = current[upstream], fragment.id == nil || held.id == nil || fragment.id == held.id {
            call = held
            if call.id == nil, let id = fragment.id {
                call.id = id // the call's first id: passed on once
            } else {
                fragment.id = nil
            }
        } else {
            // A call never seen, or a new id at an index another call holds.
            guard let index = claim(preferring: current[upstream] == nil ? upstream : nil) else { return nil }
            call = Call(index: index, id: fragment.id)
        }
        if fragment.name != nil {
            if call.namePassed { fragment.name = nil } else { call.namePassed = true }
        }
        current[upstream] = call
        fragment.index = call.index
        return fragment
    }

    private mutating func claim(preferring index: Int?) -> Int? {
        guard taken.count < limit else { return nil }
        if let index, taken.insert(index).inserted {
            nextFree = max(nextFree, index + 1)
            return index
        }
        while taken.contains(nextFree) { nextFree += 1 }
        taken.insert(nextFree)
        nextFree += 1
        return nextFree - 1
    }
}
