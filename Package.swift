// swift-tools-version:6.1
import PackageDescription

// Architecture, bottom-up (see README "Layout"):
//   CLibUV, CCurl, CHTTPParser  system libraries, each wrapped by exactly one Swift target
//   CLibXML2, CHTMLText         libxml2's HTML parser, behind a small C API (its headers clash with
//                               Foundation's ICU, so Swift never sees them)
//   GatewayCore                 pure Swift: SSE, JSON scanning, chat request, errors (no C, no I/O)
//   Fusion                      pure Swift: the deliberation pipeline as a state machine, prompts,
//                               judge-analysis validation (no I/O)
//   Web                         web tools without I/O: search APIs, SSRF address policy, HTML → text
//                               (libxml2), citations
//   FanIn                       the lock-free MPSC fan-in buffer (the only place with atomics)
//   EventLoop                   libuv: loop, TCP listener/connection, timers, wakeups, signals
//   HTTPServer                  HTTP/1.1 server connections on EventLoop (http_parser)
//   UpstreamClient              libcurl multi driven by EventLoop: streaming upstream transfers
//   CHiredis, RedisClient       Redis on EventLoop: hiredis' RESP reader and command formatter over
//                               our own TCP connection (pipelined, deadlines, reconnects)
//   MockUpstream                an OpenAI-compatible server with deterministic scenarios
//   Playground                  the browser playground's files (HTML, CSS, JS), embedded at build time
//   Gateway                     config, routing, endpoints, the streaming proxy
//   Bench                       pure Swift: `fusion-gateway bench`'s measurement logic (per-request
//                               metrics, percentiles, comparison, text/JSON/HTML reports; no I/O)
//   BenchRunner                 the bench's load generator: UpstreamClient on one or more loops
//   fusion-gateway              the CLI
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]
let fast: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "fusion-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fusion-gateway", targets: ["fusion-gateway"]),
        // For the packages in Benchmarks/ and Fuzz/ (separate, so their dependencies and flags
        // never touch the main build or CI).
        .library(name: "FusionGatewayKit", targets: ["GatewayCore", "EventLoop", "UpstreamClient", "RedisClient", "FanIn", "HTTPServer", "Providers", "Surfaces", "Fusion", "Web",
                                                     "MockUpstream", "Gateway", "Application", "Bench", "BenchRunner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Tests only: property-based tests (generators with shrinking) for parsers of hostile input.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),

        .target(name: "GatewayCore", dependencies: ["CCrypto"], swiftSettings: fast),
        .target(name: "Providers", dependencies: ["GatewayCore"], swiftSettings: fast),
        .target(name: "Fusion", dependencies: ["GatewayCore", "Providers"], swiftSettings: fast),
        .target(name: "Surfaces", dependencies: ["GatewayCore", "Providers", "Fusion"], swiftSettings: fast),
        .target(name: "CHTMLText", dependencies: ["CLibXML2"]),
        .target(name: "Web", dependencies: ["GatewayCore", "CHTMLText"], swiftSettings: fast),
        .target(name: "FanIn", swiftSettings: fast),
        .target(name: "EventLoop", dependencies: ["CLibUV", "FanIn"], swiftSettings: fast),
        .target(name: "HTTPServer", dependencies: ["EventLoop", "CHTTPParser"], swiftSettings: fast),
        .target(name: "UpstreamClient", dependencies: ["EventLoop", "CCurl"], swiftSettings: fast),
        .target(name: "RedisClient", dependencies: ["EventLoop", "CHiredis"], swiftSettings: fast),
        .target(
            name: "Playground",
            dependencies: ["GatewayCore"],
            resources: ["index.html", "app.css", "icon.svg", "app.js", "sse.js", "api.js", "run.js", "judge-items.js",
                        "dom.js", "text.js", "timeline.js", "view.js"].map { .embedInCode("Resources/\($0)") },
            swiftSettings: strict
        ),
        .target(name: "MockUpstream", dependencies: ["HTTPServer", "EventLoop", "GatewayCore"], swiftSettings: fast),
        .target(name: "Bench", dependencies: ["GatewayCore", .product(name: "Histogram", package: "hdrhistogram-swift")],
                swiftSettings: strict),
        .target(name: "BenchRunner", dependencies: ["Bench", "EventLoop", "UpstreamClient", "GatewayCore"], swiftSettings: strict),
        .target(
            name: "Gateway",
            dependencies: [
                "GatewayCore", "Providers", "Surfaces", "Fusion", "Web", "FanIn", "EventLoop", "HTTPServer", "UpstreamClient", "RedisClient", "Playground",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: fast
        ),
        .target(
            name: "Application",
            dependencies: ["Gateway", "GatewayCore", "Providers", "Web", "MockUpstream", "EventLoop", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "fusion-gateway",
            dependencies: [
                "Application", "Gateway", "MockUpstream", "EventLoop", "HTTPServer", "Bench", "BenchRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // Tests only: SSE readers written from the specs, to check what the gateway writes.
        .target(name: "SSEReference", path: "Tests/SSEReference", swiftSettings: strict),
        .target(name: "RedisServerProcess", path: "Tests/RedisServerProcess", swiftSettings: strict),
        .target(name: "FixtureFiles", dependencies: ["GatewayCore"], path: "Tests/FixtureFiles", swiftSettings: strict),
        .testTarget(
            name: "GatewayCoreTests",
            dependencies: ["GatewayCore", "SSEReference", "FixtureFiles", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "FanInTests", dependencies: ["FanIn"], swiftSettings: strict),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "FanIn"], swiftSettings: strict),
        .testTarget(
            name: "RedisClientTests",
            dependencies: ["RedisClient", "RedisServerProcess", "EventLoop", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SurfacesTests",
            dependencies: ["Surfaces", "Fusion", "Providers", "GatewayCore", "SSEReference", "FixtureFiles",
                           .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "ApplicationTests", dependencies: ["Application", "Gateway", "GatewayCore"], swiftSettings: strict),
        .testTarget(
            name: "ProvidersTests",
            dependencies: ["Providers", "GatewayCore", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "FusionTests", dependencies: ["Fusion", "Providers", "Surfaces", "GatewayCore"], swiftSettings: strict),
        .testTarget(
            name: "GatewayTests",
            dependencies: ["Gateway", "Fusion", "GatewayCore", "Providers", "HTTPServer", "EventLoop", "RedisClient",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MockUpstreamTests",
            // Providers: the simulator's vendor streams are checked with the gateway's own decoders.
            dependencies: ["MockUpstream", "GatewayCore", "HTTPServer", "Providers", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "BenchTests", dependencies: ["Bench", "BenchRunner", "MockUpstream", "EventLoop", "GatewayCore", "UpstreamClient"],
                    swiftSettings: strict),
        .testTarget(name: "WebTests", dependencies: ["Web", "GatewayCore", .product(name: "PropertyBased", package: "swift-property-based")],
                    swiftSettings: strict),
        .testTarget(
            name: "HTTPServerTests",
            dependencies: ["HTTPServer", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "PlaygroundTests", dependencies: ["Playground"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Application", "Gateway", "Fusion", "Providers", "Surfaces", "Web", "MockUpstream", "EventLoop", "HTTPServer", "UpstreamClient", "GatewayCore",
                "RedisClient", "RedisServerProcess", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
