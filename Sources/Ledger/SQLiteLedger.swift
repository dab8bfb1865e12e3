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
public actor SQLiteLedger: UsageLedger, LedgerStore, LedgerLifecycle, EvidenceStore {
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

    /// Appends already-made events in transactions of `chunk`, without the group-commit queue:
    /// for imports and benchmarks, not for the request path.
    public func load(_ events: [UsageEvent], chunk: Int = 50_000) async throws {
        var start = 0
        while start < events.count {
            let slice = Array(events[start..<min(events.count, start + chunk)])
            let startHeads = heads
            let signer = checkpoints
            heads = try await pool.write { db in try LedgerWriter.append(slice, heads: startHeads, checkpoints: signer, db: db) }
            start += chunk
        }
    }

    /// Evidence is rare (one response per certificate per nextUpdate): written in its own
    /// transaction, outside the group-commit queue, and durable before any event names it.
    public nonisolated func storeEvidence(_ der: Data) async throws -> String {
        let address = EvidenceHex.sha256(der)
        try await pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO ocsp_evidence (address, der, stored_ms) VALUES (?, ?, ?)",
                           arguments: [address, der, LedgerChain.timeMs(Date())])
        }
        return address
    }

    public nonisolated func evidence(address: String) async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT der FROM ocsp_evidence WHERE address = ?", arguments: [address]) }
    }

    /// Nothing to let go: every pending record is awaited by its caller, and the file closes
    /// with the last reference.
    public func shutdown() async {}

    public nonisolated func tenants() async throws -> [String] { try await SQLiteLedgerStore.tenants(pool) }
    public nonisolated func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        try await SQLiteLedgerStore.events(pool, tenant: tenant, after: seq, limit: limit)
    }
    public nonisolated func checkpoints(tenant: String) async throws -> [Checkpoint] {
        try await SQLiteLedgerStore.checkpoints(pool, tenant: tenant)
    }
    public nonisolated func reportLines(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping) async throws
        -> [UsageReport.Line] {
        try await SQLiteLedgerStore.reportLines(pool, tenant: tenant, from: from, to: to, grouping: grouping)
    }
}

/// Reads a SQLite ledger file for `ledger verify` and `report`, read-only.
public struct SQLiteLedgerStore: LedgerStore {
    let reader: any DatabaseReader

    public init(path: String) throws {
        var config = Configuration()
        config.readonly = true
        reader = try DatabaseQueue(path: path, configuration: config)
    }

    public func tenants() async throws -> [String] { try await Self.tenants(reader) }
    public func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        try await Self.events(reader, tenant: tenant, after: seq, limit: limit)
    }
    public func checkpoints(tenant: String) async throws -> [Checkpoint] { try await Self.checkpoints(reader, tenant: tenant) }
    public func reportLines(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping) async throws
        -> [UsageReport.Line] {
        try await Self.reportLines(reader, tenant: tenant, from: from, to: to, grouping: grouping)
    }

    static func tenants(_ reader: any DatabaseReader) async throws -> [String] {
        try await reader.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT tenant FROM usage_events ORDER BY tenant") }
    }

    static func events(_ reader: any DatabaseReader, tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        try await reader.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM usage_events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
                             arguments: [tenant, seq, limit])
                .map { StoredEvent(seq: $0["seq"], event: LedgerRow.event($0), timeMs: $0["time_ms"], previousHash: $0["prev_hash"],
                                   hash: $0["hash"]) }
        }
    }

    static func checkpoints(_ reader: any DatabaseReader, tenant: String) async throws -> [Checkpoint] {
        try await reader.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM checkpoints WHERE tenant = ? ORDER BY seq", arguments: [tenant]).map {
                Checkpoint(tenant: $0["tenant"], seq: $0["seq"], hash: $0["hash"], timeMs: $0["time_ms"], keyID: $0["key_id"],
                           signature: $0["signature"])
            }
        }
    }

    static func groupingSQL(_ g: UsageReport.Grouping) -> String {
        switch g {
        case .day: "(time_ms / 86400000)"
        case .client: "client"
        case .credential: "COALESCE(credential, '-')"
        case .upstream: "COALESCE(upstream, '-')"
        case .outcome: "outcome"
        case .operation: "operation"
        }
    }

    /// Days are grouped as numbers (cheaper than formatting every row) and named after.
    static func key(_ row: Row, _ grouping: UsageReport.Grouping) -> String {
        if grouping == .day { return (row["k"] as Int64?).map(UsageReport.dayKey) ?? "-" }
        return row["k"] ?? "-"
    }

    static func reportLines(_ reader: any DatabaseReader, tenant: String, from: Date, to: Date,
                            grouping: UsageReport.Grouping) async throws -> [UsageReport.Line] {
        try await reader.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(groupingSQL(grouping)) AS k, COUNT(*) AS n,
                  SUM(outcome = 'ok') AS ok, SUM(outcome = 'denied') AS denied, SUM(outcome = 'failed') AS failed,
                  SUM(CASE WHEN outcome = 'ok' THEN signatures ELSE 0 END) AS billed
                FROM usage_events WHERE tenant = ? AND time_ms >= ? AND time_ms < ?
                GROUP BY k ORDER BY k
                """, arguments: [tenant, LedgerChain.timeMs(from), LedgerChain.timeMs(to)])
            .map { UsageReport.Line(key: key($0, grouping), operations: $0["n"], ok: $0["ok"], denied: $0["denied"],
                                    failed: $0["failed"], billedSignatures: $0["billed"]) }
        }
    }
}

extension ChainHead {
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
        // A retried request (same deterministic id) is recorded once.
        let exists = try db.cachedStatement(sql: "SELECT 1 FROM usage_events WHERE id = ?")
        var fresh = [UsageEvent]()
        fresh.reserveCapacity(events.count)
        for e in events where try Bool.fetchOne(exists, arguments: [e.id]) != true { fresh.append(e) }
        let chained = try LedgerChain.extend(fresh, after: heads, signer: checkpoints)
        let insert = try db.cachedStatement(sql: """
            INSERT INTO usage_events (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
              sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for r in chained.rows {
            let e = r.event
            try insert.execute(arguments: [
                e.tenantID, r.seq, e.id, r.timeMs, e.clientID, e.credentialID, e.upstream, e.operation, e.signatures,
                e.signAlgorithm, e.hashAlgorithm, e.outcome.rawValue, e.stage, e.reason, e.latencyMicros, e.requestID,
                e.evidence, e.answer, r.previousHash, r.hash,
            ])
        }
        for cp in chained.checkpoints {
            try db.execute(sql: """
                INSERT OR REPLACE INTO checkpoints (tenant, seq, hash, time_ms, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [cp.tenant, cp.seq, cp.hash, cp.timeMs, cp.keyID, cp.signature])
        }
        return chained.heads
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
        m.registerMigration("v2: OCSP responses kept as evidence") { db in
            // Content-addressed (sha-256 of the DER): a response relied on by many signings is stored once.
            try db.execute(sql: """
                CREATE TABLE ocsp_evidence (address TEXT PRIMARY KEY, der BLOB NOT NULL, stored_ms INTEGER NOT NULL)
                """)
        }
        return m
    }
}

/// Evidence addresses: lower-case hex SHA-256, as the revocation checker computes them.
enum EvidenceHex {
    static func sha256(_ data: Data) -> String {
        Data(SHA256.hash(data: data)).map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}
