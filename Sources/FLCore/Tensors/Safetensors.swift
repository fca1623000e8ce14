import Foundation

/// Reads and writes the safetensors format (https://github.com/huggingface/safetensors)
/// for Float32 tensors, byte for byte as the `safetensors` Python package does:
/// an 8-byte little-endian header length, a compact JSON header padded with
/// spaces to a multiple of 8 bytes, then the tensor data.
///
/// The writer orders tensors by name (bytewise), as the Python package does, so
/// the file does not keep insertion order; the reader returns tensors in file order.
public enum Safetensors {
    /// Largest header the reader accepts (the reference implementation's limit).
    public static let maximumHeaderSize = 100_000_000

    /// The encoded file for `parameters`, with optional string metadata.
    public static func encode(_ parameters: ParameterSet, metadata: [String: String]? = nil) -> [UInt8] {
        let sorted = parameters.entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var json = "{"
        var first = true
        if let metadata {
            json += "\"__metadata__\":{"
            let keys = metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            json += keys.map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for e in sorted {
            if !first { json += "," }
            first = false
            let bytes = e.tensor.scalars.count * 4
            let shape = e.tensor.shape.map(String.init).joined(separator: ",")
            json += "\(jsonString(e.name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        json += "}"
        var header = Array(json.utf8)
        let padding = (8 - header.count % 8) % 8
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))

        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        appendLittleEndian(UInt64(header.count), to: &out)
        out.append(contentsOf: header)
        for e in sorted { appendFloats(e.tensor.scalars, to: &out) }
        return out
    }

    /// Writes `parameters` to a file.
    public static func write(_ parameters: ParameterSet, to path: String, metadata: [String: String]? = nil) throws {
        let bytes = encode(parameters, metadata: metadata)
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Reads a file; see `decode(_:)`.
    public static func read(from path: String) throws -> (parameters: ParameterSet, metadata: [String: String]) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SafetensorsError.unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        return try decode(Array(data))
    }

    /// Decodes a safetensors file of Float32 tensors, checking every length
    /// and offset before use (`SafetensorsFile.decode`); any other dtype is refused.
    public static func decode(_ bytes: [UInt8]) throws(SafetensorsError) -> (parameters: ParameterSet, metadata: [String: String]) {
        let file = try SafetensorsFile.decode(bytes)
        var entries: [ParameterSet.Entry] = []
        entries.reserveCapacity(file.entries.count)
        for e in file.entries {
            guard let scalars = e.floats else { throw .unsupportedDType(tensor: e.name, dtype: e.dtype) }
            do {
                entries.append(.init(name: e.name, tensor: try Tensor(shape: e.shape, scalars: scalars)))
            } catch {
                throw .invalidOffsets("tensor '\(e.name)' with shape \(e.shape) does not fill \(e.data.count) bytes")
            }
        }
        do {
            return (try ParameterSet(entries), file.metadata)
        } catch {
            throw .invalidHeader("\(error)")
        }
    }

    /// JSON string literal as serde_json writes it: raw UTF-8, short escapes, `\u00xx` otherwise.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// Why a safetensors file was rejected.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case truncated(String)
    case headerTooLarge(UInt64)
    case invalidHeader(String)
    case unsupportedDType(tensor: String, dtype: String)
    case invalidOffsets(String)

    public var description: String {
        switch self {
        case .unreadable(let p, let r): "cannot read safetensors file \(p): \(r)"
        case .truncated(let why): "safetensors data is truncated: \(why)"
        case .headerTooLarge(let n): "safetensors header of \(n) bytes exceeds the \(Safetensors.maximumHeaderSize)-byte limit"
        case .invalidHeader(let why): "safetensors header is invalid: \(why)"
        case .unsupportedDType(let t, let d): "tensor '\(t)' has dtype \(d); flpeer reads F32 only"
        case .invalidOffsets(let why): "safetensors offsets are invalid: \(why)"
        }
    }
}

@inline(__always)
func appendLittleEndian(_ v: UInt64, to out: inout [UInt8]) {
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
}

/// Appends Float32 values as little-endian bytes.
func appendFloats(_ scalars: [Float], to out: inout [UInt8]) {
    let start = out.count
    out.append(contentsOf: repeatElement(0, count: scalars.count * 4))
    out.withUnsafeMutableBytes { raw in
        let dst = raw.baseAddress! + start
        scalars.withUnsafeBytes { src in
            #if _endian(little)
            if let s = src.baseAddress { dst.copyMemory(from: s, byteCount: src.count) }
            #else
            for (i, f) in scalars.enumerated() { dst.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            #endif
        }
    }
}

/// Reads `count` little-endian Float32 values starting at `offset` (bounds checked by the caller).
func readFloats(_ bytes: [UInt8], from offset: Int, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buf, initialized in
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                buf[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4 * i, as: UInt32.self)))
            }
        }
        initialized = count
    }
}
