import GatewayCore
import HTTPServer

/// The headers that bound recursion, parsed strictly: a request is never treated as less nested
/// than it says, whatever it sends.
enum RecursionHeaders {
    /// `x-fusion-depth` / `x-openrouter-fusion-depth` (the deeper wins): a non-negative integer.
    /// Anything else (negative, not a number, too large, several values) means "already nested":
    /// 1, never 0. `x-fusion-hops`: gateways already passed; over `maxHops` is 508 Loop Detected,
    /// malformed is a 400.
    static func parse(_ request: HTTPRequest, maxHops: Int) throws(APIError) -> (depth: Int, hops: Int) {
        // Every request passes here and almost none carries these headers: one loop over the
        // fields, collecting only what is there (lowercasing every name allocated).
        var depths: [String] = [], openRouterDepths: [String] = [], hopValues: [String] = []
        for header in request.headers where header.name.hasASCIICaseInsensitivePrefix("x-") {
            if header.name.asciiCaseInsensitiveEquals("x-fusion-depth") {
                depths.append(header.value)
            } else if header.name.asciiCaseInsensitiveEquals("x-openrouter-fusion-depth") {
                openRouterDepths.append(header.value)
            } else if header.name.asciiCaseInsensitiveEquals("x-fusion-hops") {
                hopValues.append(header.value)
            }
        }
        var depth = 0
        for values in [depths, openRouterDepths] where !values.isEmpty {
            depth = max(depth, values.count == 1 ? count(values[0]) ?? 1 : 1)
        }
        var hops = 0
        if !hopValues.isEmpty {
            guard hopValues.count == 1, let value = count(hopValues[0]) else {
                throw .invalidRequest("The 'x-fusion-hops' header must be one non-negative integer.", param: "x-fusion-hops")
            }
            hops = value
        }
        guard hops < maxHops else {
            throw APIError(status: 508, type: "invalid_request_error", code: "loop_detected",
                           message: "This request has passed through \(hops) gateways (limit \(maxHops)): a provider probably points back at a gateway.")
        }
        return (depth, hops)
    }

    /// Digits only (surrounding spaces allowed), at most six of them.
    private static func count(_ text: String) -> Int? {
        let digits = text.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
        guard (1...6).contains(digits.count), digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int(String(decoding: Array(digits), as: UTF8.self))
    }
}
