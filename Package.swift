// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "flpeer",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FLCore", targets: ["FLCore"]),
        .executable(name: "flpeer", targets: ["flpeer"]),
        .executable(name: "ledger-tool", targets: ["ledger-tool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // Tensors, math, models, training, data, metrics, aggregation, hashing.
        // No networking and no database.
        .target(
            name: "FLCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "flpeer",
            dependencies: [
                "FLCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "ledger-tool",
            dependencies: [
                "FLCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "FLCoreTests",
            dependencies: ["FLCore"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
