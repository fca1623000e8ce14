import Crypto
import Testing

@testable import FLLedger

/// The test vector of docs/ledger-spec.md, computed independently with Python
/// (struct, hashlib and the cryptography package).
@Suite("ledger test vector")
struct LedgerVectorTests {
    static let body = Array(#"{"base_hash":"00","codec":"f32","metrics":{},"round":1,"samples":10,"update_hash":"11"}"#.utf8)
    static let headerHex = "01000464656d6f0005616c6963650000000000000001" + String(repeating: "11", count: 32)
        + "0000000000000001" + "02" + "0000018bcfe56800" + "00000057"
    static let hashHex = "6d3ebc9ec80ced6c09266bf8ad536e448058d79641155d857d03d1475d58bc93"
    static let publicKeyHex = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
    static let signatureHex = "440e08b6471e35ca706a2e05a6ff733a3690070f28558bc68396e49c353ff8118cd829832832f2ad185e6c281933662320106f2e5fb1b7f2eb456784911b2504"

    @Test func headerHashAndSignatureMatchTheSpec() throws {
        let header = EntryHeader(consortium: "demo", author: "alice", seq: 1, prev: [UInt8](repeating: 0x11, count: 32), round: 1,
                                 kind: .update, timeMillis: 1_700_000_000_000, bodyLength: UInt32(Self.body.count))
        #expect(hex(header.encoded()) == Self.headerHex)
        #expect(try EntryHeader.decode(header.encoded()) == header)
        #expect(hex(LedgerEntry.computeHash(header: header.encoded(), body: Self.body)) == Self.hashHex)
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: Array(1...32) as [UInt8])
        #expect(hex(key.publicKey.rawRepresentation) == Self.publicKeyHex)
        let entry = try LedgerEntry(headerBytes: header.encoded(), body: Self.body, hash: unhex(Self.hashHex)!, signature: unhex(Self.signatureHex)!)
        #expect(entry.hashIsIntact && entry.isSigned(by: key.publicKey))
        // Our own signature of the same hash verifies too (Ed25519 signatures are compared by verifying, not by bytes).
        let made = try LedgerEntry.make(header: header, body: Self.body, key: key)
        #expect(made.hash == entry.hash && made.isSigned(by: key.publicKey))
    }
}
