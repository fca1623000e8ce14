import Crypto
import FLIdentity
import Foundation
import GRDB
import X509

/// The schema. Migrations never change once shipped; new ones are appended.
enum LedgerSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                );
                CREATE TABLE entries (
                    id INTEGER PRIMARY KEY,
                    author TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq >= 0),
                    kind INTEGER NOT NULL,
                    round INTEGER NOT NULL,
                    prev BLOB NOT NULL CHECK (length(prev) = 32),
                    header BLOB NOT NULL,
                    body BLOB NOT NULL,
                    hash BLOB NOT NULL CHECK (length(hash) = 32),
                    signature BLOB NOT NULL CHECK (length(signature) = 64),
                    UNIQUE (author, seq)
                );
                CREATE TABLE forks (
                    id INTEGER PRIMARY KEY,
                    author TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    header BLOB NOT NULL,
                    body BLOB NOT NULL,
                    hash BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    UNIQUE (author, seq, hash)
                );
                """)
        }
        // v2: the round engine looks up one round's entries many times per round.
        m.registerMigration("v2") { db in
            try db.execute(sql: "CREATE INDEX entries_round_kind ON entries(round, kind)")
        }
        // v3: the peer's own working state (its current model), written with its entries.
        m.registerMigration("v3") { db in
            try db.execute(sql: "CREATE TABLE local_state (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)")
        }
        return m
    }

    /// The last entry's seq and hash of each chain.
    static func heads(_ db: Database) throws -> [String: (seq: UInt64, hash: [UInt8])] {
        var out: [String: (seq: UInt64, hash: [UInt8])] = [:]
        // SQLite returns the other columns of the row holding MAX(seq).
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT author, MAX(seq) AS seq, hash FROM entries GROUP BY author")) {
            out[row["author"]] = (UInt64(row["seq"] as Int64), [UInt8](row["hash"] as Data))
        }
        return out
    }

    static func insert(_ e: LedgerEntry, into db: Database) throws {
        let h = e.header
        try db.cachedStatement(sql: """
            INSERT INTO entries(author, seq, kind, round, prev, header, body, hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [h.author, Int64(h.seq), Int64(h.kind.rawValue), Int64(h.round), Data(h.prev), Data(e.headerBytes), Data(e.body), Data(e.hash), Data(e.signature)])
    }

    static func entries(_ db: Database, sql: String, arguments: StatementArguments) throws -> [LedgerEntry] {
        var out: [LedgerEntry] = []
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let row = try rows.next() { out.append(try entry(row, from: 0)) }
        return out
    }

    /// The entry in columns `c` to `c + 3` of `row` (header, body, hash, signature), each blob copied once.
    static func entry(_ row: Row, from c: Int) throws -> LedgerEntry {
        func bytes(_ i: Int) throws -> [UInt8] { try row.withUnsafeData(atIndex: c + i) { $0.map { [UInt8]($0) } ?? [] } }
        return try LedgerEntry(headerBytes: bytes(0), body: bytes(1), hash: bytes(2), signature: bytes(3))
    }

    /// The Ed25519 key in a genesis entry's certificate, if the CA issued it to `author` in `consortium`.
    static func genesisKey(_ entry: LedgerEntry, author: String, consortium: String, ca: Certificate) -> Curve25519.Signing.PublicKey? {
        genesisMember(entry, author: author, consortium: consortium, ca: ca)?.ed25519PublicKey
    }

    /// The member certificate a genesis carries, when the CA issued it to `author` in `consortium`.
    static func genesisMember(_ entry: LedgerEntry, author: String, consortium: String, ca: Certificate) -> MemberCertificate? {
        guard let pem = EntryBody.decode(EntryBody.Genesis.self, from: entry.body)?.certificate,
              let cert = try? Certificate(pemEncoded: pem),
              ca.publicKey.isValidSignature(cert.signature, for: cert), cert.issuer == ca.subject,
              let member = MemberCertificate(cert), member.institution == author, member.consortium == consortium
        else { return nil }
        return member
    }

    /// The unix-millisecond times an entry signed with `certificate` may carry:
    /// notBefore × 1000 ≤ time ≤ notAfter × 1000 (certificate times are whole seconds).
    static func validMillis(_ certificate: Certificate) -> ClosedRange<Int64> {
        Int64(certificate.notValidBefore.timeIntervalSince1970.rounded()) * 1000...Int64(certificate.notValidAfter.timeIntervalSince1970.rounded()) * 1000
    }

    /// A stored genesis's key and the unix-ms times its certificate is valid for.
    static func storedSigner(_ db: Database, author: String, consortium: String, ca: Certificate) throws -> Signer? {
        guard let row = try Row.fetchOne(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq = 0", arguments: [author]),
              let entry = try? LedgerEntry(headerBytes: [UInt8](row["header"] as Data), body: [UInt8](row["body"] as Data),
                                           hash: [UInt8](row["hash"] as Data), signature: [UInt8](row["signature"] as Data))
        else { return nil }
        return signer(entry, author: author, consortium: consortium, ca: ca)
    }

    /// The key a genesis from the consortium CA carries, and its certificate's validity.
    static func signer(_ entry: LedgerEntry, author: String, consortium: String, ca: Certificate) -> Signer? {
        guard let member = genesisMember(entry, author: author, consortium: consortium, ca: ca), let key = member.ed25519PublicKey else { return nil }
        return Signer(key: key, validity: validMillis(member.certificate))
    }

    static func storedKey(_ db: Database, author: String, consortium: String, ca: Certificate) throws -> Curve25519.Signing.PublicKey? {
        guard let row = try Row.fetchOne(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq = 0", arguments: [author]),
              let entry = try? LedgerEntry(headerBytes: [UInt8](row["header"] as Data), body: [UInt8](row["body"] as Data),
                                           hash: [UInt8](row["hash"] as Data), signature: [UInt8](row["signature"] as Data))
        else { return nil }
        return genesisKey(entry, author: author, consortium: consortium, ca: ca)
    }
}

/// An author's key and the unix-millisecond times its certificate is valid for.
struct Signer: Sendable {
    let key: Curve25519.Signing.PublicKey
    let validity: ClosedRange<Int64>
}
