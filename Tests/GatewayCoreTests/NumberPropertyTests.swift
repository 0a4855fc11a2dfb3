import GatewayCore
import PropertyBased
import Testing

/// Numbers from the wire: whatever their text, parsing never traps and always ends in a value in
/// range or a typed error.
@Suite struct NumberPropertyTests {
    /// Text a hostile peer might put where a number goes.
    static let numberish = Gen.element(of: ["0", "1", "9", "-", "+", ".", "e", "E", "e+", "e-", "308", "309", "999", "1e999", "-1e999",
                                            "9223372036854775807", "9223372036854775808", "18446744073709551616", "00", "0.0000001",
                                            "inf", "-inf", "nan", "NaN", "Infinity", "0x10", " ", "1_000", "٣", "", "-0"])
        .array(of: 1...8).map { $0.compactMap { $0 }.joined() }

    @Test func jsonNumbersParseToFiniteValuesOrTypedErrors() async {
        await propertyCheck(count: 800, input: Self.numberish) { text in
            let body = Array(#"{"n":\#(text),"m":[\#(text)]}"#.utf8)
            do throws(APIError) {
                let value = try JSONValue.parseRequest(body)
                for number in [value["n"], value["m"]?.arrayValue?.first] {
                    switch number {
                    case .int?: break
                    case .double(let double)?: #expect(double.isFinite, "\(text)")
                    default: Issue.record("not a number: \(String(describing: number)) for \(text)")
                    }
                    _ = number?.intValue  // never traps, whatever the double
                }
            } catch {
                #expect(["invalid_json", "number_out_of_range"].contains(error.code), "\(text): \(error.code)")
                #expect(error.status == 400)
                if error.code == "number_out_of_range" { #expect(error.param == "n") }
            }
            if let lenient = try? JSONValue.parse(body) {
                if case .double(let double)? = lenient["n"] { #expect(double.isFinite) }
                #expect(JSONScanner.isValid(lenient.serialized()))
            }
        }
    }
}
