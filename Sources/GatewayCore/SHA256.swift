internal import CCrypto

/// SHA-256, for fingerprints of API keys: a generation record keeps the digest of the key that
/// made it, never the key, and every replica of the gateway computes the same digest (a
/// per-process seeded hash would not). OpenSSL's libcrypto computes it (not on any per-token path).
public enum SHA256 {
    /// The 32-byte digest of `message`.
    public static func hash<Bytes: Collection>(_ message: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        let bytes = Array(message)
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { fusion_sha256(input.baseAddress, input.count, $0.baseAddress) }
        }
        // Only an OpenSSL without SHA-256 (a broken install) fails: there is no digest to fall back to.
        precondition(ok == 1, "libcrypto failed to compute SHA-256")
        return digest
    }

    /// The digest in lowercase hexadecimal.
    public static func hex<Bytes: Collection>(_ message: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in hash(message) {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
