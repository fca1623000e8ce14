import Foundation

/// Incentive credits from the scores that assessors signed into their
/// `aggregate` entries (docs/credits.md). An auditor derives every figure
/// from the ledger alone.
///
/// Scores are per class: assessor a's score for member i in class c is the
/// Shapley value of i's update for a's loss on its rows of class c. For one
/// round, member i's value in class c is the median of the scores of the
/// other assessors that hold class c and heard i; an assessor that screened
/// i out votes 0, but only when at least half of those assessors did (else
/// it abstains). Only classes that more than half of the round's assessors
/// hold count. A member's positive part is the sum of its positive class
/// values, its negative part the sum of the negative ones (reported, never
/// paid). A round pays at most what the federation learned in it: the
/// smaller of (a) the sum over classes of the median, over the class's
/// holders, of what the other members' updates were worth on their rows of
/// that class, and (b) the sum of all members' class values; when the
/// positive parts add up to more, they are scaled down to it. Credits are
/// whole micro-nats; a total is the sum over rounds.
public enum Credits {
    public static let ruleVersion = "class-median/2"
    /// A score as JSON carries it: an integer (no fraction, no exponent) of
    /// at most 2⁵³ in magnitude, so that every implementation reads the same
    /// double and every sum stays finite; nil otherwise (true and false are
    /// not numbers).
    static func score(_ x: JSONValue) -> Double? {
        guard let i = x.integer, i.magnitude <= 1 << 53 else { return nil }
        return Double(i)
    }

    /// One assessor's aggregate entry for a round, as far as credits go.
    public struct Assessment: Sendable, Equatable {
        public var assessor: String
        public var round: UInt64
        /// Included members' scores, class → micro-nats.
        public var scores: [String: [String: Double]]
        /// The classes this assessor holds rows of.
        public var classes: Set<String>
        /// Members whose update this assessor screened out.
        public var screened: [String]
        /// Members a gate gave zero, with the gate.
        public var gated: [String: String]
        /// Credits of an earlier round this assessor recorded, if any.
        public var recorded: EntryBody.RecordedCredits?

        public init(assessor: String, round: UInt64, scores: [String: [String: Double]], classes: [String]? = nil, screened: [String] = [],
                    gated: [String: String] = [:], recorded: EntryBody.RecordedCredits? = nil) {
            self.assessor = assessor
            self.round = round
            self.scores = scores
            self.classes = Set(classes ?? scores.values.flatMap(\.keys))
            self.screened = screened
            self.gated = gated
            self.recorded = recorded
        }

        /// Reads an aggregate entry's body; nil for other kinds, malformed
        /// bodies, or scores that are not per class (an older scoring rule).
        /// Every other field is read on its own, as `credits.py` reads it: a
        /// malformed one is left out, not the entry.
        public init?(_ entry: LedgerEntry) {
            guard let body = JSONValue.object(parsing: entry.body) else { return nil }
            self.init(entry, body: body)
        }

        /// `init(_:)` from the entry's body already parsed (a caller that reads other fields of it too).
        public init?(_ entry: LedgerEntry, body: [String: JSONValue]) {
            guard entry.header.kind == .aggregate, let scores = Self.scores(body["scores"]) else { return nil }
            let screened = body["screened"]?.array?.compactMap { $0["author"]?.string } ?? []
            let scoring = body["scoring"]?.object
            self.init(assessor: entry.header.author, round: entry.header.round, scores: scores, classes: scoring?["classes"]?.strings,
                      screened: screened, gated: scoring?["gated"]?.stringValues ?? [:], recorded: body["credits"].flatMap(Self.recorded))
        }

        /// Member → class → score, if every score is one (`Credits.score`).
        static func scores(_ value: JSONValue?) -> [String: [String: Double]]? {
            guard let members = value?.object else { return nil }
            var scores: [String: [String: Double]] = [:]
            for (member, perClass) in members {
                guard let classes = perClass.object else { return nil }
                var values: [String: Double] = [:]
                for (c, x) in classes {
                    guard let v = Credits.score(x) else { return nil }
                    values[c] = v
                }
                scores[member] = values
            }
            return scores
        }

        /// An aggregate's `credits` field, when it has a round, assessors and values (values that are not numbers are left out).
        static func recorded(_ value: JSONValue) -> EntryBody.RecordedCredits? {
            guard let round = value["round"]?.integer.flatMap(UInt64.init(exactly:)), let assessors = value["assessors"]?.strings,
                  let values = value["values"]?.object else { return nil }
            return .init(round: round, assessors: assessors, values: values.compactMapValues(\.number))
        }

        /// The sum of this assessor's class-c scores for the other members
        /// (by Shapley's efficiency, the part of the round's improvement of
        /// its class-c loss that their updates brought), members in id order.
        func othersWorth(in c: String) -> Double {
            scores.keys.sorted().filter { $0 != assessor }.map { scores[$0]![c] ?? 0 }.reduce(0, +)
        }
    }

    /// The median (mean of the two middle values for an even count).
    public static func median(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        let n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// One round's figures for every member some assessor heard.
    public struct RoundResult: Sendable, Equatable {
        /// Paid credits, whole micro-nats (0 or more).
        public var credits: [String: Double]
        /// Sums of the negative class values (reported, not paid).
        public var negatives: [String: Double]
        /// Sums of the positive class values, before scaling.
        public var positives: [String: Double]
        /// What the round pays at most (docs/credits.md).
        public var payout: Double
    }

    /// Each member's figures for one round from that round's assessments.
    public static func round(_ assessments: [Assessment]) -> RoundResult {
        var members = Set<String>()
        for a in assessments { members.formUnion(a.scores.keys); members.formUnion(a.screened) }
        // Only classes that more than half of the round's assessors hold count:
        // a class made up by a minority could otherwise pay whatever it signs.
        var holding: [String: Int] = [:]
        for a in assessments { for c in a.classes { holding[c, default: 0] += 1 } }
        let counted = holding.filter { 2 * $0.value > assessments.count }.keys.sorted()
        var positives: [String: Double] = [:], negatives: [String: Double] = [:], signed: [String: Double] = [:]
        // Which assessors hold which counted class, and who each screened, looked up once.
        let holds = assessments.map { a in counted.map(a.classes.contains) }
        let screenedBy = assessments.map { Set($0.screened) }
        var votes: [Double] = []
        for m in members.sorted() {
            var pos = 0.0, neg = 0.0
            // Per assessor (other than m): its scores of m, or whether it screened m out.
            let seen = assessments.indices.map { k -> (scores: [String: Double]?, screened: Bool) in
                assessments[k].assessor == m ? (nil, false) : (assessments[k].scores[m], screenedBy[k].contains(m))
            }
            for (ci, c) in counted.enumerated() {
                var holders = 0
                votes.removeAll(keepingCapacity: true)
                for k in assessments.indices where holds[k][ci] {
                    if let s = seen[k].scores {
                        holders += 1
                        votes.append(s[c] ?? 0)
                    } else if seen[k].screened {
                        holders += 1
                    }
                }
                // Screeners vote 0 only when they are at least half of the holders.
                if 2 * votes.count <= holders { votes += [Double](repeating: 0, count: holders - votes.count) }
                guard let v = median(votes) else { continue }
                if v > 0 { pos += v } else { neg += v }
            }
            positives[m] = pos
            negatives[m] = neg
            signed[m] = pos + neg
        }
        // Claimed: per class, the median over its holders of what the other
        // members' updates were worth on their rows of the class; summed.
        var claimed = 0.0
        let others = assessments.map { a in a.scores.keys.sorted().filter { $0 != a.assessor }.map { a.scores[$0]! } }
        for (ci, c) in counted.enumerated() {
            // Each holder's othersWorth(in: c), members in id order.
            let claims = assessments.indices.filter { holds[$0][ci] }.map { k in others[k].map { $0[c] ?? 0 }.reduce(0, +) }
            claimed += median(claims) ?? 0
        }
        let consensus = members.sorted().map { signed[$0]! }.reduce(0, +)
        let payout = max(0, min(claimed, consensus))
        let total = members.sorted().map { positives[$0]! }.reduce(0, +)
        var credits: [String: Double] = [:]
        for m in members {
            let p = positives[m]!
            credits[m] = total <= 0 ? 0 : (payout >= total ? p : p * payout / total).rounded(.down)
        }
        return RoundResult(credits: credits, negatives: negatives, positives: positives, payout: payout)
    }

    /// Each member's paid credit for one round.
    public static func roundCredits(_ assessments: [Assessment]) -> [String: Double] { round(assessments).credits }

    /// One institution's line in a report.
    public struct Institution: Sendable, Equatable {
        public var id: String
        /// Sum of the round credits.
        public var total: Double = 0
        /// Sum over rounds of the negative class values (never paid).
        public var negative: Double = 0
        /// Share of the sum of all totals.
        public var share: Double = 0
        /// Round → paid credit.
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
        /// Aggregate entries whose scores are not per class (another scoring rule), left out.
        public var unreadable: Int = 0
    }

    /// Members accused by `evidence` entries, with the number of distinct
    /// positions (`ledger-tool verify` checks that each proof is valid).
    public static func accused(_ entries: [LedgerEntry]) -> [String: Int] {
        var positions: [String: Set<UInt64>] = [:]
        for e in entries where e.header.kind == .evidence {
            guard let accused = Evidence.accused(e.body) else { continue }
            positions[accused.author, default: []].insert(accused.seq)
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
        var unreadable = 0
        for e in entries where e.header.kind == .aggregate && flagged[e.header.author] == nil {
            guard let a = Assessment(e) else { unreadable += 1; continue }
            // One assessment per (assessor, round): the first in chain order.
            if byRound[a.round]?[a.assessor] == nil { byRound[a.round, default: [:]][a.assessor] = a }
        }
        let rounds = byRound.keys.sorted()
        var lines = Dictionary(uniqueKeysWithValues: members.union(flagged.keys).map { ($0, Institution(id: $0)) })
        for r in rounds {
            let assessments = byRound[r]!.keys.sorted().map { byRound[r]![$0]! }
            let result = round(assessments)
            for (member, credit) in result.credits {
                lines[member, default: Institution(id: member)].rounds[r] = credit
                lines[member, default: Institution(id: member)].negative += result.negatives[member] ?? 0
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
                lines[id]!.total += c
                if c > 0 { lines[id]!.roundsContributed += 1 }
            }
        }
        let sum = lines.keys.sorted().map { lines[$0]!.total }.reduce(0, +)  // in id order, so every implementation adds alike
        if sum > 0 { for id in lines.keys { lines[id]!.share = lines[id]!.total / sum } }
        let (checked, mismatches) = rederive(byRound)
        return Report(institutions: lines.values.sorted { $0.id < $1.id }, rounds: rounds, recordedChecked: checked, mismatches: mismatches,
                      unreadable: unreadable)
    }

    /// Re-derives every credit a peer recorded, from the assessors it names:
    /// how many were checked, and those that differ.
    static func rederive(_ byRound: [UInt64: [String: Assessment]]) -> (checked: Int, mismatches: [Mismatch]) {
        var checked = 0
        var mismatches: [Mismatch] = []
        var derivedFor: [String: [String: Double]] = [:]
        for r in byRound.keys.sorted() {
            for a in byRound[r]!.values.sorted(by: { $0.assessor < $1.assessor }) {
                guard let rec = a.recorded else { continue }
                let named = rec.assessors.compactMap { byRound[rec.round]?[$0] }
                // Peers holding the same assessments record the same figures: derive each set once.
                let key = "\(rec.round) \(rec.assessors.joined(separator: " "))"
                let derived = named.count == rec.assessors.count ? (derivedFor[key] ?? roundCredits(named)) : [:]
                derivedFor[key] = derived
                for member in Set(rec.values.keys).union(derived.keys).sorted() {
                    checked += 1
                    if rec.values[member] != derived[member] {
                        mismatches.append(Mismatch(assessor: a.assessor, atRound: r, member: member, round: rec.round,
                                                   recorded: rec.values[member] ?? .nan, derived: derived[member]))
                    }
                }
            }
        }
        return (checked, mismatches)
    }
}
