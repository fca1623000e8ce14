// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package so the main build stays lean.
let package = Package(
    name: "flpeer-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "flpeer", path: "../"),
    ],
    targets: [
        .executableTarget(
            name: "flbench",
            dependencies: [
                .product(name: "FLCore", package: "flpeer"),
                .product(name: "FLGossip", package: "flpeer"),
                .product(name: "FLIdentity", package: "flpeer"),
                .product(name: "FLWire", package: "flpeer"),
                .product(name: "FLLedger", package: "flpeer"),
            ],
            path: "Sources/flbench"
        ),
    ],
    swiftLanguageModes: [.v6]
)
