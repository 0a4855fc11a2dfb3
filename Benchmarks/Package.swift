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
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // Starting the processes under test and reading /proc: shared by latency-bench and soak.
        .target(name: "BenchSupport"),
        .executableTarget(
            name: "latency-bench",
            dependencies: [
                "BenchSupport",
                .product(name: "FusionGatewayKit", package: "fusion-gateway"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "soak",
            dependencies: [
                "BenchSupport",
                .product(name: "FusionGatewayKit", package: "fusion-gateway"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "web-bench",
            dependencies: [
                "BenchSupport",
                .product(name: "FusionGatewayKit", package: "fusion-gateway"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the shared store (Redis) adds per request, against the in-process path.
        .executableTarget(
            name: "store-bench",
            dependencies: ["BenchSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // `swift package benchmark` (ordo-one/benchmark): ns and mallocs per event.
        .executableTarget(
            name: "FanInBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FusionGatewayKit", package: "fusion-gateway"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            path: "Benchmarks/FanInBenchmarks",
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
