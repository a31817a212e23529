// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "connector-milter",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "connector-milter", targets: ["connector-milter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // libmilter, as Debian's libmilter-dev installs it.
        .systemLibrary(
            name: "CMilter",
            path: "CMilter",
            pkgConfig: "milter",
            providers: [.apt(["libmilter-dev"])]
        ),
        // The C variadics Swift cannot call (smfi_setmlreply, syslog), wrapped in fixed-arity shims.
        .target(name: "CMilterShim", dependencies: ["CMilter"], path: "CMilterShim"),
        // The Swift face of libmilter: the only importer of CMilter.
        .target(name: "Milter", dependencies: ["CMilter", "CMilterShim"]),
        // Pure Swift: policy model, parser, attribution and verdicts.
        .target(name: "ConnectorPolicy", dependencies: ["Yams"]),
        .executableTarget(
            name: "connector-milter",
            dependencies: [
                "ConnectorPolicy", "Milter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "policy-bench", dependencies: ["ConnectorPolicy"]),
        // libFuzzer targets (issue 7): scripts/fuzz.sh builds them with -sanitize=fuzzer and
        // -DFUZZING; a plain build only checks that they compile. FuzzAddresses and
        // FuzzSocketmap compile some of the daemon's own files through symbolic links.
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzPolicyParser", dependencies: ["ConnectorPolicy", "FuzzDriver"]),
        .executableTarget(name: "FuzzVerdictLineReader", dependencies: ["ConnectorPolicy", "FuzzDriver"]),
        .executableTarget(name: "FuzzAddresses", dependencies: ["ConnectorPolicy", "Milter", "FuzzDriver"]),
        .executableTarget(name: "FuzzSocketmap", dependencies: ["ConnectorPolicy", "FuzzDriver"]),
        .testTarget(name: "ConnectorPolicyTests", dependencies: ["ConnectorPolicy"]),
        .testTarget(name: "MilterTests", dependencies: ["Milter", "connector-milter", "ConnectorPolicy"]),
        .testTarget(name: "EndToEndTests", dependencies: ["connector-milter"], exclude: ["Fixtures"]),
    ]
)
