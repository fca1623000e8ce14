import Foundation

/// Why a CSV file could not be loaded. Every case names the file, and row
/// errors name the 1-based line and the column.
public struct DataError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let column: String?
    public let reason: String

    public init(file: String, line: Int?, column: String?, reason: String) {
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
    }

    public var description: String {
        var s = file
        if let line { s += ", line \(line)" }
        if let column { s += ", column '\(column)'" }
        return s + ": " + reason
    }
}

/// Loads numeric CSV files: a header row, one label column (any text or
/// numbers; classes are sorted numerically when all labels are numbers), and
/// numeric feature columns.
public enum CSVLoader {
    /// Loads `path`, taking `labelColumn` as the label.
    /// With `classNames`, labels are indexed in that order (so that every
    /// institution agrees, even one whose file lacks some classes) and any
    /// other label is an error.
    public static func load(path: String, labelColumn: String = "label", classNames: [String]? = nil) throws(DataError) -> Dataset {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw DataError(file: path, line: nil, column: nil, reason: "is a folder, not a CSV file; name the CSV file inside it")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DataError(file: path, line: nil, column: nil, reason: "cannot be read (\((error as NSError).localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DataError(file: path, line: nil, column: nil, reason: "is not UTF-8 text")
        }
        return try parse(text, file: path, labelColumn: labelColumn, classNames: classNames)
    }

    /// Parses CSV text; `file` is used in error messages.
    public static func parse(_ text: String, file: String, labelColumn: String = "label", classNames fixed: [String]? = nil) throws(DataError) -> Dataset {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        while let last = lines.last, last.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeLast() }
        guard let headerLine = lines.first else {
            throw DataError(file: file, line: nil, column: nil, reason: "is empty; expected a header row")
        }
        let header = splitFields(headerLine)
        guard let labelIndex = header.firstIndex(of: labelColumn) else {
            throw DataError(file: file, line: 1, column: nil,
                            reason: "the header has no column named '\(labelColumn)' (columns: \(header.prefix(8).joined(separator: ", "))\(header.count > 8 ? ", …" : ""))")
        }
        var seen = Set<String>()
        for name in header where !seen.insert(name).inserted {
            throw DataError(file: file, line: 1, column: name, reason: "the column name appears twice in the header")
        }
        guard header.count >= 2 else {
            throw DataError(file: file, line: 1, column: nil, reason: "needs at least one feature column besides '\(labelColumn)'")
        }
        let featureNames = header.enumerated().filter { $0.offset != labelIndex }.map(\.element)
        var features = [Float]()
        features.reserveCapacity((lines.count - 1) * featureNames.count)
        var rawLabels = [String]()
        for lineIndex in 1..<lines.count {
            let lineNumber = lineIndex + 1
            let line = lines[lineIndex]
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                throw DataError(file: file, line: lineNumber, column: nil, reason: "the row is empty")
            }
            let fields = splitFields(line)
            guard fields.count == header.count else {
                throw DataError(file: file, line: lineNumber, column: nil,
                                reason: "the row has \(fields.count) fields but the header has \(header.count)")
            }
            for (c, field) in fields.enumerated() {
                if c == labelIndex {
                    guard !field.isEmpty else {
                        throw DataError(file: file, line: lineNumber, column: header[c], reason: "the label is empty")
                    }
                    rawLabels.append(field)
                    continue
                }
                guard let v = Float(field), v.isFinite else {
                    let shown = field.isEmpty ? "an empty field" : "'\(field.prefix(40))'"
                    throw DataError(file: file, line: lineNumber, column: header[c], reason: "\(shown) is not a finite number")
                }
                features.append(v)
            }
        }
        guard !rawLabels.isEmpty else {
            throw DataError(file: file, line: nil, column: nil, reason: "has a header but no data rows")
        }
        if let fixed {
            let index = Dictionary(fixed.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            var labels: [Int] = []
            labels.reserveCapacity(rawLabels.count)
            for (i, raw) in rawLabels.enumerated() {
                guard let l = index[raw] else {
                    throw DataError(file: file, line: i + 2, column: labelColumn, reason: "label '\(raw.prefix(40))' is not one of the plan's classes (\(fixed.prefix(12).joined(separator: ", ")))")
                }
                labels.append(l)
            }
            return Dataset(featureNames: featureNames, labelName: labelColumn, classNames: fixed, features: features, labels: labels)
        }
        let distinct = Array(Set(rawLabels))
        let classNames: [String]
        if distinct.allSatisfy({ Double($0) != nil }) {
            classNames = distinct.sorted { Double($0)! < Double($1)! }
        } else {
            classNames = distinct.sorted()
        }
        guard classNames.count >= 2 else {
            throw DataError(file: file, line: nil, column: labelColumn, reason: "has only one class ('\(classNames[0])'); a classifier needs at least two")
        }
        let index = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        return Dataset(featureNames: featureNames, labelName: labelColumn, classNames: classNames,
                       features: features, labels: rawLabels.map { index[$0]! })
    }

    /// Splits one line on commas; fields may be wrapped in double quotes.
    static func splitFields(_ line: Substring) -> [String] {
        var fields: [String] = []
        var current = ""
        var quoted = false
        var iterator = line.makeIterator()
        while let ch = iterator.next() {
            if quoted {
                if ch == "\"" { quoted = false } else { current.append(ch) }
            } else if ch == "\"" {
                quoted = true
            } else if ch == "," {
                fields.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(ch)
            }
        }
        fields.append(current.trimmingCharacters(in: .whitespacesAndNewlines))
        return fields
    }

    /// The CSV text of a data set (header, then rows with the label last as
    /// its original text), as `flpeer data split` writes it.
    public static func render(_ data: Dataset) -> String {
        var out = (data.featureNames + [data.labelName]).joined(separator: ",") + "\n"
        let f = data.featureCount
        for r in 0..<data.rows {
            for c in 0..<f {
                out += formatNumber(data.features[r * f + c])
                out += ","
            }
            out += data.classNames[data.labels[r]]
            out += "\n"
        }
        return out
    }

    /// Shortest text that reads back as the same Float32 (integers without ".0").
    static func formatNumber(_ v: Float) -> String {
        if v == v.rounded(), abs(v) < 1e7 { return String(Int(v)) }
        return "\(v)"
    }
}
