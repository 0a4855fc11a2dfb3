import FuzzSupport
import GatewayCore
import Providers
import Surfaces

/// The upstream SSE path: arbitrary upstream bytes, split in three where the input says, through
/// the relay and through every provider's stream decoder (Fusion's inner calls). What reaches the client must be well formed whatever the upstream sent: only
/// `data:` events, each valid JSON or `[DONE]`, never an `id:` line or an empty data line.
/// Also: every document the byte scanner accepts must parse, and read the same through a
/// `JSONView` as through the tree. (A Foundation-accepts ⇒
/// scanner-accepts check was dropped: fuzzing showed `JSONSerialization` accepts invalid JSON,
/// e.g. a trailing comma `[[], ]`, and detects UTF-16/32 from NUL bytes.)
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSSE(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The input's third byte says whether the client asked for usage: a client that did not
    // must never see a usage member, wherever the upstream put it.
    let includeUsage = size > 2 ? bytes[2] & 1 == 0 : true
    var relay = SSERelay(maxEventBytes: 4096, id: "gen-f", model: "m", created: 1, includeUsage: includeUsage)
    var out: [UInt8] = []
    let first = size > 0 ? Int(bytes[0]) % (size + 1) : 0
    let second = size > 1 ? max(first, Int(bytes[1]) * 7 % (size + 1)) : first
    for range in [0..<first, first..<second, second..<size] {
        _ = relay.relay(Array(bytes[range]), into: &out)
    }
    var check = SSEDecoder()
    try? check.feed(out) { event in
        precondition(event.name.isEmpty, "a named event reached the client")
        precondition(!event.data.isEmpty, "an empty data line reached the client")
        precondition(event.isDone || JSONScanner.isValid(event.data), "a non-JSON event reached the client")
        if !includeUsage, !event.isDone, let chunk = try? JSONValue.parse(Array(event.data)) {
            precondition(chunk["usage"] == nil || chunk["usage"] == .null, "usage reached a client that did not ask for it")
        }
    }
    let text = String(decoding: out, as: UTF8.self)
    precondition(!text.hasPrefix("id:") && !text.contains("\nid:"), "an id: line reached the client")
    for provider in [OpenAICompatibleProvider(), AnthropicProvider(), GeminiProvider()] as [any Provider] {
        var decoder = provider.streamDecoder(maxEventBytes: 4096, redactor: .none)
        for range in [0..<first, first..<second, second..<size] {
            guard (try? bytes[range].withUnsafeBytes { try decoder.decode($0) { _ in } }) == false else { break }
        }
    }

    // Differential JSON checks on the raw input.
    if JSONScanner.isValid(bytes) {
        let tree = try? JSONValue.parse(bytes)
        precondition(tree != nil, "scanner accepted what the builder cannot parse")
        bytes.withUnsafeBytes { buffer in
            guard let view = JSONView(validating: buffer) else { preconditionFailure("valid bytes without a view") }
            precondition(view.value(view.root) == tree, "the view's root reads differently")
            let choices = view.member("choices", in: view.root)
            precondition(choices.map(view.value) == tree?["choices"], "a member reads differently")
            precondition(choices.flatMap(view.firstElement).map(view.value) == tree?["choices"]?.arrayValue?.first,
                         "a first element reads differently")
            precondition(view.member("error", in: view.root).map(view.isNull) == tree?["error"].map { $0 == .null },
                         "null reads differently")
        }
    }
    return 0
}

@_cdecl("FuzzSSE_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzSSE(data, size) }
}
