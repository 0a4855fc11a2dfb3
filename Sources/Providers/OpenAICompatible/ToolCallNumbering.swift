/// Gives each tool call of an OpenAI-wire stream its own index, whatever the server numbered.
///
/// Some OpenAI-compatible servers number every parallel call 0, or leave `index` out (its
/// position in the chunk's array stands in), and tell calls apart by their `id` alone; read
/// by index, two such calls merge into one with arguments like `{"a":1}{"z":1}`. Others (DeepSeek,
/// GLM, Kimi) give parallel calls one id, each at its own index or under a new name. So:
/// - a fragment with an id seen before at the same upstream index continues that call (a server
///   that repeats a call's id on every fragment, as llama-cpp-python does, or one that went back
///   to an earlier call), unless it names another function: that is a new call with the same id;
/// - an id seen only at another index continues its latest call when the fragment names no
///   function (a server that leaves `index` out lists only the calls with new bytes, so a call's
///   position changes: review 54 #1), and starts a new call when it names one (DeepSeek's
///   parallel calls sharing one id: review 52A #2, `{"a":1}{"b":2}` under the first call's name);
/// - a new id with a name, at an index another call holds, starts a new call under the next
///   free index (a call's first fragment names its function);
/// - anything else continues the call its index holds (a changed id without a name is no
///   call of its own: it could not be run).
/// Only a call's first id and name are passed on, since a client's accumulator would
/// concatenate repeats ("lookuplookup"); an id another call was given is passed on made unique
/// (`UniqueToolCallIDs`).
///
/// Touched only by tool-call fragments; at most `limit` calls per stream.
struct ToolCallNumbering {
    private struct Call {
        /// The upstream's id, as its later fragments repeat it.
        var id: String?
        var name: String?
    }

    /// An id as seen at one upstream index.
    private struct Seen: Hashable {
        var upstream: Int
        var id: String
    }

    /// The call (its index) each upstream index holds now.
    private var current: [Int: Int] = [:]
    /// Every call by the index it was given.
    private var calls: [Int: Call] = [:]
    /// The latest call each id started at each upstream index.
    private var byID: [Seen: Int] = [:]
    /// The latest call each id started, wherever.
    private var latestByID: [String: Int] = [:]
    private var ids = UniqueToolCallIDs()
    private var nextFree = 0
    let limit: Int
    /// Calls numbered 0, 1, 2… in the order they start, whatever the upstream's indexes (a
    /// client's list: the OpenAI SDK's stream helper raised on a first call at index 5; review
    /// 69). Otherwise a free upstream index is kept.
    let dense: Bool

    init(limit: Int, dense: Bool = false) {
        self.limit = limit
        self.dense = dense
    }

    /// The fragment under the index of its call, or nil when it would be call `limit + 1`.
    mutating func number(_ fragment: ToolCallFragment) -> ToolCallFragment? {
        var fragment = fragment
        if fragment.name?.isEmpty == true { fragment.name = nil }  // `"name": ""` names nothing (review 54 #3)
        let upstream = fragment.index
        let index: Int
        if let id = fragment.id, let known = byID[Seen(upstream: upstream, id: id)] {
            if fragment.name == nil || calls[known]?.name == nil || calls[known]?.name == fragment.name {
                index = known
            } else {
                guard let claimed = claim(preferring: nil) else { return nil }
                index = claimed
            }
        } else if let id = fragment.id, fragment.name == nil, let latest = latestByID[id] {
            index = latest
        } else if let held = current[upstream], fragment.id == nil || calls[held]?.id == nil || fragment.name == nil {
            index = held
        } else {
            guard let claimed = claim(preferring: current[upstream] == nil ? upstream : nil) else { return nil }
            index = claimed
        }
        current[upstream] = index
        var call = calls[index] ?? Call()
        if call.id == nil, let id = fragment.id {
            call.id = id  // the call's first id: passed on once, unique among the stream's calls
            byID[Seen(upstream: upstream, id: id)] = index
            latestByID[id] = index
            fragment.id = ids.claim(id)
        } else {
            fragment.id = nil
        }
        if let name = fragment.name {
            if call.name != nil { fragment.name = nil } else { call.name = name }
        }
        calls[index] = call
        fragment.index = index
        return fragment
    }

    private mutating func claim(preferring index: Int?) -> Int? {
        guard calls.count < limit else { return nil }
        if !dense, let index, calls[index] == nil {
            nextFree = max(nextFree, index + 1)
            return index
        }
        while calls[nextFree] != nil { nextFree += 1 }
        nextFree += 1
        return nextFree - 1
    }
}
