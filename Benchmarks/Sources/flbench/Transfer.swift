import FLCore
import FLGossip
import FLIdentity
import FLWire
import Foundation
import Logging
import NIOPosix

// flbench transfer: one blob from a sender process to a receiver process over
// loopback mutual TLS, timed from the announcement to the receiver's
// hash-checked copy. The receiver is this same executable started as a child.

struct TransferFiles {
    let dir: String
    var ca: String { "\(dir)/ca/ca.pem" }
    func cert(_ id: String) -> String { "\(dir)/\(id).pem" }
    func key(_ id: String) -> String { "\(dir)/\(id).key.pem" }

    static func create(in dir: String) throws -> TransferFiles {
        let ca = try ConsortiumCA.create(consortium: "bench")
        try ca.save(directory: "\(dir)/ca")
        for id in ["sender", "receiver"] {
            let (key, csr) = try InstitutionKey.generate(institution: id)
            try PEMFiles.write(Ed25519Keys.pem(key), to: "\(dir)/\(id).key.pem", secret: true)
            try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 2)), to: "\(dir)/\(id).pem")
        }
        return TransferFiles(dir: dir)
    }

    func tls(_ id: String) throws -> PeerTLS {
        let caCert = try PEMFiles.certificate(at: ca)
        let trust = ConsortiumTrust(consortium: "bench", caCertificate: caCert, members: ["sender", "receiver"], revocations: nil)
        return try PeerTLS(trust: trust, certificateFile: cert(id), keyFile: key(id))
    }
}

func quietLogger() -> Logger {
    var l = Logger(label: "flbench") { _ in SwiftLogNoOpLogHandler() }
    l.logLevel = .critical
    return l
}

/// Child process: listen, write the port, wait for one blob, report.
func transferReceive() async throws {
    let files = TransferFiles(dir: argument("dir", ""))
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let node = try GossipNode(config: GossipConfig(tls: try files.tls("receiver"), blobDirectory: "\(files.dir)/receiver-blobs"), group: group, logger: quietLogger())
    let port = try await node.start()
    let baseline = currentRSS()
    try "\(port)".write(toFile: "\(files.dir)/port", atomically: true, encoding: .utf8)
    let run = Task { try await node.run() }
    for await event in node.events {
        if case .blobReceived(let a, _) = event {
            let done = Date().timeIntervalSince1970
            printJSON(["received_at": done, "bytes": a.size, "rss_baseline_MB": Double(baseline) / 1e6, "peak_rss_MB": Double(peakRSS()) / 1e6])
            break
        }
    }
    run.cancel()
    exit(0)
}

/// Parent: make credentials and a file, start the receiver, connect, send, time.
func transferBenchmark() async throws {
    let mb = Int(argument("mb", "100"))!
    let runs = Int(argument("runs", "3"))!
    let base = argument("workdir", FileManager.default.temporaryDirectory.path)
    let root = "\(base)/flbench-transfer-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let files = try TransferFiles.create(in: root)
    let source = "\(root)/blob.bin"
    guard FileManager.default.createFile(atPath: source, contents: nil) else { fatalError("cannot create \(source)") }
    let handle = FileHandle(forWritingAtPath: source)!
    var rng = SeededGenerator(seed: 9)
    for _ in 0..<mb {
        var piece = [UInt8](repeating: 0, count: 1_000_000)
        for i in stride(from: 0, to: piece.count, by: 8) { withUnsafeBytes(of: rng.next()) { for j in 0..<8 { piece[i + j] = $0[j] } } }
        try handle.write(contentsOf: Data(piece))
    }
    try handle.close()
    // Warm-up, untimed: write and delete a scratch file of several blob sizes.
    // On this project's VMs the first use of a guest memory page is slow (the
    // host backs it lazily), so the first time page cache grows into fresh
    // memory, file writes run at a fraction of their normal speed; the
    // receiver's blob writes should not be measured against that artefact.
    let scratch = "\(root)/warm-up.bin"
    if FileManager.default.createFile(atPath: scratch, contents: nil), let warm = FileHandle(forWritingAtPath: scratch) {
        let zeros = Data(count: 1 << 20)
        for _ in 0..<(6 * mb) { try warm.write(contentsOf: zeros) }
        try warm.close()
        try FileManager.default.removeItem(atPath: scratch)
    }
    var seconds: [Double] = [], receiverPeaks: [Double] = [], receiverBaselines: [Double] = []
    var senderPeak = 0.0
    for run in 0..<runs {
        try? FileManager.default.removeItem(atPath: "\(root)/port")
        try? FileManager.default.removeItem(atPath: "\(root)/receiver-blobs")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["transfer-receive", "--dir", root]
        let out = Pipe()
        child.standardOutput = out
        try child.run()
        var port = 0
        while port == 0 {
            try await Task.sleep(for: .milliseconds(20))
            port = Int((try? String(contentsOfFile: "\(root)/port", encoding: .utf8)) ?? "") ?? 0
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var config = GossipConfig(tls: try files.tls("sender"), dial: [PeerAddress(institution: "receiver", host: "127.0.0.1", port: port)],
                                  blobDirectory: "\(root)/sender-blobs-\(run)")
        config.chunkSize = Int(argument("chunk", "\(WireProtocol.defaultChunkSize)"))!
        let node = try GossipNode(config: config, group: group, logger: quietLogger())
        let hash = try node.store.put(file: source)
        sync()  // start each timed run with no dirty pages from preparing it
        let task = Task { try await node.run() }
        while await node.connectedPeers().isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        let start = Date().timeIntervalSince1970
        try await node.announce(stored: hash, round: 1, kind: .update)
        let report = out.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        task.cancel()
        _ = await task.result
        let obj = try JSONSerialization.jsonObject(with: report) as! [String: Any]
        seconds.append((obj["received_at"] as! Double) - start)
        receiverPeaks.append(obj["peak_rss_MB"] as! Double)
        receiverBaselines.append(obj["rss_baseline_MB"] as! Double)
        senderPeak = max(senderPeak, Double(peakRSS()) / 1e6)
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: "\(root)/sender-blobs-\(run)")
    }
    let t = median(seconds)
    printJSON([
        "benchmark": "transfer", "megabytes": mb, "runs": runs, "seconds": seconds, "median_s": t,
        "MBps": Double(mb) / t, "receiver_peak_rss_MB": receiverPeaks, "receiver_rss_before_MB": receiverBaselines,
        "sender_peak_rss_MB": senderPeak, "chunk_bytes": Int(argument("chunk", "\(WireProtocol.defaultChunkSize)"))!,
    ])
}
