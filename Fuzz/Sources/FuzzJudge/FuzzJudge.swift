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

// SwiftPM links an executable's entry point as `FuzzJudge_main`: hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@_cdecl("FuzzJudge_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, { data, size in fuzzJudge(data, size) })
}
