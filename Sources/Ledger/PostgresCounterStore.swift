import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// Limit and quota counters in PostgreSQL, shared by every gateway instance.
///
/// One decision is one statement: `cscgate_charge` locks the counters of the operation (in
/// key order, so two instances never deadlock), checks every charge against the server's
/// clock, and writes them all or none. Exact under any concurrency, whatever the instances'
/// clocks say.
public final class PostgresCounterStore: CounterStore {
    let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger

    public var isRemote: Bool { true }

    /// Connects and installs the table and function (idempotent, under an advisory lock).
    /// Fails within `connectTimeout` when the server cannot be reached.
    public init(settings: GatewayConfiguration.PostgresLedgerSettings, connectTimeout: Duration = .seconds(15),
                logger: Logger = Logger(label: "cscgate.counters.postgres")) async throws {
        (client, runner) = try await settings.start(application: "cscgate-counters", connectTimeout: connectTimeout, logger: logger) {
            try await Self.install($0, schema: settings.schema, logger: logger)
        }
        self.logger = logger
    }

    public func charge(_ charges: [CounterCharge]) async throws -> [CounterVerdict] {
        var keys = [String](), quota = [Bool](), costs = [Double](), a = [Double](), b = [Double]()
        for ch in charges {
            keys.append(ch.key)
            costs.append(Double(ch.cost))
            switch ch.rule {
            case let .rate(interval, burst): quota.append(false); a.append(interval); b.append(Double(burst))
            case .quota(let limit): quota.append(true); a.append(Double(limit)); b.append(0)
            }
        }
        let rows = try await client.query(
            "SELECT r_ok, r_value, r_now FROM cscgate_charge(\(keys), \(quota), \(costs), \(a), \(b))", logger: logger)
        var out = [CounterVerdict]()
        for try await (ok, value, now) in rows.decode((Bool, Double, Double).self) {
            out.append(CounterVerdict(allowed: ok, value: value, now: now))
        }
        guard out.count == charges.count else { throw CounterStoreUnavailable(reason: "the store answered \(out.count) verdicts for \(charges.count) charges") }
        return out
    }

    public func refund(_ charges: [CounterCharge]) async throws {
        for ch in charges {
            guard case .quota = ch.rule else { continue }
            try await client.query(
                "UPDATE limit_counters SET value = greatest(0, value - \(Double(ch.cost))) WHERE key = \(ch.key)", logger: logger)
        }
    }

    public func seed(key: String, used: Int) async throws {
        try await client.query(
            "INSERT INTO limit_counters (key, value) VALUES (\(key), \(Double(used))) ON CONFLICT (key) DO NOTHING", logger: logger)
    }

    public func acquire(_ caps: [PermitCap], holder: String, lease: Double) async throws -> Int? {
        let keys = caps.map(\.key), limits = caps.map(\.cap)
        let rows = try await client.query(
            "SELECT cscgate_acquire(\(keys), \(limits), \(holder), \(lease))", logger: logger)
        for try await full in rows.decode(Int.self) { return full == 0 ? nil : full - 1 }
        throw CounterStoreUnavailable(reason: "the store gave no answer to a permit request")
    }

    public func release(_ keys: [String], holder: String) async throws {
        try await client.query("DELETE FROM limit_permits WHERE key = ANY(\(keys)) AND holder = \(holder)", logger: logger)
    }

    public func shutdown() async {
        runner.cancel()
        await runner.value
    }

    static let functionSQL = """
        CREATE OR REPLACE FUNCTION cscgate_charge(p_keys text[], p_quota boolean[], p_costs float8[], p_a float8[], p_b float8[])
        RETURNS TABLE(r_ok boolean, r_value float8, r_now float8) LANGUAGE plpgsql AS $fn$
        DECLARE
          t float8 := extract(epoch from clock_timestamp());
          n int := coalesce(array_length(p_keys, 1), 0);
          cur float8;
          nxt float8[] := '{}';
          oks boolean[] := '{}';
          all_ok boolean := true;
        BEGIN
          INSERT INTO limit_counters (key, value)
            SELECT k, 0 FROM unnest(p_keys) AS k ORDER BY k ON CONFLICT (key) DO NOTHING;
          PERFORM 1 FROM limit_counters c WHERE c.key = ANY(p_keys) ORDER BY c.key FOR UPDATE;
          FOR i IN 1..n LOOP
            SELECT c.value INTO cur FROM limit_counters c WHERE c.key = p_keys[i];
            IF p_quota[i] THEN
              nxt[i] := cur + p_costs[i];
              oks[i] := nxt[i] <= p_a[i];
            ELSE
              nxt[i] := greatest(cur, t) + p_costs[i] * p_a[i];
              oks[i] := nxt[i] - t <= p_b[i] * p_a[i] + 1e-9;
            END IF;
            all_ok := all_ok AND oks[i];
          END LOOP;
          IF all_ok THEN
            FOR i IN 1..n LOOP
              UPDATE limit_counters c SET value = nxt[i] WHERE c.key = p_keys[i];
            END LOOP;
          END IF;
          RETURN QUERY SELECT oks[j], nxt[j], t FROM generate_series(1, n) AS j ORDER BY j;
        END
        $fn$
        """

    /// Permits are rows, one per operation in flight under a cap; an advisory lock per key (taken
    /// in key order) makes count-then-insert exact across instances. Rows past their lease are
    /// dropped before counting: a crashed instance's permits lapse instead of blocking forever.
    /// Returns 0 when every permit was taken, else the 1-based index of the first full cap.
    static let acquireSQL = """
        CREATE OR REPLACE FUNCTION cscgate_acquire(p_keys text[], p_caps bigint[], p_holder text, p_lease float8)
        RETURNS int LANGUAGE plpgsql AS $fn$
        DECLARE
          t float8 := extract(epoch from clock_timestamp());
          k text;
          held int;
        BEGIN
          FOR k IN SELECT DISTINCT x FROM unnest(p_keys) AS x ORDER BY x LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('cscgate-permit:' || k, 0));
          END LOOP;
          DELETE FROM limit_permits WHERE key = ANY(p_keys) AND expires < t;
          FOR i IN 1..coalesce(array_length(p_keys, 1), 0) LOOP
            SELECT count(*) INTO held FROM limit_permits WHERE key = p_keys[i];
            IF held >= p_caps[i] THEN RETURN i; END IF;
          END LOOP;
          INSERT INTO limit_permits (key, holder, expires)
            SELECT DISTINCT x, p_holder, t + p_lease FROM unnest(p_keys) AS x
            ON CONFLICT (key, holder) DO NOTHING;
          RETURN 0;
        END
        $fn$
        """

    static func install(_ client: PostgresClient, schema: String, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(hashtext(\("cscgate-counters:" + schema)))", logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""), logger: logger)
            try await conn.query(
                "CREATE TABLE IF NOT EXISTS limit_counters (key TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL)",
                logger: logger)
            try await conn.query(
                "CREATE TABLE IF NOT EXISTS limit_permits (key TEXT NOT NULL, holder TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (key, holder))",
                logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: functionSQL), logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: acquireSQL), logger: logger)
        }
    }
}
