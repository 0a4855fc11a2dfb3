import HTTPServer

/// What the gateway reads in an upstream's response head.
enum UpstreamHead {
    /// `Content-Type: text/event-stream` (ASCII case-insensitive, parameters allowed): the answer
    /// streams. Some servers answer a streamed request with one whole JSON body instead.
    static func isEventStream(_ headers: [(String, String)]) -> Bool {
        headers.contains { name, value in
            name.asciiCaseInsensitiveEquals("content-type") && value.hasASCIICaseInsensitivePrefix("text/event-stream")
        }
    }
}
