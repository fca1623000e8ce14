import FLCore

/// Who links to whom, for `flpeer demo` and experiments.
public enum Topology {
    /// A random simple connected `degree`-regular graph on `n` vertices
    /// (pairing model, retried until simple and connected), deterministic for a
    /// seed; nil when none exists (n·degree odd, or degree ≥ n).
    /// Result: the sorted neighbours of each vertex.
    public static func randomRegular(n: Int, degree d: Int, seed: UInt64) -> [[Int]]? {
        guard n > 0, d > 0, d < n, (n * d) % 2 == 0 else { return nil }
        var rng = SeededGenerator(seed: seed)
        for _ in 0..<10_000 {
            var stubs = (0..<n).flatMap { Array(repeating: $0, count: d) }
            stubs.shuffle(using: &rng)
            var adjacency = [Set<Int>](repeating: [], count: n)
            var simple = true
            for i in stride(from: 0, to: stubs.count, by: 2) {
                let (a, b) = (stubs[i], stubs[i + 1])
                if a == b || adjacency[a].contains(b) { simple = false; break }
                adjacency[a].insert(b)
                adjacency[b].insert(a)
            }
            guard simple else { continue }
            // Connected?
            var seen: Set<Int> = [0], stack = [0]
            while let v = stack.popLast() {
                for w in adjacency[v] where seen.insert(w).inserted { stack.append(w) }
            }
            if seen.count == n { return adjacency.map { $0.sorted() } }
        }
        return nil
    }

    /// Each member linked to the previous and the next one.
    public static func line(n: Int) -> [[Int]] {
        (0..<n).map { i in [i - 1, i + 1].filter { (0..<n).contains($0) } }
    }
}
