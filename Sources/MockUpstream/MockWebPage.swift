import GatewayCore

/// A page of the simulated web, decided from the request alone (no I/O), so everything a URL can
/// ask of the mock is checked in one place: `/web/page/N`, `redirect?to=URL`,
/// `redirect-chain/N`, `big?bytes=N`, `status/N` (`?body_ms=M`: its head at once, its body M ms
/// later), `binary`, `plain`, `latin1`, `slow?ms=N`, `dribble?ms=N` (an article's first half at
/// once, the rest N ms later).
enum MockWebPage: Equatable {
    case article(Int)
    case redirect(to: String)
    case redirectChain(hops: Int)
    case big(bytes: Int)
    case status(Int, bodyMilliseconds: Int)
    case binary
    case plain
    case latin1
    case slow(milliseconds: Int)
    case dribble(milliseconds: Int)

    /// The numbers pages take, and their ranges (README: "Simulated models"): nothing a URL says
    /// can trap a conversion, make the mock build an unbounded page or wait without end.
    static let ranges: [String: ClosedRange<Int>] = [
        "page": 1...10_000, "redirect-chain": 1...100, "bytes": 0...(16 << 20), "status": 200...599, "ms": 0...60_000,
        "body_ms": 0...60_000,
    ]

    /// The page `path` (under `/web/`) and its query ask for; nil when there is no such page.
    /// A number that is not an integer in its range is a 400 naming it.
    static func parse(path: String, query: (String) -> String?) throws(APIError) -> MockWebPage? {
        let parts = path.split(separator: "/").map(String.init)  // ["web", kind, argument?]
        guard parts.count >= 2, parts.count <= 3, parts[0] == "web" else { return nil }
        let argument = parts.count > 2 ? parts[2] : nil
        switch parts[1] {
        case "page": return .article(try number("page", argument, default: 1))
        case "redirect": return .redirect(to: query("to") ?? "/web/page/1")
        case "redirect-chain": return .redirectChain(hops: try number("redirect-chain", argument, default: 1))
        case "big": return .big(bytes: try number("bytes", query("bytes"), default: 4 << 20))
        case "status": return .status(try number("status", argument, default: 500), bodyMilliseconds: try number("body_ms", query("body_ms"), default: 0))
        case "binary": return .binary
        case "plain": return .plain
        case "latin1": return .latin1
        case "slow": return .slow(milliseconds: try number("ms", query("ms"), default: 1_000))
        case "dribble": return .dribble(milliseconds: try number("ms", query("ms"), default: 1_000))
        default: return nil
        }
    }

    private static func number(_ name: String, _ text: String?, default fallback: Int) throws(APIError) -> Int {
        let range = ranges[name]!
        guard let text else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw .invalidRequest("'\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(text.prefix(40))'",
                                  param: name, code: "invalid_value")
        }
        return value
    }
}
