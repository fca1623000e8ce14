import FLCore
import Foundation
import Testing

@Suite("data")
struct DataTests {
    @Test func bundledDataSetsLoadWithTheirShapes() throws {
        let bc = try CSVLoader.load(path: bundledData("breast_cancer.csv"))
        #expect(bc.rows == 569 && bc.featureCount == 30 && bc.classNames == ["0", "1"])
        let digits = try CSVLoader.load(path: bundledData("digits.csv"))
        #expect(digits.rows == 1797 && digits.featureCount == 64 && digits.classCount == 10)
        #expect(digits.classNames == (0..<10).map(String.init))
    }

    @Test func csvErrorsNameTheFileLineAndColumn() throws {
        let file = "clinic.csv"
        func error(_ text: String, label: String = "label") -> DataError? {
            do { _ = try CSVLoader.parse(text, file: file, labelColumn: label); return nil } catch { return error }
        }
        let bad = error("a,b,label\n1,2,0\n3,x7,1\n")
        #expect(bad?.line == 3 && bad?.column == "b")
        #expect(bad?.description == "clinic.csv, line 3, column 'b': 'x7' is not a finite number")
        #expect(error("a,b,label\n1,2,0\n1,2\n")?.line == 3)
        #expect(error("a,b,label\n1,,0\n")?.column == "b")
        #expect(error("a,b,label\n1,nan,0\n")?.line == 2)
        #expect(error("a,b,label\n1,2,\n")?.column == "label")
        #expect(error("a,b,y\n1,2,0\n")?.reason.contains("no column named 'label'") == true)
        #expect(error("a,a,label\n1,2,0\n")?.column == "a")
        #expect(error("a,label\n1,0\n2,0\n")?.reason.contains("only one class") == true)
        #expect(error("")?.line == nil)
        #expect(throws: DataError.self) { try CSVLoader.load(path: "/nonexistent/file.csv") }
        let folder = FileManager.default.temporaryDirectory.path
        #expect { try CSVLoader.load(path: folder) } throws: { "\($0)".contains("is a folder, not a CSV file; name the CSV file inside it") }
    }

    @Test func labelsMayBeTextOrNumbersAndAnyColumn() throws {
        let d = try CSVLoader.parse("diagnosis,x\nB,1\nM,2\r\nB,3\n", file: "t.csv", labelColumn: "diagnosis")
        #expect(d.classNames == ["B", "M"] && d.labels == [0, 1, 0] && d.features == [1, 2, 3] && d.featureNames == ["x"])
        let n = try CSVLoader.parse("x,label\n1,10\n2,9\n3,-1\n", file: "t.csv")
        #expect(n.classNames == ["-1", "9", "10"] && n.labels == [2, 1, 0])
    }

    @Test func renderedCSVReadsBackIdentically() throws {
        let d = try CSVLoader.load(path: bundledData("breast_cancer.csv"))
        let back = try CSVLoader.parse(CSVLoader.render(d), file: "r.csv")
        #expect(back == d)
    }

    @Test func stratifiedSplitKeepsClassProportions() throws {
        let d = try CSVLoader.load(path: bundledData("digits.csv"))
        let (train, test) = Splitting.stratified(d, fraction: 0.2, seed: 4)
        #expect(Set(train).isDisjoint(with: test) && train.count + test.count == d.rows)
        let h = d.classHistogram(), ht = d.subset(test).classHistogram()
        for k in 0..<10 { #expect(abs(Double(ht[k]) - 0.2 * Double(h[k])) <= 0.5) }
        #expect(Splitting.stratified(d, fraction: 0.2, seed: 4) == (train, test), "same seed, same split")
        let tvt = Splitting.trainValidationTest(d, validation: 0.1, test: 0.2, seed: 1)
        #expect(Set(tvt.train + tvt.validation + tvt.test).count == d.rows)
        #expect(tvt.train.count + tvt.validation.count + tvt.test.count == d.rows)
    }

    @Test("Dirichlet partition keeps every row exactly once", arguments: [(1, 0.5), (5, 0.5), (10, 0.1), (20, 1.0), (7, 100.0)])
    func dirichletKeepsEveryRowOnce(parts: Int, alpha: Double) throws {
        let d = try CSVLoader.load(path: bundledData("digits.csv"))
        let subset = Array(stride(from: 0, to: d.rows, by: 1)).filter { $0 % 5 != 0 }
        let split = try Splitting.dirichlet(d, indices: subset, parts: parts, alpha: alpha, minPartSize: 10, seed: 11)
        #expect(split.count == parts)
        let all = split.flatMap { $0 }
        #expect(all.count == subset.count)
        #expect(Set(all) == Set(subset))
        #expect(split.allSatisfy { $0.count >= 10 })
        let again = try Splitting.dirichlet(d, indices: subset, parts: parts, alpha: alpha, minPartSize: 10, seed: 11)
        #expect(again == split)
    }

    @Test func smallAlphaSkewsLabelsMoreThanLargeAlpha() throws {
        let d = try CSVLoader.load(path: bundledData("digits.csv"))
        func skew(_ alpha: Double) throws -> Double {
            // Mean over parts of the largest class share: 0.1 is uniform, 1 is one class.
            let split = try Splitting.dirichlet(d, parts: 5, alpha: alpha, seed: 2)
            return split.map { rows in Double(d.subset(rows).classHistogram().max()!) / Double(rows.count) }.reduce(0, +) / 5
        }
        let skewed = try skew(0.1), uniform = try skew(100)
        #expect(skewed > uniform + 0.2)
    }

    @Test func impossiblePartitionsAreRefusedWithAReason() throws {
        let d = try CSVLoader.load(path: bundledData("breast_cancer.csv"))
        #expect(throws: SplitError.self) { try Splitting.dirichlet(d, parts: 100, alpha: 0.5, minPartSize: 10, seed: 0) }
        #expect(throws: SplitError.self) { try Splitting.dirichlet(d, parts: 3, alpha: 0, seed: 0) }
        #expect(throws: SplitError.self) { try Splitting.dirichlet(d, parts: 50, alpha: 0.01, minPartSize: 10, seed: 0) }
    }

    @Test func standardizerUsesOnlyTheDataItWasFittedOn() throws {
        let train = try CSVLoader.parse("a,b,label\n1,5,0\n3,5,1\n", file: "t")
        let test = Dataset(featureNames: ["a", "b"], labelName: "label", classNames: ["0", "1"], features: [2, 9], labels: [0])
        let s = Standardizer(fitting: train)
        #expect(s.means == [2, 5] && s.stds == [1, 1])  // constant column gets std 1
        #expect(s.transform(test).features == [0, 4])
    }
}

@Suite("metrics")
struct MetricsTests {
    @Test func confusionPrecisionRecallAndLogLoss() {
        // 3 classes, 4 rows; predictions 0, 1, 1, 2 for labels 0, 1, 2, 2.
        let probs: [Float] = [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.1, 0.6, 0.3, 0.1, 0.2, 0.7]
        let m = ClassificationMetrics(labels: [0, 1, 2, 2], probabilities: probs, classes: 3)
        #expect(m.confusion == [[1, 0, 0], [0, 1, 0], [0, 1, 1]])
        #expect(m.accuracy == 0.75)
        #expect(m.precision == [1, 0.5, 1] && m.recall == [1, 1, 0.5])
        #expect(abs(m.macroF1 - (1 + 2.0 / 3 + 2.0 / 3) / 3) < 1e-12)
        let expectedLoss = -(log(0.8) + log(0.7) + log(0.3) + log(0.7)) / 4
        #expect(abs(m.logLoss - expectedLoss) < 1e-6)
        #expect(m.rocAUC == nil)
    }

    @Test func aucMatchesPairwiseCountWithTies() {
        var rng = SeededGenerator(seed: 8)
        let labels = (0..<200).map { _ in rng.nextInt(below: 2) }
        let scores = labels.map { Double(rng.nextInt(below: 10) + $0 * 3) / 10 }
        var wins = 0.0, pairs = 0.0
        for i in labels.indices where labels[i] == 1 {
            for j in labels.indices where labels[j] == 0 {
                pairs += 1
                wins += scores[i] > scores[j] ? 1 : (scores[i] == scores[j] ? 0.5 : 0)
            }
        }
        let auc = ClassificationMetrics.auc(labels: labels, scores: scores)
        #expect(abs(auc! - wins / pairs) < 1e-12)
        #expect(ClassificationMetrics.auc(labels: [1, 1], scores: [0.2, 0.3]) == nil)
    }
}
