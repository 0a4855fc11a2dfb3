import FuzzSupport
import RedisClient

/// Replies from Redis (or whatever answers on its port): arbitrary bytes, split in three where
/// the input says, through hiredis' reader with our bounds. Replies or a thrown failure, never a
/// crash, never more held than the cap plus one read; every reply within the element bound.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRedisReply(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let reader = RedisReplyReader(maxBufferedBytes: 1024)
    let first = size > 0 ? Int(bytes[0]) % (size + 1) : 0
    let second = size > 1 ? max(first, Int(bytes[1]) * 7 % (size + 1)) : first
    do {
        for range in [0..<first, first..<second, second..<size] {
            try Array(bytes[range]).withUnsafeBytes { try reader.feed($0) }
            while let reply = try reader.next() { check(reply, depth: 0) }
            precondition(reader.bufferedBytes <= 1024 + range.count + 1024, "the reader held more than its cap")
        }
    } catch {}
    return 0
}

private func check(_ reply: RedisValue, depth: Int) {
    precondition(depth <= 8, "nesting beyond hiredis' bound")
    switch reply {
    case .array(let items):
        precondition(items.count <= RedisReplyReader.maxArrayElements, "an array beyond the element bound")
        for item in items { check(item, depth: depth + 1) }
    case .status(let text), .error(let text):
        precondition(text.utf8.count <= RedisReplyReader.maxTextBytes * 3, "status text beyond its bound")
        precondition(!text.unicodeScalars.contains { $0.value < 0x20 }, "a control character in status text")
    default:
        break
    }
}

@_cdecl("FuzzRedisReply_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzRedisReply(data, size) }
}
