import FuzzSupport
import Fusion
import GatewayCore

/// The judge's reply: arbitrary text through label restoring and the analysis validator. It must never crash, and
/// whatever it accepts has exactly the five fields and cites only panel members. The same text
/// as a tool call's streamed arguments: the prefix check, fed whole or in two parts, agrees with
/// the document validator (within its nesting bound).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJudge(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    checkArgumentsPrefix(Array(text.utf8))
    let panel: Set<String> = ["p/a", "p/b", "p/c"]
    let labels = NeutralLabels(models: ["p/a", "p/b", "p/c"], neutral: true, seed: nil)
    _ = labels.restoreProse(text)
    if case .success(let analysis) = JudgeAnalysis.parse(text, panel: panel, labels: size > 0 && data[0] % 2 == 0 ? labels : nil) {
        precondition(analysis.objectValue?.keys.sorted() == JudgeAnalysis.fields.sorted(), "extra or missing fields")
        for item in analysis["unique_insights"]?.arrayValue ?? [] {
            precondition(panel.contains(item["model"]?.stringValue ?? ""), "cited a stranger")
        }
    }
    return 0
}

func checkArgumentsPrefix(_ bytes: [UInt8]) {
    var whole = JSONPrefixCheck()
    whole.feed(bytes)
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var parts = JSONPrefixCheck()
    parts.feed(bytes[..<split])
    parts.feed(bytes[split...])
    precondition(parts.isComplete == whole.isComplete && parts.failed == whole.failed, "the split changed the verdict")
    guard !bytes.withUnsafeBytes({ JSONScanner.nestsTooDeep($0, limit: JSONPrefixCheck.maxDepth - 1) }) else { return }
    let first = bytes.first { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }
    precondition(whole.isComplete == (JSONScanner.isValid(bytes) && first == UInt8(ascii: "{")), "disagrees with the document validator")
}

@_cdecl("FuzzJudge_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzJudge(data, size) }
}
