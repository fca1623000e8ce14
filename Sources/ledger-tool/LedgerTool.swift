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
        subcommands: [VerifyCommand.self]
    )
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a ledger offline with only the consortium CA certificate.",
        discussion: "Exit 0 and a one-line summary when intact; exit 1 with one finding per line (author#seq rule: expected …, found …); exit 2 when the input is unusable."
    )

    @Argument(help: "The ledger file (SQLite).")
    var ledger: String

    @Option(help: "The consortium CA certificate (PEM).")
    var ca: String

    @Option(parsing: .singleValue, help: "Another peer's ledger to compare with (repeatable).")
    var against: [String] = []

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let caCert: Certificate
        do {
            caCert = try PEMFiles.certificate(at: ca)
        } catch {
            FileHandle.standardError.write(Data("ledger-tool: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let report: VerificationReport
        do {
            report = try LedgerVerifier.verify(path: ledger, caCertificate: caCert, against: against)
        } catch {
            FileHandle.standardError.write(Data("ledger-tool: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if json {
            let obj: [String: Any] = [
                "ledger": ledger, "intact": report.intact, "chains": report.chains, "entries": report.entries, "rounds": report.rounds,
                "findings": report.findings.map { ["author": $0.author, "seq": $0.seq, "rule": $0.rule, "expected": $0.expected, "found": $0.found] },
            ]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else if report.intact {
            print("\(ledger): intact: \(report.chains) chains, \(report.entries) entries, \(report.rounds) rounds")
        } else {
            for f in report.findings { print(f) }
            print("\(ledger): \(report.findings.count) finding(s) in \(report.chains) chains, \(report.entries) entries")
        }
        if !report.intact { throw ExitCode(1) }
    }
}
