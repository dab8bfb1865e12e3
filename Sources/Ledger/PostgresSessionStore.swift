import Crypto
import CSC
import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// Tokens and SAD budgets in PostgreSQL, shared by every gateway instance (`sessions:`), so a
/// client may reach any instance: its token works and is revoked everywhere at once, and its
/// SAD signs no more than it allows in total.
///
/// Every step is one statement; the ones that decide (refresh, consume, retire) lock the row
/// they change, so concurrent requests through different instances cannot both win. A store
/// that does not answer within `timeout` refuses (503): nothing is granted on a guess.
public final class PostgresSessionStore: SessionTokens, SADBudgets {
    let client: PostgresClient
    private let runner: Task<Void, Never>
    private let timeout: Double
    private let accessLifetime: Int
    private let refreshLifetime: Int

    /// Connects and installs the tables and functions (idempotent, under an advisory lock).
    public init(settings: GatewayConfiguration.PostgresLedgerSettings, timeout: Double,
                accessLifetime: Int, refreshLifetime: Int, connectTimeout: Duration = .seconds(15),
                logger: Logger = Logger(label: "cscgate.sessions.postgres")) async throws {
        (client, runner) = try await settings.start(application: "cscgate-sessions", connectTimeout: connectTimeout, logger: logger) {
            try await Self.install($0, schema: settings.schema, logger: logger)
        }
        self.timeout = timeout
        self.accessLifetime = accessLifetime
        self.refreshLifetime = refreshLifetime
    }

    public func shutdown() async {
        runner.cancel()
        await runner.value
    }

    /// One call within the store's deadline; any failure is the client's 503, logged without
    /// the statement's arguments (they hold token digests and hashes).
    private func within<T: Sendable>(_ what: String, _ requestLogger: Logger,
                                     _ body: @escaping @Sendable () async throws -> T) async throws(CSCError) -> T {
        do {
            return try await Deadline.run(seconds: timeout, body)
        } catch {
            requestLogger.error("session store unavailable", metadata: ["step": .string(what), "error": .string("\(PostgresLedgerError(error))")])
            throw CSCError.sessionStoreUnavailable
        }
    }

    // MARK: Tokens

    private static func key(_ token: String) -> String { Data(SHA256.hash(data: Data(token.utf8))).hex }

    public func issue(tenantID: String, clientID: String, scopes: Set<String>, withRefreshToken: Bool,
                      logger requestLogger: Logger) async throws(CSCError) -> TokenResult {
        let caller = Caller(tenantID: tenantID, clientID: clientID, scopes: scopes, grantID: randomBytes(12).base64URL)
        return try await issue(for: caller, withRefreshToken: withRefreshToken, requestLogger)
    }

    private func issue(for caller: Caller, withRefreshToken: Bool, _ requestLogger: Logger) async throws(CSCError) -> TokenResult {
        let access = "cga_" + randomBytes(32).base64URL
        let refresh = withRefreshToken ? "cgr_" + randomBytes(32).base64URL : nil
        let keys = [Self.key(access)] + (refresh.map { [Self.key($0)] } ?? [])
        let lifetimes = [Double(accessLifetime)] + (refresh == nil ? [] : [Double(refreshLifetime)])
        let kinds = [false] + (refresh == nil ? [] : [true])
        let scopes = caller.scopes.sorted()
        let (client, logger) = (self.client, requestLogger)
        try await within("issue", requestLogger) {
            _ = try await client.query("""
                INSERT INTO session_tokens (key, tenant, client, scopes, grant_id, expires, is_refresh)
                SELECT k, \(caller.tenantID), \(caller.clientID), \(scopes), \(caller.grantID),
                       extract(epoch from clock_timestamp()) + l, r
                FROM unnest(\(keys)::text[], \(lifetimes)::float8[], \(kinds)::boolean[]) AS t(k, l, r)
                """, logger: logger)
        }
        return TokenResult(accessToken: access, refreshToken: refresh, expiresIn: accessLifetime)
    }

    public func authenticate(accessToken: String, logger requestLogger: Logger) async throws(CSCError) -> Caller {
        let k = Self.key(accessToken)
        let (client, logger) = (self.client, requestLogger)
        let row = try await within("authenticate", requestLogger) { () -> (String, String, [String], String, Bool, Bool, Bool)? in
            let rows = try await client.query("""
                SELECT tenant, client, scopes, grant_id, is_refresh, revoked, expires > extract(epoch from clock_timestamp())
                FROM session_tokens WHERE key = \(k)
                """, logger: logger)
            for try await r in rows.decode((String, String, [String], String, Bool, Bool, Bool).self) { return r }
            return nil
        }
        guard let (tenant, clientID, scopes, grant, isRefresh, revoked, alive) = row, !isRefresh else { throw .invalidToken() }
        guard !revoked else { throw .expiredToken("The access token was revoked") }
        guard alive else { throw .expiredToken() }
        return Caller(tenantID: tenant, clientID: clientID, scopes: Set(scopes), grantID: grant)
    }

    public func refresh(_ token: String, clientID: String?, logger requestLogger: Logger) async throws(CSCError) -> TokenResult {
        let k = Self.key(token)
        let (client, logger) = (self.client, requestLogger)
        // Taken out in one statement, so two instances refreshing one token cannot both win.
        let taken = try await within("refresh", requestLogger) { () -> (String, String, [String], String, Bool)? in
            let rows = try await client.query("""
                DELETE FROM session_tokens
                WHERE key = \(k) AND is_refresh AND NOT revoked AND (\(clientID)::text IS NULL OR client = \(clientID))
                RETURNING tenant, client, scopes, grant_id, expires > extract(epoch from clock_timestamp())
                """, logger: logger)
            for try await r in rows.decode((String, String, [String], String, Bool).self) { return r }
            return nil
        }
        guard let (tenant, owner, scopes, grant, alive) = taken else { throw .invalidGrant("The refresh token is not valid") }
        guard alive else { throw .invalidGrant("The refresh token has expired") }
        return try await issue(for: Caller(tenantID: tenant, clientID: owner, scopes: Set(scopes), grantID: grant),
                               withRefreshToken: true, requestLogger)
    }

    public func revoke(_ token: String, clientID: String, logger requestLogger: Logger) async throws(CSCError) {
        let k = Self.key(token)
        let (client, logger) = (self.client, requestLogger)
        try await within("revoke", requestLogger) {
            _ = try await client.query("""
                UPDATE session_tokens SET revoked = true
                WHERE (key = \(k) AND client = \(clientID))
                   OR grant_id = (SELECT grant_id FROM session_tokens WHERE key = \(k) AND client = \(clientID) AND is_refresh)
                """, logger: logger)
        }
    }

    // MARK: SAD budgets

    public func consume(_ claims: SADClaims, hashes: [String], logger requestLogger: Logger) async throws(CSCError) {
        let (client, logger) = (self.client, requestLogger)
        let verdict = try await within("consume", requestLogger) { () -> String in
            let rows = try await client.query("""
                SELECT cscgate_sad_consume(\(claims.id), \(claims.numSignatures), \(claims.hashes)::text[], \(Double(claims.expires)), \(hashes)::text[])
                """, logger: logger)
            for try await v in rows.decode(String.self) { return v }
            return "none"
        }
        switch verdict {
        case "ok": return
        case "used": throw .invalidRequest("Invalid parameter SAD: its signatures are used up")
        case "count": throw .invalidRequest("Numbers of signatures is too high")
        case "hash": throw .invalidRequest("Hash is not authorized by the SAD")
        default: throw .sessionStoreUnavailable
        }
    }

    public func refund(_ claims: SADClaims, hashes: [String], logger requestLogger: Logger) async {
        let (client, logger) = (self.client, requestLogger)
        // A refund that does not reach the store leaves the SAD short, never long: logged, not thrown.
        _ = try? await within("refund", requestLogger) {
            _ = try await client.query("""
                UPDATE sad_budgets SET remaining = remaining + \(hashes.count)::bigint,
                  hashes = CASE WHEN hashes IS NULL THEN NULL ELSE hashes || \(hashes)::text[] END
                WHERE id = \(claims.id)
                """, logger: logger)
        }
    }

    public func retire(_ claims: SADClaims, logger requestLogger: Logger) async throws(CSCError) -> Int {
        let (client, logger) = (self.client, requestLogger)
        return try await within("retire", requestLogger) { () -> Int in
            let rows = try await client.query("""
                SELECT cscgate_sad_retire(\(claims.id), \(claims.numSignatures), \(claims.hashes)::text[], \(Double(claims.expires)))
                """, logger: logger)
            for try await left in rows.decode(Int.self) { return left }
            return 0
        }
    }

    public func settle(_ claims: SADClaims, logger requestLogger: Logger) async {
        let (client, logger) = (self.client, requestLogger)
        _ = try? await within("settle", requestLogger) {
            _ = try await client.query("UPDATE sad_budgets SET retired = NULL, retired_hashes = NULL WHERE id = \(claims.id)",
                                   logger: logger)
        }
    }

    public func restore(_ claims: SADClaims, logger requestLogger: Logger) async {
        let (client, logger) = (self.client, requestLogger)
        _ = try? await within("restore", requestLogger) {
            _ = try await client.query("""
                UPDATE sad_budgets SET remaining = retired, hashes = retired_hashes, retired = NULL, retired_hashes = NULL
                WHERE id = \(claims.id) AND retired IS NOT NULL
                """, logger: logger)
        }
    }

    // MARK: Schema

    /// Creates the SAD's row on first use (its full budget, from the seal), locks it, checks
    /// count and hash multiset, and takes `p_take` out: all or nothing.
    static let consumeSQL = """
        CREATE OR REPLACE FUNCTION cscgate_sad_consume(p_id text, p_total bigint, p_hashes text[], p_expires float8, p_take text[])
        RETURNS text LANGUAGE plpgsql AS $fn$
        DECLARE
          left_count bigint;
          left_hashes text[];
          pos int;
          h text;
          n int := coalesce(array_length(p_take, 1), 0);
        BEGIN
          INSERT INTO sad_budgets (id, remaining, hashes, expires) VALUES (p_id, p_total, p_hashes, p_expires)
            ON CONFLICT (id) DO NOTHING;
          SELECT remaining, hashes INTO left_count, left_hashes FROM sad_budgets WHERE id = p_id FOR UPDATE;
          IF left_count <= 0 THEN RETURN 'used'; END IF;
          IF n > left_count THEN RETURN 'count'; END IF;
          IF left_hashes IS NOT NULL THEN
            FOREACH h IN ARRAY coalesce(p_take, '{}') LOOP
              pos := array_position(left_hashes, h);
              IF pos IS NULL THEN RETURN 'hash'; END IF;
              left_hashes := left_hashes[1:pos - 1] || left_hashes[pos + 1:];
            END LOOP;
          END IF;
          UPDATE sad_budgets SET remaining = left_count - n, hashes = left_hashes WHERE id = p_id;
          IF random() < 0.001 THEN
            DELETE FROM sad_budgets WHERE expires < extract(epoch from clock_timestamp()) - 60;
            DELETE FROM session_tokens WHERE expires < extract(epoch from clock_timestamp()) - 60;
          END IF;
          RETURN 'ok';
        END
        $fn$
        """

    /// Takes all a SAD has left in one step and keeps it aside until the extension settles or
    /// is undone; returns how many signatures that was.
    static let retireSQL = """
        CREATE OR REPLACE FUNCTION cscgate_sad_retire(p_id text, p_total bigint, p_hashes text[], p_expires float8)
        RETURNS bigint LANGUAGE plpgsql AS $fn$
        DECLARE
          left_count bigint;
        BEGIN
          INSERT INTO sad_budgets (id, remaining, hashes, expires) VALUES (p_id, p_total, p_hashes, p_expires)
            ON CONFLICT (id) DO NOTHING;
          SELECT remaining INTO left_count FROM sad_budgets WHERE id = p_id FOR UPDATE;
          UPDATE sad_budgets SET retired = remaining, retired_hashes = hashes, remaining = 0 WHERE id = p_id;
          RETURN left_count;
        END
        $fn$
        """

    static func install(_ client: PostgresClient, schema: String, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(hashtext(\("cscgate-sessions:" + schema)))", logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""), logger: logger)
            try await conn.query("""
                CREATE TABLE IF NOT EXISTS session_tokens (
                  key TEXT PRIMARY KEY, tenant TEXT NOT NULL, client TEXT NOT NULL, scopes TEXT[] NOT NULL,
                  grant_id TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL, is_refresh BOOLEAN NOT NULL,
                  revoked BOOLEAN NOT NULL DEFAULT false)
                """, logger: logger)
            try await conn.query("CREATE INDEX IF NOT EXISTS session_tokens_by_grant ON session_tokens (grant_id)", logger: logger)
            try await conn.query("""
                CREATE TABLE IF NOT EXISTS sad_budgets (
                  id TEXT PRIMARY KEY, remaining BIGINT NOT NULL, hashes TEXT[], expires DOUBLE PRECISION NOT NULL,
                  retired BIGINT, retired_hashes TEXT[])
                """, logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: consumeSQL), logger: logger)
            try await conn.query(PostgresQuery(unsafeSQL: retireSQL), logger: logger)
        }
    }
}

