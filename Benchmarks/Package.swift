// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package: the main build and CI never pay for their dependencies.
let package = Package(
    name: "fusion-gateway-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "fusion-gateway", path: ".."),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "latency-bench",
            dependencies: [
                .product(name: "FusionGatewayKit", package: "fusion-gateway"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ]
)
