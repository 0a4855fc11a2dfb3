internal import CLibUV

/// Errors from the OS or libuv: the raw code and what we were doing.
public struct LoopError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let operation: String
    init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }
    public var description: String {
        "\(operation): \(String(cString: uv_strerror(code))) (\(String(cString: uv_err_name(code))))"
    }
}
