import Crypto
import FLCore
import Foundation
import Testing

@testable import FLLedger

/// Bodies as typed values: written byte for byte as before, and read from
/// other peers field by field as the independent Python tools read them.
@Suite("entry bodies")
struct BodyReadingTests {
    /// (kind, body, header round), with the body-format problem both verifiers report.
    static let cases: [(EntryKind, String, UInt64)] = [
        (.genesis, #"{}"#, 0),
        (.genesis, #"{"certificate": 5}"#, 0),
        (.genesis, #"{"certificate": "-----BEGIN CERTIFICATE-----"}"#, 0),
        (.update, #"{"update_hash": "11", "codec": "f32", "round": 1, "samples": 1}"#, 1),
        (.update, #"{"base_hash": "00", "update_hash": "11", "codec": "f32", "round": "1", "samples": 1}"#, 1),
        (.update, #"{"base_hash": "00", "update_hash": "11", "codec": "f32", "round": 1, "samples": true}"#, 1),
        (.update, #"{"base_hash": "00", "update_hash": "11", "codec": "f32", "round": 2, "samples": 1.5}"#, 1),
        (.update, #"{"base_hash": "00", "update_hash": "11", "codec": "f32", "round": 1.5, "samples": 1}"#, 1),
        (.update, #"{"base_hash": "00", "update_hash": "11", "codec": "f32", "round": 1.0, "samples": 1, "metrics": {}}"#, 1),
        (.aggregate, #"{"result_hash": "00", "included": [], "scores": {}, "round": 1}"#, 1),
        (.aggregate, #"{"rule": "mean", "result_hash": "00", "included": {}, "scores": {}, "round": 1}"#, 1),
        (.aggregate, #"{"rule": "mean", "result_hash": "00", "included": [{"author": 5}], "scores": [], "round": 1}"#, 1),
        (.aggregate, #"{"rule": "mean", "result_hash": "00", "included": [], "scores": {"a": 1}, "round": "x"}"#, 1),
        (.aggregate, #"{"rule": "mean", "result_hash": "00", "included": [{}], "scores": {"a": {"0": 1.5}}, "round": 3}"#, 3),
        (.checkpoint, #"{"heads": {}}"#, 1),
        (.checkpoint, #"{"heads": [{"author": "a", "seq": "x"}]}"#, 1),
        (.evidence, #"{"seq": 1, "entries": [{}, {}]}"#, 1),
        (.evidence, #"{"author": "b", "seq": "1", "entries": [{}, {}]}"#, 1),
        (.evidence, #"{"author": "b", "seq": 1, "entries": [{}]}"#, 1),
        (.evidence, #"{"author": "b", "seq": 1.5, "entries": [{}, {}]}"#, 1),
    ]

    @Test func bodyProblemsAreTheIndependentVerifiers() throws {
        let swift = try Self.cases.map { kind, body, round in
            let checked = try #require(LedgerVerifier.CheckedBody(kind, Array(body.utf8), round: round))
            return checked.problem.map { [$0.expected, $0.found] }
        }
        #expect(swift[0] == ["field 'certificate' (PEM)", "missing"])
        #expect(swift[10] == ["list field 'included'", "missing"])
        #expect(swift[6] == ["body round 1", "2"] && swift[7] == ["body round 1", "1.5"] && swift[8] == nil)
        #expect(swift[5] == nil, "true is a number, as Python's bool is an int")
        #expect(swift.filter { $0 == nil }.count == 6)

        let python = """
            import json, sys
            sys.path.insert(0, sys.argv[1])
            from verify_ledger import body_problem
            problems = [body_problem(kind, json.loads(body), rnd) for kind, body, rnd in json.load(sys.stdin)]
            print(json.dumps([list(p) if p else None for p in problems]))
            """
        let input = try JSONSerialization.data(withJSONObject: Self.cases.map { [Int($0.0.rawValue), $0.1, $0.2] as [Any] })
        let output = try runPython(python, [repository.appendingPathComponent("ledger-tools").path], input: input)
        let theirs = try #require(try JSONSerialization.jsonObject(with: output) as? [Any])
        #expect(theirs.map { $0 as? [String] } == swift)
    }

    @Test func aBodyThatIsNoJSONObjectIsNoBody() {
        for body in ["[1, 2]", "5", "{\"a\": ", "", "{\"a\": 1} x"] {
            #expect(LedgerVerifier.CheckedBody(.update, Array(body.utf8), round: 1) == nil, "\(body)")
            #expect(JSONValue.object(parsing: Array(body.utf8)) == nil, "\(body)")
        }
    }

    /// Numbers keep how they were written (the credit rule counts integer
    /// literals only), and re-encoding gives the text flpeer wrote, even for
    /// the 17-digit doubles Foundation reads as decimal numbers.
    @Test func jsonValuesKeepIntegerLiteralsAndRoundTrip() throws {
        let parsed = try #require(JSONValue.object(parsing: Array(#"{"a": 5, "b": 5.0, "c": 1e3, "d": true, "e": null, "f": "s/t", "g": [1, -0], "h": 9007199254740993}"#.utf8)))
        #expect(parsed == ["a": .integer(5), "b": .number(5), "c": .number(1000), "d": .bool(true), "e": .null, "f": .string("s/t"),
                           "g": .array([.integer(1), .integer(0)]), "h": .integer(9_007_199_254_740_993)])
        let written = #"{"a":{"x":[0.18459424400000002,0.12635420262813568,1e-07,-2.5,3]},"b":1.7976931348623157e+308,"c":"\n\"é"}"#
        #expect(EntryBody.encode(try #require(JSONValue(parsing: Array(written.utf8)))) == Array(written.utf8))
    }

    /// Evidence bodies are the bytes the earlier `JSONSerialization` writer produced.
    @Test func evidenceBodiesAreWrittenAsBefore() throws {
        let key = Curve25519.Signing.PrivateKey()
        let header = EntryHeader(consortium: "demo", author: "b", seq: 4, prev: LedgerEntry.zeroHash, round: 2, kind: .update, timeMillis: 0, bodyLength: 0)
        let first = try LedgerEntry.make(header: header, body: Array(#"{"round":2}"#.utf8), key: key)
        let second = try LedgerEntry.make(header: header, body: Array(#"{"round":3}"#.utf8), key: key)
        func stored(_ e: LedgerEntry) -> [String: Any] {
            ["header": hex(e.headerBytes), "body": hex(e.body), "hash": hex(e.hash), "signature": hex(e.signature)]
        }
        let before = try JSONSerialization.data(withJSONObject: ["author": "b", "seq": 4, "entries": [stored(first), stored(second)]] as [String: Any],
                                                options: [.sortedKeys, .withoutEscapingSlashes])
        let body = Evidence.body(first: first, second: second)
        #expect(body == Array(before))
        let read = try #require(EntryBody.decode(Evidence.Body.self, from: body))
        #expect(read.author == "b" && read.seq == 4 && read.pair?.0 == first && read.pair?.1 == second)
        #expect(Evidence.accused(Array(#"{"author": "b", "seq": 4, "entries": 7}"#.utf8)) == Evidence.Accusation(author: "b", seq: 4))
        #expect(Evidence.accused(Array(#"{"author": "b", "seq": -1}"#.utf8)) == nil)
    }

    /// The round-0 statistics blob, typed, is the bytes the round engine writes today.
    @Test func statisticsBlobsAreWrittenAsBefore() throws {
        let s = FeatureStatistics(count: 3, sums: [1.5, -2, 0.1], squares: [2.25, 4, 0.010000000000000002])
        let before = try JSONSerialization.data(withJSONObject: ["count": s.count, "sums": s.sums, "squares": s.squares] as [String: Any],
                                                options: [.sortedKeys, .withoutEscapingSlashes])
        #expect(EntryBody.statistics(s) == Array(before))
        #expect(EntryBody.statistics(from: EntryBody.statistics(s)) == s)
        #expect(EntryBody.statistics(from: Array(#"{"count": -1, "sums": [], "squares": []}"#.utf8)) == nil)
    }

    /// Keys are sorted by code point, as Python's `json.dumps(sort_keys=True)`
    /// sorts them (Foundation's `JSONSerialization`, the writer before, put
    /// `inst2` before `inst10`; readers never depend on the order).
    @Test func keysAreSortedByCodePoint() {
        let body = EntryBody.aggregate(round: 1, included: [], rule: "mean", parameters: [:], resultHash: "00",
                                       scores: ["inst2": ["10": 1, "9": 2], "inst10": ["B": 3, "a": 4]])
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains(#""scores":{"inst10":{"B":3,"a":4},"inst2":{"10":1,"9":2}}"#), "\(text)")
    }
}

/// The repository's root.
let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs Python code with `arguments`, feeding it `input`; its standard output.
func runPython(_ code: String, _ arguments: [String], input: Data) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", code] + arguments
    let stdin = Pipe(), stdout = Pipe()
    p.standardInput = stdin
    p.standardOutput = stdout
    try p.run()
    stdin.fileHandleForWriting.write(input)
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return out
}
