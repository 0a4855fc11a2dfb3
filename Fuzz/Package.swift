// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets. Built only by scripts/fuzz, with -sanitize=fuzzer,address (libFuzzer
// supplies `main`, so these do not link in an ordinary build).
let fuzz: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
let package = Package(
    name: "fusion-gateway-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "fusion-gateway", path: "..")],
    targets: [.target(name: "FuzzSupport")] + ["FuzzHTTPRequest", "FuzzSSE", "FuzzJudge", "FuzzWebPage", "FuzzRequestPath", "FuzzRedisReply"].map { name in
        .executableTarget(name: name, dependencies: ["FuzzSupport", .product(name: "FusionGatewayKit", package: "fusion-gateway")],
                          swiftSettings: fuzz)
    }
)
