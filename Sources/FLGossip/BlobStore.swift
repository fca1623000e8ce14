import Crypto
import FLWire
import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a blob operation failed.
public struct BlobError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// Content-addressed blobs. Large ones live on disk as `<dir>/<sha256 hex>.blob`:
/// a blob being received is written to `<hex>.part`, hashed as it arrives,
/// and renamed into place only when its SHA-256 matches its name, so a large
/// blob is never held whole in memory. Blobs of at most `memoryLimit` bytes
/// (small models' updates, every round) stay in a bounded memory tier; when
/// it is full the oldest are written to disk on a background queue (they stay
/// readable from memory until written). Which blobs are stored, and their
/// sizes, is kept in memory, so `has` and `size` never touch the disk. A
/// partial blob's file is deleted when it is abandoned (bad data, its source
/// disconnected) and, for one left by a killed process, when the store opens.
public final class BlobStore: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    /// Blobs up to this size are kept in memory.
    public static let memoryLimit = Int(WireProtocol.pushLimit)
    /// Total bytes of the memory tier before the oldest blobs spill to disk.
    public let memoryCapacity: Int
    private var memory: [ContentHash: [UInt8]] = [:]
    private var memoryOrder: [ContentHash] = []
    /// Bytes in the memory tier that are not being spilled.
    private var memoryBytes = 0
    /// Every stored blob's size (memory or disk).
    private var index: [ContentHash: UInt64] = [:]
    private let spills = DispatchQueue(label: "flpeer.blob-spill")

    public init(directory: String, memoryCapacity: Int = 64 << 20) throws {
        self.directory = directory
        self.memoryCapacity = memoryCapacity
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".part") {
            // A partial blob of an earlier run (killed mid-transfer): nothing resumes it.
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".blob") {
            guard let hash = contentHash(hex: name.dropLast(5)),
                  let size = try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")[.size] as? UInt64 else { continue }
            index[hash] = size
        }
    }

    public func path(_ hash: ContentHash) -> String { "\(directory)/\(hex(hash.bytes)).blob" }

    private func inMemory(_ hash: ContentHash) -> [UInt8]? {
        lock.withLock { memory[hash] }
    }

    /// True when the blob is stored.
    public func has(_ hash: ContentHash) -> Bool { lock.withLock { index[hash] != nil } }

    /// Size in bytes of a stored blob.
    public func size(_ hash: ContentHash) -> UInt64? { lock.withLock { index[hash] } }

    /// Bytes held in the memory tier (those being written to disk not counted).
    public var memoryTierBytes: Int { lock.withLock { memoryBytes } }

    /// A stored blob's bytes (reads a file blob whole: for small blobs).
    public func bytes(_ hash: ContentHash) -> [UInt8]? {
        if let b = inMemory(hash) { return b }
        return (try? Data(contentsOf: URL(fileURLWithPath: path(hash)))).map { [UInt8]($0) }
    }

    /// Stores bytes and returns their SHA-256.
    @discardableResult
    public func put(_ bytes: [UInt8]) throws -> ContentHash {
        let hash = ContentHash(Array(SHA256.hash(data: bytes)))!
        if has(hash) { return hash }
        if bytes.count <= BlobStore.memoryLimit {
            keep(hash, bytes)
            return hash
        }
        try writeFile(hash, bytes)
        lock.withLock { index[hash] = UInt64(bytes.count) }
        return hash
    }

    private func writeFile(_ hash: ContentHash, _ bytes: [UInt8]) throws {
        let tmp = "\(directory)/\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { throw BlobError("cannot write \(tmp)") }
        try rename(tmp, to: path(hash))
    }

    /// Adds a small blob to the memory tier. Beyond capacity the oldest blobs
    /// are written to disk on the spill queue and then leave memory.
    fileprivate func keep(_ hash: ContentHash, _ bytes: [UInt8]) {
        var spill: [(ContentHash, [UInt8])] = []
        lock.withLock {
            guard memory[hash] == nil else { return }
            memory[hash] = bytes
            index[hash] = UInt64(bytes.count)
            memoryOrder.append(hash)
            memoryBytes += bytes.count
            while memoryBytes > memoryCapacity, !memoryOrder.isEmpty {
                let old = memoryOrder.removeFirst()
                guard let b = memory[old] else { continue }
                memoryBytes -= b.count
                spill.append((old, b))
            }
        }
        guard !spill.isEmpty else { return }
        spills.async { [self, spill] in
            for (h, b) in spill {
                do {
                    try writeFile(h, b)
                    lock.withLock { memory[h] = nil }
                } catch {
                    // Kept in memory: a full disk must not lose a blob.
                    lock.withLock { memoryBytes += b.count }
                }
            }
        }
    }

    /// Waits until every spill started so far is written (tests).
    public func flushSpills() { spills.sync {} }

    /// Copies a file into the store, hashing it in 1 MiB pieces.
    @discardableResult
    public func put(file: String) throws -> ContentHash {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw BlobError("cannot open \(file)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        let tmp = "\(directory)/\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else { throw BlobError("cannot create \(tmp)") }
        guard let out = FileHandle(forWritingAtPath: tmp) else { throw BlobError("cannot write \(tmp)") }
        var size: UInt64 = 0
        while let piece = try handle.read(upToCount: 1 << 20), !piece.isEmpty {
            hasher.update(data: piece)
            try out.write(contentsOf: piece)
            size += UInt64(piece.count)
        }
        try out.close()
        let hash = ContentHash(Array(hasher.finalize()))!
        if has(hash) { try? FileManager.default.removeItem(atPath: tmp) } else { try rename(tmp, to: path(hash)) }
        lock.withLock { index[hash] = size }
        return hash
    }

    /// Whether a stored blob is in the memory tier (reading it does no file I/O).
    public func isInMemory(_ hash: ContentHash) -> Bool { inMemory(hash) != nil }

    /// Reads up to `length` bytes at `offset` of a stored blob into a buffer.
    public func read(_ hash: ContentHash, offset: UInt64, length: Int, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        if let b = inMemory(hash) {
            guard offset <= UInt64(b.count) else { throw BlobError("cannot read blob \(hash) at \(offset)") }
            let start = Int(offset), end = min(b.count, start + length)
            var buffer = allocator.buffer(capacity: end - start)
            buffer.writeBytes(b[start..<end])
            return buffer
        }
        let fd = open(path(hash), O_RDONLY)
        guard fd >= 0 else { throw BlobError("blob \(hash) is not stored") }
        defer { close(fd) }
        var buffer = allocator.buffer(capacity: length)
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { ptr in
            max(0, pread(fd, ptr.baseAddress, length, off_t(offset)))
        }
        guard n > 0 || length == 0 else { throw BlobError("cannot read blob \(hash) at \(offset)") }
        return buffer
    }

    /// Starts receiving a blob of `size` bytes expected to hash to `hash`. A
    /// large one's part file is created by its first chunk.
    public func beginReceiving(_ hash: ContentHash, size: UInt64) -> IncomingBlob {
        IncomingBlob(store: self, hash: hash, size: size, inMemory: size <= UInt64(BlobStore.memoryLimit))
    }

    fileprivate func newPartPath(_ hash: ContentHash) -> String { "\(directory)/\(hex(hash.bytes)).\(UUID().uuidString).part" }

    fileprivate func committed(_ hash: ContentHash, size: UInt64) { lock.withLock { index[hash] = size } }

    fileprivate func rename(_ from: String, to: String) throws {
        try lock.withLock {
            guard Glibc.rename(from, to) == 0 else { throw BlobError("cannot move \(from) to \(to)") }
        }
    }
}

/// A blob being received: chunks must arrive in order; the hash is checked at the end.
public final class IncomingBlob: @unchecked Sendable {
    public let hash: ContentHash
    public let size: UInt64
    public private(set) var received: UInt64 = 0
    private let store: BlobStore
    private var partPath = ""
    private var fd: Int32 = -1
    private var hasher = SHA256()
    /// The bytes so far, for a blob small enough for the memory tier.
    private var buffer: [UInt8]?

    fileprivate init(store: BlobStore, hash: ContentHash, size: UInt64, inMemory: Bool) {
        self.store = store
        self.hash = hash
        self.size = size
        if inMemory { buffer = [] }
    }

    /// Whether chunks go to a file (do the appends and the commit off the event loop).
    public var isOnDisk: Bool { buffer == nil }

    deinit { abandon() }

    /// Appends a chunk at `offset` (which must equal the bytes received so far).
    public func append(offset: UInt64, bytes: ByteBuffer) throws {
        guard offset == received else { throw BlobError("chunk at offset \(offset), expected \(received)") }
        guard received + UInt64(bytes.readableBytes) <= size else { throw BlobError("chunk runs past the announced size \(size)") }
        if buffer == nil && fd < 0 {
            partPath = store.newPartPath(hash)
            fd = open(partPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw BlobError("cannot create \(partPath)") }
        }
        try bytes.withUnsafeReadableBytes { raw in
            hasher.update(bufferPointer: raw)
            if buffer != nil {
                buffer!.append(contentsOf: raw)
                return
            }
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                guard n > 0 else { throw BlobError("cannot write \(partPath)") }
                done += n
            }
        }
        received += UInt64(bytes.readableBytes)
    }

    public var isComplete: Bool { received == size }

    /// Checks the hash and moves the blob into the store.
    public func commit() throws {
        guard isComplete else { throw BlobError("blob \(hash) is incomplete") }
        let digest = ContentHash(Array(hasher.finalize()))!
        if let buffer {
            self.buffer = nil
            guard digest == hash else { throw BlobError("received bytes hash to \(digest), not the announced \(hash)") }
            store.keep(hash, buffer)
            return
        }
        close(fd)
        fd = -1
        guard digest == hash else {
            unlink(partPath)
            throw BlobError("received bytes hash to \(digest), not the announced \(hash)")
        }
        try store.rename(partPath, to: store.path(hash))
        store.committed(hash, size: size)
    }

    /// Drops a partial blob.
    public func abandon() {
        buffer = nil
        if fd >= 0 {
            close(fd)
            fd = -1
            unlink(partPath)
        }
    }
}

/// The hash a 64-digit lowercase hex name spells, if it is one.
func contentHash(hex name: Substring) -> ContentHash? {
    let digits = Array(name.utf8)
    guard digits.count == 64 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(32)
    for i in stride(from: 0, to: 64, by: 2) {
        guard let hi = value(digits[i]), let lo = value(digits[i + 1]) else { return nil }
        bytes.append(hi << 4 | lo)
    }
    return ContentHash(bytes)
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
