import Foundation
import NIOCore
import Testing
@testable import FLGossip
@testable import FLWire

/// Issue 14 items 3 and 4: what the blob exchange pulls from a member, and how
/// much it holds in flight for one (no sockets: the state machine alone).
@Suite("blob exchange limits")
struct BlobExchangeTests {
    static let members: Set<String> = ["alpha", "beta", "mallory"]

    func exchange(_ limits: BlobLimits) throws -> (BlobExchange, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-bx-\(UUID().uuidString)").path
        return (BlobExchange(store: try BlobStore(directory: dir), limits: limits, members: Self.members), dir)
    }

    func hash(_ i: Int) -> ContentHash {
        var bytes = [UInt8](repeating: 0, count: 32)
        withUnsafeBytes(of: UInt64(i).bigEndian) { for (k, b) in $0.enumerated() { bytes[24 + k] = b } }
        return ContentHash(bytes)!
    }

    func announce(_ i: Int, author: String = "mallory", round: UInt64 = 1, kind: Announce.Kind = .update, size: UInt64 = 1000) -> Announce {
        Announce(author: author, round: round, kind: kind, hash: hash(i), size: size)
    }

    func refusals(_ actions: [BlobExchange.Action]) -> [String] {
        actions.compactMap { if case .refused(_, _, let reason) = $0 { reason } else { nil } }
    }

    func closes(_ actions: [BlobExchange.Action]) -> [String] {
        actions.compactMap { if case .close(_, let reason) = $0 { reason } else { nil } }
    }

    /// Today a 300 MiB announcement is pulled whatever the plan; now one above the plan's bound is refused, with the reason.
    @Test func anAnnouncementAboveThePlansSizeBoundIsRefused() throws {
        let limits = BlobLimits.forModel(parameterCount: 650, features: 64, members: 3)
        #expect(limits.maxBlobSize == 650 * 4 + 64 * 128 + 65_536)
        var (bx, dir) = try exchange(limits)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let actions = bx.announced(announce(1, size: 300 << 20), from: "mallory")
        #expect(refusals(actions) == ["announced size 314572800 bytes exceeds the plan's bound of \(limits.maxBlobSize) bytes"])
        #expect(bx.inflight.isEmpty)
        #expect(!actions.contains(.send(to: "mallory", [.pull(hash: hash(1))])))
        // One the plan's model fits is pulled (its author pushes it; pulled if that stalls).
        #expect(bx.announced(announce(2, size: 2_600), from: "mallory") == [.pullIfStalled(hash(2), from: "mallory")])
    }

    /// Blobs no member, no nearby round, or no second offer per (author, round) names are not pulled.
    @Test func unnamedBlobsAreRefused() throws {
        var (bx, dir) = try exchange(BlobLimits())
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(refusals(bx.announced(announce(1, author: "nobody"), from: "mallory")) == ["author nobody is not a member of the consortium"])
        #expect(refusals(bx.announced(announce(2, round: 17), from: "mallory"))
            == ["round 17 is more than 16 rounds beyond the oldest open round 0"])
        #expect(refusals(bx.announced(announce(3, round: 2), from: "mallory")).isEmpty)
        #expect(refusals(bx.announced(announce(4, round: 2), from: "mallory")).isEmpty)
        #expect(refusals(bx.announced(announce(5, round: 2), from: "mallory"))
            == ["mallory already offered 2 blobs of mallory's round 2; the round protocol names one"])
        // Another member's offer of that author's round is its own.
        #expect(refusals(bx.announced(announce(6, round: 2), from: "beta")).isEmpty)
        #expect(bx.inflight.count == 3)
    }

    /// A member that keeps sending refused announcements loses its connection.
    @Test func aFloodOfRefusedAnnouncementsClosesTheConnection() throws {
        var (bx, dir) = try exchange(BlobLimits(refusalsPerConnection: 3))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var closed: [String] = []
        for i in 0..<5 { closed += closes(bx.announced(announce(i, author: "nobody"), from: "mallory")) }
        #expect(closed == ["mallory sent 3 refused announcements (the bound per connection)"])
    }

    /// Today 4,000 incomplete blobs are all kept; now the member is cut off at the bound on blobs in flight.
    @Test func aFloodOfPartialBlobsClosesTheMembersConnection() throws {
        var (bx, dir) = try exchange(BlobLimits(inflightBlobsPerMember: 8, blobsPerAuthorRound: 1))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var closed: [String] = []
        for i in 0..<4_000 {
            let actions = bx.announced(announce(i, author: ["alpha", "beta", "mallory"][i % 3], round: UInt64(i / 3 % 16)), from: "mallory")
            closed += closes(actions)
            if !closed.isEmpty { break }
        }
        #expect(closed == ["mallory has more than 8 blobs in flight (the bound per member)"])
        #expect(bx.load(of: "mallory").blobs == 8)
        _ = bx.disconnected("mallory", links: Links())
        #expect(bx.inflight.isEmpty)
    }

    /// The announced bytes in flight from one member are bounded (its part files and buffers).
    @Test func theBytesInFlightFromOneMemberAreBounded() throws {
        var (bx, dir) = try exchange(BlobLimits(maxBlobSize: 1 << 20, inflightBytesPerMember: 3 << 20))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<3 { #expect(closes(bx.announced(announce(i, round: UInt64(i), size: 1 << 20), from: "mallory")).isEmpty) }
        #expect(closes(bx.announced(announce(9, round: 5, size: 1 << 20), from: "mallory"))
            == ["mallory has more than 3145728 announced bytes in flight (the bound per member)"])
    }

    /// A partial blob's file goes when its source disconnects, and a store deletes part files a killed run left.
    @Test func partialFilesAreDeletedOnDisconnectAndOnRestart() throws {
        var (bx, dir) = try exchange(BlobLimits())
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = WireProtocol.pushLimit * 4
        _ = bx.announced(announce(1, size: size), from: "mallory")
        let incoming = try #require(bx.receiving(hash(1), from: "mallory"))
        try incoming.append(offset: 0, bytes: ByteBuffer(bytes: [UInt8](repeating: 1, count: 100_000)))
        func parts() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".part") } }
        #expect(try parts().count == 1)
        _ = bx.disconnected("mallory", links: Links())
        #expect(try parts().isEmpty)
        _ = FileManager.default.createFile(atPath: "\(dir)/\(String(repeating: "ab", count: 32)).left.part", contents: Data([1, 2, 3]))
        _ = try BlobStore(directory: dir)
        #expect(try parts().isEmpty)
    }
}
