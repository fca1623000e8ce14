import Dispatch
import Foundation
import GRDB
import Synchronization

/// Copies a ledger's write-ahead log into the database file on a queue of
/// its own, over a connection of its own, once the log has grown past
/// `threshold` bytes. SQLite's automatic checkpoint would do this inside
/// whichever append crossed the threshold, and that append (and every
/// member waiting for it) would wait for the copy and its disk sync; a
/// passive checkpoint here never blocks appends or readers.
final class WALCheckpointer: Sendable {
    let path: String
    let threshold: Int
    private let queue = DispatchQueue(label: "flpeer.ledger.checkpoint", qos: .utility)
    private let state = Mutex<(running: Bool, connection: DatabaseQueue?)>((false, nil))

    /// 64 MiB: a checkpoint copies the latest version of every page the log
    /// holds, and most of a ledger's log is the same few pages (the ends of
    /// the entries table and its indexes) rewritten by every append and
    /// merge; at 4 MiB, checkpoints re-copying them cost 8–10 % of a
    /// 10-member peer's CPU (perf: `pread`/`pwrite` in `sqlite3WalCheckpoint`).
    static let defaultThreshold = 64 << 20

    init(path: String, threshold: Int = WALCheckpointer.defaultThreshold) {
        self.path = path
        self.threshold = threshold
    }

    /// Waits for a running checkpoint and closes this checkpointer's connection.
    func close() {
        queue.sync {
            let connection = state.withLock { s -> DatabaseQueue? in
                defer { s.connection = nil }
                return s.connection
            }
            try? connection?.close()
        }
    }

    /// Called after a commit: starts a checkpoint when the log is large and none is running.
    func noteCommit() {
        let size = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        guard size >= threshold else { return }
        let start = state.withLock { s -> Bool in
            if s.running { return false }
            s.running = true
            return true
        }
        guard start else { return }
        queue.async { [self] in
            defer { state.withLock { $0.running = false } }
            do {
                let connection = try state.withLock { s in
                    if let c = s.connection { return c }
                    let c = try DatabaseQueue(path: path)
                    s.connection = c
                    return c
                }
                try connection.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
            } catch {
                // A failed passive checkpoint leaves the log as it was; the next commit tries again.
            }
        }
    }
}
