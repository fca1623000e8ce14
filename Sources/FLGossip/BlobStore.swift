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

/// Content-addressed blobs on disk: `<dir>/<sha256 hex>.blob`. A blob being
/// received is written to `<hex>.part`, hashed as it arrives, and renamed
/// into place only when its SHA-256 matches its name. Nothing is ever held
/// whole in memory.
public final class BlobStore: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    public func path(_ hash: ContentHash) -> String { "\(directory)/\(hex(hash.bytes)).blob" }

    /// True when the blob is stored.
    public func has(_ hash: ContentHash) -> Bool { FileManager.default.fileExists(atPath: path(hash)) }

    /// Size in bytes of a stored blob.
    public func size(_ hash: ContentHash) -> UInt64? {
        (try? FileManager.default.attributesOfItem(atPath: path(hash))[.size] as? UInt64) ?? nil
    }

    /// Stores bytes and returns their SHA-256.
    @discardableResult
    public func put(_ bytes: [UInt8]) throws -> ContentHash {
        let hash = ContentHash(Array(SHA256.hash(data: bytes)))!
        if has(hash) { return hash }
        let tmp = "\(directory)/\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { throw BlobError("cannot write \(tmp)") }
        try rename(tmp, to: path(hash))
        return hash
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
        let part = "\(directory)/\(hex(hash.bytes)).\(UUID().uuidString).part"
        let fd = open(part, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BlobError("cannot create \(part)") }
        return IncomingBlob(store: self, hash: hash, size: size, partPath: part, fd: fd)
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

    fileprivate init(store: BlobStore, hash: ContentHash, size: UInt64, partPath: String, fd: Int32) {
        self.store = store
        self.hash = hash
        self.size = size
        self.partPath = partPath
        self.fd = fd
    }

    deinit { abandon() }

    /// Appends a chunk at `offset` (which must equal the bytes received so far).
    public func append(offset: UInt64, bytes: ByteBuffer) throws {
        guard offset == received else { throw BlobError("chunk at offset \(offset), expected \(received)") }
        guard received + UInt64(bytes.readableBytes) <= size else { throw BlobError("chunk runs past the announced size \(size)") }
        try bytes.withUnsafeReadableBytes { raw in
            hasher.update(bufferPointer: raw)
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
