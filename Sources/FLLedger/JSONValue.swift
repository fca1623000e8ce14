import Foundation

/// Any JSON value, as parsed from a body that may not be one of the typed
/// bodies: for rules that must tell how a number was written (the credit
/// rule counts only integer literals; `JSONDecoder` reads `5.0` and `1e3`
/// as integers too) and for re-encoding a body as it is (`ledger-tool export`).
public enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number written without fraction or exponent that fits in 64 bits (signed).
    case integer(Int64)
    /// Any other number.
    case number(Double)
    /// A string.
    case string(String)
    /// A list.
    case array([JSONValue])
    /// An object (keys unordered).
    case object([String: JSONValue])

    /// The JSON object or list in `bytes`, or nil when they hold neither.
    public init?(parsing bytes: [UInt8]) {
        // Foundation's parser tells integer literals from others (its number's
        // type), which is the one thing the typed decoder cannot.
        guard let tree = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return nil }
        self.init(foundation: tree)
    }

    /// The body in `bytes` if it is a JSON object, else nil.
    public static func object(parsing bytes: [UInt8]) -> [String: JSONValue]? {
        JSONValue(parsing: bytes)?.object
    }

    private init(foundation value: Any) {
        switch value {
        case let n as NSNumber:
            self = Self.number(n)
        case let s as String:
            self = .string(s)
        case let list as [Any]:
            self = .array(list.map(JSONValue.init(foundation:)))
        case let dict as [String: Any]:
            self = .object(dict.mapValues(JSONValue.init(foundation:)))
        default:
            self = .null
        }
    }

    /// Foundation reads true/false as numbers of type "c", integer literals
    /// as signed or unsigned integer types, and other numbers as doubles,
    /// or, with 17 digits or more, as decimal numbers, whose `doubleValue`
    /// is not correctly rounded: those are read again from their digits.
    private static func number(_ n: NSNumber) -> JSONValue {
        if n is NSDecimalNumber { return .number(EntryBody.finite(Double(n.stringValue) ?? n.doubleValue)) }
        switch String(UnicodeScalar(UInt8(bitPattern: n.objCType.pointee))) {
        case "c", "B": return .bool(n.boolValue)
        case "s", "i", "l", "q": return .integer(n.int64Value)
        case "C", "S", "I", "L", "Q": return n.uint64Value <= UInt64(Int64.max) ? .integer(n.int64Value) : .number(n.doubleValue)
        default: return .number(EntryBody.finite(n.doubleValue))
        }
    }

    /// The member `key` of an object; nil for other values and missing members.
    public subscript(key: String) -> JSONValue? { object?[key] }

    /// The members, if this is an object.
    public var object: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    /// The elements, if this is a list.
    public var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    /// The text, if this is a string.
    public var string: String? { if case .string(let s) = self { s } else { nil } }
    /// The value, if this is an integer literal.
    public var integer: Int64? { if case .integer(let i) = self { i } else { nil } }
    /// Any number (not true or false) as a double.
    public var number: Double? {
        switch self {
        case .integer(let i): Double(i)
        case .number(let d): d
        default: nil
        }
    }

    /// The elements of a list whose elements are all strings, else nil.
    public var strings: [String]? {
        guard let a = array else { return nil }
        let s = a.compactMap(\.string)
        return s.count == a.count ? s : nil
    }

    /// The members of an object whose values are all strings, else nil.
    public var stringValues: [String: String]? {
        guard let o = object else { return nil }
        let s = o.compactMapValues(\.string)
        return s.count == o.count ? s : nil
    }
}

extension JSONValue: Encodable {
    /// The value as JSON; with `EntryBody`'s encoder, keys sorted at every level.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .integer(let i): try c.encode(i)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
