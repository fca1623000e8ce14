import Foundation

/// What a finished demo consortium did: each member's final model on the
/// common test split, the centralised baseline, credits, timings and the
/// verdict on every ledger.
public struct DemoSummary: Sendable {
    /// One member's results.
    public struct Member: Sendable {
        public let id: String
        /// Its final model's accuracy on the common test split (or on its own test rows, `ownTestFraction`).
        public let accuracy: Double
        public let trainRows: Int
        public let secondsPerRound: Double
        /// Its attack, nil for an honest member.
        public let attack: String?
        /// Members its ledger holds fork evidence against.
        public let flagged: [String]
        public let scoringSecondsPerRound: Double
        /// An external learner's: seconds per round waiting for its answers, and its start-up.
        public var learnerSecondsPerRound: Double? = nil
        public var learnerStartSeconds: Double? = nil
        /// Wall time of each round 1…R.
        public let roundSeconds: [Double]
        /// User plus system CPU time of its process, and the part spent in rounds 1…R.
        public let cpuSeconds: Double, roundCPUSeconds: Double
        public let bytesIn: Int, bytesOut: Int
        /// Its credits (from `creditsLedger`), if any were recorded.
        public let credit: Credit?
    }

    /// A member's credits in micro-nats of class loss (docs/credits.md).
    public struct Credit: Sendable {
        public let total: Double, share: Double, negative: Double
        public let rounds: [UInt64: Double]
    }

    public let options: DemoOptions
    public let directory: String
    public let beta: Double
    public let members: [Member]
    public let centralizedAccuracy: Double
    /// True when every ledger is intact and agrees with the others, apart from
    /// the proof of a Byzantine member's equivocation and its consequences.
    public let ledgerVerified: Bool
    /// Up to three unexplained findings per ledger, "FILE: finding".
    public let findings: [String]
    /// Members whose equivocation some ledger proves.
    public let equivocationProven: [String]
    /// The ledger the credits were read from (the first honest member's).
    public let creditsLedger: String
    public let creditRecordedMismatches: Int
    public let wallSeconds: Double

    public var meanAccuracy: Double { members.map(\.accuracy).reduce(0, +) / Double(members.count) }

    public var honestMeanAccuracy: Double {
        let honest = members.filter { $0.attack == nil }
        return honest.map(\.accuracy).reduce(0, +) / Double(max(1, honest.count))
    }

    public var secondsPerRound: Double { members.map(\.secondsPerRound).reduce(0, +) / Double(members.count) }

    public var scoringSecondsPerRound: Double { members.map(\.scoringSecondsPerRound).reduce(0, +) / Double(max(1, members.count)) }

    /// Bytes that crossed the network (every byte is counted out at one member and in at another).
    public var bytesMoved: Int { members.map { $0.bytesIn + $0.bytesOut }.reduce(0, +) / 2 }
}

extension DemoSummary {
    /// The `--json` object: one line, keys sorted (benchmarks/*.sh read it).
    public func json() throws -> String {
        let o = options
        let object: [String: Any] = [
            "peers": members.map(\.jsonObject), "mean_accuracy": meanAccuracy, "honest_mean_accuracy": honestMeanAccuracy, "beta": beta,
            "byzantine": o.byzantine, "centralized_accuracy": centralizedAccuracy, "seconds_per_round": secondsPerRound, "bytes_moved": bytesMoved,
            "ledger_verified": ledgerVerified, "equivocation_proven": equivocationProven, "dir": directory, "rounds": o.rounds, "model": o.learner == nil ? o.model.rawValue : "external", "learner": o.learner?.command.joined(separator: " ") ?? "",
            "rule": o.rule, "alpha": o.alpha, "seed": o.seed, "data": o.dataPath, "topology": o.topology, "size_skew": o.sizeSkew,
            "size_weights": o.sizeWeights ?? [], "credits_ledger": creditsLedger, "scoring_seconds_per_round": scoringSecondsPerRound,
            "credit_unit": "micro-nats of class loss (docs/credits.md)", "credit_recorded_mismatches": creditRecordedMismatches, "wall_seconds": wallSeconds,
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }

    /// The table and closing lines `flpeer demo` prints without `--json`.
    public var text: String {
        var lines = ["institution  train rows  test accuracy        credit   share"]
        for m in members {
            lines.append(String(format: "%-11@  %10d  %13.4f  %12.0f  %5.1f%%%@", m.id, m.trainRows, m.accuracy, m.credit?.total ?? 0, 100 * (m.credit?.share ?? 0),
                                m.attack.map { "  (Byzantine: \($0))" } ?? ""))
        }
        lines.append(String(format: "mean                     %13.4f", meanAccuracy))
        if options.byzantine > 0 { lines.append(String(format: "honest mean              %13.4f", honestMeanAccuracy)) }
        if options.ownTestFraction != nil { lines.insert("(test accuracy: each member's final model on its own test rows)", at: 1) }
        lines.append(String(format: "centralised (%@, %@ test split): %.4f", options.modelName, options.ownTestFraction == nil ? "same" : "common", centralizedAccuracy))
        lines.append(String(format: "%.3f s per round (%.3f s of it scoring), %@ moved, ledgers %@", secondsPerRound, scoringSecondsPerRound,
                            kilobytes(bytesMoved), ledgerVerified ? "verified (all intact and agreeing)" : "NOT verified"))
        lines.append("credits: micro-nats of class loss, per-class medians of the other members' Shapley scores (ledger-tool report \(creditsLedger))")
        if !equivocationProven.isEmpty { lines.append("equivocation proven in the ledgers against: \(equivocationProven.joined(separator: ", "))") }
        lines.append("files: \(directory)")
        return lines.joined(separator: "\n")
    }
}

extension DemoSummary.Member {
    var jsonObject: [String: Any] {
        var p: [String: Any] = [
            "id": id, "accuracy": accuracy, "train_rows": trainRows, "seconds_per_round": secondsPerRound, "byzantine": attack != nil, "flagged": flagged,
            "scoring_seconds_per_round": scoringSecondsPerRound, "round_seconds": roundSeconds, "cpu_seconds": cpuSeconds, "round_cpu_seconds": roundCPUSeconds,
        ]
        if let attack { p["attack"] = attack }
        if let l = learnerSecondsPerRound { p["learner_seconds_per_round"] = l }
        if let l = learnerStartSeconds { p["learner_start_seconds"] = l }
        if let c = credit {
            p["credit"] = c.total
            p["credit_share"] = c.share
            p["credit_negative"] = c.negative
            p["credit_rounds"] = Dictionary(uniqueKeysWithValues: c.rounds.map { ("\($0.key)", $0.value) })
        }
        return p
    }
}
