/// Comparisons whose time does not depend on where inputs differ, for secrets (API keys).
public enum ConstantTime {
    /// True when `candidate` equals any of `secrets`. Every secret is compared over its whole
    /// length whatever matches, so timing reveals neither which key matched nor a common prefix.
    public static func matchesAny(_ candidate: String, _ secrets: [String]) -> Bool {
        let candidateBytes = Array(candidate.utf8)
        var matched: UInt8 = 0
        for secret in secrets {
            matched |= equals(candidateBytes, Array(secret.utf8))
        }
        return matched == 1
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
