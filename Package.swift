// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "connector-milter",
    products: [
        .executable(name: "connector-milter", targets: ["connector-milter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // `run --metrics` (docs/metrics.md): swift-metrics' API, exposed by swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // libmilter, as Debian's libmilter-dev installs it.
        .systemLibrary(
            name: "CMilter",
            path: "CMilter",
            pkgConfig: "milter",
            providers: [.apt(["libmilter-dev"])]
        ),
        // syslog, a C variadic Swift cannot call, wrapped in a fixed-arity shim.
        .target(name: "CMilterShim", path: "CMilterShim"),
        // The Swift face of libmilter: the only importer of CMilter.
        // It speaks in the policy core's SMTPReply, so a refusal crosses with one type.
        .target(name: "Milter", dependencies: ["CMilter", "CMilterShim", "ConnectorPolicy"]),
        // Pure Swift: policy model, parser, attribution and verdicts, and the decoding of the
        // MTA's macros into session facts. No libmilter, no syslog, no sockets.
        .target(name: "ConnectorPolicy", dependencies: ["Yams"]),
        // The reviewing tools: the verdict-line reader, report, simulate, lint, export.
        .target(name: "ConnectorReview", dependencies: ["ConnectorPolicy", "Yams"]),
        // The daemon: sessions, socketmap and maps server, policy store, supervisor, worker.
        .target(name: "ConnectorDaemon", dependencies: [
            "ConnectorPolicy", "Milter",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The command line only: parses commands and calls the libraries.
        .executableTarget(
            name: "connector-milter",
            dependencies: [
                "ConnectorPolicy", "ConnectorReview", "ConnectorDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "policy-bench", dependencies: ["ConnectorPolicy"]),
        // libFuzzer targets (issue 7): scripts/fuzz.sh builds them with -sanitize=fuzzer and
        // -DFUZZING; a plain build only checks that they compile.
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzPolicyParser", dependencies: ["ConnectorPolicy", "FuzzDriver"]),
        .executableTarget(name: "FuzzVerdictLineReader", dependencies: ["ConnectorReview", "FuzzDriver"]),
        .executableTarget(name: "FuzzAddresses", dependencies: ["ConnectorPolicy", "ConnectorReview", "FuzzDriver"]),
        .executableTarget(name: "FuzzSocketmap", dependencies: ["ConnectorDaemon", "FuzzDriver"]),
        .executableTarget(name: "FuzzReceivedChain", dependencies: ["ConnectorPolicy", "ConnectorReview", "FuzzDriver"]),
        .testTarget(name: "ConnectorPolicyTests", dependencies: ["ConnectorPolicy", "ConnectorReview"]),
        .testTarget(name: "MilterTests", dependencies: ["Milter", "ConnectorDaemon", "ConnectorPolicy", "ConnectorReview"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Milter", "ConnectorPolicy", "ConnectorReview", "ConnectorDaemon"], exclude: ["Fixtures"]),
    ]
)
