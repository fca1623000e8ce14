import FLWire
import Foundation
import NIOCore
import NIOPosix

/// The blocking work a `GossipNode` hands off its event loop: ledger reads
/// and merges (SQLite, Ed25519, X.509) and large blobs' file I/O, on the
/// node's thread pool. Small blobs (held in memory) are read and written in
/// place. A value: the node's actor state stays in the node.
struct NodeIO: Sendable {
    let store: BlobStore
    let ledger: (any LedgerReplica)?
    let pool: NIOThreadPool
    let chunkSize: Int

    /// Runs `work` on the thread pool.
    func offLoop<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }

    // MARK: - Ledger

    /// The ledger's heads (none without a ledger).
    func heads() async throws -> [ChainHead] {
        guard let ledger else { return [] }
        return try await offLoop { try ledger.heads() }
    }

    /// Merges `entries`, then reads the heads.
    func merge(_ entries: [WireEntry]) async throws -> (MergeOutcome, [ChainHead])? {
        guard let ledger else { return nil }
        return try await offLoop { (try ledger.merge(entries), try ledger.heads()) }
    }

    /// The heads and `author`'s entries after `after` (at most `limit`).
    func headsAndEntries(author: String, after: UInt64?, limit: Int) async throws -> ([ChainHead], [WireEntry])? {
        guard let ledger else { return nil }
        return try await offLoop { (try ledger.heads(), try ledger.entries(author: author, after: after, limit: limit)) }
    }

    /// A pull's answer from the ledger: `author`'s entries after `after`, as
    /// many as fit in one frame (at most `ChainReplication.batch`).
    func entriesToServe(author: String, after: UInt64?) async throws -> [WireEntry] {
        guard let ledger else { return [] }
        let entries = try await offLoop { try ledger.entries(author: author, after: after, limit: ChainReplication.batch) }
        var batch: [WireEntry] = []
        var bytes = 0
        for e in entries {
            bytes += e.header.count + e.body.count + 104
            if bytes > WireProtocol.maximumFrameSize - 4096 { break }
            batch.append(e)
        }
        return batch
    }

    /// The hash held at (`author`, `seq`), if any.
    func entryHash(author: String, seq: UInt64) async throws -> ContentHash? {
        guard let ledger else { return nil }
        return try await offLoop { try ledger.entryHash(author: author, seq: seq) }
    }

    // MARK: - Blobs

    /// Stores `bytes` (a large blob's on the pool); returns the hash.
    func put(_ bytes: [UInt8]) async throws -> ContentHash {
        let store = self.store
        return bytes.count <= BlobStore.memoryLimit ? try store.put(bytes) : try await offLoop { try store.put(bytes) }
    }

    /// Stores a file's contents; returns the hash.
    func put(file: String) async throws -> ContentHash {
        let store = self.store
        return try await offLoop { try store.put(file: file) }
    }

    /// Appends a chunk to a blob being received; true when it is whole and its hash checked.
    func append(_ incoming: IncomingBlob, offset: UInt64, bytes: ByteBuffer) async throws -> Bool {
        let work: @Sendable () throws -> Bool = {
            try incoming.append(offset: offset, bytes: bytes)
            guard incoming.isComplete else { return false }
            try incoming.commit()
            return true
        }
        return incoming.isOnDisk ? try await offLoop(work) : try work()
    }

    /// Sends a stored blob's chunks; writes suspend while the channel is not
    /// writable, so back-pressure keeps at most a few chunks in memory.
    func stream(_ hash: ContentHash, size: UInt64, to output: NIOAsyncChannelOutboundWriter<WireMessage>) async throws {
        let store = self.store, allocator = ByteBufferAllocator()
        var offset: UInt64 = 0
        repeat {
            let n = Int(min(UInt64(chunkSize), size - offset)), at = offset
            let bytes = store.isInMemory(hash)
                ? try store.read(hash, offset: at, length: n, allocator: allocator)
                : try await offLoop { try store.read(hash, offset: at, length: n, allocator: allocator) }
            try await output.write(.chunk(hash: hash, offset: offset, bytes: bytes))
            offset += UInt64(bytes.readableBytes)
        } while offset < size
    }
}
