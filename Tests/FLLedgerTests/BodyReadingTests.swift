import Crypto
import Foundation
import Testing

@testable import FLLedger

/// Bodies as typed values: written byte for byte as before, and read from
/// other peers field by field as the independent Python tools read them.
@Suite("entry bodies")
struct BodyReadingTests {
    @Test func aBodyThatIsNoJSONObjectIsNoBody() {
        for body in ["[1, 2]", "5", "{\"a\": ", "", "{\"a\": 1} x"] {
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
}
