import Foundation
import GatewayCore
import HTTPServer
@testable import MockUpstream
import PropertyBased
import Testing

/// What a client can put in a simulated model's name or a simulated web URL: every number is an
/// integer in a documented range, or a 400 naming it. Nothing traps, nothing runs unbounded.
@Suite struct MockOptionTests {
    @Test func validNamesParse() throws {
        let scenario = try MockScenario.parse(model: "sim/paced:pace_ms=5:deltas=200")
        #expect(scenario.kind == .paced && scenario.paceMilliseconds == 5 && scenario.options["deltas"] == 200)
        #expect(try MockScenario.parse(model: "expert-8").persona == 8)
        #expect(try MockScenario.parse(model: "a/b/flaky:fail=1:status=502:n=42").options == ["fail": 1, "status": 502, "n": 42])
        #expect(try MockScenario.parse(model: "huge:bytes=16777216").options["bytes"] == 16 << 20)
    }

    @Test(arguments: [
        ("paced:deltas=abc", MockScenario.ParseError.invalidValue(option: "deltas", value: "abc", range: 0...100_000)),
        ("paced:deltas=100001", .invalidValue(option: "deltas", value: "100001", range: 0...100_000)),
        ("normal:pace_ms=-1", .invalidValue(option: "pace_ms", value: "-1", range: 0...60_000)),
        ("slow-first-token:first_ms=9223372036854775808", .invalidValue(option: "first_ms", value: "9223372036854775808", range: 0...600_000)),
        ("huge:bytes=16777217", .invalidValue(option: "bytes", value: "16777217", range: 0...16_777_216)),
        ("error:status=99", .invalidValue(option: "status", value: "99", range: 400...599)),
        ("rate-limited:retry_after=1e9", .invalidValue(option: "retry_after", value: "1e9", range: 0...86_400)),
        ("researcher:parallel=0", .invalidValue(option: "parallel", value: "0", range: 1...8)),
        ("researcher:loop=2", .invalidValue(option: "loop", value: "2", range: 0...1)),
        ("expert-0", .invalidValue(option: "persona", value: "0", range: 1...8)),
        ("normal:bogus=1", .unknownOption("bogus")),
        ("normal:", .unknownOption("")),
        ("normal:deltas", .unknownOption("deltas")),
        ("normal:after=1:after=1", .repeatedOption("after")),
        ("nonsense", .unknownScenario("nonsense")),
    ])
    func badNamesAreTypedErrors(model: String, expected: MockScenario.ParseError) {
        #expect(throws: expected) { try MockScenario.parse(model: model) }
    }

    /// Model names a client might send: real scenarios and garbage, options real and made up,
    /// values in range, out of range, negative, huge, not integers.
    static let modelNames = zip(
        Gen.element(of: MockScenario.modelNames + ["expert-0", "expert-99", "expert-x", "nope", ""]),
        zip(Gen.element(of: Array(MockScenario.optionRanges.keys) + ["bogus", "", "deltas "]),
            Gen.element(of: ["0", "1", "2", "3", "8", "64", "599", "-1", "100001", "16777216", "16777217", "86400001",
                             "9223372036854775807", "99999999999999999999", "1.5", "1e3", "abc", "", "+5", " 5", "0x10"]),
            Gen.bool
        ).map { name, value, withValue in withValue ? "\(name ?? "")=\(value ?? "")" : (name ?? "") }.array(of: 0...4)
    ).map { scenario, options in (["sim/" + (scenario ?? "")] + options).joined(separator: ":") }

    @Test func anyModelNameIsAScenarioInRangeOrATypedError() async {
        await propertyCheck(count: 400, input: Self.modelNames) { model in
            do throws(MockScenario.ParseError) {
                let scenario = try MockScenario.parse(model: model)
                for (name, value) in scenario.options {
                    #expect(MockScenario.optionRanges[name]?.contains(value) == true, "\(model)")
                }
                #expect(MockScenario.personas.contains(scenario.persona))
                // Building the script and its timings runs only on validated values: no trap.
                let script = MockScript(scenario: scenario, model: model, request: .object([:]), rawBody: [], id: "x")
                #expect(script.steps.count <= 100_001)
                _ = UInt64(scenario.paceMilliseconds) + UInt64(scenario.firstTokenMilliseconds) + UInt64(scenario.failAfter)
            } catch .unknownScenario {
                return
            } catch {
                let option = error.option ?? ""
                let api = APIError.invalidModelOption(model, error)
                #expect(api.status == 400 && api.param == "model")
                guard !option.isEmpty else { return }  // "scenario:" names an empty option
                #expect(model.contains(option == "persona" ? "expert-" : option), "\(model): \(error)")
                #expect(api.message.contains("'\(option)'"))
            }
        }
    }

    @Test func everyOptionIsDocumentedWithItsRange() throws {
        let readme = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        for (name, range) in MockScenario.optionRanges {
            #expect(readme.contains("| `\(name)` | \(range.lowerBound)–\(range.upperBound) |"), "README lacks the row for \(name)")
        }
        for (name, range) in MockWebPage.ranges {
            #expect(readme.contains("`\(name)` \(range.lowerBound)–\(range.upperBound)"), "README lacks the range of \(name)")
        }
    }

    static let webPaths = zip(
        Gen.element(of: ["page", "redirect-chain", "status", "big", "slow", "dribble", "redirect", "binary", "nothing", ""]),
        Gen.element(of: ["0", "1", "2", "100", "101", "199", "200", "599", "600", "10000", "10001", "-1", "16777216",
                         "16777217", "60001", "9223372036854775808", "1e3", "x", "", "%31", "+1"]),
        Gen.int(in: 0...2)
    ).map { kind, number, form -> (String, String) in
        let kind = kind ?? "", number = number ?? ""
        switch form {
        case 0: return ("/web/\(kind)/\(number)", "")
        case 1: return ("/web/\(kind)", "bytes=\(number)&ms=\(number)&body_ms=\(number)")
        default: return ("/web/\(kind)", "")
        }
    }

    @Test func anyWebPathIsAPageInRangeOrA400NamingTheNumber() async {
        await propertyCheck(count: 400, input: Self.webPaths) { path, query in
            let request = HTTPRequest(method: "GET", target: path + (query.isEmpty ? "" : "?" + query))
            do throws(APIError) {
                switch try MockWebPage.parse(path: path, query: request.queryItem) {
                case .article(let n)?: #expect(MockWebPage.ranges["page"]!.contains(n))
                case .redirectChain(let n)?: #expect(MockWebPage.ranges["redirect-chain"]!.contains(n))
                case .big(let bytes)?: #expect(MockWebPage.ranges["bytes"]!.contains(bytes))
                case .status(let status, let milliseconds)?:
                    #expect(MockWebPage.ranges["status"]!.contains(status) && MockWebPage.ranges["body_ms"]!.contains(milliseconds))
                case .slow(let milliseconds)?, .dribble(let milliseconds)?: #expect(MockWebPage.ranges["ms"]!.contains(milliseconds))
                case .redirect?, .binary?, .plain?, .latin1?, nil: break
                }
            } catch {
                #expect(error.status == 400)
                #expect(error.param.map { MockWebPage.ranges[$0] != nil } == true, "\(path)?\(query): \(error.message)")
            }
        }
    }
}
