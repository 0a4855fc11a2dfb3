internal import CHiredis

/// Turns bytes read from Redis into replies, with hiredis' RESP parser and our bounds on top:
/// a Redis server (or whatever answers on its port) is as hostile as any peer.
///
/// - Bytes waiting for a reply to complete are capped (`maxBufferedBytes`): a bulk length of
///   `$9223372036854775807` makes hiredis wait for that many bytes; we stop at the cap instead.
/// - So is the reply being built (`ReplyBudget`): hiredis drops the input it has consumed while
///   it builds a reply, so a never-ending array of arrays grew the heap by hundreds of megabytes
///   with nothing buffered (review 45 Redis #3).
/// - An array announcing more than `maxArrayElements` is refused before hiredis allocates it
///   (hiredis 0.14 callocs the announced count up front).
/// - Nesting is bounded by hiredis itself (7 levels); status and error texts are cut to 256
///   bytes with control characters replaced, since they end up in log lines.
///
/// Not thread-safe; one per connection. After an error the reader is spent.
public final class RedisReplyReader {
    public struct Failure: Error, Equatable { public let reason: String }

    public static let maxArrayElements = 4096
    /// The most bytes a single bulk string may have, whatever the buffer cap.
    public static let maxBulkBytes = 64 << 20
    public static let maxTextBytes = 256

    public let maxBufferedBytes: Int
    private let reader: UnsafeMutablePointer<redisReader>
    /// What the reply being built holds, charged by `boundedFunctions` through the reader's
    /// private data (they are C callbacks: no captures).
    private let budget: UnsafeMutablePointer<ReplyBudget>
    private(set) var failed = false

    public init(maxBufferedBytes: Int) {
        self.maxBufferedBytes = maxBufferedBytes
        budget = .allocate(capacity: 1)
        budget.initialize(to: ReplyBudget(limit: maxBufferedBytes))
        // Only fails when malloc does.
        reader = redisReaderCreateWithFunctions(boundedFunctions)!
        reader.pointee.privdata = UnsafeMutableRawPointer(budget)
    }

    deinit {
        redisReaderFree(reader)
        budget.deallocate()
    }

    /// Bytes held for replies not yet complete.
    public var bufferedBytes: Int { Int(reader.pointee.len) - Int(reader.pointee.pos) }

    public func feed(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard !failed else { throw Failure(reason: "reader already failed") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw fail()
        }
    }

    /// The next complete reply, or nil until more bytes arrive. Throws when the bytes are not
    /// RESP or break a bound.
    public func next() throws(Failure) -> RedisValue? {
        guard !failed else { throw Failure(reason: "reader already failed") }
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw fail() }
        guard let raw else {
            if budget.pointee.exceeded {
                failed = true
                throw Failure(reason: "a reply exceeds \(maxBufferedBytes) bytes")
            }
            // Incomplete: the rest of a reply is still to come. Bound what we hold meanwhile.
            if bufferedBytes > maxBufferedBytes {
                failed = true
                throw Failure(reason: "a reply exceeds \(maxBufferedBytes) bytes")
            }
            return nil
        }
        defer { freeReplyObject(raw) }
        budget.pointee.charged = 0  // the next reply starts afresh
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self).pointee)
    }

    private func fail() -> Failure {
        failed = true
        if budget.pointee.exceeded { return Failure(reason: "a reply exceeds \(maxBufferedBytes) bytes") }
        let message = withUnsafeBytes(of: reader.pointee.errstr) { buffer in
            Self.text(buffer.prefix { $0 != 0 })
        }
        return Failure(reason: message.isEmpty ? "unreadable reply" : message)
    }

    private static func convert(_ reply: redisReply) -> RedisValue {
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulk(reply.str.map { Array(UnsafeRawBufferPointer(start: $0, count: reply.len)) } ?? [])
        case REDIS_REPLY_STATUS:
            return .status(text(reply))
        case REDIS_REPLY_ERROR:
            return .error(text(reply))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            // Bounded by `boundedFunctions` (count) and hiredis (depth).
            return .array((0..<reply.elements).map { index in
                reply.element[index].map { convert($0.pointee) } ?? .null
            })
        default:
            return .null
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard let str = reply.str else { return "" }
        return text(UnsafeRawBufferPointer(start: str, count: reply.len))
    }

    /// Text safe for a log line: at most `maxTextBytes`, no control characters.
    static func text<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let cut = bytes.prefix(maxTextBytes).map { $0 < 0x20 || $0 == 0x7F ? UInt8(ascii: "?") : $0 }
        return String(decoding: cut, as: UTF8.self)
    }
}

/// The bytes a reply under construction may hold: its strings, and a slot per element.
struct ReplyBudget {
    let limit: Int
    var charged = 0
    var exceeded = false

    /// Charges `bytes` to the reply of `task`'s reader; false (refuse the object) past the limit.
    static func charge(_ task: UnsafePointer<redisReadTask>?, _ bytes: Int) -> Bool {
        guard let budget = task?.pointee.privdata?.assumingMemoryBound(to: ReplyBudget.self) else { return true }
        let (total, overflow) = budget.pointee.charged.addingReportingOverflow(max(0, bytes))
        guard !overflow, total <= budget.pointee.limit else {
            budget.pointee.exceeded = true
            return false
        }
        budget.pointee.charged = total
        return true
    }
}

/// hiredis' own reply constructors, wrapped with our bounds. Built once per process from a
/// throwaway reader (the defaults are not exported), never freed: readers keep a pointer to it.
private let defaultFunctions: redisReplyObjectFunctions = {
    let reader = redisReaderCreate()!
    defer { redisReaderFree(reader) }
    return reader.pointee.fn.pointee
}()

private nonisolated(unsafe) let boundedFunctions: UnsafeMutablePointer<redisReplyObjectFunctions> = {
    let functions = UnsafeMutablePointer<redisReplyObjectFunctions>.allocate(capacity: 1)
    // A nil return makes hiredis fail the reader (as out of memory): the reply is refused.
    functions.initialize(to: redisReplyObjectFunctions(
        createString: { task, string, length in
            length > RedisReplyReader.maxBulkBytes || !ReplyBudget.charge(task, 16 + length) ? nil : defaultFunctions.createString(task, string, length)
        },
        createArray: { task, count in
            count < 0 || count > RedisReplyReader.maxArrayElements || !ReplyBudget.charge(task, 16 + 8 * Int(count))
                ? nil : defaultFunctions.createArray(task, count)
        },
        createInteger: { task, value in ReplyBudget.charge(task, 16) ? defaultFunctions.createInteger(task, value) : nil },
        createNil: { task in ReplyBudget.charge(task, 16) ? defaultFunctions.createNil(task) : nil },
        freeObject: { object in defaultFunctions.freeObject(object) }))
    return functions
}()

/// A command in RESP, formatted by hiredis.
enum RedisCommandEncoder {
    static func encode(_ arguments: [[UInt8]]) -> [UInt8] {
        // Each argument's bytes must stay put while hiredis reads them.
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        var storage: [UnsafeMutableRawPointer] = []
        defer { storage.forEach { $0.deallocate() } }
        for argument in arguments {
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(argument.count, 1), alignment: 1)
            argument.withUnsafeBytes { if let base = $0.baseAddress { copy.copyMemory(from: base, byteCount: $0.count) } }
            storage.append(copy)
            pointers.append(UnsafePointer(copy.assumingMemoryBound(to: CChar.self)))
            lengths.append(argument.count)
        }
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
        guard length > 0, let target else { preconditionFailure("redisFormatCommandArgv failed: out of memory") }
        defer { redisFreeCommand(target) }
        return Array(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
}
