import GatewayCore
import HTTPServer

/// One vendor's API as the simulator speaks it: how a scenario's script is written as that API's
/// stream, whole response and errors. What a scenario says and when (`MockScript`,
/// `MockStream`) is shared by every vendor; only the bytes differ.
protocol MockWire {
    /// Sent as soon as a streamed response starts, before the first step.
    mutating func appendStart(to out: inout [UInt8])
    /// One step of the script (a tool call's fragments may be held until the call is whole).
    mutating func appendStep(_ step: MockScript.Step, to out: inout [UInt8])
    /// The end of a complete stream: the finish and the usage.
    mutating func appendFinish(to out: inout [UInt8])
    /// The end of a stream whose last step is written with its finish (`together=1`); by
    /// default the step and then the finish.
    mutating func appendFinish(lastStep: MockScript.Step?, to out: inout [UInt8])
    /// The scenario `error-mid-stream`: an error after some deltas, ending the stream.
    mutating func appendMidStreamError(to out: inout [UInt8])
    /// The scenario `malformed`: an event whose data is not JSON.
    func appendMalformed(to out: inout [UInt8])
    /// The whole (non-streamed) response body.
    func wholeResponse() -> [UInt8]
    /// A keep-alive the API sends while the model works (`ping_ms`); nothing where it has none.
    func appendPing(to out: inout [UInt8])
    /// An error before any byte of response, in this API's error shape.
    static func errorResponse(_ error: APIError) -> HTTPResponse
}

extension MockWire {
    mutating func appendFinish(lastStep: MockScript.Step?, to out: inout [UInt8]) {
        if let lastStep { appendStep(lastStep, to: &out) }
        appendFinish(to: &out)
    }
}

extension MockWire {
    func appendPing(to out: inout [UInt8]) {}
}
