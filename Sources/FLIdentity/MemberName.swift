/// Rules for consortium and institution identifiers, and the certificate URI
/// that binds an institution to its consortium.
public enum MemberName {
    /// URI scheme of the SAN that names a member: `flpeer://<consortium>/<institution>`.
    public static let uriScheme = "flpeer"

    /// Throws unless `name` is 1–64 characters of a–z, 0–9, '.', '_' or '-'
    /// starting with a letter or digit. `what` names the field in the error.
    public static func validate(_ name: String, what: String) throws(IdentityError) {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else {
            throw IdentityError(.invalidName, "\(what) '\(name)' must be 1 to 64 characters long")
        }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard alnum(bytes[0]), bytes.allSatisfy({ alnum($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }) else {
            throw IdentityError(.invalidName, "\(what) '\(name)' may hold only lowercase letters, digits, '.', '_' and '-', and must start with a letter or digit")
        }
    }

    /// The SAN URI naming `institution` in `consortium`.
    public static func uri(consortium: String, institution: String) -> String {
        "\(uriScheme)://\(consortium)/\(institution)"
    }

    /// Splits a member URI into consortium and institution, or nil when it is not one.
    public static func parse(uri: String) -> (consortium: String, institution: String)? {
        let prefix = "\(uriScheme)://"
        guard uri.hasPrefix(prefix) else { return nil }
        let parts = uri.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let c = String(parts[0]), i = String(parts[1])
        guard (try? validate(c, what: "consortium")) != nil, (try? validate(i, what: "institution")) != nil else { return nil }
        return (c, i)
    }
}
