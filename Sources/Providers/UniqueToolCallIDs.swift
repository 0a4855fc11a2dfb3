/// The ids one answer's tool calls went out with, so that no two calls share one.
///
/// DeepSeek's, GLM's and Kimi's endpoints give parallel calls one id (review 52A #2). A client
/// answers each call by its id: openai-python's `responses.stream()` raises on two
/// `function_call` items with one `call_id`, and the gateway refuses such a turn sent back. A
/// repeat gets the first free suffix (`same`, `same_1`, `same_2`), which the next turn sends back
/// consistently. An empty id is left as it is: the client surface makes one.
///
/// Every decoder keeps one per answer; touched once per call, never per delta.
struct UniqueToolCallIDs {
    private var taken: Set<String> = []
    /// Per repeated id, the suffix to try next: a hostile upstream repeating one id for every
    /// call costs one probe per call, not a scan from `_1` each time (quadratic).
    private var nextSuffix: [String: Int] = [:]

    /// `id`, or `id_N` when an earlier call of this answer went out with `id`.
    mutating func claim(_ id: String) -> String {
        if id.isEmpty || taken.insert(id).inserted { return id }
        var suffix = nextSuffix[id, default: 1]
        while !taken.insert("\(id)_\(suffix)").inserted { suffix += 1 }
        nextSuffix[id] = suffix + 1
        return "\(id)_\(suffix)"
    }
}
