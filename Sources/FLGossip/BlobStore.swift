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
/// (small models' updates, every round) stay in a bounded memory tier and
/// spill to disk when it is full: creating files is much of a small round's cost.
public final class BlobStore: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    /// Blobs up to this size are kept in memory.
    public static let memoryLimit = Int(WireProtocol.pushLimit)
    /// Total bytes of the memory tier before the oldest blobs spill to disk.
    public static let memoryCapacity = 64 << 20
    private var memory: [ContentHash: [UInt8]] = [:]
    private var memoryOrder: [ContentHash] = []
    private var memoryBytes = 0

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    public func path(_ hash: ContentHash) -> String { "\(directory)/\(hex(hash.bytes)).blob" }

    private func inMemory(_ hash: ContentHash) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        return memory[hash]
    }

    /// True when the blob is stored.
    public func has(_ hash: ContentHash) -> Bool { inMemory(hash) != nil || FileManager.default.fileExists(atPath: path(hash)) }

    /// Size in bytes of a stored blob.
    public func size(_ hash: ContentHash) -> UInt64? {
        if let b = inMemory(hash) { return UInt64(b.count) }
        return (try? FileManager.default.attributesOfItem(atPath: path(hash))[.size] as? UInt64) ?? nil
    }

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
            try keep(hash, bytes)
            return hash
        }
        try writeFile(hash, bytes)
        return hash
    }

    private func writeFile(_ hash: ContentHash, _ bytes: [UInt8]) throws {
        let tmp = "\(directory)/\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { throw BlobError("cannot write \(tmp)") }
        try rename(tmp, to: path(hash))
    }

    /// Adds a small blob to the memory tier, spilling the oldest to disk beyond capacity.
    fileprivate func keep(_ hash: ContentHash, _ bytes: [UInt8]) throws {
        var spill: [(ContentHash, [UInt8])] = []
        lock.lock()
        if memory[hash] == nil {
            memory[hash] = bytes
            memoryOrder.append(hash)
            memoryBytes += bytes.count
            while memoryBytes > BlobStore.memoryCapacity, !memoryOrder.isEmpty {
                let old = memoryOrder.removeFirst()
                if let b = memory[old] { spill.append((old, b)) }
            }
        }
        lock.unlock()
        for (h, b) in spill {
            try writeFile(h, b)
            lock.lock()
            if let removed = memory.removeValue(forKey: h) { memoryBytes -= removed.count }
            lock.unlock()
        }
    }

    /// Copies a file into the store, hashing it in 1 MiB pieces.
    @discardableResult
    public func put(file: String) throws -> ContentHash {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw BlobError("cannot open \(file)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        let tmp = "\(directory)/\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else { throw BlobError("cannot create \(tmp)") }
        guard let out = FileHandle(forWritingAtPath: tmp) else { throw BlobError("cannot write \(tmp)") }
        while let piece = try handle.read(upToCount: 1 << 20), !piece.isEmpty {
            hasher.update(data: piece)
            try out.write(contentsOf: piece)
        }
        try out.close()
        let hash = ContentHash(Array(hasher.finalize()))!
        if has(hash) { try? FileManager.default.removeItem(atPath: tmp) } else { try rename(tmp, to: path(hash)) }
        return hash
    }

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

    /// Starts receiving a blob of `size` bytes expected to hash to `hash`.
    public func beginReceiving(_ hash: ContentHash, size: UInt64) throws -> IncomingBlob {
        if size <= UInt64(BlobStore.memoryLimit) {
            return IncomingBlob(store: self, hash: hash, size: size, partPath: "", fd: -1, inMemory: true)
        }
        let part = "\(directory)/\(hex(hash.bytes)).\(UUID().uuidString).part"
        let fd = open(part, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BlobError("cannot create \(part)") }
        return IncomingBlob(store: self, hash: hash, size: size, partPath: part, fd: fd, inMemory: false)
    }

    fileprivate func rename(_ from: String, to: String) throws {
        lock.lock()
        defer { lock.unlock() }
        guard Glibc.rename(from, to) == 0 else { throw BlobError("cannot move \(from) to \(to)") }
    }
}

/// A blob being received: chunks must arrive in order; the hash is checked at the end.
public final class IncomingBlob: @unchecked Sendable {
    public let hash: ContentHash
    public let size: UInt64
    public private(set) var received: UInt64 = 0
    private let store: BlobStore
    private let partPath: String
    private var fd: Int32
    private var hasher = SHA256()
    /// The bytes so far, for a blob small enough for the memory tier.
    private var buffer: [UInt8]?

    fileprivate init(store: BlobStore, hash: ContentHash, size: UInt64, partPath: String, fd: Int32, inMemory: Bool) {
        self.store = store
        self.hash = hash
        self.size = size
        self.partPath = partPath
        self.fd = fd
        if inMemory { buffer = [] }
    }

    deinit { abandon() }

    /// Appends a chunk at `offset` (which must equal the bytes received so far).
    public func append(offset: UInt64, bytes: ByteBuffer) throws {
        guard offset == received else { throw BlobError("chunk at offset \(offset), expected \(received)") }
        guard received + UInt64(bytes.readableBytes) <= size else { throw BlobError("chunk runs past the announced size \(size)") }
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
            try store.keep(hash, buffer)
            return
        }
        close(fd)
        fd = -1
        guard digest == hash else {
            unlink(partPath)
            throw BlobError("received bytes hash to \(digest), not the announced \(hash)")
        }
        try store.rename(partPath, to: store.path(hash))
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
