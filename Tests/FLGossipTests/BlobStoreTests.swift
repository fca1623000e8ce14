import Foundation
import NIOCore
import Testing
@testable import FLGossip
@testable import FLWire

@Suite("blob store")
struct BlobStoreTests {
    func directory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-blobs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A full memory tier spills only its oldest blobs, stays within its
    /// capacity, and every blob stays readable (from disk once spilled).
    @Test func theMemoryTierSpillsOldestFirstAndStaysBounded() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try BlobStore(directory: dir, memoryCapacity: 100_000)
        let blobs = (0..<12).map { i in [UInt8](repeating: UInt8(i), count: 30_000) }
        let hashes = try blobs.map { try store.put($0) }
        store.flushSpills()
        #expect(store.memoryTierBytes <= 100_000)
        #expect(store.memoryTierBytes >= 90_000, "spilling everything at once would leave the tier empty")
        let spilled = hashes.filter { !store.isInMemory($0) }
        #expect(spilled.count == 9 && spilled == Array(hashes.prefix(9)))
        for h in spilled { #expect(FileManager.default.fileExists(atPath: store.path(h))) }
        for (h, b) in zip(hashes, blobs) {
            #expect(store.has(h) && store.size(h) == UInt64(b.count))
            #expect(store.bytes(h) == b)
        }
    }

    /// Which blobs a store holds survives a restart: the index is rebuilt from the directory.
    @Test func aReopenedStoreKnowsItsFileBlobs() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = [UInt8](repeating: 7, count: Int(WireProtocol.pushLimit) + 1)
        let hash = try BlobStore(directory: dir).put(big)
        let reopened = try BlobStore(directory: dir)
        #expect(reopened.has(hash) && reopened.size(hash) == UInt64(big.count))
        #expect(!reopened.has(try #require(ContentHash([UInt8](repeating: 1, count: 32)))))
    }

    /// A large blob's part file is created by its first chunk, and a wrong hash leaves nothing behind.
    @Test func aLargeIncomingBlobIsCheckedBeforeItIsStored() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try BlobStore(directory: dir)
        let size = UInt64(WireProtocol.pushLimit) * 2
        let wrong = try #require(ContentHash([UInt8](repeating: 9, count: 32)))
        let incoming = store.beginReceiving(wrong, size: size)
        #expect(incoming.isOnDisk)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        try incoming.append(offset: 0, bytes: ByteBuffer(bytes: [UInt8](repeating: 1, count: Int(size))))
        #expect(throws: BlobError.self) { try incoming.commit() }
        #expect(!store.has(wrong))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}
