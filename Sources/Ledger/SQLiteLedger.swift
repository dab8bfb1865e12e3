import Crypto
import CSC
import Foundation
import GatewayCore
import GRDB
import GRDBSQLite
import Logging
import Synchronization

/// The embedded usage ledger: a journal (`UsageJournal`) that makes each batch of events
/// durable with one write and one flush, and one SQLite file (WAL, synchronous=FULL) that
/// receives them in large transactions a moment later, hash-chained per tenant so that edits,
/// deletions, insertions and reorderings are detectable.
///
/// `record` returns once the batch holding the event is on disk in the journal, so the
/// signHash answer waits for durability while concurrent requests share one flush. Reads
/// through this type (reports, the usage APIs, quota seeding) first wait until the database
/// holds every acknowledged event; the file itself trails the journal by at most
/// `Options.applyInterval` under load. Opening the ledger stores whatever the journal holds
/// beyond the database (after a crash) before anything new is recorded.
public final class SQLiteLedger: UsageLedger, LedgerStore, LedgerLifecycle, EvidenceStore {
    public struct Options: Sendable {
        /// Where the journal's segments live; default: the ledger's path + ".journal".
        public var journalDirectory: String?
        /// How long a batch may wait for operations still under way (0: never waits).
        public var commitDelay: Duration
        /// Operations under way, read by the commit window (the gateway's).
        public var inFlight: OperationsInFlight?
        /// How long an acknowledged event may wait before it is stored in the database.
        public var applyInterval: Duration
        public var segmentBytes: Int
        /// How long opening waits for another process to let go of the journal.
        public var lockWait: Duration
        /// For what goes wrong off the request path (storing into the database).
        public var logger: Logger
        /// Replaces fdatasync (tests: a failing disk).
        var flush: (@Sendable (Int32) -> Int32)?
        /// The longest a reservation waits for others to share its flush (`ReservationSchedule`).
        public var reservationHold: Duration = .milliseconds(5)

        public init(journalDirectory: String? = nil, commitDelay: Duration = .zero,
                    inFlight: OperationsInFlight? = nil, applyInterval: Duration = .milliseconds(500),
                    segmentBytes: Int = 8 << 20, lockWait: Duration = .seconds(5),
                    logger: Logger = Logger(label: "cscgate.ledger")) {
            self.journalDirectory = journalDirectory; self.commitDelay = commitDelay; self.inFlight = inFlight
            self.applyInterval = applyInterval; self.segmentBytes = segmentBytes; self.lockWait = lockWait
            self.logger = logger
        }
    }

    let pool: DatabasePool
    private let writer: SQLiteChainWriter
    let backlog: JournalBacklog
    private let commits: GroupCommit<UsageJournal.Item>
    let schedule: ReservationSchedule
    private let inFlight: OperationsInFlight?
    /// Events the journal held at open beyond the database, stored before anything new.
    public let recoveredEvents: Int

    public init(path: String, checkpoints: CheckpointSigner? = nil, options: Options = Options()) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            // Keep the pages a batch touches (table, time index, retry ids) in memory instead
            // of re-reading them for every batch (32 MiB per connection, at most).
            try db.execute(sql: "PRAGMA cache_size = -32768")
        }
        config.busyMode = .timeout(5)
        let pool = try DatabasePool(path: path, configuration: config)
        // FULL: a commit is on disk before it returns, even across a power cut. Set here,
        // after the pool is open: DatabasePool switches its writer to NORMAL when it turns WAL
        // on, after `prepareDatabase` has run, and NORMAL only survives a crash of the process.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            guard try Int.fetchOne(db, sql: "PRAGMA synchronous") == Self.synchronousFull else {
                throw SQLiteLedgerError.notDurable
            }
        }
        try LedgerSchema.migrator.migrate(pool)
        self.pool = pool
        let writer = SQLiteChainWriter(pool: pool, heads: try pool.read(ChainHead.loadAll), signer: checkpoints)
        self.writer = writer
        let applied = try pool.read(JournalPosition.applied)
        let journal = try UsageJournal.open(directory: options.journalDirectory ?? Self.journalDirectory(for: path),
                                            segmentBytes: options.segmentBytes, afterSeq: applied, lockWait: options.lockWait,
                                            flush: options.flush)
        // What the journal holds beyond the database (a crash): stored now, in order.
        let recovered = journal.recovered
        var stored = applied
        var start = 0
        let released = Set(recovered.entries.compactMap(\.releases))
        while start < recovered.entries.count {
            let chunk = recovered.entries[start..<min(recovered.entries.count, start + JournalBacklog.maxTransaction)]
            // A reservation without an outcome is stored as signed: its answer may have left.
            let settled = JournalBacklog.settle(chunk, fulfilled: [:], released: released, billOpen: true)
            try writer.append(settled.events, journalThrough: chunk.last?.seq)
            stored = chunk.last?.seq ?? stored
            start += chunk.count
        }
        if recovered.lastSeq > stored {
            // The journal ended with records that hold no event (a voided batch).
            try writer.append([], journalThrough: recovered.lastSeq)
        }
        journal.release(through: max(stored, recovered.lastSeq))
        recoveredEvents = recovered.entries.count
        let backlog = JournalBacklog(writer: writer, journal: journal, appliedThrough: max(applied, recovered.lastSeq),
                                     interval: options.applyInterval, logger: options.logger)
        self.backlog = backlog
        inFlight = options.inFlight
        schedule = ReservationSchedule(maxHold: options.reservationHold)
        let window = options.inFlight.flatMap { inFlight in
            options.commitDelay > .zero
                ? GroupCommit<UsageJournal.Item>.Window(maxDelay: options.commitDelay, maxItems: 256, working: { inFlight.working })
                : nil
        }
        self.commits = GroupCommit(closedError: { SQLiteLedgerError.closed },
                                   driver: .thread(name: "ledger-journal", window: window) { events in
                                       try backlog.awaitRoom()
                                       backlog.enqueue(try journal.append(events))
                                   })
    }

    deinit { backlog.close() }

    /// `<ledger path>.journal`, beside the SQLite file.
    public static func journalDirectory(for path: String) -> String { path + ".journal" }

    public func record(_ event: UsageEvent) async throws {
        try await commits.submit(UsageJournal.Item(event: event))
    }

    public func reserveSigning(_ planned: UsageEvent) -> UsageReservation? {
        let started = ContinuousClock.now
        let due = schedule.due(upstream: planned.upstream, concurrent: (inFlight?.working ?? 0) > 1, flush: commits.typicalWrite)
        let ticket = commits.enqueue(UsageJournal.Item(event: planned, reserved: true), due: due)
        return UsageReservation(key: UsageJournal.reservationKey(planned)) { [commits, schedule] in
            schedule.signed(upstream: planned.upstream, took: .now - started)
            try await commits.wait(ticket)
        }
    }

    public func fulfil(_ reservation: UsageReservation, with event: UsageEvent) async throws {
        backlog.fulfil(reservation.key, with: event)
    }

    public func release(_ reservation: UsageReservation, with event: UsageEvent) async throws {
        try await commits.submit(UsageJournal.Item(event: event, releases: reservation.key))
    }

    /// Returns once the database holds every event acknowledged before the call.
    public func caughtUp() async throws { try await backlog.caughtUp() }

    /// `PRAGMA synchronous` of FULL, as SQLite reports it.
    static let synchronousFull = 2

    /// The writer connection's `PRAGMA synchronous` (for tests: FULL is what durability needs).
    func writerSynchronous() throws -> Int? {
        try pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
    }

    /// Only events whose request id the client chose can come again, so only they are found
    /// here: first among those acknowledged and not yet stored, then in the database (an event
    /// leaves the first only once the second holds it).
    public func recordedEvent(id: String) async throws -> UsageEvent? {
        if let pending = backlog.retryable(id) { return pending }
        return try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT e.* FROM usage_retry_ids r JOIN usage_events e ON e.tenant = r.tenant AND e.seq = r.seq WHERE r.id = ?
                """, arguments: [id]).map(LedgerRow.event)
        }
    }

    /// Appends already-made events in transactions of `chunk`, without the journal: for imports
    /// and benchmarks, not for the request path (not concurrently with `record`).
    public func load(_ events: [UsageEvent], chunk: Int = 50_000) async throws {
        var start = 0
        while start < events.count {
            let slice = Array(events[start..<min(events.count, start + chunk)])
            try await Task.detached { [writer] in try writer.append(slice, journalThrough: nil) }.value
            start += chunk
        }
    }

    /// Evidence is rare (one response per certificate per nextUpdate): written in its own
    /// transaction, outside the journal, and durable before any event names it.
    public func storeEvidence(_ der: Data) async throws -> String {
        let address = EvidenceHex.sha256(der)
        try await pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO ocsp_evidence (address, der, stored_ms) VALUES (?, ?, ?)",
                           arguments: [address, der, LedgerChain.timeMs(Date())])
        }
        return address
    }

    public func evidence(address: String) async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT der FROM ocsp_evidence WHERE address = ?", arguments: [address]) }
    }

    /// Lets pending records finish and stores everything acknowledged; later records fail. The
    /// journal's lock goes with the last reference.
    public func shutdown() async {
        await commits.close()
        await backlog.finish()
    }

    public func tenants() async throws -> [String] {
        try await caughtUp()
        return try await SQLiteLedgerStore.tenants(pool)
    }
    public func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        try await caughtUp()
        return try await SQLiteLedgerStore.events(pool, tenant: tenant, after: seq, limit: limit)
    }
    public func checkpoints(tenant: String) async throws -> [Checkpoint] {
        try await caughtUp()
        return try await SQLiteLedgerStore.checkpoints(pool, tenant: tenant)
    }
    public func usageCells(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping, byDay: Bool) async throws
        -> [UsageCell] {
        try await caughtUp()
        return try await SQLiteLedgerStore.usageCells(pool, tenant: tenant, from: from, to: to, grouping: grouping, byDay: byDay)
    }
    public func usageEvents(_ query: UsageEventQuery) async throws -> [StoredEvent] {
        try await caughtUp()
        return try await SQLiteLedgerStore.usageEvents(pool, query)
    }
}

/// PIN and OTP attempts in the ledger file: each change is its own transaction, committed
/// (synchronous=FULL) before the attempt's answer, outside the journal. Also opened on its own
/// (`cscgate keys unlock`) while a gateway runs: it does not touch the journal.
public struct SQLiteAuthorizationAttempts: AuthorizationAttempts {
    let writer: any DatabaseWriter

    init(writer: any DatabaseWriter) { self.writer = writer }

    /// The attempts table of the ledger file at `path`, which must exist (a gateway made it).
    public init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw SQLiteLedgerError.missing(path) }
        var config = Configuration()
        config.busyMode = .timeout(5)
        writer = try DatabaseQueue(path: path, configuration: config)
        try LedgerSchema.migrator.migrate(writer)
    }

    public func reserve(_ key: String, limit: Int) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: """
                INSERT INTO authorization_attempts (key, failures, last_step) VALUES (?, 1, -1)
                ON CONFLICT (key) DO UPDATE SET failures = failures + 1 WHERE failures < ?
                """, arguments: [key, limit])
            return db.changesCount == 1
        }
    }

    public func accept(_ key: String, step: Int64?) async throws -> Bool {
        try await writer.write { db in
            if let step {
                try db.execute(sql: """
                    INSERT INTO authorization_attempts (key, failures, last_step) VALUES (?, 0, ?)
                    ON CONFLICT (key) DO UPDATE SET failures = 0, last_step = excluded.last_step
                      WHERE last_step < excluded.last_step
                    """, arguments: [key, step])
            } else {
                try db.execute(sql: "UPDATE authorization_attempts SET failures = 0 WHERE key = ?", arguments: [key])
            }
            return step == nil || db.changesCount == 1
        }
    }

    public func failures(_ key: String) async throws -> Int {
        try await writer.read { db in
            try Int.fetchOne(db, sql: "SELECT failures FROM authorization_attempts WHERE key = ?", arguments: [key]) ?? 0
        }
    }

    public func unlock(_ key: String) async throws {
        try await writer.write { db in
            try db.execute(sql: "UPDATE authorization_attempts SET failures = 0 WHERE key = ?", arguments: [key])
        }
    }
}

extension SQLiteLedger: AuthorizationAttempts {
    private var attempts: SQLiteAuthorizationAttempts { SQLiteAuthorizationAttempts(writer: pool) }
    public func reserve(_ key: String, limit: Int) async throws -> Bool { try await attempts.reserve(key, limit: limit) }
    public func accept(_ key: String, step: Int64?) async throws -> Bool { try await attempts.accept(key, step: step) }
    public func failures(_ key: String) async throws -> Int { try await attempts.failures(key) }
    public func unlock(_ key: String) async throws { try await attempts.unlock(key) }
}

enum SQLiteLedgerError: Error, CustomStringConvertible {
    case closed
    case notDurable
    case missing(String)
    var description: String {
        switch self {
        case .missing(let path): "there is no ledger file at \(path) (a gateway makes it when it first starts)"
        case .closed: "the ledger is shut down"
        case .notDurable: "SQLite did not accept PRAGMA synchronous = FULL, so commits would not be durable"
        }
    }
}

/// The one writer of a SQLite ledger: the chain heads live here, changed only after the
/// transaction that extends them has committed; one `append` runs at a time.
final class SQLiteChainWriter: Sendable {
    let pool: DatabasePool
    let signer: CheckpointSigner?
    private let heads: Mutex<[String: ChainHead]>

    init(pool: DatabasePool, heads: [String: ChainHead], signer: CheckpointSigner?) {
        self.pool = pool
        self.heads = Mutex(heads)
        self.signer = signer
    }

    /// Stores `events` after the chain heads in one transaction, with the journal position they
    /// reach (nil: events that did not come through the journal). Blocks in the commit.
    func append(_ events: [UsageEvent], journalThrough seq: UInt64?) throws {
        try heads.withLock { heads in
            heads = try pool.write { db in
                let next = try LedgerWriter.append(events, heads: heads, checkpoints: signer, db: db)
                if let seq { try JournalPosition.store(seq, db) }
                return next
            }
        }
    }
}

/// How far the database has come through the journal: the last sequence number stored, kept in
/// the same transaction as the events, so a crash can neither lose nor repeat them.
enum JournalPosition {
    static func applied(_ db: Database) throws -> UInt64 {
        UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT applied_seq FROM journal_position WHERE id = 1") ?? 0)
    }

    static func store(_ seq: UInt64, _ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO journal_position (id, applied_seq) VALUES (1, ?)
            ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq
            """, arguments: [Int64(bitPattern: seq)])
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
    public func usageCells(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping, byDay: Bool) async throws
        -> [UsageCell] {
        try await Self.usageCells(reader, tenant: tenant, from: from, to: to, grouping: grouping, byDay: byDay)
    }
    public func usageEvents(_ query: UsageEventQuery) async throws -> [StoredEvent] { try await Self.usageEvents(reader, query) }

    static func tenants(_ reader: any DatabaseReader) async throws -> [String] {
        try await reader.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT tenant FROM usage_events ORDER BY tenant") }
    }

    static func events(_ reader: any DatabaseReader, tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        try await reader.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM usage_events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
                             arguments: [tenant, seq, limit]).map(storedEvent)
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
        case .day, .month: "''"
        case .client: "client"
        case .credential: "COALESCE(credential, '-')"
        case .upstream: "COALESCE(upstream, '-')"
        case .outcome: "outcome"
        case .operation: "operation"
        case .reason: "CASE WHEN outcome = 'ok' THEN '-' ELSE COALESCE(stage, '-') || ': ' || COALESCE(reason, '-') END"
        }
    }

    static func usageCells(_ reader: any DatabaseReader, tenant: String, from: Date, to: Date,
                           grouping: UsageReport.Grouping, byDay: Bool) async throws -> [UsageCell] {
        let days = byDay || grouping == .day || grouping == .month
        let day = days ? "time_ms / 86400000" : String(UsageReport.day(of: from))
        return try await reader.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(day) AS d, \(groupingSQL(grouping)) AS k, COUNT(*) AS n,
                  SUM(outcome = 'ok') AS ok, SUM(outcome = 'denied') AS denied, SUM(outcome = 'failed') AS failed,
                  SUM(CASE WHEN outcome = 'ok' THEN signatures ELSE 0 END) AS billed
                FROM usage_events WHERE tenant = ? AND time_ms >= ? AND time_ms < ?
                GROUP BY \(days ? "d, k" : "k")
                """, arguments: [tenant, LedgerChain.timeMs(from), LedgerChain.timeMs(to)])
            .map { UsageCell(day: $0["d"], key: $0["k"] ?? "-", operations: $0["n"], ok: $0["ok"], denied: $0["denied"],
                             failed: $0["failed"], billedSignatures: $0["billed"]) }
        }
    }

    static func usageEvents(_ reader: any DatabaseReader, _ q: UsageEventQuery) async throws -> [StoredEvent] {
        var conditions = [String](), arguments = StatementArguments()
        if let tenants = q.tenants {
            if tenants.isEmpty { return [] }
            conditions.append("tenant IN (" + Array(repeating: "?", count: tenants.count).joined(separator: ", ") + ")")
            arguments += StatementArguments(tenants)
        }
        if let from = q.from { conditions.append("time_ms >= ?"); arguments += [LedgerChain.timeMs(from)] }
        if let to = q.to { conditions.append("time_ms < ?"); arguments += [LedgerChain.timeMs(to)] }
        if let outcome = q.outcome { conditions.append("outcome = ?"); arguments += [outcome.rawValue] }
        if let a = q.after { conditions.append("(time_ms, tenant, seq) > (?, ?, ?)"); arguments += [a.timeMs, a.tenant, a.seq] }
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [max(0, q.limit)]
        let sql = "SELECT * FROM usage_events \(whereSQL) ORDER BY time_ms, tenant, seq LIMIT ?"
        let bound = arguments
        return try await reader.read { db in
            try Row.fetchAll(db, sql: sql, arguments: bound).map(storedEvent)
        }
    }

    static func storedEvent(_ row: Row) -> StoredEvent {
        StoredEvent(seq: row["seq"], event: LedgerRow.event(row), timeMs: row["time_ms"], previousHash: row["prev_hash"],
                    hash: row["hash"])
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
    /// Rows per INSERT statement: 20 arguments each, well under SQLite's limit; one prepared
    /// statement per size, cached, so a batch costs a handful of statement executions.
    static let rowsPerInsert = 64
    /// Ids per duplicate lookup.
    static let idsPerLookup = 500

    /// The statement text for 1…rowsPerInsert rows, made once: it is also the statement cache's key.
    static let insertSQLByRows: [String] = (0...rowsPerInsert).map(insertSQL(rows:))

    static func insertSQL(rows: Int) -> String {
        let tuple = "(" + Array(repeating: "?", count: 21).joined(separator: ",") + ")"
        return """
            INSERT INTO usage_events (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
              sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash,
              client_request_id)
            VALUES \(Array(repeating: tuple, count: rows).joined(separator: ","))
            """
    }

    static func append(_ events: [UsageEvent], heads: [String: ChainHead], checkpoints: CheckpointSigner?,
                       db: Database) throws -> [String: ChainHead] {
        // A retried request (same deterministic id) is recorded once. Only ids the client chose
        // can repeat, so only they are looked up and kept in `usage_retry_ids`: the event table
        // itself has no index on the (random) id, which would cost a page write per event.
        let retryable = events.filter(\.requestIDFromClient)
        var recorded = Set<String>()
        var i = 0
        while i < retryable.count {
            let slice = retryable[i..<min(retryable.count, i + idsPerLookup)]
            let lookup = try db.cachedStatement(
                sql: "SELECT id FROM usage_retry_ids WHERE id IN (" + Array(repeating: "?", count: slice.count).joined(separator: ",") + ")")
            for id in try String.fetchAll(lookup, arguments: StatementArguments(slice.map { $0.id })) { recorded.insert(id) }
            i += idsPerLookup
        }
        let fresh = recorded.isEmpty ? events : events.filter { !recorded.contains($0.id) }
        let chained = try LedgerChain.extend(fresh, after: heads, signer: checkpoints)
        var start = 0
        while start < chained.rows.count {
            let end = min(chained.rows.count, start + rowsPerInsert)
            let insert = try db.cachedStatement(sql: insertSQLByRows[end - start])
            try bindAndStep(insert, chained.rows[start..<end], db)
            start = end
        }
        for r in chained.rows where r.event.requestIDFromClient {
            try db.cachedStatement(sql: "INSERT INTO usage_retry_ids (id, tenant, seq) VALUES (?, ?, ?)")
                .execute(arguments: [r.event.id, r.event.tenantID, r.seq])
        }
        for cp in chained.checkpoints {
            try db.execute(sql: """
                INSERT OR REPLACE INTO checkpoints (tenant, seq, hash, time_ms, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [cp.tenant, cp.seq, cp.hash, cp.timeMs, cp.keyID, cp.signature])
        }
        return chained.heads
    }
}

extension LedgerWriter {
    /// Binds a multi-row insert straight through the SQLite C API: GRDB's argument arrays
    /// (an existential and a conversion per value) cost more than the insert itself.
    static func bindAndStep(_ statement: Statement, _ rows: ArraySlice<StoredEvent>, _ db: Database) throws {
        let stmt = statement.sqliteStatement
        sqlite3_reset(stmt)
        var index: Int32 = 1
        func text(_ s: String?) {
            if let s { sqlite3_bind_text(stmt, index, s, -1, sqliteTransient) } else { sqlite3_bind_null(stmt, index) }
            index += 1
        }
        func int(_ v: Int64) {
            sqlite3_bind_int64(stmt, index, v)
            index += 1
        }
        func blob(_ d: Data?) {
            if let d {
                if d.isEmpty {
                    sqlite3_bind_zeroblob(stmt, index, 0)
                } else {
                    d.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32($0.count), sqliteTransient) }
                }
            } else {
                sqlite3_bind_null(stmt, index)
            }
            index += 1
        }
        for r in rows {
            let e = r.event
            text(e.tenantID); int(r.seq); text(e.id); int(r.timeMs); text(e.clientID); text(e.credentialID); text(e.upstream)
            text(e.operation); int(Int64(e.signatures)); text(e.signAlgorithm); text(e.hashAlgorithm); text(e.outcome.rawValue)
            text(e.stage); text(e.reason); int(Int64(e.latencyMicros)); text(e.requestID); text(e.evidence); blob(e.answer)
            blob(r.previousHash); blob(r.hash); int(e.requestIDFromClient ? 1 : 0)
        }
        let rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        guard rc == SQLITE_DONE else {
            let message = db.sqliteConnection.map { String(cString: sqlite3_errmsg($0)) } ?? "insert failed"
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: message)
        }
    }

    static let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

enum LedgerRow {
    /// Reads v2 files too (`ledger verify` and `report` open files read-only, unmigrated).
    static func event(_ row: Row) -> UsageEvent {
        UsageEvent(
            id: row["id"], time: Date(timeIntervalSince1970: Double(row["time_ms"] as Int64) / 1000),
            tenantID: row["tenant"], clientID: row["client"], credentialID: row["credential"], upstream: row["upstream"],
            operation: row["operation"], signatures: row["signatures"], signAlgorithm: row["sign_algo"],
            hashAlgorithm: row["hash_algo"], outcome: UsageOutcome(rawValue: row["outcome"]) ?? .failed,
            stage: row["stage"], reason: row["reason"], latencyMicros: row["latency_us"], requestID: row["request_id"],
            evidence: row["evidence"], answer: row["answer"], requestIDFromClient: (row["client_request_id"] as Bool?) ?? false)
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
        m.registerMigration("v3: no index on the event id; retry ids (client-chosen request ids) in a table of their own") { db in
            // SQLite cannot drop a UNIQUE constraint in place: the table is rebuilt. Every id
            // of an older ledger stays findable as a retry, since whether the client chose it
            // was not recorded then.
            try db.execute(sql: """
                CREATE TABLE usage_events_v3 (
                  tenant TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, time_ms INTEGER NOT NULL,
                  client TEXT NOT NULL, credential TEXT, upstream TEXT, operation TEXT NOT NULL,
                  signatures INTEGER NOT NULL, sign_algo TEXT, hash_algo TEXT, outcome TEXT NOT NULL, stage TEXT,
                  reason TEXT, latency_us INTEGER NOT NULL, request_id TEXT NOT NULL, evidence TEXT, answer BLOB,
                  prev_hash BLOB NOT NULL, hash BLOB NOT NULL, client_request_id INTEGER NOT NULL DEFAULT 0,
                  PRIMARY KEY (tenant, seq));
                INSERT INTO usage_events_v3 (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
                  sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash)
                  SELECT tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
                  sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash
                  FROM usage_events;
                CREATE TABLE usage_retry_ids (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
                INSERT INTO usage_retry_ids (id, tenant, seq) SELECT id, tenant, seq FROM usage_events;
                DROP TABLE usage_events;
                ALTER TABLE usage_events_v3 RENAME TO usage_events;
                CREATE INDEX usage_events_by_time ON usage_events (tenant, time_ms);
                """)
        }
        m.registerMigration("v4: PIN and OTP attempts of local credentials") { db in
            try db.execute(sql: """
                CREATE TABLE authorization_attempts (
                  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_step INTEGER NOT NULL) WITHOUT ROWID
                """)
        }
        m.registerMigration("v5: how far the database has come through the usage journal") { db in
            try db.execute(sql: """
                CREATE TABLE journal_position (id INTEGER PRIMARY KEY CHECK (id = 1), applied_seq INTEGER NOT NULL)
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
