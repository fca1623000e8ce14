/// A mistake in a configuration file, reported as one sentence that names
/// the file, the key and what to do.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let file: String
    /// Dotted path of the key, e.g. `members[1].address`; empty for the whole file.
    public let key: String
    public let line: Int?
    public let problem: String
    public let fix: String

    public init(file: String, key: String, line: Int? = nil, problem: String, fix: String) {
        self.file = file
        self.key = key
        self.line = line
        self.problem = problem
        self.fix = fix
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        let subject = key.isEmpty ? place : "\(place): key '\(key)'"
        return "\(subject) \(problem); \(fix)."
    }
}
