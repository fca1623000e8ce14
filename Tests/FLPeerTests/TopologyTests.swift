import FLPeer
import Testing

@Suite("demo topologies")
struct TopologyTests {
    @Test("random regular graphs are regular, simple, connected and seeded", arguments: [(20, 4), (10, 3), (6, 2), (5, 4), (12, 11), (16, 9), (40, 7)])
    func randomRegular(n: Int, d: Int) throws {
        let g = try #require(Topology.randomRegular(n: n, degree: d, seed: 7))
        #expect(g.count == n)
        for (v, neighbours) in g.enumerated() {
            #expect(neighbours.count == d && Set(neighbours).count == d && !neighbours.contains(v))
            for w in neighbours { #expect(g[w].contains(v), "edge \(v)–\(w) is one-sided") }
        }
        var seen: Set<Int> = [0], stack = [0]
        while let v = stack.popLast() { for w in g[v] where seen.insert(w).inserted { stack.append(w) } }
        #expect(seen.count == n)
        #expect(Topology.randomRegular(n: n, degree: d, seed: 7) == g)
    }

    @Test func impossibleRegularGraphsAreNil() {
        #expect(Topology.randomRegular(n: 5, degree: 3, seed: 1) == nil)  // 15 stubs: odd
        #expect(Topology.randomRegular(n: 4, degree: 4, seed: 1) == nil)
        #expect(Topology.line(n: 3) == [[1], [0, 2], [1]])
    }
}
