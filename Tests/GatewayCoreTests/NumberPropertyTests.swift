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

    @Test func retryAfterIsAValueInRangeOrNothing() async {
        await propertyCheck(count: 800, input: Self.numberish, Gen.bool) { text, milliseconds in
            let headers = [(milliseconds ? "retry-after-ms" : "Retry-After", text)]
            if let delay = RetryPolicy.retryAfterMilliseconds(headers) {
                #expect(delay <= RetryPolicy.maxRetryAfterMilliseconds, "\(text)")
            }
            let policy = RetryPolicy(maxRetries: 3, baseDelayMilliseconds: .max, maxDelayMilliseconds: .max)
            _ = policy.decide(status: 429, connectFailed: false, headers: headers, attempt: 3, hasNextModel: true, jitter: 1)
        }
    }

    @Test(arguments: [
        // (header, value, milliseconds)
        ("Retry-After", "5", 5_000 as UInt64?),
        ("Retry-After", " 2\t", 2_000),
        ("Retry-After", "0", 0),
        ("Retry-After", "99999999999999999999999", RetryPolicy.maxRetryAfterMilliseconds),
        ("Retry-After", "86401", RetryPolicy.maxRetryAfterMilliseconds),
        ("Retry-After", "1.5", nil),
        ("Retry-After", "1e300", nil),
        ("Retry-After", "inf", nil),
        ("Retry-After", "-1", nil),
        ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT", nil),
        ("retry-after-ms", "1500.2", 1_501),
        ("retry-after-ms", " 16 ", 16),
        ("retry-after-ms", "99999999999999999999999", RetryPolicy.maxRetryAfterMilliseconds),
        // Digits only, with an optional fraction: other forms `Double` reads (review 83B #5).
        ("retry-after-ms", "-0", nil),
        ("retry-after-ms", "1e300", nil),
        ("retry-after-ms", "1e999", nil),
        ("retry-after-ms", "0x10", nil),
        ("retry-after-ms", "1e3", nil),
        ("retry-after-ms", "12.", nil),
        ("retry-after-ms", ".5", nil),
        ("retry-after-ms", "+5", nil),
        ("retry-after-ms", "1.2.3", nil),
        ("retry-after-ms", "inf", nil),
        ("retry-after-ms", "nan", nil),
        ("retry-after-ms", "-5", nil),
    ])
    func retryAfterValues(header: String, value: String, milliseconds: UInt64?) {
        #expect(RetryPolicy.retryAfterMilliseconds([(header, value)]) == milliseconds)
    }

    /// An HTTP date counts from `now` (review 68A #8); every IMF-fixdate field is checked.
    @Test func retryAfterAsAnHTTPDate() {
        let now: Int64 = 1_445_412_470  // Wed, 21 Oct 2015 07:27:50 GMT
        #expect(RetryPolicy.httpDate("Wed, 21 Oct 2015 07:28:00 GMT") == now + 10)
        #expect(RetryPolicy.httpDate("Thu, 29 Feb 2024 23:59:59 GMT") == 1_709_251_199)
        #expect(RetryPolicy.retryAfterMilliseconds([("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], now: now) == 10_000)
        #expect(RetryPolicy.retryAfterMilliseconds([("Retry-After", "Wed, 21 Oct 2015 07:27:00 GMT")], now: now) == nil, "passed")
        for bad in ["Wed, 21 Oct 2015 07:28:00 UTC", "Wed, 21 Oct 2015 24:28:00 GMT", "Wed, 00 Oct 2015 07:28:00 GMT",
                    "Wed, 21 Oct 1969 07:28:00 GMT", "Wed,21 Oct 2015 07:28:00 GMT ", "Wed, 2x Oct 2015 07:28:00 GMT"] {
            #expect(RetryPolicy.httpDate(bad) == nil, "\(bad)")
        }
    }

    @Test func backoffSaturatesInsteadOfTrapping() {
        let policy = RetryPolicy(maxRetries: 100, baseDelayMilliseconds: .max, maxDelayMilliseconds: .max)
        for attempt in [Int.min, -1, 0, 1, 11, 64, Int.max] {
            for jitter in [0, 1, .nan, .infinity, -.infinity] as [Double] {
                _ = policy.decide(status: 503, connectFailed: false, headers: [], attempt: attempt, hasNextModel: false, jitter: jitter)
            }
        }
        #expect(policy.decide(status: 503, connectFailed: false, headers: [], attempt: 1, hasNextModel: false, jitter: 1)
                    == .retry(afterMilliseconds: .max))
    }
}
