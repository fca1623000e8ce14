import ArgumentParser
import FLLedger
import Foundation

/// The coordinator's view: incentive credits per institution.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Incentive credits per institution, per round and in total (docs/credits.md).",
        discussion: """
            Derives every figure from the per-class scores signed into aggregate entries: in each class, an \
            institution's value for a round is the median of the other assessors' scores; its credit is the \
            sum of its positive class values, scaled down when the round's credits would exceed what the \
            federation learned in it; negative values are never paid and are shown apart. Run 'ledger-tool \
            verify' first: the report trusts the entries' integrity. With --verify, every credit a peer \
            recorded in its ledger is re-derived, and the command exits 1 if one does not.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, csv, json, html
    }

    @Argument(help: "The ledger file.")
    var ledger: String

    @Option(help: "Output format: \(Format.allCases.map(\.rawValue).joined(separator: ", ")).")
    var format: Format = .table

    @Option(help: "Write the report to this file instead of standard output.")
    var out: String?

    @Flag(help: "Re-derive every credit recorded in the ledger; exit 1 if any differs.")
    var verify = false

    func run() throws {
        let entries = try readEntries(ledger)
        let report = Credits.report(entries: entries)
        if report.unreadable > 0 {
            try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: \(report.unreadable) aggregate entries carry scores that are not per class (a scoring rule older than \(Credits.ruleVersion)); they are left out\n".utf8))
        }
        let text: String = switch format {
        case .table: Self.table(report)
        case .csv: Self.csv(report)
        case .json: try Self.json(report)
        case .html: Self.html(report, title: (ledger as NSString).lastPathComponent)
        }
        if let out {
            do {
                try text.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                try? FileHandle.standardError.write(contentsOf: Data("ledger-tool: cannot write \(out): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
        } else {
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
        }
        if verify {
            let err = FileHandle.standardError
            for m in report.mismatches { try? err.write(contentsOf: Data("ledger-tool: \(m)\n".utf8)) }
            if !report.mismatches.isEmpty {
                try? err.write(contentsOf: Data("ledger-tool: \(report.mismatches.count) of \(report.recordedChecked) recorded credits do not re-derive\n".utf8))
                throw ExitCode(1)
            }
            try? err.write(contentsOf: Data("ledger-tool: verified: all \(report.recordedChecked) recorded credits re-derive from the entries; totals are sums of the round credits\n".utf8))
        }
    }

    /// Credits are whole micro-nats; negative parts may be halves (a median of an even count).
    static func number(_ x: Double) -> String { String(format: "%.1f", x) }

    static func table(_ r: Credits.Report) -> String {
        var lines = ["credits (\(Credits.ruleVersion)), \(r.rounds.count) rounds"]
        let header = ["institution", "total", "share", "negative", "rounds", "screened", "gated", "evidence"]
        var rows = [header]
        for i in r.institutions {
            let gated = i.gated.isEmpty ? "-" : i.gated.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows.append([i.id, number(i.total), String(format: "%.1f%%", 100 * i.share), number(i.negative), "\(i.roundsContributed)/\(r.rounds.count)",
                         "\(i.timesScreened)", gated, "\(i.evidence)"])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.enumerated().map { c, cell in c == 0 || c == 6 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[c] - cell.count) + cell }.joined(separator: "  "))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func csv(_ r: Credits.Report) -> String {
        var lines = [(["institution", "total", "share", "negative", "rounds_contributed", "times_screened", "evidence"] + r.rounds.map { "round_\($0)" }).joined(separator: ",")]
        for i in r.institutions {
            let fields = [i.id, "\(i.total)", "\(i.share)", "\(i.negative)", "\(i.roundsContributed)", "\(i.timesScreened)", "\(i.evidence)"]
                + r.rounds.map { i.rounds[$0].map { "\($0)" } ?? "" }
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The `--format json` report.
    struct JSONReport: Encodable {
        struct Line: Encodable {
            let id: String
            let total: Double
            let negative: Double
            let share: Double
            /// Round (as text) → paid credit.
            let rounds: [String: Double]
            let roundsContributed: Int
            let timesScreened: Int
            let gated: [String: Int]
            let evidence: Int

            enum CodingKeys: String, CodingKey {
                case id, total, negative, share, rounds, gated, evidence
                case roundsContributed = "rounds_contributed", timesScreened = "times_screened"
            }
        }
        let rule: String
        let rounds: [UInt64]
        let institutions: [Line]
        let recordedCreditsChecked: Int
        let mismatches: [String]

        enum CodingKeys: String, CodingKey {
            case rule, rounds, institutions, mismatches
            case recordedCreditsChecked = "recorded_credits_checked"
        }

        init(_ r: Credits.Report) {
            rule = Credits.ruleVersion
            rounds = r.rounds
            institutions = r.institutions.map { i in
                Line(id: i.id, total: i.total, negative: i.negative, share: i.share,
                     rounds: Dictionary(uniqueKeysWithValues: i.rounds.map { ("\($0.key)", $0.value) }),
                     roundsContributed: i.roundsContributed, timesScreened: i.timesScreened, gated: i.gated, evidence: i.evidence)
            }
            recordedCreditsChecked = r.recordedChecked
            mismatches = r.mismatches.map(\.description)
        }
    }

    static func json(_ r: Credits.Report) throws -> String {
        try jsonText(JSONReport(r)) + "\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    static func color(_ i: Int) -> String { palette[i % palette.count] }
    /// The width of every chart, in pixels.
    static let chartWidth = 640.0

    /// Cumulative credits over rounds: one line per institution.
    static func cumulativeChart(_ r: Credits.Report) -> String {
        let insts = r.institutions
        let w = chartWidth, h = 300.0, left = 50.0, bottom = 30.0
        let cumulative = insts.map { i -> [Double] in
            var sum = 0.0
            return r.rounds.map { sum += max(0, i.rounds[$0] ?? 0); return sum }
        }
        let maxY = max(cumulative.flatMap { $0 }.max() ?? 0, 1e-9)
        let n = max(r.rounds.count - 1, 1)
        func x(_ k: Int) -> Double { left + (w - left - 10) * Double(k) / Double(n) }
        func y(_ v: Double) -> Double { h - bottom - (h - bottom - 10) * v / maxY }
        var line = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"cumulative credits over rounds\">"
        line += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - 10)\" y2=\"\(h - bottom)\" stroke=\"#444\"/><line x1=\"\(left)\" y1=\"10\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"#444\"/>"
        line += "<text x=\"\(left - 5)\" y=\"15\" text-anchor=\"end\" font-size=\"11\">\(number(maxY))</text><text x=\"\(left - 5)\" y=\"\(h - bottom)\" text-anchor=\"end\" font-size=\"11\">0</text>"
        if let first = r.rounds.first, let last = r.rounds.last {
            line += "<text x=\"\(left)\" y=\"\(h - 10)\" font-size=\"11\">round \(first)</text><text x=\"\(w - 10)\" y=\"\(h - 10)\" text-anchor=\"end\" font-size=\"11\">round \(last)</text>"
        }
        for (k, series) in cumulative.enumerated() where !series.isEmpty {
            let points = series.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
            line += "<polyline fill=\"none\" stroke=\"\(color(k))\" stroke-width=\"2\" points=\"\(points)\"><title>\(escape(insts[k].id))</title></polyline>"
        }
        return line + "</svg>"
    }

    /// Each institution's share of the total credit, as bars.
    static func shareBars(_ r: Credits.Report) -> String {
        let insts = r.institutions
        let w = chartWidth, barH = 22.0
        var bars = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(barH * Double(insts.count) + 10))\" role=\"img\" aria-label=\"shares of the total credit\">"
        for (k, i) in insts.enumerated() {
            let yy = 5 + barH * Double(k)
            bars += "<text x=\"0\" y=\"\(yy + 15)\" font-size=\"12\">\(escape(i.id))</text>"
            bars += "<rect x=\"120\" y=\"\(yy + 3)\" width=\"\((w - 200) * i.share)\" height=\"\(barH - 6)\" fill=\"\(color(k))\"/>"
            bars += "<text x=\"\(125 + (w - 200) * i.share)\" y=\"\(yy + 15)\" font-size=\"12\">\(String(format: "%.1f%%", 100 * i.share))</text>"
        }
        return bars + "</svg>"
    }

    /// Institution × round: credits in green (white: zero), grey: not heard.
    static func heatmap(_ r: Credits.Report) -> String {
        let insts = r.institutions
        let cell = max(8.0, min(24.0, (chartWidth - 120) / Double(max(r.rounds.count, 1))))
        let maxAbs = max(insts.flatMap { $0.rounds.values.map(abs) }.max() ?? 0, 1e-9)
        var heat = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(120 + cell * Double(r.rounds.count) + 10))\" height=\"\(Int(cell * Double(insts.count) + 30))\" role=\"img\" aria-label=\"credit per institution and round\">"
        for (k, i) in insts.enumerated() {
            heat += "<text x=\"0\" y=\"\(cell * Double(k) + cell * 0.75)\" font-size=\"11\">\(escape(i.id))</text>"
            for (c, round) in r.rounds.enumerated() {
                let v = i.rounds[round]
                let a = v.map { min(1, abs($0) / maxAbs) } ?? 0
                let fill = v == nil ? "#eeeeee" : (v! >= 0 ? "rgba(44,160,44,\(String(format: "%.3f", 0.1 + 0.9 * a)))" : "rgba(214,39,40,\(String(format: "%.3f", 0.1 + 0.9 * a)))")
                heat += "<rect x=\"\(120 + cell * Double(c))\" y=\"\(cell * Double(k))\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(fill)\"><title>\(escape(i.id)), round \(round): \(v.map(number) ?? "not heard")</title></rect>"
            }
        }
        return heat + "<text x=\"120\" y=\"\(cell * Double(insts.count) + 20)\" font-size=\"11\">rounds \(r.rounds.first.map { "\($0)" } ?? "-")–\(r.rounds.last.map { "\($0)" } ?? "-") (green: credit, grey: not heard)</text></svg>"
    }

    /// One self-contained page: a table and three inline SVG charts
    /// (cumulative credits over rounds, shares, an institution × round heatmap).
    static func html(_ r: Credits.Report, title: String) -> String {
        let insts = r.institutions
        var rows = ""
        for i in insts {
            rows += "<tr><td>\(escape(i.id))</td><td>\(number(i.total))</td><td>\(String(format: "%.1f%%", 100 * i.share))</td><td>\(number(i.negative))</td>"
            rows += "<td>\(i.roundsContributed)/\(r.rounds.count)</td><td>\(i.timesScreened)</td><td>\(escape(i.gated.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))</td><td>\(i.evidence)</td></tr>\n"
        }
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>flpeer credits: \(escape(title))</title>
            <style>
            body { font-family: sans-serif; margin: 2em; color: #222; }
            table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
            td:first-child, th:first-child { text-align: left; }
            </style>
            </head>
            <body>
            <h1>Incentive credits</h1>
            <p>Ledger \(escape(title)); rule \(Credits.ruleVersion); \(r.rounds.count) rounds. In each class, an institution's value for a round is the median of the other assessors' Shapley scores for its update; its credit is the sum of its positive class values, scaled down when a round's credits would exceed what the federation learned in it. Negative values are never paid.</p>
            <table>
            <tr><th>institution</th><th>total</th><th>share</th><th>negative</th><th>rounds contributed</th><th>times screened</th><th>gated</th><th>evidence</th></tr>
            \(rows)</table>
            <h2>Cumulative credits over rounds</h2>
            \(cumulativeChart(r))
            <p>\(insts.enumerated().map { "<span style=\"color:\(color($0.offset))\">■</span> \(escape($0.element.id))" }.joined(separator: " &nbsp; "))</p>
            <h2>Shares</h2>
            \(shareBars(r))
            <h2>Credit per institution and round</h2>
            \(heatmap(r))
            </body>
            </html>

            """
    }
}
