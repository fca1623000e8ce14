import Foundation

/// A safetensors file of any dtypes, tensors kept as raw little-endian bytes:
/// what an external learner writes (a PyTorch `state_dict` holds int64
/// BatchNorm counters beside its Float32 weights). `Safetensors` reads and
/// writes the Float32-only parameter sets that rounds aggregate.
public struct SafetensorsFile: Sendable, Equatable {
    /// One tensor: its dtype name (`F32`, `I64`, …), shape and data bytes.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let data: [UInt8]

        public init(name: String, dtype: String, shape: [Int], data: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.data = data
        }

        /// The values of an `F32` tensor.
        public var floats: [Float]? {
            guard dtype == "F32" else { return nil }
            return readFloats(data, from: 0, count: data.count / 4)
        }
    }

    /// Bytes per element of the dtypes safetensors defines.
    public static let elementSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    ]

    /// Tensors in file order.
    public var entries: [Entry]
    public var metadata: [String: String]

    public init(entries: [Entry], metadata: [String: String] = [:]) {
        self.entries = entries
        self.metadata = metadata
    }

    /// The tensor called `name`.
    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }

    /// A Float32 tensor as a file entry.
    public static func entry(_ name: String, _ tensor: Tensor) -> Entry {
        var bytes = [UInt8]()
        appendFloats(tensor.scalars, to: &bytes)
        return Entry(name: name, dtype: "F32", shape: tensor.shape, data: bytes)
    }

    /// The file's bytes: tensors ordered by name (bytewise). The Python
    /// package orders by dtype first, so a mixed-dtype file it writes has the
    /// same tensors in another order; for Float32 alone the bytes are the same.
    public func encoded() -> [UInt8] {
        let sorted = entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var parts: [String] = []
        if !metadata.isEmpty {
            let keys = metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            parts.append("\"__metadata__\":{" + keys.map { "\(Safetensors.jsonString($0)):\(Safetensors.jsonString(metadata[$0]!))" }.joined(separator: ",") + "}")
        }
        var offset = 0
        for e in sorted {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append("\(Safetensors.jsonString(e.name)):{\"dtype\":\"\(e.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.data.count)]}")
            offset += e.data.count
        }
        var header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        appendLittleEndian(UInt64(header.count), to: &out)
        out.append(contentsOf: header)
        for e in sorted { out.append(contentsOf: e.data) }
        return out
    }

    /// Decodes a file, checking every dtype, length and offset before use.
    public static func decode(_ bytes: [UInt8]) throws(SafetensorsError) -> SafetensorsFile {
        guard bytes.count >= 8 else { throw .truncated("file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(Safetensors.maximumHeaderSize) else { throw .headerTooLarge(n) }
        let headerSize = Int(n)
        guard 8 + headerSize <= bytes.count else { throw .truncated("header claims \(headerSize) bytes but only \(bytes.count - 8) follow") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerSize)]), options: [])
        } catch {
            throw .invalidHeader("header is not valid JSON")
        }
        guard let dict = object as? [String: Any] else { throw .invalidHeader("header is not a JSON object") }
        var metadata: [String: String] = [:]
        var infos: [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)] = []
        for (key, value) in dict {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else { throw .invalidHeader("__metadata__ is not an object") }
                for (mk, mv) in m {
                    guard let s = mv as? String else { throw .invalidHeader("metadata value for '\(mk)' is not a string") }
                    metadata[mk] = s
                }
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String else { throw .invalidHeader("tensor '\(key)' has no dtype") }
            guard elementSizes[dtype] != nil else { throw .unsupportedDType(tensor: key, dtype: dtype) }
            guard let shapeAny = info["shape"] as? [Any], let shape = naturals(shapeAny) else { throw .invalidHeader("tensor '\(key)' has no valid shape") }
            guard let offsAny = info["data_offsets"] as? [Any], let offs = naturals(offsAny), offs.count == 2 else {
                throw .invalidHeader("tensor '\(key)' has no valid data_offsets")
            }
            infos.append((key, dtype, shape, offs[0], offs[1]))
        }
        infos.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        let dataStart = 8 + headerSize
        let dataSize = bytes.count - dataStart
        var expected = 0
        var entries: [Entry] = []
        for info in infos {
            guard info.begin == expected, info.end >= info.begin else { throw .invalidOffsets("tensor '\(info.name)' starts at \(info.begin), expected \(expected)") }
            guard info.end <= dataSize else { throw .truncated("tensor '\(info.name)' ends at \(info.end) but the data section has \(dataSize) bytes") }
            guard let count = Tensor.elementCount(info.shape), count.multipliedReportingOverflow(by: elementSizes[info.dtype]!) == (info.end - info.begin, false) else {
                throw .invalidOffsets("tensor '\(info.name)' with shape \(info.shape) does not fill \(info.end - info.begin) bytes")
            }
            entries.append(Entry(name: info.name, dtype: info.dtype, shape: info.shape, data: Array(bytes[(dataStart + info.begin)..<(dataStart + info.end)])))
            expected = info.end
        }
        guard expected == dataSize else { throw .invalidOffsets("data section has \(dataSize - expected) unclaimed bytes") }
        return SafetensorsFile(entries: entries, metadata: metadata)
    }

    private static func naturals(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            guard let num = v as? NSNumber else { return nil }
            let d = num.doubleValue
            guard d >= 0, d < 9.0e15, d == d.rounded() else { return nil }
            out.append(num.intValue)
        }
        return out
    }
}
