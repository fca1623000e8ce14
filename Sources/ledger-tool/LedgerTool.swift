import ArgumentParser

/// The auditor's and coordinator's tool. Its subcommands (verify, show,
/// export, report) arrive with the ledger; until then it only says so.
@main
struct LedgerTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger-tool",
        abstract: "Verify, inspect and report on flpeer ledgers.",
        discussion: "The ledger format is not implemented yet: verify, show, export and report arrive with the ledger (issue 4).",
        version: "0.1.0"
    )
}
