import Foundation
import GatewayCore
import Logging

/// What verification and reports read from a ledger, whatever keeps it. Each backend answers
/// these few questions in its own SQL; `LedgerVerifier` and `UsageReport` exist once.
public protocol LedgerStore: Sendable {
    /// Tenants that have at least one event, sorted.
    func tenants() async throws -> [String]
    /// At most `limit` events of `tenant` whose seq is above `seq`, in seq order.
    func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent]
    /// The tenant's stored checkpoints, in seq order.
    func checkpoints(tenant: String) async throws -> [Checkpoint]
    /// Counts of `tenant`'s events with `from <= time < to`, one cell per key of `grouping`
    /// (empty for `day` and `month`) and, when `byDay` (always for `day` and `month`), per UTC
    /// day; otherwise every cell's day is the day of `from`. Reports, invoices and the chart
    /// are sums of these. Days cost a bigger sort, so they are asked for only when needed.
    func usageCells(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping, byDay: Bool) async throws
        -> [UsageCell]
    /// Events matching `query`, ordered by (time, tenant, seq), at most `query.limit`.
    func usageEvents(_ query: UsageEventQuery) async throws -> [StoredEvent]
}

/// What one scan returns: the counts of one key on one UTC day.
public struct UsageCell: Sendable, Equatable {
    /// Days since 1970-01-01 (UTC).
    public var day: Int64
    public var key: String
    public var operations: Int
    public var ok: Int
    public var denied: Int
    public var failed: Int
    public var billedSignatures: Int

    public init(day: Int64, key: String, operations: Int, ok: Int, denied: Int, failed: Int, billedSignatures: Int) {
        self.day = day; self.key = key; self.operations = operations; self.ok = ok; self.denied = denied
        self.failed = failed; self.billedSignatures = billedSignatures
    }
}

/// A page of the event listing: the admin API, the tenant endpoint and the CloudEvents export.
public struct UsageEventQuery: Sendable, Equatable {
    /// nil: every tenant (operators only); otherwise exactly these.
    public var tenants: [String]?
    public var from: Date?
    public var to: Date?
    public var outcome: UsageOutcome?
    /// Continue after this event (exclusive).
    public var after: UsageCursor?
    public var limit: Int

    public init(tenants: [String]?, from: Date? = nil, to: Date? = nil, outcome: UsageOutcome? = nil,
                after: UsageCursor? = nil, limit: Int = 100) {
        self.tenants = tenants; self.from = from; self.to = to; self.outcome = outcome; self.after = after
        self.limit = limit
    }
}

/// The position of an event in listing order; opaque to clients (base64url), so paging does not
/// depend on offsets that shift while the ledger grows.
public struct UsageCursor: Sendable, Equatable {
    public var timeMs: Int64
    public var tenant: String
    public var seq: Int64

    public init(timeMs: Int64, tenant: String, seq: Int64) { self.timeMs = timeMs; self.tenant = tenant; self.seq = seq }

    public init(_ row: StoredEvent) { self.init(timeMs: row.timeMs, tenant: row.event.tenantID, seq: row.seq) }

    public var token: String {
        Data("\(timeMs):\(seq):\(tenant)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public init?(token: String) {
        var b64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard token.count <= 400, let data = Data(base64Encoded: b64), let text = String(data: data, encoding: .utf8) else {
            return nil
        }
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let t = Int64(parts[0]), let s = Int64(parts[1]) else { return nil }
        self.init(timeMs: t, tenant: String(parts[2]), seq: s)
    }
}

/// Opens the configured ledger, for writing (`serve`) or reading (`ledger verify`, `report`).
public enum LedgerBackends {
    /// The ledger `serve` records into. A PostgreSQL ledger runs its connection pool until
    /// `shutdown()`; its schema is migrated before this returns. A SQLite ledger stores what its
    /// journal holds from before (a crash) first. `inFlight` lets the SQLite journal's batches
    /// wait for operations under way.
    public static func openLedger(_ settings: GatewayConfiguration.LedgerSettings, signer: CheckpointSigner?,
                                  inFlight: OperationsInFlight? = nil, logger: Logger = Logger(label: "cscgate.ledger")) async throws
        -> any UsageLedger & LedgerStore & LedgerLifecycle {
        switch settings.store {
        case .sqlite(let path):
            var options = sqliteOptions(settings, inFlight: inFlight)
            options.logger = logger
            return try SQLiteLedger(path: path, checkpoints: signer, options: options)
        case .postgres(let pg):
            return try await PostgresLedger(settings: pg, checkpoints: signer)
        }
    }

    static func sqliteOptions(_ settings: GatewayConfiguration.LedgerSettings, inFlight: OperationsInFlight?)
        -> SQLiteLedger.Options {
        var options = SQLiteLedger.Options(journalDirectory: settings.journalDirectory,
                                           commitDelay: .microseconds(Int64((settings.commitDelay * 1000).rounded())), inFlight: inFlight,
                                           applyInterval: .microseconds(Int64((settings.applyInterval * 1000).rounded())))
        options.reservationHold = .microseconds(Int64((settings.reservationHold * 1000).rounded()))
        return options
    }

    /// What a reader found of a SQLite ledger's journal before reading the file.
    public enum JournalState: Sendable, Equatable {
        /// Nothing waited in the journal (or the ledger is PostgreSQL).
        case current
        /// Events a stopped gateway had acknowledged were stored into the file first.
        case recovered(events: Int)
        /// A running gateway writes this ledger: events of the last moment may not be in the file yet.
        case inUse
    }

    /// Before `ledger verify` or `report` read a SQLite file: if no gateway holds the ledger,
    /// store what its journal holds (after a crash) as the gateway would at start. Needs the
    /// checkpoint signer, so that checkpoints fall where they would have.
    public static func recoverJournal(_ settings: GatewayConfiguration.LedgerSettings, signer: CheckpointSigner?) throws
        -> JournalState {
        guard case .sqlite(let path) = settings.store else { return .current }
        let directory = settings.journalDirectory ?? SQLiteLedger.journalDirectory(for: path)
        guard FileManager.default.fileExists(atPath: path),
              (try? UsageJournal.segmentNames(directory).isEmpty) == false else { return .current }
        var options = sqliteOptions(settings, inFlight: nil)
        options.lockWait = .zero
        do {
            let ledger = try SQLiteLedger(path: path, checkpoints: signer, options: options)
            let recovered = ledger.recoveredEvents
            ledger.backlog.close()
            return recovered > 0 ? .recovered(events: recovered) : .current
        } catch JournalError.inUse {
            return .inUse
        }
    }

    /// Runs `body` over a reader of the configured ledger and closes it after. SQLite is opened
    /// read-only; PostgreSQL through a short-lived client.
    public static func withStore<T: Sendable>(_ settings: GatewayConfiguration.LedgerSettings,
                                              _ body: (any LedgerStore) async throws -> T) async throws -> T {
        switch settings.store {
        case .sqlite(let path):
            return try await body(SQLiteLedgerStore(path: path))
        case .postgres(let pg):
            let ledger = try await PostgresLedger(settings: pg, checkpoints: nil, migrate: false)
            do {
                let result = try await body(ledger)
                await ledger.shutdown()
                return result
            } catch {
                await ledger.shutdown()
                throw error
            }
        }
    }
}

/// A ledger that holds resources beyond its lifetime in Swift (a connection pool) and lets
/// them go on `shutdown`. Pending records finish first.
public protocol LedgerLifecycle: Sendable {
    func shutdown() async
}
