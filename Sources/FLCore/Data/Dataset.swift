/// A labelled data set: a row-major Float32 feature matrix and class indices.
public struct Dataset: Sendable, Equatable {
    /// Feature column names, in order.
    public let featureNames: [String]
    /// Name of the label column in the source file.
    public let labelName: String
    /// Original label text of each class index (class i is `classNames[i]`).
    public let classNames: [String]
    /// rows × featureCount values, row-major.
    public var features: [Float]
    /// Class index of each row, in 0..<classCount.
    public var labels: [Int]

    public init(featureNames: [String], labelName: String, classNames: [String], features: [Float], labels: [Int]) {
        precondition(features.count == labels.count * featureNames.count, "feature matrix does not match the row count")
        precondition(labels.allSatisfy { $0 >= 0 && $0 < classNames.count }, "label out of range")
        self.featureNames = featureNames
        self.labelName = labelName
        self.classNames = classNames
        self.features = features
        self.labels = labels
    }

    public var rows: Int { labels.count }
    public var featureCount: Int { featureNames.count }
    public var classCount: Int { classNames.count }

    /// The rows at `indices`, in that order, with the same columns and classes.
    public func subset(_ indices: [Int]) -> Dataset {
        let f = featureCount
        var x = [Float]()
        x.reserveCapacity(indices.count * f)
        for i in indices { x.append(contentsOf: features[(i * f)..<((i + 1) * f)]) }
        return Dataset(featureNames: featureNames, labelName: labelName, classNames: classNames,
                       features: x, labels: indices.map { labels[$0] })
    }

    /// Number of rows of each class.
    public func classHistogram() -> [Int] {
        var h = [Int](repeating: 0, count: classCount)
        for y in labels { h[y] += 1 }
        return h
    }

    /// Row indices grouped by class.
    public func indicesByClass() -> [[Int]] {
        var groups = [[Int]](repeating: [], count: classCount)
        for (i, y) in labels.enumerated() { groups[y].append(i) }
        return groups
    }
}
