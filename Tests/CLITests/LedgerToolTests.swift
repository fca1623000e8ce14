import Crypto
import FLIdentity
import FLLedger
import Foundation
import Testing

@Suite("ledger-tool command line")
struct LedgerToolTests {
    @Test func verifyShowAndExportWithTheirExitCodes() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: dir.path)
        let (key, csr) = try InstitutionKey.generate(institution: "alice")
        let cert = try PEMFiles.pem(try ca.sign(csr, days: 5))
        let path = dir.appendingPathComponent("alice.sqlite").path
        let store = try LedgerStore(path: path, consortium: "demo")
        try store.append(author: "alice", kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: cert), key: key)
        try store.append(author: "alice", kind: .update, round: 1, body: EntryBody.update(
            round: 1, baseHash: "00", updateHash: "11", samples: 5, codec: "f32", metrics: ["accuracy": 0.5]), key: key)
        let caPath = dir.appendingPathComponent("ca.pem").path

        let ok = try await ledgerTool("verify", path, "--ca", caPath)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout == "\(path): intact: 1 chains, 2 entries, 1 rounds\n")
        let json = try await ledgerTool("verify", path, "--ca", caPath, "--json")
        #expect(json.stdout == #"{"chains":1,"entries":2,"findings":[],"intact":true,"ledger":"\#(path)","rounds":1}"# + "\n")

        let show = try await ledgerTool("show", path)
        #expect(show.status == 0 && show.stdout.contains("alice") && show.stdout.contains("update") && show.stdout.hasSuffix("2 entries\n"))
        let export = try await ledgerTool("export", path, "--jsonl")
        let lines = export.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let second = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
        #expect(second["kind"] as? String == "update" && (second["body"] as? [String: Any])?["update_hash"] as? String == "11")
        // Keys sorted at every level; the body as stored.
        #expect(lines[1].hasPrefix(#"{"author":"alice","body":{"base_hash":"00","codec":"f32","metrics":{"accuracy":0.5},"round":1,"samples":5,"update_hash":"11"},"consortium":"demo","hash":""#))
        #expect(lines[1].contains(#","kind":"update","prev":""#) && lines[1].contains(#","round":1,"seq":1,"signature":""#) && lines[1].contains(#","time_ms":"#))
        let report = try await ledgerTool("report", path, "--format", "json")
        #expect(report.stdout == #"""
            {"institutions":[{"evidence":0,"gated":{},"id":"alice","negative":0,"rounds":{},"rounds_contributed":0,"share":0,"times_screened":0,"total":0}],"mismatches":[],"recorded_credits_checked":0,"rounds":[],"rule":"class-median/2"}

            """#, "\(report.stdout)")

        // A certificate from another CA: every entry fails; exit 1 with one sentence naming the cause
        // (it used to print a finding per entry), and the findings naming author, seq and rule in --json.
        let other = try ConsortiumCA.create(consortium: "demo")
        let otherPath = dir.appendingPathComponent("other.pem").path
        try PEMFiles.write(try PEMFiles.pem(other.certificate), to: otherPath)
        let bad = try await ledgerTool("verify", path, "--ca", otherPath)
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("no member certificate in it was issued by \(otherPath)") && bad.stdout.contains("give the certificate of the CA"), "\(bad.stdout)")
        #expect(bad.stdout.split(separator: "\n").count == 1 && !bad.stdout.contains("alice#"), "\(bad.stdout)")
        let badJSON = try await ledgerTool("verify", path, "--ca", otherPath, "--json")
        #expect(badJSON.status == 1 && badJSON.stdout.contains(
            #"{"author":"alice","expected":"a certificate for 'alice' issued by the consortium CA","found":"none","rule":"genesis-certificate","seq":0}"#))

        #expect(try await ledgerTool("verify", dir.appendingPathComponent("nope.sqlite").path, "--ca", caPath).status == 2)
        #expect(try await ledgerTool("verify", caPath, "--ca", caPath).status == 2)
        #expect(try await ledgerTool("show", caPath).status == 2)
    }
}
