import Fusion
import FuzzSupport
import Web

/// A fetched page (the first byte picks its Content-Type) through libxml2's HTML parser and the
/// text renderer, then the text through the citation locator. Pages are chosen by whoever runs
/// the site a model reads: hostile input. Never a crash, never markup in the result's tags, never
/// more than the cap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebPage(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let types = ["text/html; charset=utf-8", "text/html; charset=ISO-8859-1", "text/plain", "application/json", "", "image/png",
                 "text/html; charset=bogus", "text/html; charset=utf-16", "text/html; charset=utf-7", "text/html; charset=ibm037",
                 "text/html; charset=shift_jis"]
    let contentType = types[Int(data[0]) % types.count]
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if case .success(let page) = WebPage.render(body: body, contentType: contentType.isEmpty ? nil : contentType,
                                                maxCharacters: 2_000, downloadTruncated: false) {
        precondition(page.text.count <= 2_000 + "\n\n[truncated]".count, "the cap was exceeded")
        var sources = SourceList()
        sources.add(Source(url: "https://example.com/a", title: page.title ?? "", content: ""))
        _ = sources.annotations(for: page.text + " https://example.com/a")
    }
    return 0
}

@_cdecl("FuzzWebPage_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv) { data, size in fuzzWebPage(data, size) }
}
