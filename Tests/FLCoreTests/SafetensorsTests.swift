import FLCore
import Foundation
import Testing

@Suite("safetensors")
struct SafetensorsTests {
    func sampleSet(seed: UInt64 = 1) throws -> ParameterSet {
        var rng = SeededGenerator(seed: seed)
        var set = ParameterSet()
        try set.append("layers.1.weight", Tensor(shape: [3, 4], scalars: randomFloats(12, &rng)))
        try set.append("layers.0.bias", Tensor(shape: [5], scalars: randomFloats(5, &rng)))
        try set.append("scalar", Tensor(shape: [], scalars: [-0.0]))
        try set.append("empty", Tensor(shape: [0, 3], scalars: []))
        try set.append("odd \"name\"\n\u{1}é", Tensor(shape: [2], scalars: [.greatestFiniteMagnitude, .leastNonzeroMagnitude]))
        return set
    }

    @Test func roundTripKeepsEveryTensor() throws {
        let set = try sampleSet()
        let decoded = try Safetensors.decode(Safetensors.encode(set, metadata: ["format": "pt"]))
        #expect(decoded.metadata == ["format": "pt"])
        #expect(decoded.parameters.names.sorted() == set.names.sorted())
        for name in set.names {
            let a = try #require(set[name]), b = try #require(decoded.parameters[name])
            #expect(a.shape == b.shape)
            #expect(a.scalars.map(\.bitPattern) == b.scalars.map(\.bitPattern))
        }
    }

    @Test func pythonReadsWhatSwiftWritesAndWritesTheSameBytes() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let set = try sampleSet(seed: 7)
        let path = dir.appendingPathComponent("swift.safetensors").path
        // One metadata key: the Python package writes several keys in random
        // (Rust HashMap) order, so byte identity is only defined for one.
        try Safetensors.write(set, to: path, metadata: ["format": "pt"])
        // Python loads the Swift file, prints a digest of every tensor, and
        // saves the same tensors again; the bytes must be identical.
        let script = """
        import sys, hashlib, numpy as np
        from safetensors import safe_open
        from safetensors.numpy import load_file, save
        path = sys.argv[1]
        tensors = load_file(path)
        with safe_open(path, framework="np") as f:
            meta = f.metadata()
        for name in sorted(tensors):
            t = tensors[name]
            assert t.dtype == np.float32, t.dtype
            print(repr(name), list(t.shape), hashlib.sha256(t.tobytes()).hexdigest())
        again = save({k: tensors[k] for k in tensors}, metadata=meta)
        print("identical" if again == open(path, "rb").read() else "DIFFERENT")
        """
        let out = try runPython(script, [path])
        #expect(out.status == 0, "python failed: \(out.stderr)")
        let lines = out.stdout.split(separator: "\n")
        #expect(lines.last == "identical")
        #expect(lines.count == set.names.count + 1)
    }

    /// Any dtype, as a PyTorch state_dict holds (int64 BatchNorm counters,
    /// 0-d tensors): Python writes, Swift reads and writes the same bytes back.
    @Test func filesOfAnyDTypeRoundTripWithPython() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("mixed.safetensors").path
        let out = try runPython("""
        import sys, numpy as np
        from safetensors.numpy import save_file
        save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.asarray(7, dtype=np.int64),
                   "h": np.ones(3, dtype=np.float16), "b": np.array([True, False])}, sys.argv[1])
        """, [path])
        #expect(out.status == 0, "python failed: \(out.stderr)")
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let file = try SafetensorsFile.decode(bytes)
        #expect(file.entries.map(\.name).sorted() == ["b", "h", "n", "w"])
        #expect(file["n"]?.dtype == "I64" && file["n"]?.shape == [] && file["n"]?.data == [7, 0, 0, 0, 0, 0, 0, 0])
        #expect(file["w"]?.floats == [0, 1, 2, 3, 4, 5] && file["w"]?.shape == [2, 3])
        #expect(file["h"]?.dtype == "F16" && file["h"]?.floats == nil)
        // Swift's own file (tensors in name order) reads back the same, in Swift and in Python.
        let again = dir.appendingPathComponent("again.safetensors").path
        try Data(file.encoded()).write(to: URL(fileURLWithPath: again))
        #expect(Set(try SafetensorsFile.decode(file.encoded()).entries.map(\.name)) == Set(file.entries.map(\.name)))
        #expect(try SafetensorsFile.decode(file.encoded()).entries.sorted { $0.name < $1.name } == file.entries.sorted { $0.name < $1.name })
        let read = try runPython("""
        import sys
        from safetensors.numpy import load_file
        t = load_file(sys.argv[1])
        print(int(t["n"]), t["n"].shape, t["w"].sum(), t["b"].tolist(), t["h"].dtype)
        """, [again])
        #expect(read.stdout == "7 () 15.0 [True, False] float16\n", "\(read.stdout) \(read.stderr)")
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.decode(Array(bytes.dropLast())) }
    }

    @Test func pythonReadsSeveralMetadataKeys() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("meta.safetensors").path
        try Safetensors.write(try sampleSet(), to: path, metadata: ["format": "pt", "round": "3", "author": "inst-1"])
        let out = try runPython("""
        import sys
        from safetensors import safe_open
        with safe_open(sys.argv[1], framework="np") as f:
            print(sorted(f.metadata().items()))
        """, [path])
        #expect(out.status == 0, "python failed: \(out.stderr)")
        #expect(out.stdout == "[('author', 'inst-1'), ('format', 'pt'), ('round', '3')]\n")
    }

    @Test func swiftReadsWhatPythonWritesAndWritesTheSameBytes() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("python.safetensors").path
        let script = """
        import sys, numpy as np
        from safetensors.numpy import save_file
        rng = np.random.default_rng(5)
        save_file({
            "fc.weight": rng.standard_normal((10, 64)).astype(np.float32),
            "fc.bias": np.arange(10, dtype=np.float32) - 4.5,
            "b": np.array(3.25, dtype=np.float32),
        }, sys.argv[1], metadata={"format": "np"})
        """
        let out = try runPython(script, [path])
        #expect(out.status == 0, "python failed: \(out.stderr)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let decoded = try Safetensors.decode(bytes)
        #expect(decoded.metadata == ["format": "np"])
        #expect(decoded.parameters["fc.weight"]?.shape == [10, 64])
        #expect(decoded.parameters["fc.bias"]?.scalars == (0..<10).map { Float($0) - 4.5 })
        #expect(decoded.parameters["b"]?.shape == [])
        #expect(decoded.parameters["b"]?.scalars == [3.25])
        #expect(Safetensors.encode(decoded.parameters, metadata: decoded.metadata) == bytes)
    }

    @Test func malformedFilesGiveTypedErrors() throws {
        let good = Safetensors.encode(try sampleSet())
        #expect(throws: SafetensorsError.self) { try Safetensors.decode([1, 2, 3]) }
        // A header length far beyond the limit must be refused before any allocation.
        var huge = good
        for i in 0..<8 { huge[i] = 0xFF }
        #expect { try Safetensors.decode(huge) } throws: { ($0 as? SafetensorsError).map { if case .headerTooLarge = $0 { true } else { false } } ?? false }
        // Truncated data section.
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(Array(good.dropLast(4))) }
        // Extra bytes after the last tensor.
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(good + [0, 0, 0, 0]) }
        // Not JSON.
        var garbage = good
        garbage[9] = UInt8(ascii: "#")
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(garbage) }
        // Wrong dtype.
        let f16 = header(#"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#) + [0, 0, 0, 0]
        #expect(throws: SafetensorsError.unsupportedDType(tensor: "x", dtype: "F16")) { try Safetensors.decode(f16) }
        // Shape does not match its byte range.
        let shape = header(#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#) + [UInt8](repeating: 0, count: 8)
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(shape) }
        // Overlapping ranges.
        let overlap = header(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#) + [UInt8](repeating: 0, count: 8)
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(overlap) }
        // A shape whose element count overflows.
        let overflow = header(#"{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#)
        #expect(throws: SafetensorsError.self) { try Safetensors.decode(overflow) }
    }

    @Test func randomBytesNeverCrashTheDecoder() throws {
        var rng = SeededGenerator(seed: 99)
        let good = Safetensors.encode(try sampleSet())
        for _ in 0..<2000 {
            var bytes = good
            let flips = 1 + rng.nextInt(below: 4)
            for _ in 0..<flips { bytes[rng.nextInt(below: bytes.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            if rng.nextInt(below: 4) == 0 { bytes = Array(bytes.prefix(rng.nextInt(below: bytes.count))) }
            _ = try? Safetensors.decode(bytes)
        }
    }

    private func header(_ json: String) -> [UInt8] {
        var h = Array(json.utf8)
        while h.count % 8 != 0 { h.append(UInt8(ascii: " ")) }
        var out = [UInt8]()
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(h.count) >> (8 * UInt64(i)))) }
        return out + h
    }
}
