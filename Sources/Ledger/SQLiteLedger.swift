import Crypto
import CSC
import Foundation
import GatewayCore
import GRDB

/// The embedded usage ledger: one SQLite file (WAL, synchronous=FULL), one writer that commits
/// in batches (group commit), and a hash chain per tenant that makes edits, deletions,
/// insertions and reorderings detectable.
///
/// `record` returns once the batch holding the event is committed to disk, so the signHash
/// answer waits for durability while many concurrent requests share one fsync.
public actor SQLiteLedger: UsageLedger {
    let pool: DatabasePool
    private var heads: [String: ChainHead]
    private var pending: [(UsageEvent, CheckedContinuation<Void, Error>)] = []
    private var flushing = false
    private let checkpoints: CheckpointSigner?

    public init(path: String, checkpoints: CheckpointSigner? = nil) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            // FULL: a commit is on disk before `record` returns, even across a power cut.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        config.busyMode = .timeout(5)
        let pool = try DatabasePool(path: path, configuration: config)
        try LedgerSchema.migrator.migrate(pool)
        self.pool = pool
        self.heads = try pool.read(ChainHead.loadAll)
        self.checkpoints = checkpoints
    }

    public func record(_ event: UsageEvent) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            pending.append((event, continuation))
            if !flushing {
                flushing = true
                Task { await self.flush() }
            }
        }
    }

    /// Writes everything pending in one transaction, then whatever arrived meanwhile.
    private func flush() async {
        while !pending.isEmpty {
            let batch = pending
            pending = []
            let events = batch.map(\.0)
            let startHeads = heads
            let signer = checkpoints
            do {
                let newHeads = try await pool.write { db in
                    try LedgerWriter.append(events, heads: startHeads, checkpoints: signer, db: db)
                }
                heads = newHeads
                for (_, c) in batch { c.resume() }
            } catch {
                for (_, c) in batch { c.resume(throwing: error) }
            }
        }
        flushing = false
    }

    public func recordedEvent(id: String) async throws -> UsageEvent? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM usage_events WHERE id = ?", arguments: [id]).map(LedgerRow.event)
        }
    }
}

/// The last link of a tenant's chain.
struct ChainHead: Sendable {
    var seq: Int64
    var hash: Data

    static let genesis = Data(repeating: 0, count: 32)

    static func loadAll(_ db: Database) throws -> [String: ChainHead] {
        var heads = [String: ChainHead]()
        for row in try Row.fetchAll(db, sql: """
            SELECT tenant, seq, hash FROM usage_events e
            WHERE seq = (SELECT MAX(seq) FROM usage_events WHERE tenant = e.tenant)
            """) {
            heads[row["tenant"]] = ChainHead(seq: row["seq"], hash: row["hash"])
        }
        return heads
    }
}

enum LedgerWriter {
    static func append(_ events: [UsageEvent], heads: [String: ChainHead], checkpoints: CheckpointSigner?,
                       db: Database) throws -> [String: ChainHead] {
        var heads = heads
        var seen = Set<String>()
        let exists = try db.cachedStatement(sql: "SELECT 1 FROM usage_events WHERE id = ?")
        let insert = try db.cachedStatement(sql: """
            INSERT INTO usage_events (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
              sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        var crossed = Set<String>()
        for e in events {
            // A retried request (same deterministic id) is recorded once.
            guard seen.insert(e.id).inserted, try Bool.fetchOne(exists, arguments: [e.id]) != true else { continue }
            let head = heads[e.tenantID] ?? ChainHead(seq: 0, hash: ChainHead.genesis)
            let seq = head.seq + 1
            let timeMs = Int64((e.time.timeIntervalSince1970 * 1000).rounded())
            let hash = LedgerChain.link(previous: head.hash, seq: seq, event: e, timeMs: timeMs)
            try insert.execute(arguments: [
                e.tenantID, seq, e.id, timeMs, e.clientID, e.credentialID, e.upstream, e.operation, e.signatures,
                e.signAlgorithm, e.hashAlgorithm, e.outcome.rawValue, e.stage, e.reason, e.latencyMicros, e.requestID,
                e.evidence, e.answer, head.hash, hash,
            ])
            heads[e.tenantID] = ChainHead(seq: seq, hash: hash)
            if let checkpoints, seq % Int64(checkpoints.interval) == 0 { crossed.insert(e.tenantID) }
        }
        if let checkpoints {
            for tenant in crossed.sorted() {
                guard let head = heads[tenant] else { continue }
                try checkpoints.write(tenant: tenant, head: head, db: db)
            }
        }
        return heads
    }
}

/// How one event is linked to the one before it.
public enum LedgerChain {
    /// SHA-256 over the previous link and the event's canonical form (every field that matters
    /// for billing and audit; the stored answer is evidence and stays outside).
    static func link(previous: Data, seq: Int64, event e: UsageEvent, timeMs: Int64) -> Data {
        var fields: [String: JSONValue] = [
            "seq": .number(Double(seq)), "id": .string(e.id), "time_ms": .number(Double(timeMs)),
            "tenant": .string(e.tenantID), "client": .string(e.clientID), "operation": .string(e.operation),
            "signatures": .int(e.signatures), "outcome": .string(e.outcome.rawValue),
            "latency_us": .int(e.latencyMicros), "request_id": .string(e.requestID),
        ]
        for (k, v) in [("credential", e.credentialID), ("upstream", e.upstream), ("sign_algo", e.signAlgorithm),
                       ("hash_algo", e.hashAlgorithm), ("stage", e.stage), ("reason", e.reason), ("evidence", e.evidence)] {
            if let v { fields[k] = .string(v) }
        }
        var h = SHA256()
        h.update(data: previous)
        h.update(data: JSONValue.object(fields).serialized())
        return Data(h.finalize())
    }
}

enum LedgerRow {
    static func event(_ row: Row) -> UsageEvent {
        UsageEvent(
            id: row["id"], time: Date(timeIntervalSince1970: Double(row["time_ms"] as Int64) / 1000),
            tenantID: row["tenant"], clientID: row["client"], credentialID: row["credential"], upstream: row["upstream"],
            operation: row["operation"], signatures: row["signatures"], signAlgorithm: row["sign_algo"],
            hashAlgorithm: row["hash_algo"], outcome: UsageOutcome(rawValue: row["outcome"]) ?? .failed,
            stage: row["stage"], reason: row["reason"], latencyMicros: row["latency_us"], requestID: row["request_id"],
            evidence: row["evidence"], answer: row["answer"])
    }
}

/// Schema changes, in order; each runs once per database file.
enum LedgerSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: usage events and checkpoints") { db in
            try db.execute(sql: """
                CREATE TABLE usage_events (
                  tenant TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
                  client TEXT NOT NULL, credential TEXT, upstream TEXT, operation TEXT NOT NULL,
                  signatures INTEGER NOT NULL, sign_algo TEXT, hash_algo TEXT, outcome TEXT NOT NULL, stage TEXT,
                  reason TEXT, latency_us INTEGER NOT NULL, request_id TEXT NOT NULL, evidence TEXT, answer BLOB,
                  prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
                  PRIMARY KEY (tenant, seq));
                CREATE INDEX usage_events_by_time ON usage_events (tenant, time_ms);
                CREATE TABLE checkpoints (
                  tenant TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, time_ms INTEGER NOT NULL,
                  key_id TEXT NOT NULL, signature BLOB NOT NULL,
                  PRIMARY KEY (tenant, seq));
                """)
        }
        return m
    }
}
