import GatewayCore

/// Who may read a generation record: when the gateway has keys, a record keeps the fingerprint of
/// the key that made its request (never the key) and is shown only to a request presenting the
/// same key. Any other key gets the same 404 as an id that does not exist, so ids cannot be probed.
enum KeyFingerprint {
    /// `sha256:` and the hex SHA-256 of the key: the same on every replica, and no way back to
    /// the key (gateway keys are long random strings, not passwords a dictionary could find).
    static func of(_ key: String) -> String { "sha256:" + SHA256.hex(Array(key.utf8)) }

    /// The record's owner for a request that presented `key` (nil when the gateway has no keys).
    static func owner(presentedKey key: String?, gatewayHasKeys: Bool) -> String? {
        guard gatewayHasKeys else { return nil }
        return of(key ?? "")
    }

    /// Whether a request whose key has fingerprint `presented` (see `owner`) may read a record
    /// owned by `owner`. Without gateway keys every record is readable; with them, only by its
    /// owner (compared in constant time), and a record with no owner by no one. The caller
    /// fingerprints the presented key before looking the record up, so a missing record and
    /// someone else's take the same work.
    static func mayRead(owner: String?, presented: String?, gatewayHasKeys: Bool) -> Bool {
        guard gatewayHasKeys else { return true }
        guard let owner, let presented else { return false }
        return ConstantTime.matchesAny(presented, [owner])
    }
}
