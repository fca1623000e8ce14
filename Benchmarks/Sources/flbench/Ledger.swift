import Crypto
import FLIdentity
import FLLedger
import Foundation

// flbench ledger: verification rate beside raw Ed25519 verification in the
// same process, and durable append rates (one entry per transaction; a
// round's replicated entries per transaction).
func ledgerBenchmark() throws {
    let n = Int(argument("entries", "5000"))!
    let members = 10
    let root = "\(FileManager.default.temporaryDirectory.path)/flbench-ledger-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let ca = try ConsortiumCA.create(consortium: "bench")
    var keys: [String: Curve25519.Signing.PrivateKey] = [:]
    var certs: [String: String] = [:]
    for i in 0..<members {
        let id = "m\(i)"
        let (key, csr) = try InstitutionKey.generate(institution: id)
        keys[id] = key
        certs[id] = try PEMFiles.pem(try ca.sign(csr, days: 2))
    }

    // Raw Ed25519 verification of n signatures over 32-byte hashes.
    let key = keys["m0"]!
    let messages = (0..<n).map { i in Array(SHA256.hash(data: Array("m\(i)".utf8))) }
    let signatures = try messages.map { Array(try key.signature(for: $0)) }
    func rawSeconds() -> Double {
        var ok = 0
        let s = seconds { for i in 0..<n where key.publicKey.isValidSignature(signatures[i], for: messages[i]) { ok += 1 } }
        precondition(ok == n)
        return s
    }

    // Durable appends, one entry per transaction, by one author.
    let single = try LedgerStore(path: "\(root)/single.sqlite", consortium: "bench")
    try single.append(author: "m0", kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certs["m0"]!), key: key)
    let appendCount = min(n, 2000)
    let appendSeconds = try seconds {
        for r in 1...appendCount {
            try single.append(author: "m0", kind: .update, round: UInt64(r), body: EntryBody.update(
                round: UInt64(r), baseHash: "00", updateHash: "\(r)", samples: 1, codec: "f32", metrics: ["accuracy": 0.9]), key: key)
        }
    }

    // A ledger of n entries across 10 chains, built by merging one round's
    // entries (one per member) per transaction, as replication does.
    let writers = try (0..<members).map { i in try LedgerStore(path: "\(root)/w\(i).sqlite", consortium: "bench") }
    let replica = try LedgerStore(path: "\(root)/replica.sqlite", consortium: "bench")
    var batches: [[LedgerEntry]] = []
    for (i, w) in writers.enumerated() {
        try w.append(author: "m\(i)", kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certs["m\(i)"]!), key: keys["m\(i)"]!)
    }
    batches.append(try writers.enumerated().flatMap { try $0.element.entries(author: "m\($0.offset)") })
    let rounds = max(1, n / members - 1)
    for r in 1...rounds {
        var batch: [LedgerEntry] = []
        for (i, w) in writers.enumerated() {
            batch.append(try w.append(author: "m\(i)", kind: .update, round: UInt64(r), body: EntryBody.update(
                round: UInt64(r), baseHash: "00", updateHash: "\(i)-\(r)", samples: 1, codec: "f32", metrics: ["accuracy": 0.9]), key: keys["m\(i)"]!))
        }
        batches.append(batch)
    }
    var merged = 0
    let mergeSeconds = try seconds {
        for b in batches { merged += try replica.merge(b, caCertificate: ca.certificate).stored }
    }

    // Offline verification of the replica, interleaved with raw Ed25519 runs
    // so that both see the same machine noise; medians of `repeats` each.
    let repeats = Int(argument("repeats", "5"))!
    var rawRuns: [Double] = [], verifyRuns: [Double] = []
    var entries = 0
    for _ in 0..<repeats {
        rawRuns.append(rawSeconds())
        var report: VerificationReport?
        verifyRuns.append(try seconds { report = try LedgerVerifier.verify(path: "\(root)/replica.sqlite", caCertificate: ca.certificate) })
        precondition(report!.intact)
        entries = report!.entries
    }
    func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
    let rawRate = Double(n) / median(rawRuns), verifyRate = Double(entries) / median(verifyRuns)
    printJSON([
        "benchmark": "ledger", "entries": entries, "chains": members, "repeats": repeats,
        "raw_ed25519_verifications_per_s": rawRate,
        "verify_entries_per_s": verifyRate,
        "verify_over_raw": verifyRate / rawRate,
        "append_one_per_transaction_per_s": Double(appendCount) / appendSeconds,
        "merge_round_per_transaction_entries_per_s": Double(merged) / mergeSeconds,
        "round_batch_size": members,
    ])
}
