import CSC
import Foundation
import Logging
@testable import GatewayCore
import Testing
@testable import Ledger

/// Tokens and SAD budgets: the same contract in one process and in PostgreSQL, where two
/// stores on one schema stand for two gateway instances behind a load balancer.
enum SessionBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, postgres
    var testDescription: String { self == .memory ? "in memory" : "PostgreSQL, two instances" }
}

/// Two instances' views of one session state (the same object twice in memory).
struct SessionPair: Sendable {
    let tokens: [any SessionTokens]
    let budgets: [any SADBudgets]
    let close: @Sendable () async -> Void

    static func make(_ backend: SessionBackend, accessLifetime: Int = 3600) async throws -> SessionPair {
        switch backend {
        case .memory:
            let t = TokenStore(accessLifetime: accessLifetime, refreshLifetime: 86400)
            let u = SADUsage()
            return SessionPair(tokens: [t, t], budgets: [u, u], close: {})
        case .postgres:
            let settings = try Backend.postgresSettings()
            let a = try await PostgresSessionStore(settings: settings, timeout: 5, accessLifetime: accessLifetime, refreshLifetime: 86400)
            let b = try await PostgresSessionStore(settings: settings, timeout: 5, accessLifetime: accessLifetime, refreshLifetime: 86400)
            return SessionPair(tokens: [a, b], budgets: [a, b], close: { await a.shutdown(); await b.shutdown() })
        }
    }
}

private func claims(_ n: Int, hashes: [String]? = nil, from budgets: any SADBudgets) -> SADClaims {
    SADClaims(id: budgets.newSADID(), tenantID: "acme", clientID: "acme-app", credentialID: "ec", upstreamSAD: "u",
              expires: Int(Date().timeIntervalSince1970) + 600, upstreamExpires: Int(Date().timeIntervalSince1970) + 600,
              numSignatures: n, hashes: hashes)
}

private let log = Logger(label: "session-store-test")

/// The CSC error `body` throws; nil when it succeeds (any other error is a failed test).
private func refusal(_ body: () async throws -> Void) async -> CSCError? {
    do { try await body(); return nil } catch let e as CSCError { return e } catch {
        Issue.record("not a CSC error: \(error)")
        return nil
    }
}

@Suite("Session state: tokens and SAD budgets")
struct SessionStoreTests {
    @Test("a token issued by one instance works on the other; revoking it there refuses it here at once",
          arguments: SessionBackend.allCases)
    func tokensAcrossInstances(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let issued = try await s.tokens[0].issue(tenantID: "acme", clientID: "acme-app", scopes: ["service"], withRefreshToken: false, logger: log)
        let caller = try await s.tokens[1].authenticate(accessToken: issued.accessToken, logger: log)
        #expect(caller.tenantID == "acme" && caller.clientID == "acme-app" && caller.scopes == ["service"])
        // Another client's revocation is ignored silently (RFC 7009).
        try await s.tokens[1].revoke(issued.accessToken, clientID: "other-app", logger: log)
        _ = try await s.tokens[0].authenticate(accessToken: issued.accessToken, logger: log)
        try await s.tokens[1].revoke(issued.accessToken, clientID: "acme-app", logger: log)
        let e = await refusal { _ = try await s.tokens[0].authenticate(accessToken: issued.accessToken, logger: log) }
        #expect(e?.status == 401 && e?.error == "expired_token" && e?.errorDescription.contains("revoked") == true)
        let unknown = await refusal { _ = try await s.tokens[0].authenticate(accessToken: "cga_nothing", logger: log) }
        #expect(unknown == .invalidToken())
        await s.close()
    }

    @Test("revoking a refresh token ends its grant's access tokens; a refresh token is no access token",
          arguments: SessionBackend.allCases)
    func grantRevocation(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let issued = try await s.tokens[0].issue(tenantID: "acme", clientID: "acme-app", scopes: [], withRefreshToken: true, logger: log)
        let refresh = try #require(issued.refreshToken)
        let asAccess = await refusal { _ = try await s.tokens[1].authenticate(accessToken: refresh, logger: log) }
        #expect(asAccess == .invalidToken())
        try await s.tokens[1].revoke(refresh, clientID: "acme-app", logger: log)
        let e = await refusal { _ = try await s.tokens[0].authenticate(accessToken: issued.accessToken, logger: log) }
        #expect(e?.error == "expired_token")
        let again = await refusal { _ = try await s.tokens[0].refresh(refresh, clientID: nil, logger: log) }
        #expect(again?.error == "invalid_grant")
        await s.close()
    }

    @Test("a refresh token rotates once: of ten concurrent refreshes on two instances exactly one wins",
          arguments: SessionBackend.allCases)
    func refreshRotation(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let issued = try await s.tokens[0].issue(tenantID: "acme", clientID: "acme-app", scopes: ["service"], withRefreshToken: true, logger: log)
        let refresh = try #require(issued.refreshToken)
        let wrongOwner = await refusal { _ = try await s.tokens[1].refresh(refresh, clientID: "other-app", logger: log) }
        #expect(wrongOwner?.error == "invalid_grant")
        let results = await withTaskGroup(of: TokenResult?.self) { group in
            for i in 0..<10 { group.addTask { try? await s.tokens[i % 2].refresh(refresh, clientID: "acme-app", logger: log) } }
            return await group.reduce(into: [TokenResult]()) { if let r = $1 { $0.append(r) } }
        }
        #expect(results.count == 1)
        let next = try #require(results.first)
        let caller = try await s.tokens[0].authenticate(accessToken: next.accessToken, logger: log)
        #expect(caller.scopes == ["service"])
        #expect(next.refreshToken != nil && next.refreshToken != refresh)
        await s.close()
    }

    @Test("an access token expires on every instance", arguments: SessionBackend.allCases)
    func expiry(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend, accessLifetime: 1)
        let issued = try await s.tokens[0].issue(tenantID: "acme", clientID: "acme-app", scopes: [], withRefreshToken: false, logger: log)
        _ = try await s.tokens[1].authenticate(accessToken: issued.accessToken, logger: log)
        try await Task.sleep(for: .milliseconds(1100))
        let e = await refusal { _ = try await s.tokens[1].authenticate(accessToken: issued.accessToken, logger: log) }
        #expect(e == .expiredToken())
        await s.close()
    }

    @Test("a SAD's budget is one across instances: spent on one, refused on the other; a refund gives back",
          arguments: SessionBackend.allCases)
    func budgetAcrossInstances(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let c = claims(3, from: s.budgets[0])
        try await s.budgets[0].consume(c, hashes: ["a"], logger: log)
        let tooMany = await refusal { try await s.budgets[1].consume(c, hashes: ["b", "c", "d"], logger: log) }
        #expect(tooMany?.errorDescription == "Numbers of signatures is too high")
        try await s.budgets[1].consume(c, hashes: ["b", "c"], logger: log)
        let spent = await refusal { try await s.budgets[0].consume(c, hashes: ["e"], logger: log) }
        #expect(spent?.status == 400 && spent?.errorDescription.contains("used up") == true)
        await s.budgets[1].refund(c, hashes: ["c"], logger: log)
        try await s.budgets[0].consume(c, hashes: ["c"], logger: log)
        await s.close()
    }

    @Test("SCAL 2: each bound hash signs as often as it was authorized, on whichever instance",
          arguments: SessionBackend.allCases)
    func hashBinding(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let c = claims(4, hashes: ["h1", "h2", "h1", "h3"], from: s.budgets[0])
        try await s.budgets[0].consume(c, hashes: ["h1"], logger: log)
        let foreign = await refusal { try await s.budgets[1].consume(c, hashes: ["h4"], logger: log) }
        #expect(foreign?.errorDescription == "Hash is not authorized by the SAD")
        // All or nothing: the refused request took neither of its hashes.
        let mixed = await refusal { try await s.budgets[1].consume(c, hashes: ["h2", "h4"], logger: log) }
        #expect(mixed?.errorDescription == "Hash is not authorized by the SAD")
        try await s.budgets[1].consume(c, hashes: ["h1", "h2"], logger: log)
        // One signature is left, but only for h3: a third h1 is refused for the hash, not the count.
        let again = await refusal { try await s.budgets[0].consume(c, hashes: ["h1"], logger: log) }
        #expect(again?.errorDescription == "Hash is not authorized by the SAD")
        try await s.budgets[0].consume(c, hashes: ["h3"], logger: log)
        await s.close()
    }

    @Test("twenty concurrent single signatures on two instances against a budget of 7: exactly 7 are taken",
          arguments: SessionBackend.allCases)
    func concurrentSpending(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let c = claims(7, from: s.budgets[0])
        let taken = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                group.addTask { await refusal { try await s.budgets[i % 2].consume(c, hashes: ["h\(i)"], logger: log) } == nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(taken == 7)
        await s.close()
    }

    @Test("extendTransaction: retiring takes all that is left at once; restore gives it back; settle keeps it spent",
          arguments: SessionBackend.allCases)
    func retirement(_ backend: SessionBackend) async throws {
        let s = try await SessionPair.make(backend)
        let c = claims(5, hashes: ["a", "b", "c", "d", "e"], from: s.budgets[0])
        try await s.budgets[0].consume(c, hashes: ["a", "b"], logger: log)
        #expect(try await s.budgets[1].retire(c, logger: log) == 3)
        let retired = await refusal { try await s.budgets[0].consume(c, hashes: ["c"], logger: log) }
        #expect(retired?.errorDescription.contains("used up") == true)
        await s.budgets[1].restore(c, logger: log)
        try await s.budgets[0].consume(c, hashes: ["c"], logger: log)
        #expect(try await s.budgets[0].retire(c, logger: log) == 2)
        await s.budgets[0].settle(c, logger: log)
        await s.budgets[1].restore(c, logger: log)
        let settled = await refusal { try await s.budgets[1].consume(c, hashes: ["d"], logger: log) }
        #expect(settled != nil, "a settled extension is not undone by a late restore")
        // A SAD never seen before retires with its whole budget.
        #expect(try await s.budgets[1].retire(claims(4, from: s.budgets[0]), logger: log) == 4)
        await s.close()
    }

    @Test("a step the database holds up past the timeout is refused with a 503, not waited for")
    func heldUp() async throws {
        let settings = try Backend.postgresSettings()
        let store = try await PostgresSessionStore(settings: settings, timeout: 0.3, accessLifetime: 60, refreshLifetime: 60)
        let c = claims(2, from: store)
        try await store.consume(c, hashes: ["a"], logger: log)
        // Another session holds the SAD's row: the next step waits on its lock.
        let logger = Logger(label: "session-store-test")
        let locker = try settings.client(application: "session-store-test", connectTimeout: .seconds(5), logger: logger)
        let running = Task { await locker.run() }
        try await locker.withTransaction(logger: logger) { conn in
            _ = try await conn.query("SELECT 1 FROM sad_budgets WHERE id = \(c.id) FOR UPDATE", logger: logger)
            let started = ContinuousClock.now
            let e = await refusal { try await store.consume(c, hashes: ["b"], logger: log) }
            #expect(e?.status == 503 && e?.error == "temporarily_unavailable")
            #expect(ContinuousClock.now - started < .seconds(1.5))
        }
        running.cancel()
        await store.shutdown()
    }

    @Test("a store that cannot answer refuses with a 503 and says nothing of the database")
    func unreachable() async throws {
        let settings = try Backend.postgresSettings()
        let store = try await PostgresSessionStore(settings: settings, timeout: 0.5, accessLifetime: 60, refreshLifetime: 60)
        let issued = try await store.issue(tenantID: "acme", clientID: "acme-app", scopes: [], withRefreshToken: false, logger: log)
        await store.shutdown()
        let started = ContinuousClock.now
        let e = await refusal { _ = try await store.authenticate(accessToken: issued.accessToken, logger: log) }
        #expect(e?.status == 503 && e?.error == "temporarily_unavailable")
        #expect(e?.errorDescription.contains(settings.host) == false && e?.errorDescription.contains("postgres") == false)
        #expect(ContinuousClock.now - started < .seconds(3))
        let spent = await refusal { try await store.consume(claims(1, from: store), hashes: ["a"], logger: log) }
        #expect(spent?.status == 503, "no budget is granted on a guess")

        var closed = settings
        closed.port = 1
        await #expect(throws: (any Error).self) {
            _ = try await PostgresSessionStore(settings: closed, timeout: 0.5, accessLifetime: 60, refreshLifetime: 60,
                                               connectTimeout: .seconds(3))
        }
    }
}
