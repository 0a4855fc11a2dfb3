extension JSONScanner {
    /// Members written first into every object by `appendObject(_:leading:to:)`, pre-rendered
    /// once per stream: the per-event path then copies one run of bytes and compares raw keys,
    /// touching no array of arrays (whose elements Swift would retain and release per event).
    public struct LeadingMembers: Sendable {
        /// `"key":value,"key":value` (no braces).
        let rendered: [UInt8]
        /// Every key, back to back; `keyEnds[i]` is where key `i` ends in it.
        let keys: [UInt8]
        let keyEnds: [Int]

        /// `members`: raw keys (no quotes, no escapes) and already-encoded JSON values.
        public init(_ members: [(key: [UInt8], value: [UInt8])]) {
            var rendered: [UInt8] = []
            var keys: [UInt8] = []
            var keyEnds: [Int] = []
            // Sized up front: built once per request, and each growth is an allocation.
            let keyBytes = members.reduce(0) { $0 + $1.key.count }
            rendered.reserveCapacity(members.reduce(keyBytes) { $0 + $1.value.count + 4 })
            keys.reserveCapacity(keyBytes)
            keyEnds.reserveCapacity(members.count)
            for (index, member) in members.enumerated() {
                if index > 0 { rendered.append(UInt8(ascii: ",")) }
                rendered.append(UInt8(ascii: "\""))
                rendered.append(contentsOf: member.key)
                rendered.append(contentsOf: #"":"#.utf8)
                rendered.append(contentsOf: member.value)
                keys.append(contentsOf: member.key)
                keyEnds.append(keys.count)
            }
            self.rendered = rendered
            self.keys = keys
            self.keyEnds = keyEnds
        }

        private init(rendered: [UInt8], keys: [UInt8], keyEnds: [Int]) {
            self.rendered = rendered
            self.keys = keys
            self.keyEnds = keyEnds
        }

        /// These members and one more (raw key, encoded value) after them.
        public func appending(key: [UInt8], value: [UInt8]) -> LeadingMembers {
            var rendered = rendered
            if !rendered.isEmpty { rendered.append(UInt8(ascii: ",")) }
            rendered.append(UInt8(ascii: "\""))
            rendered.append(contentsOf: key)
            rendered.append(contentsOf: #"":"#.utf8)
            rendered.append(contentsOf: value)
            return LeadingMembers(rendered: rendered, keys: self.keys + key, keyEnds: keyEnds + [self.keys.count + key.count])
        }

        public var isEmpty: Bool { keyEnds.isEmpty }

        /// Whether `key` (raw bytes) is one of the leading members' keys.
        func contains(_ key: UnsafeRawBufferPointer) -> Bool {
            keys.withUnsafeBytes { keys in
                keyEnds.withUnsafeBufferPointer { ends in
                    var start = 0
                    for end in ends {
                        if end - start == key.count && memoryEqual(keys.baseAddress! + start, key.baseAddress, key.count) { return true }
                        start = end
                    }
                    return false
                }
            }
        }
    }
}
