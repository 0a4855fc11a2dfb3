/// The release this build is (`fusion-gateway --version`, the startup log line, `/health`), so
/// an operator can tell which build runs. Raised with each release.
public enum GatewayVersion {
    public static let current = "0.71.0"
}
