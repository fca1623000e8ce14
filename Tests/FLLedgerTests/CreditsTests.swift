import Testing

@testable import FLLedger

@Suite("credit rule")
struct CreditsTests {
    /// The worked example of docs/credits.md: three assessors, classes x and
    /// y (b holds only x). Both rounds pay less than the positive parts add
    /// up to, so they are scaled down: round 1 to the claimed improvement,
    /// round 2 to the consensus.
    @Test func theTestVectorOfDocsCredits() {
        let round1: [Credits.Assessment] = [
            .init(assessor: "a", round: 1, scores: ["a": ["x": 900, "y": 300], "b": ["x": 400, "y": 100], "c": ["x": 200, "y": -100]], classes: ["x", "y"]),
            .init(assessor: "b", round: 1, scores: ["a": ["x": 500], "b": ["x": 800]], classes: ["x"], screened: ["c"]),
            .init(assessor: "c", round: 1, scores: ["a": ["x": 700, "y": 200], "b": ["x": 100, "y": 300], "c": ["x": 600, "y": 500]], classes: ["x", "y"]),
        ]
        let round2: [Credits.Assessment] = [
            .init(assessor: "a", round: 2, scores: ["a": ["x": 10, "y": 5], "b": ["x": 30, "y": 40], "c": ["x": 20, "y": 0]], classes: ["x", "y"]),
            .init(assessor: "b", round: 2, scores: ["a": ["x": 40], "b": ["x": 5], "c": ["x": 10]], classes: ["x"]),
            .init(assessor: "c", round: 2, scores: ["a": ["x": 20, "y": 10], "b": ["x": -40, "y": 30], "c": ["x": 50, "y": 60]], classes: ["x", "y"]),
        ]
        let one = Credits.round(round1)
        #expect(one.positives == ["a": 800, "b": 450, "c": 100])
        #expect(one.negatives == ["a": 0, "b": 0, "c": -100])
        #expect(one.payout == 850)  // the claimed 600 + 250 is below the consensus 1250
        #expect(one.credits == ["a": 503, "b": 283, "c": 62])
        let two = Credits.round(round2)
        #expect(two.positives == ["a": 40, "b": 35, "c": 15] && two.negatives == ["a": 0, "b": -5, "c": 0])
        #expect(two.payout == 85 && two.credits == ["a": 37, "b": 33, "c": 14])  // the consensus 85 is below the claimed 50 + 40
        // Paid in full when the round learned more than the positive parts add up to.
        let full: [Credits.Assessment] = [
            .init(assessor: "a", round: 3, scores: ["b": ["x": 30], "c": ["x": 50]], classes: ["x"]),
            .init(assessor: "b", round: 3, scores: ["a": ["x": 60], "c": ["x": 20]], classes: ["x"]),
            .init(assessor: "c", round: 3, scores: ["a": ["x": 0], "b": ["x": 0]], classes: ["x"]),
        ]
        #expect(Credits.round(full).payout == 80 && Credits.round(full).credits == ["a": 30, "b": 15, "c": 35])
        #expect(Credits.median([3, 1, 2]) == 2 && Credits.median([4, 1]) == 2.5 && Credits.median([]) == nil)
    }

    /// What an aggregate body must hold to count: scores are objects of
    /// class → JSON integer of at most 2⁵³ (true/false, fractions,
    /// exponents and larger numbers make the entry unreadable); malformed
    /// `screened` items are skipped one by one; `scoring.classes` must list
    /// strings, else the score keys stand in. `credits.py` reads alike.
    @Test func malformedBodiesAreReadAsBothImplementationsRead() throws {
        func assessment(_ json: String) throws -> Credits.Assessment? {
            let header = EntryHeader(consortium: "c", author: "a", seq: 3, prev: LedgerEntry.zeroHash, round: 1, kind: .aggregate, timeMillis: 0,
                                     bodyLength: UInt32(json.utf8.count))
            let entry = try LedgerEntry(headerBytes: header.encoded(), body: Array(json.utf8), hash: LedgerEntry.zeroHash, signature: [UInt8](repeating: 0, count: 64))
            return Credits.Assessment(entry)
        }
        #expect(try assessment(#"{"scores": {"b": {"x": 5}}, "screened": [{"author": "c"}, 7, {"author": 8}], "scoring": {"classes": ["x", 1]}}"#)
            == Credits.Assessment(assessor: "a", round: 1, scores: ["b": ["x": 5]], classes: ["x"], screened: ["c"]))
        #expect(try assessment(#"{"scores": {"b": {"x": true}}}"#) == nil)
        #expect(try assessment(#"{"scores": {"b": 5}}"#) == nil)
        // Scores are JSON integers of at most 2⁵³ in magnitude.
        for bad in ["1.5", "5.0", "1e3", "9007199254740993", "-9007199254740993", "18446744073709551615", "1e308"] {
            #expect(try assessment(#"{"scores": {"b": {"x": "# + bad + "}}}") == nil, "\(bad)")
        }
        #expect(try assessment(#"{"scores": {"b": {"x": -9007199254740992}}}"#)?.scores == ["b": ["x": -9_007_199_254_740_992]])
        #expect(try assessment(#"{"scores": {"b": {"x": -0}}, "scoring": {"classes": ["x", "y"]}}"#)?.classes == ["x", "y"])
    }

    /// A class only a minority of the round's assessors claim to hold does
    /// not count: otherwise one assessor could invent a class and pay a
    /// friend whatever it signs there.
    @Test func aMadeUpClassPaysNothing() {
        let honest: [Credits.Assessment] = (0..<4).map { a in
            .init(assessor: "m\(a)", round: 1, scores: Dictionary(uniqueKeysWithValues: (0..<5).map { ("m\($0)", ["x": 100]) }), classes: ["x"])
        }
        var lying = honest
        lying.append(.init(assessor: "m4", round: 1, scores: Dictionary(uniqueKeysWithValues: (0..<5).map { ("m\($0)", ["x": 100, "fake": $0 == 1 ? 1e12 : 0]) }),
                           classes: ["x", "fake"]))
        var plain = honest
        plain.append(.init(assessor: "m4", round: 1, scores: Dictionary(uniqueKeysWithValues: (0..<5).map { ("m\($0)", ["x": 100]) }), classes: ["x"]))
        #expect(Credits.round(lying) == Credits.round(plain))
        #expect(Credits.round(plain).credits["m1"] == 80)  // P = 100 each; claimed median(400, …) = 400 < T = 500
    }

    /// Screened votes: an assessor that screened a member out votes 0 when at
    /// least half of the class's holders did, and abstains otherwise.
    @Test func screenersVoteZeroOnlyAsAtLeastHalf() {
        func assessments(screeners: Int) -> [Credits.Assessment] {
            [.init(assessor: "m", round: 1, scores: ["m": ["x": 1]], classes: ["x"])]
                + (0..<4).map { k in
                    k < screeners ? .init(assessor: "a\(k)", round: 1, scores: [:], classes: ["x"], screened: ["m"])
                        : .init(assessor: "a\(k)", round: 1, scores: ["m": ["x": 100 + Double(k)]], classes: ["x"])
                }
        }
        #expect(Credits.round(assessments(screeners: 0)).positives["m"] == 101.5)
        #expect(Credits.round(assessments(screeners: 1)).positives["m"] == 102)  // abstains: median of 101, 102, 103
        #expect(Credits.round(assessments(screeners: 2)).positives["m"] == 51)  // half: zeros count, median of 0, 0, 102, 103
        #expect(Credits.round(assessments(screeners: 3)).positives["m"] == 0)
    }

    /// One lying assessor (maximal for itself, zero for the others, in every
    /// class) moves each other member's class value by at most one rank of
    /// the honest votes, and never raises anyone's credit above the truth.
    @Test func aLyingAssessorMovesAClassValueByOneRankAtMost() {
        let classes = ["x", "y"]
        func score(_ member: Int, _ assessor: Int, _ c: Int) -> Double { Double(100 + 10 * member + 3 * assessor + 50 * c) }
        let honest = (0..<6).map { a in
            Credits.Assessment(assessor: "m\(a)", round: 1, scores: Dictionary(uniqueKeysWithValues: (0..<6).map { m in
                ("m\(m)", Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, score(m, a, $0)) }))
            }), classes: classes)
        }
        var lying = honest
        lying[5].scores = Dictionary(uniqueKeysWithValues: (0..<6).map { m in ("m\(m)", Dictionary(uniqueKeysWithValues: classes.map { ($0, m == 5 ? 1e12 : 0) })) })
        let before = Credits.round(honest), after = Credits.round(lying)
        for m in 0..<5 {
            let id = "m\(m)"
            // In each class the five other votes, sorted: the median is the third; the lie moves it to the second at worst.
            let ranked = classes.indices.map { c in (0..<6).filter { $0 != m }.map { score(m, $0, c) }.sorted() }
            #expect(before.positives[id] == ranked.map { $0[2] }.reduce(0, +))
            #expect(after.positives[id]! >= ranked.map { $0[1] }.reduce(0, +) && after.positives[id]! < before.positives[id]!, "\(id)")
            #expect(after.credits[id]! <= before.credits[id]!)
        }
    }
}
