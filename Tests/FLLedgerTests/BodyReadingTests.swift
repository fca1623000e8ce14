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
}
