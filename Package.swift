// swift-tools-version:6.1
import Foundation
import PackageDescription

// FLCore's kernels are written for 256-bit SIMD: on x86_64 they are compiled
// for Haswell-class CPUs (AVX2, FMA; every x86 server CPU since 2013), which
// makes the trimmed mean about 1.8x faster than baseline SSE2 code. Set
// FLPEER_PORTABLE=1 when building for older x86 machines.
#if arch(x86_64)
let simdFlags: [SwiftSetting] = ProcessInfo.processInfo.environment["FLPEER_PORTABLE"] == nil
    ? [.unsafeFlags(["-target-cpu", "haswell"])]
    : []
#else
let simdFlags: [SwiftSetting] = []
#endif

let package = Package(
    name: "flpeer",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FLCore", targets: ["FLCore"]),
        .library(name: "FLIdentity", targets: ["FLIdentity"]),
        .library(name: "FLWire", targets: ["FLWire"]),
        .library(name: "FLGossip", targets: ["FLGossip"]),
        .library(name: "FLLedger", targets: ["FLLedger"]),
        .library(name: "FLPeer", targets: ["FLPeer"]),
        .executable(name: "flpeer", targets: ["flpeer"]),
        .executable(name: "ledger-tool", targets: ["ledger-tool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.5.0"),
    ],
    targets: [
        // Tensors, math, models, training, data, metrics, aggregation, hashing.
        // No networking and no database.
        .target(
            name: "FLCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: simdFlags
        ),
        // Consortium CA, CSRs, certificates, revocation lists, peer policy, TLS configuration.
        .target(
            name: "FLIdentity",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Message types, their binary codec and framing handlers (NIOCore only).
        .target(
            name: "FLWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The signed, hash-chained ledger in SQLite: encoding, storage, replication merge, verification.
        .target(
            name: "FLLedger",
            dependencies: [
                "FLCore",
                "FLIdentity",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // Mutual-TLS connections, announce/pull dissemination of blobs, keepalive, reconnect.
        .target(
            name: "FLGossip",
            dependencies: [
                "FLWire",
                "FLIdentity",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Configuration files -> services; the round engine, the peer and demo services, the demo consortium.
        .target(
            name: "FLPeer",
            dependencies: [
                "FLCore",
                "FLIdentity",
                "FLGossip",
                "FLLedger",
                "FLWire",
                .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "flpeer",
            dependencies: [
                "FLCore",
                "FLIdentity",
                "FLLedger",
                "FLPeer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "ledger-tool",
            dependencies: [
                "FLCore",
                "FLLedger",
                "FLIdentity",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "FLCoreTests",
            dependencies: ["FLCore"]
        ),
        .testTarget(
            name: "FLIdentityTests",
            dependencies: ["FLIdentity"]
        ),
        .testTarget(
            name: "FLGossipTests",
            dependencies: [
                "FLGossip",
                "FLIdentity",
                "FLWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "FLLedgerTests",
            dependencies: [
                "FLLedger",
                "FLIdentity",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "FLPeerTests",
            dependencies: [
                "FLPeer", "FLIdentity", "FLLedger", "FLGossip", "FLWire",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "FLWireTests",
            dependencies: [
                "FLWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
        // Runs the built executables as a user would; depending on them makes
        // `swift test` build them first.
        .testTarget(
            name: "CLITests",
            dependencies: [
                "flpeer", "ledger-tool", "FLLedger", "FLIdentity", "FLGossip", "FLPeer",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Learner scripts the tests run as processes.
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
