import FLCore
import FLLedger
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The `learner:` section of a peer file: a worker process that trains and
/// evaluates the model (docs/learner-protocol.md).
public struct LearnerConfig: Sendable, Equatable {
    /// The program and its arguments (no shell).
    public var command: [String]
    /// Where it runs (default: the peer file's folder).
    public var workingDirectory: String?
    /// The longest any one request may take, starting the worker included.
    public var timeoutSeconds: Double

    public init(command: [String], workingDirectory: String? = nil, timeoutSeconds: Double = 300) {
        self.command = command
        self.workingDirectory = workingDirectory
        self.timeoutSeconds = timeoutSeconds
    }
}

/// A tensor as the worker's `hello` declares it.
public struct TensorLayout: Sendable, Hashable, Codable {
    public let name: String
    public let dtype: String
    public let shape: [Int]

    var elements: Int { Tensor.elementCount(shape) ?? 0 }
    var bytes: Int { elements * (SafetensorsFile.elementSizes[dtype] ?? 0) }
}

/// A learner in another process (PyTorch, TensorFlow, numpy…) behind the
/// `LocalLearner` seam. The shared parameters are the worker's Float32
/// tensors that no `local_parameters` pattern matches, in name order; they
/// are what rounds hash, send and aggregate. Every other tensor (non-float
/// buffers such as BatchNorm's `num_batches_tracked`, and whatever the plan
/// marks local) stays with this member: each model file the peer gives the
/// worker holds the candidate's shared tensors and this member's own local
/// ones, which are replaced by those of each update it trains.
public final class ExternalLearner: LocalLearner {
    public static let protocolVersion = 1
    let process: LearnerProcess
    /// Every tensor of the worker's model, as `hello` declared it.
    public let tensors: [TensorLayout]
    /// The shared Float32 tensors, in name order (bytewise).
    public let shared: [TensorLayout]
    /// Rows the worker reported (`train`, `validation`, `assessment`, `test`).
    public let rows: [String: Int]
    let initial: [Float]
    let directory: String
    let classCount: Int
    let labelPermutation: [Int]?
    let maximumFileBytes: Int
    let localFile: String
    private let state: Mutex<(local: [SafetensorsFile.Entry], round: Int, files: Int)>
    private let busy = Mutex<Double>(0)
    /// Seconds from starting the worker to its answer to `init`.
    public let startSeconds: Double

    /// Seconds this peer has waited for the worker's answers so far (its own train and evaluate time, and the pipe).
    public var busySeconds: Double { busy.withLock { $0 } }

    /// Sends a request, adding the wait to `busySeconds`.
    func call(_ request: [String: JSONValue], what: String) async throws(LearnerError) -> [String: JSONValue] {
        let clock = ContinuousClock()
        let start = clock.now
        defer {
            let d = start.duration(to: clock.now)
            busy.withLock { $0 += Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        }
        return try await process.call(request, what: what)
    }

    /// What `hello` and `init` said, for the round-0 layout entry.
    public var initialHash: String { hash(initial) }
    public var sharedCount: Int { shared.reduce(0) { $0 + $1.elements } }
    /// "the learner `CMD`".
    public var name: String { process.name }

    private init(process: LearnerProcess, tensors: [TensorLayout], shared: [TensorLayout], rows: [String: Int], initial: [Float],
                 local: [SafetensorsFile.Entry], directory: String, classCount: Int, labelPermutation: [Int]?, startSeconds: Double = 0) {
        self.startSeconds = startSeconds
        self.process = process
        self.tensors = tensors
        self.shared = shared
        self.rows = rows
        self.initial = initial
        self.directory = directory
        self.classCount = classCount
        self.labelPermutation = labelPermutation
        self.maximumFileBytes = tensors.reduce(0) { $0 + $1.bytes } + 65_536 + 256 * tensors.count
        self.localFile = "\(directory)/local.safetensors"
        self.state = Mutex((local, 0, 0))
    }

    /// Starts the worker in `directory` (created; the peer's exchange folder),
    /// asks `hello` and `init`, and checks both. `resume`: reuse the local
    /// tensors saved by an earlier run in that folder.
    public static func start(_ config: LearnerConfig, directory: String, environment: [String: String], classes: [String], localPatterns: [String],
                             seed: UInt64, labelPermutation: [Int]?, resume: Bool) async throws(LearnerError) -> ExternalLearner {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw LearnerError("cannot create the learner's folder \(directory): \(error.localizedDescription)")
        }
        let clock = ContinuousClock()
        let started = clock.now
        let process = LearnerProcess(command: config.command, timeout: .milliseconds(Int64(config.timeoutSeconds * 1000)), logPath: "\(directory)/worker.log")
        var env = environment
        env["FLPEER_EXCHANGE_DIR"] = directory
        await process.start(environment: env, workingDirectory: config.workingDirectory)
        do throws(LearnerError) {
            let hello = try await process.call(["verb": .string("hello"), "protocol": .integer(Int64(protocolVersion)), "classes": .array(classes.map { .string($0) })],
                                               what: "`hello` (before round 1)")
            let name = process.name
            guard hello["protocol"]?.integer == Int64(protocolVersion) else {
                throw LearnerError("\(name) answered `hello` with protocol \(hello["protocol"].map { "\($0)" } ?? "none"); this peer speaks protocol \(protocolVersion) (docs/learner-protocol.md)")
            }
            let tensors = try parseTensors(hello["tensors"], name: name)
            if let theirs = hello["classes"]?.strings, theirs != classes {
                throw LearnerError("\(name) answered `hello` with classes [\(theirs.joined(separator: ", "))], but the plan lists [\(classes.joined(separator: ", "))]; the worker must index classes in the plan's order")
            }
            var rows: [String: Int] = [:]
            for (k, v) in hello["rows"]?.object ?? [:] {
                guard let n = v.integer, n >= 0 else { throw LearnerError("\(name) answered `hello` with rows.\(k) = \(v), not a row count") }
                rows[k] = Int(n)
            }
            guard (rows["train"] ?? 0) > 0, (rows["validation"] ?? 0) > 0 else {
                throw LearnerError("\(name) answered `hello` with \(rows["train"] ?? 0) training and \(rows["validation"] ?? 0) validation rows; both must be at least 1")
            }
            let shared = tensors.filter { t in t.dtype == "F32" && !localPatterns.contains { Self.matches($0, t.name) } }
                .sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
            guard !shared.isEmpty else {
                throw LearnerError("\(name) declares no Float32 tensor that the plan shares (every tensor is non-float or matches plan.local_parameters); nothing could be aggregated")
            }
            let learner = ExternalLearner(process: process, tensors: tensors, shared: shared, rows: rows, initial: [], local: [], directory: directory,
                                          classCount: classes.count, labelPermutation: labelPermutation)
            let out = "\(directory)/init.safetensors"
            _ = try await process.call(["verb": .string("init"), "seed": .integer(Int64(seed & ((1 << 53) - 1))), "out": .string(out)], what: "`init` (before round 1)")
            var (initial, local) = try learner.read(out, what: "`init` (before round 1)")
            if resume, let saved = try? learner.read(learner.localFile, what: "the saved local tensors").1 { local = saved }
            let d = started.duration(to: clock.now)
            return ExternalLearner(process: process, tensors: tensors, shared: shared, rows: rows, initial: initial, local: local, directory: directory,
                                   classCount: classes.count, labelPermutation: labelPermutation,
                                   startSeconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        } catch {
            await process.shutdown()
            throw error
        }
    }

    /// What the peer tells its worker through the environment (docs/learner-protocol.md).
    public static func environment(data: String, validation: String?, test: String?, member: String, seed: Int, classes: [String], label: String,
                                   rounds: Int, localEpochs: Int, batchSize: Int, learningRate: Double) -> [String: String] {
        var env = ["FLPEER_DATA": data, "FLPEER_SEED": "\(seed)", "FLPEER_CLASSES": classes.joined(separator: ","), "FLPEER_LABEL": label, "FLPEER_ROUNDS": "\(rounds)",
                   "FLPEER_MEMBER": member, "FLPEER_LOCAL_EPOCHS": "\(localEpochs)", "FLPEER_BATCH_SIZE": "\(batchSize)", "FLPEER_LEARNING_RATE": "\(learningRate)"]
        if let validation { env["FLPEER_VALIDATION"] = validation }
        if let test { env["FLPEER_TEST"] = test }
        return env
    }

    /// `fnmatch(3)` of a `local_parameters` pattern against a tensor name.
    public static func matches(_ pattern: String, _ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }

    static func parseTensors(_ value: JSONValue?, name: String) throws(LearnerError) -> [TensorLayout] {
        guard let list = value?.array, !list.isEmpty else { throw LearnerError("\(name) answered `hello` without a 'tensors' list") }
        var out: [TensorLayout] = []
        for item in list {
            guard let n = item["name"]?.string, !n.isEmpty, let dtype = item["dtype"]?.string, let dims = item["shape"]?.array else {
                throw LearnerError("\(name) answered `hello` with a tensor entry that lacks a name, dtype or shape")
            }
            guard SafetensorsFile.elementSizes[dtype] != nil else {
                throw LearnerError("\(name) declares tensor '\(n)' with dtype \(dtype), which safetensors does not define")
            }
            let shape = dims.compactMap { $0.integer.flatMap { $0 >= 0 && $0 < 1 << 40 ? Int($0) : nil } }
            guard shape.count == dims.count, let count = Tensor.elementCount(shape), count < 1 << 31 else {
                throw LearnerError("\(name) declares tensor '\(n)' with shape \(dims), not a list of sizes")
            }
            out.append(TensorLayout(name: n, dtype: dtype, shape: shape))
        }
        guard Set(out.map(\.name)).count == out.count else { throw LearnerError("\(name) declares a tensor name twice in `hello`") }
        return out
    }

    // MARK: files

    /// The shared parameters and local tensors in a file the worker wrote, checked against `hello`.
    func read(_ path: String, what: String) throws(LearnerError) -> ([Float], [SafetensorsFile.Entry]) {
        // stat(2), not FileManager's attributes (which look the owner up in /etc/passwd).
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw LearnerError("\(name) answered \(what) but wrote no file at \(path)") }
        let size = Int(info.st_size)
        guard size <= maximumFileBytes else {
            throw LearnerError("\(name) wrote \(size) bytes to \(path) for \(what), over the \(maximumFileBytes)-byte limit its `hello` layout allows")
        }
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        } catch let error as SafetensorsError {
            throw LearnerError("\(name) wrote an unreadable model for \(what) (\(error))")
        } catch {
            throw LearnerError("\(name) wrote \(path) for \(what), which cannot be read (\(error.localizedDescription))")
        }
        let byName = Dictionary(file.entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for t in tensors {
            guard let e = byName[t.name] else { throw LearnerError("\(name) wrote a model for \(what) without tensor '\(t.name)', which `hello` declared") }
            guard e.dtype == t.dtype, e.shape == t.shape else {
                throw LearnerError("\(name) wrote tensor '\(t.name)' as \(e.dtype) \(e.shape) for \(what), but `hello` declared \(t.dtype) \(t.shape)")
            }
            if let values = e.floats, !values.allSatisfy(\.isFinite) {
                throw LearnerError("\(name) wrote NaN or infinite values in tensor '\(t.name)' for \(what)")
            }
        }
        if let extra = file.entries.first(where: { e in !tensors.contains { $0.name == e.name } }) {
            throw LearnerError("\(name) wrote tensor '\(extra.name)' for \(what), which `hello` did not declare")
        }
        var flat = [Float]()
        flat.reserveCapacity(sharedCount)
        for t in shared { flat += byName[t.name]!.floats! }
        let sharedNames = Set(shared.map(\.name))
        return (flat, file.entries.filter { !sharedNames.contains($0.name) })
    }

    /// Writes a model file for the worker: `parameters` as the shared tensors, with this member's local ones.
    func write(_ parameters: [Float], local: [SafetensorsFile.Entry], to path: String) throws(LearnerError) {
        var entries = local
        var offset = 0
        for t in shared {
            entries.append(SafetensorsFile.entry(t.name, try! Tensor(shape: t.shape, scalars: Array(parameters[offset..<(offset + t.elements)]))))
            offset += t.elements
        }
        // Read only after this returns (requests go one at a time, and a worker that
        // did not answer was killed): no atomic rename needed.
        if let failure = Self.writeScratch(SafetensorsFile(entries: entries).encoded(), to: path) {
            throw LearnerError("cannot write a model file for \(name) at \(path): \(failure)")
        }
    }

    /// Writes a scratch file the worker reads next: plain writes over the
    /// file's old bytes, no disk sync. Foundation's `Data.write` synced every
    /// file, and creating and deleting 32 candidate files a round cost the
    /// peer more than a fifth of its CPU in the file system; a candidate slot
    /// holds the same layout every time, so it is rewritten in place and cut
    /// to length. Returns the reason when it fails.
    ///
    /// The worker can write in this directory, so it could put a symbolic
    /// link, a second name of another file (a hard link) or a FIFO where the
    /// peer writes next. None is written through: the open does not follow
    /// links and does not wait for a reader, and the file must be a regular
    /// file with one name before a byte is written.
    static func writeScratch(_ bytes: [UInt8], to path: String) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { return "the learner replaced it with a symbolic link, which the peer does not follow" }
            if errno == ENXIO { return "the learner replaced it with a FIFO, which the peer does not write to" }
            return String(cString: strerror(errno))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return String(cString: strerror(errno)) }
        guard status.st_mode & S_IFMT == S_IFREG else { return "the learner replaced it with something other than a regular file, which the peer does not write to" }
        guard status.st_nlink == 1 else {
            return "the learner gave it \(status.st_nlink) names (a hard link to another file), and the peer does not write through a hard link"
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + written, $0.count - written, off_t(written)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return String(cString: strerror(errno)) }
            written += n
        }
        guard ftruncate(fd, off_t(bytes.count)) == 0 else { return String(cString: strerror(errno)) }
        return nil
    }

    /// The file of candidate slot `slot` (1…`evaluationBatch`): rewritten
    /// for every `evaluate` request, removed when the worker shuts down.
    func candidateFile(_ slot: Int) -> String { "\(directory)/candidate-\(slot).safetensors" }

    private func nextFile(_ stem: String) -> String {
        let n = state.withLock { s in
            s.files += 1
            return s.files
        }
        return "\(directory)/\(stem)-\(n).safetensors"
    }

    // MARK: LocalLearner

    public func initialParameters() -> [Float] { initial }

    public func train(from parameters: [Float], round: Int, seed: UInt64) async throws -> LearnerUpdate {
        let local = state.withLock { s in
            s.round = round
            return s.local
        }
        let input = nextFile("model"), output = nextFile("update")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        try write(parameters, local: local, to: input)
        var request: [String: JSONValue] = ["verb": .string("train"), "model": .string(input), "out": .string(output), "round": .integer(Int64(round)),
                                            "seed": .integer(Int64(seed & ((1 << 53) - 1)))]
        if let labelPermutation { request["label_map"] = .array(labelPermutation.map { .integer(Int64($0)) }) }
        let what = "`train` for round \(round)"
        let answer = try await call(request, what: what)
        guard let samples = answer["samples"]?.integer, samples > 0 else {
            throw LearnerError("\(name) answered \(what) without a positive 'samples' count")
        }
        var metrics: [String: Double] = [:]
        for (k, v) in answer["metrics"]?.object ?? [:] {
            guard let x = v.number, x.isFinite else { throw LearnerError("\(name) answered \(what) with metric '\(k)' = \(v), not a finite number") }
            metrics[k] = x
        }
        let (flat, newLocal) = try read(output, what: what)
        state.withLock { $0.local = newLocal }
        if !newLocal.isEmpty {
            try? Data(SafetensorsFile(entries: newLocal).encoded()).write(to: URL(fileURLWithPath: localFile), options: .atomic)
        }
        return LearnerUpdate(parameters: flat, metrics: metrics, samples: Int(samples))
    }

    /// Models per `evaluate` request.
    static let evaluationBatch = 32

    public func evaluate(_ candidates: [[Float]], on rows: LocalRows) async throws -> [LearnerEvaluation] {
        try await evaluate(candidates, rows: rows == .validation ? "validation" : "assessment")
    }

    /// Evaluates on the worker's test rows (when `hello` reported some): the final model's results.
    public func evaluateTest(_ parameters: [Float]) async throws -> LearnerEvaluation? {
        guard (rows["test"] ?? 0) > 0 else { return nil }
        return try await evaluate([parameters], rows: "test").first
    }

    func evaluate(_ candidates: [[Float]], rows: String) async throws -> [LearnerEvaluation] {
        let (local, round) = state.withLock { ($0.local, $0.round) }
        let what = round == 0 ? "`evaluate` (\(rows) rows)" : "`evaluate` (\(rows) rows) in round \(round)"
        var out: [LearnerEvaluation] = []
        var start = 0
        while start < candidates.count {
            let batch = candidates[start..<min(candidates.count, start + Self.evaluationBatch)]
            start += batch.count
            let files = batch.indices.map { candidateFile($0 - batch.startIndex + 1) }
            for (p, f) in zip(batch, files) { try write(p, local: local, to: f) }
            let answer = try await call(["verb": .string("evaluate"), "models": .array(files.map { .string($0) }), "rows": .string(rows)], what: what)
            guard let results = answer["results"]?.array, results.count == files.count else {
                throw LearnerError("\(name) answered \(what) without one result per model (\(files.count) asked)")
            }
            for r in results { out.append(try evaluation(r, what: what)) }
        }
        return out
    }

    func evaluation(_ r: JSONValue, what: String) throws(LearnerError) -> LearnerEvaluation {
        let k = classCount
        guard let losses = r["class_losses"]?.array?.compactMap(\.number), losses.count == k, losses.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw LearnerError("\(name) answered \(what) without \(k) finite, non-negative 'class_losses'")
        }
        guard let counts = r["class_counts"]?.array?.compactMap(\.integer), counts.count == k, counts.allSatisfy({ $0 >= 0 }) else {
            throw LearnerError("\(name) answered \(what) without \(k) 'class_counts'")
        }
        guard let matrix = r["confusion"]?.array?.map({ $0.array?.compactMap(\.integer) ?? [] }), matrix.count == k, matrix.allSatisfy({ $0.count == k && $0.allSatisfy { $0 >= 0 } }),
              zip(matrix, counts).allSatisfy({ $0.reduce(0, +) == $1 }) else {
            throw LearnerError("\(name) answered \(what) without a \(k)×\(k) 'confusion' matrix whose rows add up to 'class_counts'")
        }
        let total = counts.reduce(0, +)
        let logLoss = total == 0 ? 0 : zip(losses, counts).map { $0 * Double($1) }.reduce(0, +) / Double(total)
        let correct = (0..<k).map { matrix[$0][$0] }.reduce(0, +)
        return LearnerEvaluation(classLosses: losses, classCounts: counts.map { Int($0) }, confusion: matrix.map { $0.map { Int($0) } },
                                 logLoss: logLoss, accuracy: total == 0 ? 0 : Double(correct) / Double(total))
    }

    /// Credits score coalitions through batched `evaluate` requests (`classLosses`).
    public func scorer(on rows: LocalRows, classes: [Int]) -> (any CandidateScorer)? { nil }

    public func encode(_ parameters: [Float], metadata: [String: String]?) -> [UInt8] {
        Safetensors.encode(parameterSet(parameters), metadata: metadata)
    }

    public func decode(_ bytes: [UInt8]) -> [Float]? {
        guard let (set, _) = try? Safetensors.decode(bytes), set.layout.map(\.name) == shared.map(\.name),
              zip(set.layout, shared).allSatisfy({ $0.shape == $1.shape }) else { return nil }
        let flat = set.flattened()
        return flat.allSatisfy(\.isFinite) ? flat : nil
    }

    public func hash(_ parameters: [Float]) -> String { parameterSet(parameters).sha256Hex() }

    func parameterSet(_ parameters: [Float]) -> ParameterSet {
        var set = ParameterSet()
        var offset = 0
        for t in shared {
            try! set.append(t.name, try! Tensor(shape: t.shape, scalars: Array(parameters[offset..<(offset + t.elements)])))
            offset += t.elements
        }
        return set
    }

    /// Ends the worker (`shutdown`, then a kill if it does not exit).
    public func shutdown() async {
        await process.shutdown()
        for slot in 1...Self.evaluationBatch { try? FileManager.default.removeItem(atPath: candidateFile(slot)) }
    }
}

/// The round-0 blob of codec `learner-layout/v1` (docs/learner-protocol.md):
/// the shared tensors in name order and the hash of the worker's initial model.
struct LearnerLayout: Hashable, Codable {
    let tensors: [TensorLayout]
    let initialModel: String

    enum CodingKeys: String, CodingKey {
        case tensors
        case initialModel = "initial_model"
    }

    /// JSON with sorted keys, no spaces.
    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    static func decode(_ bytes: [UInt8]) -> LearnerLayout? {
        guard bytes.count <= 1 << 20, let layout = try? JSONDecoder().decode(LearnerLayout.self, from: Data(bytes)), layout.tensors.count < 1 << 16 else { return nil }
        return layout
    }

    /// How `self` differs from `other`, as a verb phrase ("declared …", "made initial model …").
    func difference(from other: LearnerLayout) -> String {
        if tensors != other.tensors {
            let mine = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            if let t = tensors.first(where: { t in !other.tensors.contains(t) }) {
                return other.tensors.contains(where: { $0.name == t.name })
                    ? "declared shared tensor '\(t.name)' as \(t.dtype) \(t.shape), not \(other.tensors.first { $0.name == t.name }.map { "\($0.dtype) \($0.shape)" } ?? "")"
                    : "shared tensor '\(t.name)', which the other learner does not"
            }
            if let t = other.tensors.first(where: { mine[$0.name] == nil }) { return "did not share tensor '\(t.name)'" }
            return "declared the shared tensors in another order"
        }
        return "made initial model \(initialModel.prefix(16))…, not \(other.initialModel.prefix(16))…"
    }

    /// One sentence for the progress log about member `member`'s differing layout.
    func mismatch(_ theirs: LearnerLayout, member: String) -> String {
        "member '\(member)' \(theirs.difference(from: self)) in round 0, so its updates are refused "
            + "(every member's learner must declare the same shared tensors and make the same initial model)"
    }
}
