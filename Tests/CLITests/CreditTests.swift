import Foundation
import Testing

@Suite("incentive credits from a real run")
struct CreditTests {
    /// Four members over mutual TLS, one a free-rider (sends back the model it
    /// received). Every honest peer scores the updates it included and signs
    /// the scores into its aggregate entries; the free-rider earns nothing
    /// while the honest members earn credit; every recorded credit re-derives
    /// (`report --verify`); the independent script agrees exactly with the
    /// report; the HTML page parses, loads nothing from elsewhere and names
    /// every institution.
    @Test func creditsRewardContributorsAndReDeriveEverywhere() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = dir.appendingPathComponent("demo").path
        let r = try await flpeer("demo", "--peers", "4", "--rounds", "4", "--byzantine", "1", "--attack", "free-rider", "--seed", "1", "--dir", root, "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "stdout: \(r.stdout)")
        let peers = try #require(summary["peers"] as? [[String: Any]])
        let credit = Dictionary(uniqueKeysWithValues: peers.compactMap { p in (p["id"] as? String).map { ($0, p["credit"] as? Double ?? -1) } })
        let honest = ["inst01", "inst02", "inst03"].map { credit[$0] ?? -1 }
        let honestMean = honest.reduce(0, +) / 3
        #expect(honest.allSatisfy { $0 > 0 }, "\(credit)")
        #expect(credit["inst04"].map { $0 >= 0 && $0 < 0.1 * honestMean } == true, "free-rider: \(credit)")
        #expect(peers.allSatisfy { ($0["scoring_seconds_per_round"] as? Double).map { $0 >= 0 } == true })

        for id in ["inst01", "inst02", "inst03", "inst04"] {
            let ledger = "\(root)/state/\(id)/ledger.sqlite"
            let verified = try await ledgerTool("report", ledger, "--verify")
            #expect(verified.status == 0 && verified.stderr.contains("recorded credits re-derive"), "\(id): \(verified.stderr)")
            #expect(verified.stdout.contains("inst04"))
        }
        // The independent script recomputes the report from the export, exactly.
        let ledger = "\(root)/state/inst01/ledger.sqlite"
        let export = try await ledgerTool("export", ledger, "--jsonl")
        let report = try await ledgerTool("report", ledger, "--format", "json")
        let exportFile = dir.appendingPathComponent("export.jsonl").path, reportFile = dir.appendingPathComponent("report.json").path
        try export.stdout.write(toFile: exportFile, atomically: true, encoding: .utf8)
        try report.stdout.write(toFile: reportFile, atomically: true, encoding: .utf8)
        let check = try await runProcess("python3", [repository.appendingPathComponent("ledger-tools/credits.py").path, exportFile, "--compare", reportFile])
        #expect(check.status == 0 && check.stderr.contains("agrees exactly"), "\(check.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        let institutions = try #require(object["institutions"] as? [[String: Any]])
        #expect(institutions.compactMap { $0["id"] as? String } == ["inst01", "inst02", "inst03", "inst04"])
        #expect(institutions.allSatisfy { ($0["rounds"] as? [String: Any])?.count == 4 && $0["total"] is Double })
        // A recorded credit edited in the file (same length, one digit) no longer re-derives.
        let copy = dir.appendingPathComponent("edited.sqlite").path
        try FileManager.default.copyItem(atPath: ledger, toPath: copy)
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: ledger + suffix) {
            try FileManager.default.copyItem(atPath: ledger + suffix, toPath: copy + suffix)
        }
        let edit = try await runProcess("python3", ["-c", """
            import re, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            rowid, body = db.execute("SELECT rowid, body FROM entries WHERE author='inst01' AND kind=3 AND round=3").fetchone()
            text = bytes(body).decode()
            m = re.compile(r'"inst02":-?(\\d)').search(text, text.index('"credits":'))
            digit = m.group(1)
            text = text[:m.start(1)] + ("1" if digit != "1" else "2") + text[m.end(1):]
            db.execute("UPDATE entries SET body=? WHERE rowid=?", (text.encode(), rowid)); db.commit()
            """, copy])
        #expect(edit.status == 0, "\(edit.stderr)")
        let caught = try await ledgerTool("report", copy, "--verify")
        #expect(caught.status == 1 && caught.stderr.contains("inst01's aggregate for round 3 records inst02's round-2 credit"), "\(caught.stderr)")
        let csv = try await ledgerTool("report", ledger, "--format", "csv")
        #expect(csv.stdout.hasPrefix("institution,total,share") && csv.stdout.split(separator: "\n").count == 5)

        // The HTML page: parses, embeds no external resource, names every institution.
        let page = dir.appendingPathComponent("credits.html").path
        let html = try await ledgerTool("report", ledger, "--format", "html", "--out", page)
        #expect(html.status == 0)
        let audit = try await runProcess("python3", ["-c", Self.htmlAudit, page])
        #expect(audit.status == 0, "\(audit.stdout) \(audit.stderr)")
        #expect(audit.stdout.contains("svg 3") && audit.stdout.contains("names inst01 inst02 inst03 inst04"), "\(audit.stdout)")
    }

    /// Commit, then reveal, over real processes: no peer announces its update
    /// bytes for a round before every member's signed update entry for that
    /// round exists (each peer logs when it reveals; entry times are signed).
    @Test func noPeerRevealsBeforeEveryMemberCommitted() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 3\n")])
        let processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        let started = Date()
        while processes.contains(where: \.isRunning), Date().timeIntervalSince(started) < 120 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(processes.allSatisfy { !$0.isRunning && $0.terminationStatus == 0 })
        // When each member signed its update for each round.
        var committedAt: [Int: [String: Int64]] = [:]
        let export = try await ledgerTool("export", c.ledger("inst01"), "--jsonl")
        for line in export.stdout.split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], o["kind"] as? String == "update",
                  let r = (o["round"] as? NSNumber)?.intValue, r >= 1, let author = o["author"] as? String, let t = (o["time_ms"] as? NSNumber)?.int64Value
            else { continue }
            committedAt[r, default: [:]][author] = t
        }
        #expect((1...3).allSatisfy { committedAt[$0]?.count == 3 }, "\(committedAt)")
        let pattern = try NSRegularExpression(pattern: #"round=(\d+).*unix-ms=(\d+).*revealing update|revealing update.*round=(\d+).*unix-ms=(\d+)"#)
        for id in JoinCluster.ids {
            let log = c.output("\(id).err")
            var revealed: [Int: Int64] = [:]
            for line in log.split(separator: "\n") where line.contains("revealing update") {
                let s = String(line)
                guard let m = pattern.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) else { continue }
                func group(_ i: Int) -> String? { Range(m.range(at: i), in: s).map { String(s[$0]) } }
                if let r = Int(group(1) ?? group(3) ?? ""), let t = Int64(group(2) ?? group(4) ?? "") { revealed[r] = t }
            }
            #expect(revealed.keys.sorted() == [1, 2, 3], "\(id): \(log.suffix(2000))")
            for (r, t) in revealed {
                let last = committedAt[r]?.values.max() ?? .max
                #expect(t >= last, "\(id) revealed round \(r) at \(t), before the last commitment at \(last)")
            }
        }
    }

    /// Parses the page with Python's HTML parser: unclosed or mismatched
    /// elements, any src/href/url()/@import, or a missing institution fail it.
    static let htmlAudit = #"""
        import html.parser, re, sys
        text = open(sys.argv[1], encoding="utf-8").read()
        void = {"meta", "br", "img", "link", "input", "hr"}
        class P(html.parser.HTMLParser):
            def __init__(self):
                super().__init__(); self.stack = []; self.svg = 0; self.external = []; self.text = []
            def handle_starttag(self, tag, attrs):
                if tag == "svg": self.svg += 1
                for k, v in attrs:
                    if k in ("src", "href", "xlink:href") or (v and "url(" in v): self.external.append((tag, k, v))
                if tag not in void: self.stack.append(tag)
            def handle_startendtag(self, tag, attrs):
                self.handle_starttag(tag, attrs)
                if tag not in void: self.stack.pop()
            def handle_endtag(self, tag):
                if not self.stack or self.stack[-1] != tag: sys.exit(f"mismatched </{tag}> with open {self.stack[-3:]}")
                self.stack.pop()
            def handle_data(self, data): self.text.append(data)
        p = P(); p.feed(text); p.close()
        if p.stack: sys.exit(f"unclosed {p.stack}")
        if p.external or "@import" in text or re.search(r"<(script|link|iframe|img)\b", text): sys.exit(f"external resources: {p.external}")
        names = sorted(set(re.findall(r"inst\d\d", " ".join(p.text))))
        print("svg", p.svg); print("names", " ".join(names))
        """#
}
