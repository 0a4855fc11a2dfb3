/// Comparisons whose time does not depend on where inputs differ, for secrets (API keys).
public enum ConstantTime {
    /// True when `candidate` equals any of `secrets`. Every secret is compared over its whole
    /// length whatever matches, so timing reveals neither which key matched nor a common prefix.
    public static func matchesAny(_ candidate: String, _ secrets: [String]) -> Bool {
        let candidateBytes = Array(candidate.utf8)
        var matched: UInt8 = 0
        for secret in secrets {
            matched |= equals(candidateBytes, Array(secret.utf8)) & (secret.isEmpty ? 0 : 1)
        }
        return matched == 1
    }

    /// The index of the secret `candidate` equals, comparing every secret in full as
    /// `matchesAny` does (timing reveals neither whether nor which one matched).
    public static func matchIndex(_ candidate: String, _ secrets: [String]) -> Int? {
        let candidateBytes = Array(candidate.utf8)
        var found = -1
        for (index, secret) in secrets.enumerated() {
            // An empty secret matches nothing: an empty header is no key (review 52B #1).
            let equal = Int(equals(candidateBytes, Array(secret.utf8)) & (secret.isEmpty ? 0 : 1))
            // Branch-free select: keeps the first match.
            let take = equal & (found < 0 ? 1 : 0)
            found = take * index + (1 - take) * found
        }
        return found < 0 ? nil : found
    }

    /// 1 when equal, 0 otherwise; examines max(count) bytes regardless of content.
    static func equals(_ a: [UInt8], _ b: [UInt8]) -> UInt8 {
        var difference = UInt64(a.count ^ b.count)
        let length = max(a.count, b.count)
        for index in 0..<length {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= UInt64(x ^ y)
        }
        return difference == 0 ? 1 : 0
    }
}
