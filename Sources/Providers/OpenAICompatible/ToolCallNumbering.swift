/// Gives each tool call of an OpenAI-wire stream its own index, whatever the server numbered.
///
/// Some OpenAI-compatible servers number every parallel call 0, or leave `index` out (its
/// position in the chunk's array stands in), and tell calls apart by their `id` alone; read
/// by index, two such calls merge into one with arguments like `{"a":1}{"z":1}`. So:
/// - a fragment with an id seen before continues that call (a server that repeats a call's id
///   on every fragment, as llama-cpp-python does, or one that went back to an earlier call);
/// - a new id with a name, at an index another call holds, starts a new call under the next
///   free index (a call's first fragment names its function);
/// - anything else continues the call its index holds (a changed id without a name is no
///   call of its own: it could not be run).
/// Only a call's first id and name are passed on, since a client's accumulator would
/// concatenate repeats ("lookuplookup").
///
/// Touched only by tool-call fragments; at most `limit` calls per stream.
struct ToolCallNumbering {
    private struct Call {
        var id: String?
        var namePassed = false
    }

    /// The call (its index) each upstream index holds now.
    private var current: [Int: Int] = [:]
    /// Every call by the index it was given.
    private var calls: [Int: Call] = [:]
    private var byID: [String: Int] = [:]
    private var nextFree = 0
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// The fragment under the index of its call, or nil when it would be call `limit + 1`.
    mutating func number(_ fragment: ToolCallFragment) -> ToolCallFragment? {
        var fragment = fragment
        let upstream = fragment.index
        let index: Int
        if let id = fragment.id, let known = byID[id] {
            index = known
        } else if let held = current[upstream], fragment.id == nil || calls[held]?.id == nil || fragment.name == nil {
            index = held
        } else {
            guard let claimed = claim(preferring: current[upstream] == nil ? upstream : nil) else { return nil }
            index = claimed
        }
        current[upstream] = index
        var call = calls[index] ?? Call()
        if call.id == nil, let id = fragment.id {
            call.id = id  // the call's first id: passed on once
            byID[id] = index
        } else {
            fragment.id = nil
        }
        if fragment.name != nil {
            if call.namePassed { fragment.name = nil } else { call.namePassed = true }
        }
        calls[index] = call
        fragment.index = index
        return fragment
    }

    private mutating func claim(preferring index: Int?) -> Int? {
        guard calls.count < limit else { return nil }
        if let index, calls[index] == nil {
            nextFree = max(nextFree, index + 1)
            return index
        }
        while calls[nextFree] != nil { nextFree += 1 }
        nextFree += 1
        return nextFree - 1
    }
}
