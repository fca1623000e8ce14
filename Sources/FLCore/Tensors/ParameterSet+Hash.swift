import Crypto

extension ParameterSet {
    /// Domain tag that starts the hashed bytes, so a parameter-set hash can
    /// never collide with a hash of some other flpeer structure.
    public static let hashDomainTag = Array("flpeer/parameter-set/v1\0".utf8)

    /// The canonical byte form (see docs/parameter-hash.md): tensors in
    /// bytewise name order; per tensor the name, rank, dimensions and the
    /// Float32 bit patterns, all little-endian. Insertion order does not matter.
    public func canonicalBytes() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(16 + scalarCount * 4 + entries.count * 64)
        streamCanonicalBytes { out.append(contentsOf: $0) }
        return out
    }

    /// Feeds the canonical bytes to `sink` piece by piece, without building
    /// one buffer of the whole set.
    public func streamCanonicalBytes(_ sink: (UnsafeRawBufferPointer) -> Void) {
        let sorted = entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var head = [UInt8]()
        appendLittleEndian(UInt64(sorted.count), to: &head)
        for e in sorted {
            let name = Array(e.name.utf8)
            appendLittleEndian(UInt64(name.count), to: &head)
            head.append(contentsOf: name)
            appendLittleEndian(UInt64(e.tensor.shape.count), to: &head)
            for d in e.tensor.shape { appendLittleEndian(UInt64(d), to: &head) }
            head.withUnsafeBytes(sink)
            head.removeAll(keepingCapacity: true)
            #if _endian(little)
            e.tensor.scalars.withUnsafeBytes(sink)
            #else
            var le = [UInt8]()
            appendFloats(e.tensor.scalars, to: &le)
            le.withUnsafeBytes(sink)
            #endif
        }
        if !head.isEmpty { head.withUnsafeBytes(sink) }
    }

    /// SHA-256 over the domain tag followed by the canonical bytes: the hash
    /// that ledger entries sign.
    public func sha256() -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: ParameterSet.hashDomainTag)
        streamCanonicalBytes { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }

    /// `sha256()` as lowercase hex.
    public func sha256Hex() -> String { hexString(sha256()) }
}

/// Lowercase hex of bytes.
public func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
