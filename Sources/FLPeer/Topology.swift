import FLCore

/// Who links to whom, for `flpeer demo` and experiments.
public enum Topology {
    /// A random simple connected `degree`-regular graph on `n` vertices,
    /// deterministic for a seed; nil when none exists (degree < 1, degree ≥ n,
    /// or n·degree odd). It starts from the circulant graph (i linked to
    /// i ± 1 … i ± ⌊degree/2⌋, and to i + n/2 for odd degree) and applies
    /// 10·n·degree random double-edge swaps that keep the graph simple
    /// (Markov-chain sampling, which works for every degree), then keeps
    /// swapping until it is connected. Result: each vertex's sorted neighbours.
    public static func randomRegular(n: Int, degree d: Int, seed: UInt64) -> [[Int]]? {
        guard n > 1, d > 0, d < n, (n * d) % 2 == 0 else { return nil }
        var adjacency = [Set<Int>](repeating: [], count: n)
        var edges: [(Int, Int)] = []
        func link(_ a: Int, _ b: Int) {
            guard a != b, !adjacency[a].contains(b) else { return }
            adjacency[a].insert(b)
            adjacency[b].insert(a)
            edges.append((a, b))
        }
        for i in 0..<n {
            for k in 1...max(1, d / 2) where k <= d / 2 { link(i, (i + k) % n) }
            if d % 2 == 1 { link(i, (i + n / 2) % n) }
        }
        guard adjacency.allSatisfy({ $0.count == d }) else { return nil }
        var rng = SeededGenerator(seed: seed)
        func swaps(_ count: Int) {
            for _ in 0..<count {
                let i = Int.random(in: 0..<edges.count, using: &rng), j = Int.random(in: 0..<edges.count, using: &rng)
                guard i != j else { continue }
                var (a, b) = edges[i]
                let (c, e) = edges[j]
                if Bool.random(using: &rng) { swap(&a, &b) }
                // (a,b),(c,e) → (a,c),(b,e)
                guard a != c, b != e, !adjacency[a].contains(c), !adjacency[b].contains(e) else { continue }
                adjacency[a].remove(b); adjacency[b].remove(a); adjacency[c].remove(e); adjacency[e].remove(c)
                adjacency[a].insert(c); adjacency[c].insert(a); adjacency[b].insert(e); adjacency[e].insert(b)
                edges[i] = (a, c)
                edges[j] = (b, e)
            }
        }
        func connected() -> Bool {
            var seen: Set<Int> = [0], stack = [0]
            while let v = stack.popLast() {
                for w in adjacency[v] where seen.insert(w).inserted { stack.append(w) }
            }
            return seen.count == n
        }
        swaps(10 * n * d)
        for _ in 0..<1000 where !connected() { swaps(n * d) }
        return connected() ? adjacency.map { $0.sorted() } : nil
    }

    /// Each member linked to the previous and the next one.
    public static func line(n: Int) -> [[Int]] {
        (0..<n).map { i in [i - 1, i + 1].filter { (0..<n).contains($0) } }
    }
}
