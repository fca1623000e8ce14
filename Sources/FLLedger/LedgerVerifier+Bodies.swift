import Foundation

/// The verifier's reading of bodies. A body may come from a hostile peer, so
/// it is not decoded as a whole typed body: each field the kind requires
/// (docs/ledger-spec.md, "Bodies") is read on its own, as
/// `ledger-tools/verify_ledger.py` reads it, so that a wrong field neither
/// hides the next one nor the fields later checks use.
extension LedgerVerifier {
    /// A required field that is missing or of another type.
    struct BodyProblem: Equatable, Sendable {
        let expected: String
        let found: String
        static func missing(_ field: String) -> BodyProblem { BodyProblem(expected: field, found: "missing") }
    }

    /// What the checks across chains use of a body.
    enum BodyFacts: Sendable {
        case none
        /// An update's `update_hash`, if it is text.
        case update(hash: String?)
        /// An aggregate's `included`, if it is a list of objects.
        case aggregate(included: [Named]?)
        case checkpoint(heads: [Head])
    }

    /// A checked body: the first problem, if any, and the facts.
    struct CheckedBody: Sendable {
        let problem: BodyProblem?
        let facts: BodyFacts

        /// Nil when `bytes` are not a JSON object.
        init?(_ kind: EntryKind, _ bytes: [UInt8], round: UInt64) {
            func read<T: KindFields>(_ type: T.Type) -> CheckedBody? {
                EntryBody.decode(T.self, from: bytes).map { CheckedBody(problem: $0.problem(round: round), facts: $0.facts) }
            }
            let checked: CheckedBody? = switch kind {
            case .genesis: read(GenesisFields.self)
            case .update: read(UpdateFields.self)
            case .aggregate: read(AggregateFields.self)
            case .checkpoint: read(CheckpointFields.self)
            case .evidence: read(EvidenceFields.self)
            }
            guard let checked else { return nil }
            self = checked
        }

        private init(problem: BodyProblem?, facts: BodyFacts) {
            self.problem = problem
            self.facts = facts
        }
    }

    /// An item of `included` (fields missing or of another type are nil).
    struct Named: Decodable, Sendable {
        let author: String?
        let updateHash: String?
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: FieldKey.self)
            author = c.lenient(.author)
            updateHash = c.lenient(.updateHash)
        }
    }

    /// An item of a checkpoint's `heads`.
    struct Head: Decodable, Sendable {
        let author: String?
        let seq: Int64?
        let hash: String?
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: FieldKey.self)
            author = c.lenient(.author)
            seq = c.lenient(.seq)
            hash = c.lenient(.hash)
        }
    }

    /// The heads a checkpoint body names, or nil when it is not one.
    static func checkpointHeads(_ bytes: [UInt8]) -> [Head]? {
        EntryBody.decode(CheckpointFields.self, from: bytes)?.heads
    }
}

private enum FieldKey: String, CodingKey {
    case certificate, codec, round, samples, rule, included, scores, heads, author, seq, hash, entries
    case baseHash = "base_hash", updateHash = "update_hash", resultHash = "result_hash"
}

/// Decodes any JSON value and keeps nothing (a list's or an object's members that are not read).
private struct Ignored: Decodable {
    init(from decoder: any Decoder) throws {}
}

private protocol KindFields: Decodable {
    func problem(round: UInt64) -> LedgerVerifier.BodyProblem?
    var facts: LedgerVerifier.BodyFacts { get }
}

extension KindFields {
    var facts: LedgerVerifier.BodyFacts { .none }
}

extension KeyedDecodingContainer where Key == FieldKey {
    /// The value at `key` if it is a `T`; nil when it is missing, null or of another type.
    fileprivate func lenient<T: Decodable>(_ key: Key, as type: T.Type = T.self) -> T? { try? decode(T.self, forKey: key) }

    /// The first of `keys` whose value is not text, as a problem.
    fileprivate func text(_ keys: Key...) -> LedgerVerifier.BodyProblem? {
        keys.first { lenient($0, as: String.self) == nil }.map { .missing("text field '\($0.rawValue)'") }
    }

    /// The first of `keys` whose value is not a number. True and false
    /// count as numbers (1 and 0), as Python's bool is an int.
    fileprivate func number(_ keys: Key...) -> LedgerVerifier.BodyProblem? {
        keys.first { lenient($0, as: Double.self) == nil && lenient($0, as: Bool.self) == nil }.map { .missing("number field '\($0.rawValue)'") }
    }

    /// The body's `round` as a whole number (true and false as 1 and 0),
    /// with what it holds for a finding.
    fileprivate func round() -> (value: UInt64?, shown: String) {
        if let u = lenient(.round, as: UInt64.self) { return (u, "\(u)") }
        if let b = lenient(.round, as: Bool.self) { return (b ? 1 : 0, "\(b)") }
        if let i = lenient(.round, as: Int64.self) { return (nil, "\(i)") }
        if let d = lenient(.round, as: Double.self) { return (nil, "\(d)") }
        if let s = lenient(.round, as: String.self) { return (nil, s) }
        return (nil, contains(.round) ? "a value that is not a number" : "none")
    }
}

private struct GenesisFields: KindFields {
    let certificate: String?
    init(from decoder: any Decoder) throws {
        certificate = try decoder.container(keyedBy: FieldKey.self).lenient(.certificate)
    }
    func problem(round: UInt64) -> LedgerVerifier.BodyProblem? { certificate == nil ? .missing("field 'certificate' (PEM)") : nil }
}

private struct UpdateFields: KindFields {
    let problems: LedgerVerifier.BodyProblem?
    let round: (value: UInt64?, shown: String)
    let updateHash: String?
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: FieldKey.self)
        problems = c.text(.baseHash, .updateHash, .codec) ?? c.number(.round, .samples)
        round = c.round()
        updateHash = c.lenient(.updateHash)
    }
    func problem(round expected: UInt64) -> LedgerVerifier.BodyProblem? {
        problems ?? (round.value == expected ? nil : LedgerVerifier.BodyProblem(expected: "body round \(expected)", found: round.shown))
    }
    var facts: LedgerVerifier.BodyFacts { .update(hash: updateHash) }
}

private struct AggregateFields: KindFields {
    let problems: LedgerVerifier.BodyProblem?
    let round: (value: UInt64?, shown: String)
    let included: [LedgerVerifier.Named]?
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: FieldKey.self)
        included = c.lenient(.included)
        problems = c.text(.rule, .resultHash)
            ?? (included == nil ? .missing("list field 'included'") : nil)
            ?? (c.lenient(.scores, as: [String: Ignored].self) == nil ? .missing("object field 'scores'") : nil)
        round = c.round()
    }
    func problem(round expected: UInt64) -> LedgerVerifier.BodyProblem? {
        problems ?? (round.value == expected ? nil : LedgerVerifier.BodyProblem(expected: "body round \(expected)", found: round.shown))
    }
    var facts: LedgerVerifier.BodyFacts { .aggregate(included: included) }
}

private struct CheckpointFields: KindFields {
    let heads: [LedgerVerifier.Head]?
    init(from decoder: any Decoder) throws {
        heads = try decoder.container(keyedBy: FieldKey.self).lenient(.heads)
    }
    func problem(round: UInt64) -> LedgerVerifier.BodyProblem? { heads == nil ? .missing("list field 'heads'") : nil }
    var facts: LedgerVerifier.BodyFacts { .checkpoint(heads: heads ?? []) }
}

private struct EvidenceFields: KindFields {
    let problems: LedgerVerifier.BodyProblem?
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: FieldKey.self)
        problems = c.text(.author) ?? c.number(.seq)
            ?? (c.lenient(.entries, as: [[String: Ignored]].self)?.count == 2 ? nil : .missing("list field 'entries' of two entries"))
    }
    func problem(round: UInt64) -> LedgerVerifier.BodyProblem? { problems }
}
