/// An ordered mapping from names to Float32 tensors: a model's parameters or
/// an update, like a PyTorch `state_dict`.
public struct ParameterSet: Sendable, Equatable {
    /// One named tensor.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public var tensor: Tensor
        public init(name: String, tensor: Tensor) {
            self.name = name
            self.tensor = tensor
        }
    }

    /// The tensors in insertion order.
    public private(set) var entries: [Entry]

    /// An empty set.
    public init() { entries = [] }

    /// A set from entries; names must be unique.
    public init(_ entries: [Entry]) throws(TensorError) {
        var seen = Set<String>()
        for e in entries where !seen.insert(e.name).inserted {
            throw .duplicateName(e.name)
        }
        self.entries = entries
    }

    /// Appends a tensor; the name must be new.
    public mutating func append(_ name: String, _ tensor: Tensor) throws(TensorError) {
        guard !entries.contains(where: { $0.name == name }) else { throw .duplicateName(name) }
        entries.append(Entry(name: name, tensor: tensor))
    }

    /// The tensor with this name.
    public subscript(name: String) -> Tensor? {
        entries.first(where: { $0.name == name })?.tensor
    }

    /// Names in insertion order.
    public var names: [String] { entries.map(\.name) }

    /// Total number of scalars across all tensors.
    public var scalarCount: Int { entries.reduce(0) { $0 + $1.tensor.scalars.count } }

    /// Names and shapes, which two sets must share to be combined.
    public var layout: [(name: String, shape: [Int])] { entries.map { ($0.name, $0.tensor.shape) } }

    /// All scalars concatenated in entry order (the vector aggregation works on).
    public func flattened() -> [Float] {
        var out = [Float]()
        out.reserveCapacity(scalarCount)
        for e in entries { out.append(contentsOf: e.tensor.scalars) }
        return out
    }

    /// A set with this set's layout and the given flat scalars.
    public func withFlattened(_ flat: [Float]) throws(TensorError) -> ParameterSet {
        guard flat.count == scalarCount else {
            throw .layoutMismatch("expected \(scalarCount) scalars, got \(flat.count)")
        }
        var copy = self
        var offset = 0
        for i in copy.entries.indices {
            let n = copy.entries[i].tensor.scalars.count
            copy.entries[i].tensor.scalars = Array(flat[offset..<(offset + n)])
            offset += n
        }
        return copy
    }

    /// Throws unless `other` has the same names, order and shapes.
    public func checkSameLayout(as other: ParameterSet) throws(TensorError) {
        guard entries.count == other.entries.count else {
            throw .layoutMismatch("\(entries.count) tensors vs \(other.entries.count)")
        }
        for (a, b) in zip(entries, other.entries) {
            guard a.name == b.name else { throw .layoutMismatch("'\(a.name)' vs '\(b.name)'") }
            guard a.tensor.shape == b.tensor.shape else {
                throw .layoutMismatch("'\(a.name)' has shape \(a.tensor.shape) vs \(b.tensor.shape)")
            }
        }
    }
}
