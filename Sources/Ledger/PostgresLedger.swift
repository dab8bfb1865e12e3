import Foundation
import GatewayCore
import Logging
import NIOCore
import PostgresNIO

/// The shared usage ledger: one PostgreSQL database that several gateway instances write.
///
/// Each instance batches its pending events into one transaction (group commit, as on
/// SQLite). The chain of a tenant stays one chain across instances: its head is a row of
/// `ledger_heads`, locked (`FOR UPDATE`, tenants in sorted order so two instances never
/// deadlock) for the length of the transaction that extends it. A retried event id is
/// looked up after the lock, so two instances receiving the same retry record it once.
///
/// `record` returns once the transaction holding the event is committed (synchronous commit).
public final class PostgresLedger: UsageLedger, LedgerStore, LedgerLifecycle, EvidenceStore, AuthorizationAttempts {
    let client: PostgresClient
    private let runner: Task<Void, Never>
    let logger: Logger
    private let checkpoints: CheckpointSigner?
    /// Set once `init` has connected; the writes it batches need the finished ledger.
    private let commits: GroupCommit<UsageEvent>
    /// Rows per INSERT statement: 20 parameters each, under PostgreSQL's 65,535.
    static let rowsPerStatement = 1000

    /// Connects (the pool runs in a task this ledger owns until `shutdown`) and, unless
    /// `migrate` is false, brings the schema up to date. Fails within `connectTimeout` when the
    /// server cannot be reached or refuses the credentials.
    public init(settings: GatewayConfiguration.PostgresLedgerSettings, checkpoints: CheckpointSigner?, migrate: Bool = true,
                connectTimeout: Duration = .seconds(15),
                logger: Logger = Logger(label: "cscgate.ledger.postgres")) async throws {
        // synchronous_commit is asked for on every connection: a commit must be flushed before
        // its signatures are answered, whatever the server's or the role's default says.
        let client = try settings.client(application: "cscgate", connectTimeout: connectTimeout, logger: logger,
                                         parameters: [("synchronous_commit", "on")])
        self.client = client
        self.runner = Task { await client.run() }
        self.logger = logger
        self.checkpoints = checkpoints
        let writer = PostgresChainWriter(client: client, signer: checkpoints, logger: logger)
        self.commits = GroupCommit(closedError: { PostgresLedgerError(message: "the ledger is shut down") }, driver: .task { events in
            do {
                try await writer.append(events, copy: false)
            } catch {
                logger.error("usage batch could not be committed", metadata: [
                    "events": .stringConvertible(events.count), "error": .string(PostgresLedgerError(error).description),
                ])
                throw PostgresLedgerError(error)
            }
        })
        do {
            try await Self.withDeadline(connectTimeout, what: "connecting to \(settings.url)") {
                if migrate {
                    try await PostgresLedgerSchema.migrate(client, schema: settings.schema, logger: logger)
                } else {
                    _ = try await client.query("SELECT 1 FROM usage_events LIMIT 1", logger: logger).collect()
                }
                // A client cannot turn the server's own flushing back on: say so where the operator looks.
                if try await Self.setting("fsync", client, logger) == "off" {
                    logger.warning("PostgreSQL runs with fsync=off: ledger commits do not survive a crash of the database host")
                }
            }
        } catch {
            runner.cancel()
            await runner.value
            throw PostgresLedgerError(error)
        }
    }

    /// A run-time setting as this ledger's connections see it (`SHOW`).
    static func setting(_ name: String, _ client: PostgresClient, _ logger: Logger) async throws -> String? {
        guard name.allSatisfy({ $0.isLetter || $0 == "_" }) else { return nil }
        for try await value in try await client.query(PostgresQuery(unsafeSQL: "SHOW \(name)"), logger: logger)
            .decode(String.self) {
            return value
        }
        return nil
    }

    /// Stored once per content address, committed before the address is handed out.
    public func storeEvidence(_ der: Data) async throws -> String {
        let address = EvidenceHex.sha256(der)
        let millis = LedgerChain.timeMs(Date())
        try await client.query("""
            INSERT INTO ocsp_evidence (address, der, stored_ms) VALUES (\(address), \(der), \(millis))
            ON CONFLICT (address) DO NOTHING
            """, logger: logger)
        return address
    }

    public func evidence(address: String) async throws -> Data? {
        for try await der in try await client.query("SELECT der FROM ocsp_evidence WHERE address = \(address)", logger: logger)
            .decode(Data.self) {
            return der
        }
        return nil
    }

    public func record(_ event: UsageEvent) async throws {
        try await commits.submit(event)
    }

    /// No reservations here: a signing's event is committed after it, as `record` does.
    public func reserveSigning(_ planned: UsageEvent) -> UsageReservation? { nil }

    public func fulfil(_ reservation: UsageReservation, with event: UsageEvent) async throws {
        try await record(event)
    }

    public func release(_ reservation: UsageReservation, with event: UsageEvent) async throws {
        try await record(event)
    }

    // MARK: PIN and OTP attempts, one statement each, shared by every instance on this ledger

    public func reserve(_ key: String, limit: Int) async throws -> Bool {
        let rows = try await client.query("""
            INSERT INTO authorization_attempts AS a (key, failures, last_step) VALUES (\(key), 1, -1)
            ON CONFLICT (key) DO UPDATE SET failures = a.failures + 1 WHERE a.failures < \(limit)
            RETURNING a.failures
            """, logger: logger)
        for try await _ in rows.decode(Int.self) { return true }
        return false
    }

    public func accept(_ key: String, step: Int64?) async throws -> Bool {
        guard let step else {
            try await client.query("UPDATE authorization_attempts SET failures = 0 WHERE key = \(key)", logger: logger)
            return true
        }
        let rows = try await client.query("""
            INSERT INTO authorization_attempts AS a (key, failures, last_step) VALUES (\(key), 0, \(step))
            ON CONFLICT (key) DO UPDATE SET failures = 0, last_step = EXCLUDED.last_step WHERE a.last_step < EXCLUDED.last_step
            RETURNING a.failures
            """, logger: logger)
        for try await _ in rows.decode(Int.self) { return true }
        return false
    }

    public func failures(_ key: String) async throws -> Int {
        for try await n in try await client.query("SELECT failures FROM authorization_attempts WHERE key = \(key)", logger: logger)
            .decode(Int.self) {
            return n
        }
        return 0
    }

    public func unlock(_ key: String) async throws {
        try await client.query("UPDATE authorization_attempts SET failures = 0 WHERE key = \(key)", logger: logger)
    }

    /// Appends already-made events in transactions of `chunk`, through COPY and without the
    /// group-commit queue: for imports and benchmarks, not for the request path.
    public func load(_ events: [UsageEvent], chunk: Int = 50_000) async throws {
        let writer = PostgresChainWriter(client: client, signer: checkpoints, logger: logger)
        var start = 0
        while start < events.count {
            try await writer.append(Array(events[start..<min(events.count, start + chunk)]), copy: true)
            start += chunk
        }
    }
    static let eventColumns = ["tenant", "seq", "id", "time_ms", "client", "credential", "upstream", "operation", "signatures",
                               "sign_algo", "hash_algo", "outcome", "stage", "reason", "latency_us", "request_id", "evidence",
                               "answer", "prev_hash", "hash", "client_request_id"]

    static func insertEvents(_ rows: ArraySlice<StoredEvent>) throws -> PostgresQuery {
        var binds = PostgresBindings(capacity: rows.count * eventColumns.count)
        var sql = "INSERT INTO usage_events (\(eventColumns.joined(separator: ", "))) VALUES "
        var n = 0
        for (i, r) in rows.enumerated() {
            let e = r.event
            if i > 0 { sql += ", " }
            sql += "(" + (1...eventColumns.count).map { "$\(n + $0)" }.joined(separator: ", ") + ")"
            n += eventColumns.count
            binds.append(e.tenantID); binds.append(r.seq); binds.append(e.id); binds.append(r.timeMs)
            binds.append(e.clientID); binds.append(e.credentialID); binds.append(e.upstream); binds.append(e.operation)
            binds.append(e.signatures); binds.append(e.signAlgorithm); binds.append(e.hashAlgorithm)
            binds.append(e.outcome.rawValue); binds.append(e.stage); binds.append(e.reason); binds.append(e.latencyMicros)
            binds.append(e.requestID); binds.append(e.evidence); try binds.append(e.answer); try binds.append(r.previousHash)
            try binds.append(r.hash); binds.append(e.requestIDFromClient)
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    /// COPY … FROM STDIN in text format: strings escaped, NULL as \N, bytea as \\x<hex>.
    static func copyEvents(_ rows: [StoredEvent], _ conn: PostgresConnection, logger: Logger) async throws {
        try await conn.copyFrom(table: "usage_events", columns: eventColumns, logger: logger) { writer in
            var buffer = ByteBuffer()
            buffer.reserveCapacity(1 << 20)
            for r in rows {
                let e = r.event
                let fields: [String?] = [
                    e.tenantID, String(r.seq), e.id, String(r.timeMs), e.clientID, e.credentialID, e.upstream, e.operation,
                    String(e.signatures), e.signAlgorithm, e.hashAlgorithm, e.outcome.rawValue, e.stage, e.reason,
                    String(e.latencyMicros), e.requestID, e.evidence,
                ]
                for f in fields {
                    if let f { buffer.writeString(copyEscape(f)) } else { buffer.writeStaticString("\\N") }
                    buffer.writeStaticString("\t")
                }
                if let answer = e.answer { buffer.writeString("\\\\x" + hex(answer)) } else { buffer.writeStaticString("\\N") }
                buffer.writeString("\t\\\\x" + hex(r.previousHash) + "\t\\\\x" + hex(r.hash))
                buffer.writeString(e.requestIDFromClient ? "\tt\n" : "\tf\n")
                if buffer.readableBytes > (1 << 20) - 4096 {
                    try await writer.write(buffer)
                    buffer.clear()
                }
            }
            if buffer.readableBytes > 0 { try await writer.write(buffer) }
        }
    }

    static func copyEscape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 9 || $0 == 10 || $0 == 13 }) else { return s }
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func hex(_ data: Data) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes = [UInt8]()
        bytes.reserveCapacity(data.count * 2)
        for b in data {
            bytes.append(digits[Int(b >> 4)])
            bytes.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func recordedEvent(id: String) async throws -> UsageEvent? {
        // As on SQLite: only a request id the client chose can come again.
        let rows = try await client.query("SELECT * FROM usage_events WHERE id = \(id) AND client_request_id", logger: logger)
            .collect()
        return try rows.first.map { try Self.storedEvent($0).event }
    }

    /// Lets pending records finish, then closes the pool. Later records fail.
    public func shutdown() async {
        await commits.close()
        runner.cancel()
        await runner.value
    }

    // MARK: reading (LedgerStore)

    public func tenants() async throws -> [String] {
        // A tenant whose events were all deleted keeps its head row: verify still names it.
        var out = Set<String>()
        let rows = try await client.query(
            "SELECT DISTINCT tenant FROM usage_events UNION SELECT tenant FROM ledger_heads WHERE seq > 0")
        for try await t in rows.decode(String.self) { out.insert(t) }
        return out.sorted()
    }

    public func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent] {
        let rows = try await client.query(
            "SELECT * FROM usage_events WHERE tenant = \(tenant) AND seq > \(seq) ORDER BY seq LIMIT \(limit)").collect()
        return try rows.map(Self.storedEvent)
    }

    public func checkpoints(tenant: String) async throws -> [Checkpoint] {
        var out = [Checkpoint]()
        let rows = try await client.query(
            "SELECT tenant, seq, hash, time_ms, key_id, signature FROM checkpoints WHERE tenant = \(tenant) ORDER BY seq")
        for try await (t, seq, hash, timeMs, keyID, signature) in rows.decode((String, Int64, Data, Int64, String, Data).self) {
            out.append(Checkpoint(tenant: t, seq: seq, hash: hash, timeMs: timeMs, keyID: keyID, signature: signature))
        }
        return out
    }

    public func usageCells(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping, byDay: Bool) async throws
        -> [UsageCell] {
        let days = byDay || grouping == .day || grouping == .month
        let day = days ? "time_ms / 86400000" : "\(UsageReport.day(of: from))::bigint"
        let key = switch grouping {
        case .day, .month: "''"
        case .client: "client"
        case .credential: "COALESCE(credential, '-')"
        case .upstream: "COALESCE(upstream, '-')"
        case .outcome: "outcome"
        case .operation: "operation"
        case .reason: "CASE WHEN outcome = 'ok' THEN '-' ELSE COALESCE(stage, '-') || ': ' || COALESCE(reason, '-') END"
        }
        var binds = PostgresBindings()
        binds.append(tenant); binds.append(LedgerChain.timeMs(from)); binds.append(LedgerChain.timeMs(to))
        let rows = try await client.query(PostgresQuery(unsafeSQL: """
            SELECT \(day) AS d, \(key) AS k, COUNT(*), COUNT(*) FILTER (WHERE outcome = 'ok'),
              COUNT(*) FILTER (WHERE outcome = 'denied'), COUNT(*) FILTER (WHERE outcome = 'failed'),
              COALESCE(SUM(signatures) FILTER (WHERE outcome = 'ok'), 0)
            FROM usage_events WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3
            GROUP BY \(days ? "1, 2" : "2")
            """, binds: binds))
        var cells = [UsageCell]()
        for try await (d, k, n, ok, denied, failed, billed) in rows.decode((Int64, String?, Int, Int, Int, Int, Int).self) {
            cells.append(UsageCell(day: d, key: k ?? "-", operations: n, ok: ok, denied: denied, failed: failed,
                                   billedSignatures: billed))
        }
        return cells
    }

    public func usageEvents(_ q: UsageEventQuery) async throws -> [StoredEvent] {
        var conditions = [String](), binds = PostgresBindings()
        func next() -> String { "$\(binds.count)" }
        if let tenants = q.tenants {
            if tenants.isEmpty { return [] }
            binds.append(tenants); conditions.append("tenant = ANY(\(next())::text[])")
        }
        if let from = q.from { binds.append(LedgerChain.timeMs(from)); conditions.append("time_ms >= \(next())") }
        if let to = q.to { binds.append(LedgerChain.timeMs(to)); conditions.append("time_ms < \(next())") }
        if let outcome = q.outcome { binds.append(outcome.rawValue); conditions.append("outcome = \(next())") }
        if let a = q.after {
            binds.append(a.timeMs); let t = next()
            binds.append(a.tenant); let n = next()
            binds.append(a.seq); let s = next()
            // Byte order for tenant names, as on SQLite, whatever the database's collation.
            conditions.append("(time_ms, tenant COLLATE \"C\", seq) > (\(t), \(n), \(s))")
        }
        binds.append(max(0, q.limit))
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let rows = try await client.query(PostgresQuery(unsafeSQL: """
            SELECT * FROM usage_events \(whereSQL) ORDER BY time_ms, tenant COLLATE "C", seq LIMIT \(next())
            """, binds: binds)).collect()
        return try rows.map(Self.storedEvent)
    }

    static func storedEvent(_ row: PostgresRow) throws -> StoredEvent {
        let r = row.makeRandomAccess()
        func s(_ n: String) throws -> String { try r[n].decode(String.self) }
        func o(_ n: String) throws -> String? { try r[n].decode(String?.self) }
        let timeMs = try r["time_ms"].decode(Int64.self)
        let event = UsageEvent(
            id: try s("id"), time: Date(timeIntervalSince1970: Double(timeMs) / 1000), tenantID: try s("tenant"),
            clientID: try s("client"), credentialID: try o("credential"), upstream: try o("upstream"),
            operation: try s("operation"), signatures: try r["signatures"].decode(Int.self), signAlgorithm: try o("sign_algo"),
            hashAlgorithm: try o("hash_algo"), outcome: UsageOutcome(rawValue: try s("outcome")) ?? .failed,
            stage: try o("stage"), reason: try o("reason"), latencyMicros: try r["latency_us"].decode(Int.self),
            requestID: try s("request_id"), evidence: try o("evidence"), answer: try r["answer"].decode(Data?.self),
            requestIDFromClient: try r["client_request_id"].decode(Bool.self))
        return StoredEvent(seq: try r["seq"].decode(Int64.self), event: event, timeMs: timeMs,
                           previousHash: try r["prev_hash"].decode(Data.self), hash: try r["hash"].decode(Data.self))
    }

    /// Drops the ledger's schema with everything in it: for tests and benchmarks that want a
    /// fresh ledger, never called by the gateway.
    public static func dropSchema(_ settings: GatewayConfiguration.PostgresLedgerSettings) async throws {
        var s = settings
        s.schema = "public"
        s.maxConnections = 1
        let password = try settings.password?.resolve()
        var config = PostgresClient.Configuration(host: s.host, port: s.port, username: s.username, password: password,
                                                  database: s.database, tls: .disable)
        if settings.tls != .disable { config.tls = .prefer(.makeClientConfiguration()) }
        let client = PostgresClient(configuration: config)
        let runner = Task { await client.run() }
        defer { runner.cancel() }
        do {
            try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(settings.schema)\" CASCADE"))
        } catch {
            throw PostgresLedgerError(error)
        }
    }

    static func withDeadline<T: Sendable>(_ limit: Duration, what: String,
                                          _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw PostgresLedgerError(message: "\(what): no answer within \(limit)")
            }
            return value
        }
    }
}

/// Extends chains in one PostgreSQL transaction per batch; holds no state of its own (the
/// heads are rows), so any number of instances can write.
struct PostgresChainWriter: Sendable {
    let client: PostgresClient
    let signer: CheckpointSigner?
    let logger: Logger

    /// One transaction: lock the heads of the batch's tenants, drop ids already recorded,
    /// chain the rest after the locked heads, write events, heads and checkpoints, commit.
    func append(_ events: [UsageEvent], copy: Bool) async throws {
        let signer = signer
        let logger = logger
        try await client.withTransaction(logger: logger) { conn in
            let tenants = Array(Set(events.map(\.tenantID))).sorted()
            try await conn.query("""
                INSERT INTO ledger_heads (tenant, seq, hash)
                SELECT t, 0, \(ChainHead.genesis) FROM unnest(\(tenants)::text[]) AS t ORDER BY t
                ON CONFLICT (tenant) DO NOTHING
                """, logger: logger)
            var heads = [String: ChainHead]()
            let locked = try await conn.query(
                "SELECT tenant, seq, hash FROM ledger_heads WHERE tenant = ANY(\(tenants)::text[]) ORDER BY tenant FOR UPDATE",
                logger: logger)
            for try await (tenant, seq, hash) in locked.decode((String, Int64, Data).self) {
                heads[tenant] = ChainHead(seq: seq, hash: hash)
            }
            // After the lock: a retry recorded meanwhile by another instance is visible now.
            var recorded = Set<String>()
            let ids = Array(Set(events.map(\.id)))
            let existing = try await conn.query("SELECT id FROM usage_events WHERE id = ANY(\(ids)::text[])", logger: logger)
            for try await id in existing.decode(String.self) { recorded.insert(id) }
            let chained = try LedgerChain.extend(events.filter { !recorded.contains($0.id) }, after: heads, signer: signer)
            if chained.rows.isEmpty { return }
            if copy {
                try await PostgresLedger.copyEvents(chained.rows, conn, logger: logger)
            } else {
                var start = 0
                while start < chained.rows.count {
                    let end = min(chained.rows.count, start + PostgresLedger.rowsPerStatement)
                    try await conn.query(try PostgresLedger.insertEvents(chained.rows[start..<end]), logger: logger)
                    start = end
                }
            }
            let changed = chained.heads.filter { heads[$0.key] != $0.value }.sorted { $0.key < $1.key }
            try await conn.query("""
                UPDATE ledger_heads AS h SET seq = v.seq, hash = decode(v.hex, 'hex')
                FROM unnest(\(changed.map(\.key))::text[], \(changed.map(\.value.seq))::bigint[],
                            \(changed.map { PostgresLedger.hex($0.value.hash) })::text[]) AS v(tenant, seq, hex)
                WHERE h.tenant = v.tenant
                """, logger: logger)
            for cp in chained.checkpoints {
                try await conn.query("""
                    INSERT INTO checkpoints (tenant, seq, hash, time_ms, key_id, signature)
                    VALUES (\(cp.tenant), \(cp.seq), \(cp.hash), \(cp.timeMs), \(cp.keyID), \(cp.signature))
                    ON CONFLICT (tenant, seq) DO UPDATE SET hash = excluded.hash, time_ms = excluded.time_ms,
                      key_id = excluded.key_id, signature = excluded.signature
                    """, logger: logger)
            }
        }
    }
}

/// A PostgreSQL failure in words an operator can act on (PSQLError's own description hides
/// the server's message on purpose).
public struct PostgresLedgerError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(message: String) { description = message }

    init(_ error: any Error) {
        if let e = error as? PostgresLedgerError { self = e; return }
        if let e = error as? PSQLError {
            if let server = e.serverInfo, let message = server[.message] {
                let code = server[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                description = message + code
            } else if let underlying = e.underlying {
                description = "\(e.code): \(underlying)"
            } else {
                description = "\(e.code)"
            }
            return
        }
        description = "\(error)"
    }
}

/// Schema changes, in order, each applied once per schema inside one transaction, under an
/// advisory lock so that instances starting together do not race.
enum PostgresLedgerSchema {
    static let migrations: [(name: String, statements: [String])] = [
        ("v1: usage events, checkpoints and chain heads", [
            """
            CREATE TABLE usage_events (
              tenant TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, time_ms BIGINT NOT NULL,
              client TEXT NOT NULL, credential TEXT, upstream TEXT, operation TEXT NOT NULL,
              signatures INTEGER NOT NULL, sign_algo TEXT, hash_algo TEXT, outcome TEXT NOT NULL, stage TEXT,
              reason TEXT, latency_us BIGINT NOT NULL, request_id TEXT NOT NULL, evidence TEXT, answer BYTEA,
              prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL,
              PRIMARY KEY (tenant, seq))
            """,
            "CREATE INDEX usage_events_by_time ON usage_events (tenant, time_ms)",
            """
            CREATE TABLE checkpoints (
              tenant TEXT NOT NULL, seq BIGINT NOT NULL, hash BYTEA NOT NULL, time_ms BIGINT NOT NULL,
              key_id TEXT NOT NULL, signature BYTEA NOT NULL,
              PRIMARY KEY (tenant, seq))
            """,
            // The head of each tenant's chain: the row every writer locks to extend it.
            "CREATE TABLE ledger_heads (tenant TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash BYTEA NOT NULL)",
        ]),
        ("v2: OCSP responses kept as evidence", [
            "CREATE TABLE ocsp_evidence (address TEXT PRIMARY KEY, der BYTEA NOT NULL, stored_ms BIGINT NOT NULL)",
        ]),
        ("v3: whether the client chose the request id", [
            "ALTER TABLE usage_events ADD COLUMN client_request_id BOOLEAN NOT NULL DEFAULT false",
        ]),
        ("v4: PIN and OTP attempts of local credentials", [
            "CREATE TABLE authorization_attempts (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_step BIGINT NOT NULL)",
        ]),
    ]

    static func migrate(_ client: PostgresClient, schema: String, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(hashtext(\("cscgate-ledger-migrations:" + schema)))",
                                 logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""), logger: logger)
            try await conn.query("""
                CREATE TABLE IF NOT EXISTS ledger_migrations (
                  name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                """, logger: logger)
            var applied = Set<String>()
            for try await name in try await conn.query("SELECT name FROM ledger_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for migration in migrations where !applied.contains(migration.name) {
                logger.info("applying ledger migration", metadata: ["migration": .string(migration.name), "schema": .string(schema)])
                for statement in migration.statements {
                    try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await conn.query("INSERT INTO ledger_migrations (name) VALUES (\(migration.name))", logger: logger)
            }
        }
    }
}

extension GatewayConfiguration.PostgresLedgerSettings {
    /// Starts a client (its pool runs in the returned task until cancelled) and runs `install`
    /// within `connectTimeout`; on failure the client is stopped again and the error thrown.
    func start(application: String, connectTimeout: Duration, logger: Logger,
               install: @escaping @Sendable (PostgresClient) async throws -> Void) async throws -> (PostgresClient, Task<Void, Never>) {
        // Short: while the server is away, a decision must not wait long for a connection.
        let client = try client(application: application, connectTimeout: .seconds(2), logger: logger)
        let runner = Task { await client.run() }
        do {
            try await PostgresLedger.withDeadline(connectTimeout, what: "connecting to \(url)") { try await install(client) }
        } catch {
            runner.cancel()
            await runner.value
            throw PostgresLedgerError(error)
        }
        return (client, runner)
    }

    /// A client for this database (password resolved now, TLS as configured, the schema on the
    /// search path), not yet running: its owner runs it in a task of its own.
    func client(application: String, connectTimeout: Duration, logger: Logger,
                parameters: [(String, String)] = []) throws -> PostgresClient {
        let password = try password?.resolve()
        let tls: PostgresClient.Configuration.TLS = switch self.tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
        var config = PostgresClient.Configuration(host: host, port: port, username: username,
                                                  password: password, database: database, tls: tls)
        config.options.maximumConnections = maxConnections
        config.options.connectTimeout = connectTimeout
        config.options.additionalStartupParameters = [("search_path", schema), ("application_name", application)] + parameters
        return PostgresClient(configuration: config, backgroundLogger: logger)
    }
}
