import Testing

@testable import FLLedger

@Suite("credit rule")
struct CreditsTests {
    /// The worked example of docs/credits.md.
    @Test func theTestVectorOfDocsCredits() {
        let round1: [Credits.Assessment] = [
            .init(assessor: "a", round: 1, scores: ["a": 900, "b": 300, "c": 100]),
            .init(assessor: "b", round: 1, scores: ["a": 500, "b": 800], screened: ["c"]),
            .init(assessor: "c", round: 1, scores: ["a": 700, "b": 200, "c": 1000]),
        ]
        let round2: [Credits.Assessment] = [
            .init(assessor: "a", round: 2, scores: ["a": 10, "b": -40, "c": 20]),
            .init(assessor: "b", round: 2, scores: ["a": 30, "b": 5, "c": 10]),
            .init(assessor: "c", round: 2, scores: ["a": -20, "b": -10, "c": 50]),
        ]
        #expect(Credits.roundCredits(round1) == ["a": 600, "b": 250, "c": 50])
        #expect(Credits.roundCredits(round2) == ["a": 5, "b": -25, "c": 15])
        // A member nobody else voted on has no credit; one vote is its own median.
        #expect(Credits.roundCredits([.init(assessor: "a", round: 1, scores: ["a": 5, "b": 7])]) == ["b": 7])
        #expect(Credits.median([3, 1, 2]) == 2 && Credits.median([4, 1]) == 2.5 && Credits.median([]) == nil)
    }

    /// One lying assessor (maximal for itself, zero for the others) moves a
    /// median of five honest votes by at most one rank.
    @Test func aLyingAssessorMovesAMedianByOneRankAtMost() {
        let honest = (0..<6).map { a in Credits.Assessment(assessor: "m\(a)", round: 1, scores: Dictionary(uniqueKeysWithValues: (0..<6).map { ("m\($0)", Double(100 + 10 * $0 + a)) })) }
        var lying = honest
        lying[5].scores = Dictionary(uniqueKeysWithValues: (0..<6).map { ("m\($0)", $0 == 5 ? 1e12 : 0) })
        let before = Credits.roundCredits(honest), after = Credits.roundCredits(lying)
        for m in 0..<5 {
            let id = "m\(m)"
            // The five honest votes, sorted: the median is the third; the lie moves it to the second at worst.
            let votes = honest.filter { $0.assessor != id }.map { $0.scores[id]! }.sorted()
            #expect(before[id] == votes[2] && after[id]! < before[id]! && after[id]! >= votes[1], "\(id): \(votes) → \(after[id]!)")
        }
    }
}
