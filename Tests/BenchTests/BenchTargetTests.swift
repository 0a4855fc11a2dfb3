import Bench
@testable import BenchRunner
import Testing
import UpstreamClient

/// A target's URL, checked and completed before any request: no sockets.
@Suite struct BenchTargetTests {
    @Test(arguments: [
        ("http://", "http://: no host in the URL (expected http://host:port/v1)"),
        ("https:///v1", "https:///v1: no host in the URL (expected https://host:port/v1)"),
        ("http://:8080/v1", "http://:8080/v1: no host in the URL (expected http://host:port/v1)"),
        ("http://user@/v1", "http://user@/v1: no host in the URL (expected http://host:port/v1)"),
        ("ftp://host/v1", "ftp://host/v1: only http:// and https:// URLs"),
        ("127.0.0.1:8080/v1", "127.0.0.1:8080/v1: only http:// and https:// URLs"),
        ("http://h:99999/v1", "http://h:99999/v1: the port must be a number in 1...65535"),
        ("http://h:0/v1", "http://h:0/v1: the port must be a number in 1...65535"),
        ("http://h:8o80/v1", "http://h:8o80/v1: the port must be a number in 1...65535"),
        ("http://[::1]:99999/v1", "http://[::1]:99999/v1: the port must be a number in 1...65535"),
        ("http://h/v1?x=1", "http://h/v1?x=1: no query or fragment in the base URL (/chat/completions is appended to it)"),
        ("http://h/v1#top", "http://h/v1#top: no query or fragment in the base URL (/chat/completions is appended to it)"),
        ("http://h/a b/v1", #""http://h/a b/v1": no spaces or control characters in the URL (percent-encode them)"#),
        ("http://h/v1\n\u{1B}[2J", #""http://h/v1\u{A}\u{1B}[2J": no spaces or control characters in the URL (percent-encode them)"#),
        // Format characters too, and every message shows the URL escaped (review 105 #3).
        ("http://h/v1\u{202E}", #""http://h/v1\u{202E}": no spaces or control characters in the URL (percent-encode them)"#),
        ("\u{1B}]0;T\u{7}ftp://h", #""\u{1B}]0;T\u{7}ftp://h": only http:// and https:// URLs"#),
        ("http://[::1/v1", "http://[::1/v1: an IPv6 address needs its closing bracket (http://[::1]:8080/v1)"),
    ])
    func aURLWithoutHostOrWithAnotherSchemeIsNamed(url: String, problem: String) {
        #expect(BenchTarget.problem(withBaseURL: url) == problem)
    }

    @Test(arguments: ["http://127.0.0.1:8080/v1", "https://openrouter.ai/api/v1", "http://[::1]:8080/v1/chat/completions",
                      "http://user:pw@host", "http://localhost", "http://h:65535", "http://[::1]/v1"])
    func anHTTPURLWithAHostIsAccepted(url: String) {
        #expect(BenchTarget.problem(withBaseURL: url) == nil)
    }

    /// What curl refuses of a response is the server's malformed answer: libcurl 7.88 says only
    /// "Out of memory" of a header line over 100 KB (review 64A #3: counted as cut short).
    @Test func curlsRefusalsOfTheResponseAreMalformed() {
        func kind(_ detail: String) -> String {
            switch LoopDriver.transportFailure(.transfer(UpstreamFailure.Detail(client: "", full: detail))) {
            case .malformed: "malformed"
            case .broken: "broken"
            case .connect: "connect"
            case .timeout: "timeout"
            }
        }
        for detail in ["Out of memory", "Too large response headers: 300000 > 102400", "Received HTTP/0.9 when not allowed"] {
            #expect(kind(detail) == "malformed", "\(detail)")
        }
        #expect(kind("Recv failure: Connection reset by peer") == "broken")
    }

    @Test func theBaseURLGetsTheEndpointOnce() {
        #expect(BenchTarget.chatCompletionsURL("http://h/v1/") == "http://h/v1/chat/completions")
        #expect(BenchTarget.chatCompletionsURL("http://h/v1/chat/completions") == "http://h/v1/chat/completions")
    }
}
