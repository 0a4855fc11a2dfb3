import Logging

/// What the startup log says about the gateway's keys: mistakes and exposures that are said, not
/// refused (a closed network may mean them). Socket-free, so each is tested without binding.
extension GatewayServer {
    struct StartupWarning {
        let message: String
        let metadata: Logger.Metadata
    }

    static func keyWarnings(server: GatewayConfig.Server, keys: [String], ring: KeyRing) -> [StartupWarning] {
        var warnings: [StartupWarning] = []
        if keys.isEmpty && !server.corsAllowOrigins.isEmpty {
            // Legitimate for a frontend on a closed network; elsewhere, any page of those
            // origins spends on the providers' keys.
            warnings.append(.init(message: "server.cors.allow_origins lets browsers in, but the gateway has no keys: any page of those origins can use it",
                                  metadata: ["allow_origins": "\(server.corsAllowOrigins.joined(separator: " "))"]))
        }
        if keys.isEmpty && !RequestPolicy.isLoopback(server.host) {
            // Anyone who reaches the port spends on the providers' keys (review 121 #8).
            warnings.append(.init(message: "listening beyond loopback without gateway keys: anyone who reaches the port can use the providers' keys (set server.api_keys_env or keys)",
                                  metadata: ["host": "\(server.host)"]))
        }
        if !ring.givenTwice.isEmpty {
            // Accepted, but only one name's limits apply (review 121 #8).
            warnings.append(.init(message: "a gateway key is given twice (in server.api_keys or under another name): the first name's limits apply",
                                  metadata: ["keys": "\(ring.givenTwice.joined(separator: " "))"]))
        }
        // A short key is guessable, and below 12 characters not redacted from what clients get
        // (it would cut ordinary words): said, not refused (review 62D #8).
        let short = keys.filter { $0.count < shortKeyCharacters }.count
        if short > 0 {
            warnings.append(.init(message: "gateway keys shorter than \(shortKeyCharacters) characters are guessable (and below 12 not redacted from answers): use long random keys",
                                  metadata: ["keys": .stringConvertible(short)]))
        }
        return warnings
    }
}
