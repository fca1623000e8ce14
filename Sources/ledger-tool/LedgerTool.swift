import ArgumentParser
import FLIdentity
import FLLedger
import Foundation
import X509

/// The auditor's and coordinator's tool.
@main
struct LedgerTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger-tool",
        abstract: "Verify and inspect flpeer ledgers.",
        discussion: "Exit codes: 0 intact, 1 findings (or a runtime error), 2 unusable input, 64 usage error.",
        version: "0.2.0",
        subcommands: [VerifyCommand.self, ShowCommand.self, ExportCommand.self, ReportCommand.self, AppendStressCommand.self]
    )
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a ledger offline with only the consortium CA certificate.",
        discussion: "Exit 0 and a one-line summary when intact; exit 1 with one finding per line (author#seq rule: expected …, found …), or one sentence when no member certificate was issued by --ca; exit 2 when the input is unusable."
    )

    @Argument(help: "The ledger file (SQLite).")
    var ledger: String

    @Option(help: "The consortium CA certificate (PEM).")
    var ca: String

    @Option(parsing: .upToNextOption, help: "Other peers' ledgers to compare with (--against A B, or --against A --against B).")
    var against: [String] = []

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let caCert: Certificate
        do {
            caCert = try PEMFiles.certificate(at: ca)
            if let problem = LedgerVerifier.notACertificateAuthority(caCert, file: ca) { throw problem }
        } catch {
            try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let report: VerificationReport
        do {
            report = try LedgerVerifier.verify(path: ledger, caCertificate: caCert, against: against)
        } catch {
            try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: \(error)\n".utf8))
            throw ExitCode(2)
        }
        for note in report.notes { try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: note: \(note)\n".utf8)) }
        if json {
            print(try jsonText(Summary(ledger: ledger, intact: report.intact, chains: report.chains, entries: report.entries, rounds: report.rounds,
                                       findings: report.findings)))
        } else if report.intact {
            print("\(ledger): intact: \(report.chains) chains, \(report.entries) entries, \(report.rounds) rounds")
        } else if report.chains > 0, Set(report.findings.filter { $0.rule == "genesis-certificate" }.map(\.author)).count == report.chains {
            // No chain starts with a certificate from this CA: one cause, so one sentence, not a finding per entry.
            print("\(ledger): no member certificate in it was issued by \(ca) (\(caCert.subject)), so none of its \(report.entries) entries verify: "
                  + "give the certificate of the CA that signed this consortium's members, or check that this is your consortium's ledger (--json lists all \(report.findings.count) findings)")
        } else {
            for f in report.findings { print(f) }
            print("\(ledger): \(report.findings.count) finding(s) in \(report.chains) chains, \(report.entries) entries")
        }
        if !report.intact { throw ExitCode(1) }
    }

    /// The `--json` output.
    struct Summary: Encodable {
        let ledger: String
        let intact: Bool
        let chains: Int
        let entries: Int
        let rounds: Int
        let findings: [Finding]
    }
}

/// `value` as one line of JSON, keys sorted at every level.
func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Opens a ledger read-only for display, exiting 2 when it is unusable.
func readEntries(_ path: String) throws -> [LedgerEntry] {
    do {
        return try LedgerReader.entries(path: path)
    } catch {
        try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "List a ledger's entries for people (no verification; use verify for that)."
    )

    @Argument(help: "The ledger file.")
    var ledger: String

    @Option(help: "Only this institution's chain.")
    var author: String?

    func run() throws {
        let entries = try readEntries(ledger).filter { author == nil || $0.header.author == author }
        print("author".padding(toLength: 14, withPad: " ", startingAt: 0) + "   seq  kind        round  time (UTC)                hash")
        let formatter = ISO8601DateFormatter()
        for e in entries {
            let h = e.header
            let time = formatter.string(from: Date(timeIntervalSince1970: Double(h.timeMillis) / 1000))
            print(h.author.padding(toLength: 14, withPad: " ", startingAt: 0)
                  + String(format: "%6llu  ", h.seq) + "\(h.kind)".padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: "%7llu  ", h.round) + time.padding(toLength: 26, withPad: " ", startingAt: 0) + hex(e.hash.prefix(8)))
        }
        print("\(entries.count) entries")
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every entry as one JSON object per line, for other tools.",
        discussion: "Fields: author, seq, kind, round, time_ms, consortium, prev, hash, signature, header (hex), body (the parsed JSON body)."
    )

    @Argument(help: "The ledger file.")
    var ledger: String

    @Flag(help: "JSON Lines output: the only format, and the default (the flag is accepted for scripts that give it).")
    var jsonl = false

    func run() throws {
        for e in try readEntries(ledger) { print(try jsonText(Line(e))) }
    }

    /// One entry's line.
    struct Line: Encodable {
        let author: String
        let seq: UInt64
        let kind: String
        let round: UInt64
        let timeMs: Int64
        let consortium: String
        let prev: String
        let hash: String
        let signature: String
        let header: String
        /// The body as parsed; null when it is not a JSON object.
        let body: JSONValue

        init(_ e: LedgerEntry) {
            let h = e.header
            author = h.author
            seq = h.seq
            kind = "\(h.kind)"
            round = h.round
            timeMs = h.timeMillis
            consortium = h.consortium
            prev = hex(h.prev)
            hash = hex(e.hash)
            signature = hex(e.signature)
            header = hex(e.headerBytes)
            body = JSONValue.object(parsing: e.body).map(JSONValue.object) ?? .null
        }

        enum CodingKeys: String, CodingKey {
            case author, seq, kind, round, consortium, prev, hash, signature, header, body
            case timeMs = "time_ms"
        }
    }
}

/// Appends update entries one by one and reports each acknowledged append on
/// standard output. Used by the crash-safety test, which kills it at random.
struct AppendStressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_append-stress", abstract: "Testing aid: append entries until killed.", shouldDisplay: false)

    @Option var ledger: String
    @Option var consortium: String
    @Option var author: String
    @Option var key: String
    @Option var certificate: String
    @Option var count: Int = 1000

    func run() throws {
        let signing = try Ed25519Keys.privateKey(at: key)
        let store = try LedgerStore(path: ledger, consortium: consortium)
        if try store.heads()[author] == nil {
            try store.append(author: author, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: try PEMFiles.read(certificate)), key: signing)
        }
        for i in 0..<count {
            let e = try store.append(author: author, kind: .update, round: UInt64(i + 1), body: EntryBody.update(
                round: UInt64(i + 1), baseHash: "00", updateHash: String(i), samples: 1, codec: "f32", metrics: [:]), key: signing)
            try? FileHandle.standardOutput.write(contentsOf: Data("acked \(e.header.seq)\n".utf8))  // unbuffered
        }
    }
}
