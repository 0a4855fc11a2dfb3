import FuzzSupport
import GatewayCore
import Surfaces
import HTTPServer

/// The HTTP request path: bytes → http_parser decoding (split at a position the input
/// chooses, pipelined requests one at a time) → chat request validation → the body forwarded
/// upstream. Must never crash, hang or consume more than it was given; whatever validation
/// accepts must produce a forwardable JSON body.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = HTTPServerLimits()
    limits.maxHeaderBytes = 4096
    limits.maxBodyBytes = 64 * 1024
    let decoder = HTTPRequestDecoder(limits: limits)
    let cut = Int(bytes[0]) % size
    var pending: [UInt8] = []
    for piece in [Array(bytes[..<cut]), Array(bytes[cut...])] {
        pending += piece
        var rounds = 0
        decoding: while true {
            rounds += 1
            precondition(rounds < 10_000, "decoder made no progress")
            guard let (consumed, event) = try? decoder.decode(pending) else { return 0 }
            precondition(consumed <= pending.count, "consumed more than given")
            pending.removeFirst(consumed)
            let request: HTTPRequest
            switch event {
            case .none: break decoding
            case .head(let head):
                precondition(head.body.isEmpty, "a head carries a body")
                continue decoding
            case .request(let complete): request = complete
            }
            precondition(!request.method.isEmpty)
            _ = request.queryItem("id")
            if let chat = try? ChatRequest(body: request.body) {
                precondition(JSONScanner.isValid(chat.upstreamBody(model: "upstream/model")), "forwarded body is not JSON")
            }
        }
    }
    return 0
}

@_cdecl("FuzzHTTPRequest_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzHTTPRequest(data, size) }
}
