import Foundation

/// Incentive credits from the scores that assessors signed into their
/// `aggregate` entries (docs/credits.md). An auditor derives every figure
/// from the ledger alone.
///
/// For one round, each assessor (an unflagged member with an aggregate
/// entry for the round) casts one vote per member: its score for the member
/// if it included the member's update, 0 if it screened the update out, no
/// vote if it did not hear the member. The credit of member i is the median
/// of the votes of assessors other than i. Negative credits pay zero and are
/// reported apart; a total is the sum over rounds of the positive credits.
public enum Credits {
    public static let ruleVersion = "median-of-others/1"

    /// One assessor's aggregate entry for a round, as far as credits go.
    public struct Assessment: Sendable, Equatable {
        public var assessor: String
        public var round: UInt64
        /// Included members' scores.
        public var scores: [String: Double]
        /// Members whose update this assessor screened out.
        public var screened: [String]
        /// Members a gate gave zero, with the gate.
        public var gated: [String: String]
        /// Credits of an earlier round this assessor recorded, if any.
        public var recorded: EntryBody.RecordedCredits?

        public init(assessor: String, round: UInt64, scores: [String: Double], screened: [String] = [], gated: [String: String] = [:],
                    recorded: EntryBody.RecordedCredits? = nil) {
            self.assessor = assessor
            self.round = round
            self.scores = scores
            self.screened = screened
            self.gated = gated
            self.recorded = recorded
        }

        /// Reads an aggregate entry's body; nil for other kinds or malformed bodies.
        public init?(_ entry: LedgerEntry) {
            guard entry.header.kind == .aggregate, let body = EntryBody.decode(entry.body),
                  let raw = body["scores"] as? [String: Any] else { return nil }
            var scores: [String: Double] = [:]
            for (k, v) in raw {
                guard let n = v as? NSNumber else { return nil }
                scores[k] = n.doubleValue
            }
            let screened = (body["screened"] as? [[String: Any]] ?? []).compactMap { $0["author"] as? String }
            let scoring = body["scoring"] as? [String: Any]
            let gated = scoring?["gated"] as? [String: String] ?? [:]
            var recorded: EntryBody.RecordedCredits?
            if let c = body["credits"] as? [String: Any], let r = (c["round"] as? NSNumber)?.uint64Value, let a = c["assessors"] as? [String],
               let values = c["values"] as? [String: Any] {
                recorded = .init(round: r, assessors: a, values: values.compactMapValues { ($0 as? NSNumber)?.doubleValue })
            }
            self.init(assessor: entry.header.author, round: entry.header.round, scores: scores, screened: screened, gated: gated, recorded: recorded)
        }
    }

    /// The median (mean of the two middle values for an even count).
    public static func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        let n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// Each member's credit for one round from that round's assessments
    /// (members nobody else voted on are absent).
    public static func roundCredits(_ assessments: [Assessment]) -> [String: Double] {
        var votes: [String: [Double]] = [:]
        for a in assessments {
            for (member, score) in a.scores where member != a.assessor { votes[member, default: []].append(score) }
            for member in Set(a.screened) where member != a.assessor && a.scores[member] == nil { votes[member, default: []].append(0) }
        }
        return votes.compactMapValues(median)
    }

    /// One institution's line in a report.
    public struct Institution: Sendable, Equatable {
        public var id: String
        /// Sum of the positive round credits.
        public var total: Double = 0
        /// Sum of the negative round credits (paid as zero).
        public var negative: Double = 0
        /// Share of the sum of all totals.
        public var share: Double = 0
        /// Round → credit (negative values included, as derived).
        public var rounds: [UInt64: Double] = [:]
        /// Rounds with a positive credit.
        public var roundsContributed: Int = 0
        /// Times another assessor screened its update out.
        public var timesScreened: Int = 0
        /// Times another assessor's gates gave it zero, by gate.
        public var gated: [String: Int] = [:]
        /// Distinct ledger positions at which it was proven to equivocate.
        public var evidence: Int = 0
    }

    /// A recorded credit that does not re-derive from the entries.
    public struct Mismatch: Sendable, Equatable, CustomStringConvertible {
        public var assessor: String
        public var atRound: UInt64
        public var member: String
        public var round: UInt64
        public var recorded: Double
        public var derived: Double?
        public var description: String {
            "\(assessor)'s aggregate for round \(atRound) records \(member)'s round-\(round) credit as \(recorded), but the entries give \(derived.map { "\($0)" } ?? "no credit")"
        }
    }

    public struct Report: Sendable {
        public var institutions: [Institution]
        public var rounds: [UInt64]
        /// Recorded credits that were re-derived (for `--verify`).
        public var recordedChecked: Int
        public var mismatches: [Mismatch]
    }

    /// Members accused by `evidence` entries, with the number of distinct
    /// positions (`ledger-tool verify` checks that each proof is valid).
    public static func accused(_ entries: [LedgerEntry]) -> [String: Int] {
        var positions: [String: Set<UInt64>] = [:]
        for e in entries where e.header.kind == .evidence {
            guard let body = EntryBody.decode(e.body), let (author, seq) = Evidence.accused(body) else { continue }
            positions[author, default: []].insert(seq)
        }
        return positions.mapValues(\.count)
    }

    /// The report over all rounds, from every entry of a ledger. Members
    /// accused by evidence are listed with it, and their aggregates are not
    /// assessments.
    public static func report(entries: [LedgerEntry]) -> Report {
        let flagged = accused(entries)
        let members = Set(entries.filter { $0.header.kind == .genesis }.map(\.header.author))
        var byRound: [UInt64: [String: Assessment]] = [:]
        for e in entries where e.header.kind == .aggregate && flagged[e.header.author] == nil {
            guard let a = Assessment(e) else { continue }
            // One assessment per (assessor, round): the first in chain order.
            if byRound[a.round]?[a.assessor] == nil { byRound[a.round, default: [:]][a.assessor] = a }
        }
        let rounds = byRound.keys.sorted()
        var lines = Dictionary(uniqueKeysWithValues: members.union(flagged.keys).map { ($0, Institution(id: $0)) })
        for r in rounds {
            let assessments = byRound[r]!.keys.sorted().map { byRound[r]![$0]! }
            for (member, credit) in roundCredits(assessments) {
                lines[member, default: Institution(id: member)].rounds[r] = credit
            }
            for a in assessments {
                for m in Set(a.screened) where m != a.assessor { lines[m, default: Institution(id: m)].timesScreened += 1 }
                for (m, gate) in a.gated where m != a.assessor { lines[m, default: Institution(id: m)].gated[gate, default: 0] += 1 }
            }
        }
        for (id, n) in flagged { lines[id, default: Institution(id: id)].evidence = n }
        for id in lines.keys {
            // Sums in round order, so every implementation adds alike.
            for r in lines[id]!.rounds.keys.sorted() {
                let c = lines[id]!.rounds[r]!
                if c > 0 {
                    lines[id]!.total += c
                    lines[id]!.roundsContributed += 1
                } else {
                    lines[id]!.negative += c
                }
            }
        }
        let sum = lines.keys.sorted().map { lines[$0]!.total }.reduce(0, +)  // in id order, so every implementation adds alike
        if sum > 0 { for id in lines.keys { lines[id]!.share = lines[id]!.total / sum } }

        // Re-derive every credit a peer recorded, from the assessors it names.
        var checked = 0
        var mismatches: [Mismatch] = []
        for r in rounds {
            for a in byRound[r]!.values.sorted(by: { $0.assessor < $1.assessor }) {
                guard let rec = a.recorded else { continue }
                let named = rec.assessors.compactMap { byRound[rec.round]?[$0] }
                let derived = named.count == rec.assessors.count ? roundCredits(named) : [:]
                for member in Set(rec.values.keys).union(derived.keys).sorted() {
                    checked += 1
                    if rec.values[member] != derived[member] {
                        mismatches.append(Mismatch(assessor: a.assessor, atRound: r, member: member, round: rec.round,
                                                   recorded: rec.values[member] ?? .nan, derived: derived[member]))
                    }
                }
            }
        }
        return Report(institutions: lines.values.sorted { $0.id < $1.id }, rounds: rounds, recordedChecked: checked, mismatches: mismatches)
    }
}
