import Foundation
import Testing
@testable import FLLedger

@Suite("JSON values")
struct JSONValueTests {
    /// What `JSONValue(parsing:)` reads is what Foundation's parser reads (the
    /// same structure and numbers), and it refuses what Foundation refuses;
    /// beyond that, it tells integer literals from other numbers.
    @Test(arguments: [
        #"{"a":1,"b":[true,false,null],"c":"x\"y\\z\/\u00e9\ud83d\ude00","d":{"e":-0.5e-3}}"#,
        #"[1, 2.0, 1e3, -7, 0.1, 1E+2]"#,
        #"  {"nested": [[[[{}]]]], "empty": [], "s": ""}  "#,
        #"{"dup":1,"dup":2}"#,
        #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":-}"#, #"{"a":+1}"#, #"[1 2]"#,
        #"{"a":"\ud800"}"#, #"{"a":"\q"}"#, "{\"a\":\"\u{01}\"}", #"{"a":1} x"#, #""fragment""#, "42", "", "{", #"{"a":tru}"#, #"[NaN]"#,
    ])
    func agreesWithFoundation(_ text: String) throws {
        let bytes = Array(text.utf8)
        let foundation = try? JSONSerialization.jsonObject(with: Data(bytes))
        let ours = JSONValue(parsing: bytes)
        #expect((foundation != nil) == (ours != nil), "\(text)")
        if let foundation, let ours {
            let theirs = try JSONSerialization.data(withJSONObject: foundation, options: [.sortedKeys])
            let mine = try JSONSerialization.data(withJSONObject: try JSONSerialization.jsonObject(with: EntryBody.encoder.encode(ours)), options: [.sortedKeys])
            #expect(try JSONSerialization.jsonObject(with: theirs) as? NSObject == JSONSerialization.jsonObject(with: mine) as? NSObject, "\(text)")
        }
    }

    @Test func integerLiteralsAreKeptApartFromOtherNumbers() throws {
        let v = try #require(JSONValue(parsing: Array(#"[5, 5.0, 1e3, -12, 9223372036854775808]"#.utf8)))
        #expect(v.array == [.integer(5), .number(5), .number(1000), .integer(-12), .number(9223372036854775808)])
        // RFC 8259 and Python's json (which credits.py and verify_ledger.py use) refuse a trailing comma; Foundation's parser takes it.
        #expect(JSONValue(parsing: Array(#"{"a":1,}"#.utf8)) == nil && JSONValue(parsing: Array(#"[1,]"#.utf8)) == nil)
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(JSONValue(parsing: Array(deep.utf8)) == nil)
    }
}
