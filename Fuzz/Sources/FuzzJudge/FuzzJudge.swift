import FuzzSupport
import Fusion
import GatewayCore

/// The judge's reply: arbitrary text through the analysis validator. It must never crash, and
/// whatever it accepts has exactly the five fields and cites only panel members.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJudge(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let panel: Set<String> = ["p/a", "p/b", "p/c"]
    if case .success(let analysis) = JudgeAnalysis.parse(text, panel: panel) {
        precondition(analysis.objectValue?.keys.sorted() == JudgeAnalysis.fields.sorted(), "extra or missing fields")
        for item in analysis["unique_insights"]?.arrayValue ?? [] {
            precondition(panel.contains(item["model"]?.stringValue ?? ""), "cited a stranger")
        }
    }
    return 0
}

@_cdecl("FuzzJudge_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzJudge(data, size) }
}
