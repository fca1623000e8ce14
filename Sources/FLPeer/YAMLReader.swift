import Foundation
import Yams

/// Typed access to a YAML mapping that turns every problem into a
/// `ConfigError` naming the file, the key path and the line.
struct YAMLReader {
    let file: String
    let node: Node
    let path: String

    /// Parses a file whose top level must be a mapping.
    static func load(_ file: String) throws(ConfigError) -> YAMLReader {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file, key: "", problem: "cannot be read (\((error as NSError).localizedDescription))", fix: "check the path and its permissions")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw ConfigError(file: file, key: "", problem: "is not valid YAML (\(e.shortDescription))", fix: "fix the YAML syntax")
        } catch {
            throw ConfigError(file: file, key: "", problem: "is not valid YAML", fix: "fix the YAML syntax")
        }
        guard let node, node.mapping != nil else {
            throw ConfigError(file: file, key: "", problem: "is not a YAML mapping of keys to values", fix: "write one 'key: value' per line")
        }
        return YAMLReader(file: file, node: node, path: "")
    }

    var line: Int? { node.mark.map { $0.line } }

    func error(_ key: String, _ problem: String, _ fix: String, at n: Node? = nil) -> ConfigError {
        ConfigError(file: file, key: key, line: (n ?? node).mark?.line, problem: problem, fix: fix)
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Rejects keys outside `allowed` (catches typos).
    func onlyKeys(_ allowed: Set<String>) throws(ConfigError) {
        guard let mapping = node.mapping else { return }
        for (k, v) in mapping {
            let name = k.string ?? "?"
            if !allowed.contains(name) {
                throw error(keyPath(name), "is not a known setting", "remove it or use one of: \(allowed.sorted().joined(separator: ", "))", at: v)
            }
        }
    }

    func child(_ key: String) -> Node? { node.mapping?[key] }

    func string(_ key: String, example: String) throws(ConfigError) -> String {
        guard let v = child(key) else { throw error(keyPath(key), "is missing", "add '\(key): \(example)'") }
        guard let s = v.string, v.scalar != nil, !s.isEmpty else {
            throw error(keyPath(key), "must be a non-empty text value", "write e.g. '\(key): \(example)'", at: v)
        }
        return s
    }

    func optionalString(_ key: String, example: String) throws(ConfigError) -> String? {
        child(key) == nil ? nil : try string(key, example: example)
    }

    func int(_ key: String, default fallback: Int? = nil, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let v = child(key) else {
            if let fallback { return fallback }
            throw error(keyPath(key), "is missing", "add '\(key): \(range.lowerBound)' or another whole number in \(range)")
        }
        guard let i = v.int, range.contains(i) else {
            throw error(keyPath(key), "is '\(v.string ?? "?")', not a whole number in \(range)", "write a whole number from \(range.lowerBound) to \(range.upperBound)", at: v)
        }
        return i
    }

    func double(_ key: String, default fallback: Double, valid: (Double) -> Bool, expectation: String) throws(ConfigError) -> Double {
        guard let v = child(key) else { return fallback }
        guard let d = v.float, valid(d) else {
            throw error(keyPath(key), "is '\(v.string ?? "?")', not \(expectation)", "write \(expectation), e.g. '\(key): \(fallback)'", at: v)
        }
        return d
    }

    func choice(_ key: String, default fallback: String, options: [String]) throws(ConfigError) -> String {
        guard let v = child(key) else { return fallback }
        guard let s = v.string, options.contains(s) else {
            throw error(keyPath(key), "is '\(v.string ?? "?")'", "use one of: \(options.joined(separator: ", "))", at: v)
        }
        return s
    }

    /// `choice` for a value named by an enum's raw values, in declaration order.
    func choice<T: RawRepresentable & CaseIterable>(_ key: String, default fallback: T) throws(ConfigError) -> T where T.RawValue == String {
        let name = try choice(key, default: fallback.rawValue, options: T.allCases.map(\.rawValue))
        return T(rawValue: name) ?? fallback
    }

    func mapping(_ key: String) throws(ConfigError) -> YAMLReader? {
        guard let v = child(key) else { return nil }
        guard v.mapping != nil else { throw error(keyPath(key), "must be a mapping of settings", "indent 'name: value' lines under '\(key):'", at: v) }
        return YAMLReader(file: file, node: v, path: keyPath(key))
    }

    func sequence(_ key: String) throws(ConfigError) -> [(YAMLReader, Node)]? {
        guard let v = child(key) else { return nil }
        guard let seq = v.sequence else { throw error(keyPath(key), "must be a list", "write one '- …' item per line under '\(key):'", at: v) }
        return seq.enumerated().map { (YAMLReader(file: file, node: $0.element, path: "\(keyPath(key))[\($0.offset)]"), $0.element) }
    }

    /// A path relative to this file's directory, made absolute.
    func resolve(_ relative: String) -> String {
        if relative.hasPrefix("/") { return relative }
        let dir = (file as NSString).deletingLastPathComponent
        return ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent(relative)
    }

    /// Requires an existing file at the resolved path.
    func existingFile(_ key: String, example: String) throws(ConfigError) -> String {
        let value = try string(key, example: example)
        let resolved = resolve(value)
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isFolder) else {
            throw error(keyPath(key), "names '\(value)', which does not exist (looked for \(resolved))", "fix the path (relative paths start at this file's folder) or create the file", at: child(key))
        }
        guard !isFolder.boolValue else {
            throw error(keyPath(key), "names '\(value)', which is a folder, not a file", "name the file inside it, e.g. '\(key): \(example)'", at: child(key))
        }
        return resolved
    }

    /// A folder path (resolved) that is absent, to be created, or an existing folder, never a file.
    func folder(_ key: String, example: String) throws(ConfigError) -> String {
        let value = try string(key, example: example)
        let resolved = resolve(value)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: resolved, isDirectory: &isFolder), !isFolder.boolValue {
            throw error(keyPath(key), "names '\(value)', which is a file, not a folder", "name a folder (it is created if absent), e.g. '\(key): \(example)'", at: child(key))
        }
        return resolved
    }
}

extension YamlError {
    var shortDescription: String {
        String(describing: self).split(separator: "\n").first.map(String.init) ?? "syntax error"
    }
}
